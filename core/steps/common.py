"""Parameter groups shared by several steps, and the helpers that act on their values."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..choices import (
    CODINGS,
    DEQUANTISATIONS,
    LABEL_KINDS,
    SOURCE_KINDS,
    SPLIT_METHODS,
    TESSERA_VARIANTS,
)
from ..spec import Param

EMBEDDINGS = (
    Param(
        "embeddings", "embeddings", "Embeddings",
        "GeoTIFF, VRT, zarr store or folder of tiles (TESSERA .npy or GeoTIFF tiles)",
        group="Embeddings",
    ),
    Param(
        "source_kind", "enum", "Embedding source kind",
        "auto decides from the path; aef: AlphaEarth int8 export",
        default="auto", choices=SOURCE_KINDS, advanced=True, group="Embeddings",
    ),
    Param(
        "array", "string", "zarr array name", "the array in a zarr group holding the embeddings",
        optional=True, advanced=True, group="Embeddings",
    ),
    Param(
        "dequantise", "enum", "AlphaEarth int8 dequantisation",
        "quadratic: sign(v) * (v / 127.5)^2 (the export convention); linear: v / 127",
        default="quadratic", choices=DEQUANTISATIONS, advanced=True, group="Embeddings",
    ),
    Param(
        "year", "int", "Year",
        "TESSERA stores and tiles, the AlphaEarth index: the year to read (one year: none needed)",
        optional=True, minimum=2000, maximum=2100, group="Embeddings",
    ),
    Param(
        "grid_crs", "crs", "City grid CRS",
        "TESSERA and the AlphaEarth index are read onto this grid (default: the UTM zone of the "
        "extent's centre)", optional=True, advanced=True, group="Embeddings",
    ),
    Param(
        "variant", "string", "TESSERA version and variant",
        f"auto: as the data says; else {', '.join(TESSERA_VARIANTS[1:])} or a newer name; a "
        "value the data contradicts is refused", default="auto", advanced=True, group="Embeddings",
    ),
)  # fmt: skip
EXTENT = (
    Param(
        "extent", "extent", "Extent", "default: the whole input",
        optional=True, group="Extent",
    ),
    Param(
        "extent_crs", "crs", "Extent CRS", "CRS of the extent, e.g. EPSG:4326 (default: the input's)",
        optional=True, parent="extent", group="Extent",
    ),
)  # fmt: skip
CLUSTER = (
    Param(
        "scheduler", "string", "Dask scheduler address",
        "ADDRESS of a running dask.distributed scheduler (tcp://host:8786): the work is split into "
        "windows run by its workers, which must see the inputs and the output folder at the same "
        "paths", optional=True, advanced=True, group="Scale-out",
    ),
    Param(
        "workers", "int", "Local Dask workers",
        "N: start a dask.distributed LocalCluster of N processes for the run and split the work "
        "into windows among them (the result is the same as without)",
        optional=True, minimum=1, maximum=1024, advanced=True, group="Scale-out",
    ),
)  # fmt: skip
LABELS = (
    Param(
        "labels", "labels", "LCZ labels",
        "polygons or points with a class field, a WUDAPT KMZ/KML, So2Sat _geo.h5 or an LCZ raster",
        group="Labels",
    ),
    Param(
        "label_kind", "enum", "Label kind", "auto decides from the file",
        default="auto", choices=LABEL_KINDS, advanced=True, group="Labels",
    ),
    Param(
        "class_field", "field", "Field holding the LCZ class",
        "vector labels: 1-17, 1-10 with 101-107, or letters A-G (default: found by name)",
        optional=True, parent="labels", group="Labels",
    ),
    Param(
        "coding", "enum", "Class coding",
        "auto: 1-17 or 1-10 with 101-107, from the values present",
        default="auto", choices=CODINGS, group="Labels",
    ),
    Param(
        "mapping", "string", "Class mapping",
        "explicit 'from:to,...' naming every value (to: 1-17 or A-G, 0 = nodata)",
        optional=True, advanced=True, group="Labels",
    ),
    Param(
        "layer", "string", "Layer of the label file", "a layer of a multi-layer vector file",
        optional=True, advanced=True, group="Labels",
    ),
    Param(
        "label_band", "int", "Band of the label raster",
        "default: the filtered band of an LCZ Generator file, else band 1",
        optional=True, minimum=1, advanced=True, group="Labels",
    ),
    Param(
        "label_nodata", "float", "Nodata of the label raster",
        "a value read as nodata besides the file's own", optional=True, advanced=True, group="Labels",
    ),
)  # fmt: skip
SO2SAT_EPSG = Param(
    "epsg", "int", "So2Sat: EPSG code of the city",
    "So2Sat files hold many cities; take the patches of this one",
    optional=True, minimum=1, advanced=True, group="Labels",
)  # fmt: skip
SPLIT = (
    Param(
        "split_method", "enum", "Split method",
        "blocks of cells (leak-free), random cells, stripes, a checkerboard or your polygons",
        default="blocks", choices=SPLIT_METHODS, group="Split",
    ),
    Param(
        "fractions", "string", "Train, val, test shares",
        "three shares summing to 1 (checkerboard: always 0.5, 0.25, 0.25; the shares are not used)",
        default="0.7,0.15,0.15", group="Split",
    ),
    Param(
        "seed", "int", "Random seed", "same inputs and seed give the same split",
        default=0, minimum=0, group="Split",
    ),
    Param(
        "block_cells", "int", "Block size or held-out stripe height (cells)",
        "0 fits it to the extent: the largest blocks (at most 2 km) that give val and test four "
        "blocks each, or stripes two cycles, and at least three times the buffer's reach",
        default=0, minimum=0, advanced=True, group="Split",
    ),
    Param(
        "buffer", "float", "Buffer between train and held-out patches (m)",
        "metres kept between training and val/test patch footprints (0: they may touch, not "
        "overlap); of a pair closer than this the southern patch is dropped; -1: no check",
        default=0.0, minimum=-1.0, advanced=True, group="Split",
    ),
    Param(
        "split_polygons", "vector", "Split polygons",
        "method 'polygons': train/val/test polygons ('path|layername=name' for one layer of a file)",
        optional=True, group="Split",
    ),
    Param(
        "split_field", "field", "Split field", "method 'polygons': the field holding train, val or test",
        default="split", parent="split_polygons", advanced=True, group="Split",
    ),
)  # fmt: skip


def optional(params: tuple[Param, ...]) -> tuple[Param, ...]:
    """The same parameters, none of them required (another parameter can stand in for them)."""
    return tuple(dataclasses.replace(p, optional=True) for p in params)


SOURCE_OPTIONS = ("source_kind", "array", "dequantise", "year", "grid_crs", "variant")


def source_options(values: dict[str, Any]) -> dict[str, Any]:
    """Take the embedding source options out of the values, as open_source's keywords."""
    options = {name: values.pop(name) for name in SOURCE_OPTIONS}
    options["kind"], options["crs"] = options.pop("source_kind"), options.pop("grid_crs")
    return options


