"""Steps that make training data: the grid and its split, labelled patches, rasterised labels."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ..choices import DATASET_KINDS
from ..errors import LczError
from ..progress import Progress
from ..spec import Output, Param, Step
from .common import (
    CLUSTER,
    EMBEDDINGS,
    EXTENT,
    LABELS,
    SO2SAT_EPSG,
    SPLIT,
    open_embeddings,
    open_labels_from,
    open_source_of,
    optional,
    split_config,
)

GROUP = "Training data"

CREATE_GRID = Step(
    "create-grid",
    "Create grid",
    GROUP,
    "Lays a grid of cells aligned to the embedding pixels over the extent (32 px cells for "
    "patches, 64 px for segmentation tiles) and assigns every cell to train, val or test with a "
    "seeded split that avoids spatial leakage: 'blocks' assigns whole blocks of cells, 'stripes' "
    "bands of cells, 'checkerboard' alternating blocks, 'polygons' the split field of your "
    "polygons; held-out cells closer to a train cell than the buffer are excluded. The same "
    "inputs and seed always give the same split. The cells open coloured by split.",
    (
        *EMBEDDINGS,
        *EXTENT,
        Param(
            "cell_size", "int", "Cell size (pixels)", "32 for patches, 64 for tiles",
            default=32, minimum=2,
        ),
        *SPLIT,
        Param("output", "output_vector", "Grid", "GeoPackage: cell_id, row, col, split"),
    ),
    (
        Output("cells", "number", "Cells"),
        Output("train_cells", "number", "Train cells"),
        Output("val_cells", "number", "Validation cells"),
        Output("test_cells", "number", "Test cells"),
        Output("excluded_cells", "number", "Cells excluded by the buffer"),
        Output("split_shares", "json", "Realised train, val, test shares (JSON)"),
        Output("block_cells_used", "json", "Block size used (cells)"),
    ),
)  # fmt: skip


@CREATE_GRID.implementation
def create_grid(*, output: str, cell_size: int, progress: Any, **values: Any) -> dict[str, Any]:
    from ..sampling import grid_with_splits

    source, extent = open_embeddings(values)
    with source:
        return grid_with_splits(source, output, extent, cell_size, split_config(values))


SAMPLE_PATCHES = Step(
    "sample-patches",
    "Sample labelled patches",
    GROUP,
    "Cuts embedding patches (32 x 32 px by default, the So2Sat LCZ42 patch) or segmentation tiles "
    "(64 x 64 px, labels rasterised, 0 = unlabelled) where labels exist, splits them into "
    "train/val/test without spatial leakage (see Create grid) and writes a dataset folder (zarr + "
    "manifest.json) that training reads without the original rasters. Labels: polygons or points "
    "with a class field, a WUDAPT training-area KMZ/KML (one folder per class), So2Sat LCZ42 "
    "locations (_geo.h5) or an LCZ raster. Several cities: give a city catalogue (TOML) instead "
    "of embeddings and labels. Patches with more missing pixels than allowed are dropped; classes "
    "with fewer samples than the minimum count are named in the log.",
    (
        *optional(EMBEDDINGS),
        *EXTENT,
        *optional(LABELS),
        SO2SAT_EPSG,
        Param(
            "cities", "file", "City catalogue (TOML)", "instead of embeddings and labels",
            optional=True, file_filter="TOML files (*.toml)", group="Cities",
        ),
        Param(
            "city", "string", "Cities of the catalogue", "comma-separated names (default: all)",
            optional=True, group="Cities",
        ),
        Param(
            "dataset_kind", "enum", "Dataset kind", "patches: one class each; tiles: label rasters",
            default="patches", choices=DATASET_KINDS, group="Samples",
        ),
        Param(
            "patch_size", "int", "Patch size (pixels)", "default: 32 for patches, 64 for tiles",
            optional=True, minimum=2, maximum=1024, group="Samples",
        ),
        Param(
            "min_share", "float", "Share of a patch its class must cover",
            "default: 0.5 for patches, 0.05 (labelled share) for tiles",
            optional=True, minimum=0.0, maximum=1.0, advanced=True, group="Samples",
        ),
        Param(
            "max_missing", "float", "Largest share of missing pixels kept",
            default=0.5, minimum=0.0, maximum=1.0, advanced=True, group="Samples",
        ),
        Param(
            "min_count", "int", "Minimum samples per class and split",
            "classes with fewer are named in the log", default=10, minimum=0, advanced=True,
            group="Samples",
        ),
        *SPLIT,
        *CLUSTER,
        Param("output", "output_folder", "Dataset folder"),
        Param(
            "grid_output", "output_vector", "Sampled cells by split", optional=True,
        ),
    ),
    (
        Output("count", "number", "Samples written"),
        Output("class_counts", "json", "Samples per split and class (JSON)"),
        Output("rare_classes", "json", "Classes below the minimum count (JSON)"),
        Output("split_counts", "json", "Realised samples per split (JSON)"),
        Output("split_shares", "json", "Realised train, val, test shares (JSON)"),
        Output("class_shares", "json", "Realised split shares per class (JSON)"),
        Output("block_cells_used", "json", "Block size used per city (cells)"),
        Output("dropped_buffer", "number", "Samples dropped by the buffer"),
        Output("dropped_missing", "number", "Samples dropped for missing pixels"),
        Output("dropped_min_share", "number", "Samples dropped: class share too small"),
    ),
    requires=(("embeddings", "labels"), ("cities",)),
)  # fmt: skip


# label settings that a catalogue gives per city; given beside a catalogue they would be ignored
CATALOGUE_LABEL_SETTINGS = ("class_field", "mapping", "layer", "epsg", "label_band", "label_nodata")


def catalogue_cities(values: dict[str, Any], progress: Progress) -> list:
    """The cities of the catalogue named by the values, each with its embeddings and labels."""
    from ..cities import load_catalogue, pick_cities
    from ..sampling import CityInput

    for name in CATALOGUE_LABEL_SETTINGS:
        if values[name] is not None:
            raise LczError(
                name,
                "the city catalogue names each city's labels: write this setting in its "
                "[cities.<name>.labels.<source>] table, or sample without a catalogue",
            )
    catalogue = load_catalogue(values["cities"])
    cities = []
    for city in pick_cities(catalogue, (values["city"] or "").split(",")):
        source = city.open_embeddings()
        labels = city.open_labels(progress=progress)
        extent = city.extent_in(source.crs)
        cities.append(CityInput(city.name, source, labels, extent, city.open_embeddings))
    return cities


@SAMPLE_PATCHES.implementation
def sample_patches(*, progress: Any, **values: Any) -> dict[str, Any]:
    from ..cluster import cluster_client
    from ..sampling import CityInput, make_dataset

    if values["cities"]:
        cities = catalogue_cities(values, progress)
    else:
        source, extent = open_embeddings(values)
        labels = open_labels_from(values, progress)
        reopen = functools.partial(open_source_of, values)
        cities = [CityInput(Path(values["embeddings"]).stem, source, labels, extent, reopen)]
    scheduler, workers = values["scheduler"], values["workers"]
    with cluster_client(scheduler, workers) as client:
        return make_dataset(
            cities,
            values["output"],
            kind=values["dataset_kind"],
            patch_size=values["patch_size"],
            split=split_config(values),
            min_share=values["min_share"],
            max_missing=values["max_missing"],
            min_count=values["min_count"],
            grid_output=values["grid_output"],
            progress=progress,
            client=client,
        )


RASTERIZE_LABELS = Step(
    "rasterize-labels",
    "Rasterize labels",
    GROUP,
    "Burns LCZ labels (polygons, a WUDAPT KMZ/KML, So2Sat locations or an LCZ raster) onto the "
    "embeddings' pixel grid over the extent: a styled LCZ GeoTIFF with 0 = unlabelled, the label "
    "raster of segmentation training.",
    (
        *EMBEDDINGS,
        *EXTENT,
        *LABELS,
        SO2SAT_EPSG,
        Param("output", "output_raster", "Label raster", "styled LCZ GeoTIFF, 0 = unlabelled"),
    ),
    (
        Output("labelled_pixels", "number", "Labelled pixels"),
        Output("class_pixels", "json", "Pixels per class (JSON)"),
    ),
)


@RASTERIZE_LABELS.implementation
def rasterize_labels(*, output: str, progress: Any, **values: Any) -> dict[str, Any]:
    from ..grid import make_grid
    from ..labels import rasterize_to_file

    source, extent = open_embeddings(values)
    with source:
        grid = make_grid(source, extent, cell_px=1)
    labels = open_labels_from(values, progress)
    return rasterize_to_file(
        labels, output, grid.crs, grid.transform, grid.cols, grid.rows, progress=progress
    )