def open_embeddings(values: dict[str, Any]):
    """The embedding source named by the values and the extent in its CRS (None = all)."""
    from ..extents import reproject_extent
    from ..rasters import open_source

    extent, extent_crs = values["extent"], values["extent_crs"]
    source = open_source(
        values["embeddings"],
        extent=extent,
        extent_crs=extent_crs,
        **source_options(dict(values)),
    )
    if extent is not None and (extent_crs or source.default_extent_crs):
        extent = reproject_extent(extent, extent_crs or source.default_extent_crs, source.crs)
    return source, extent


def open_source_of(values: dict[str, Any]):
    """The embedding source named by the values, opened again (e.g. by a cluster's worker)."""
    return open_embeddings(values)[0]


def open_labels_from(values: dict[str, Any], progress: Any):
    """The labels named by the values (a 'path|layername=x' source keeps its layer)."""
    from ..labels import open_labels
    from ..spec import split_layer

    path, layer = split_layer(values["labels"])
    return open_labels(
        path,
        values["label_kind"],
        values["class_field"],
        values["coding"],
        values["mapping"],
        layer=values["layer"] or layer,
        epsg=values["epsg"],
        progress=progress,
        label_band=values["label_band"],
        label_nodata=values["label_nodata"],
    )


def split_config(values: dict[str, Any]):
    """The split settings named by the values."""
    from ..errors import LczError
    from ..sampling import SplitConfig

    try:
        fractions = tuple(float(v) for v in values["fractions"].split(","))
    except ValueError:
        raise LczError("fractions", f"{values['fractions']!r} is not 'train,val,test'") from None
    polygons = values["split_polygons"]
    return SplitConfig(
        method=values["split_method"],
        fractions=fractions,  # type: ignore[arg-type]
        seed=values["seed"],
        block_cells=values["block_cells"],
        buffer_m=None if values["buffer"] < 0 else values["buffer"],
        polygons=polygons,
        split_field=values["split_field"],
    )
