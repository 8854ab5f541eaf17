"""Label sources: polygons, points, WUDAPT KMZ/KML, So2Sat LCZ42 patches and LCZ rasters.

Every reader translates its coding to 1-17 at the edge (core/lcz.py) and refuses values it cannot
explain, naming them. Polygon and raster labels can be rasterised onto any pixel grid
(`rasterize`: uint8, 0 = unlabelled); point labels (patch centres) give one class per patch.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .choices import LABEL_KINDS
from .errors import LczError
from .lcz import LczCodingError, apply_lookup, as_mapping, code_from_text, resolve_lookup
from .lczmap import choose_band, read_classes
from .outputs import LczRasterWriter
from .progress import Progress
from .rasters import open_raster

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".nc")
LABEL_PREFIX = "label_"  # raster label steps name their band and nodata label_band, label_nodata


@dataclass
class VectorLabels:
    """Polygons or points with an `lcz` column (1-17) in a GeoDataFrame with a CRS."""

    frame: Any
    name: str
    footprint: float | None = None  # half side (CRS units) of the square each point stands for

    @property
    def crs(self) -> CRS:
        """The labels' CRS."""
        return CRS.from_user_input(self.frame.crs)

    @property
    def is_points(self) -> bool:
        """True for patch-centre points (So2Sat, point layers)."""
        return bool(len(self.frame)) and bool((self.frame.geom_type == "Point").all())

    def to_crs(self, crs: CRS | str, progress: Progress | None = None) -> VectorLabels:
        """The labels in `crs` (reprojected, and said so, where they differ)."""
        crs = CRS.from_user_input(crs)
        if crs == self.crs:
            return self
        if progress is not None:
            progress.log(
                f"labels {self.name}: reprojected from {self.crs.to_string()} to {crs.to_string()}"
            )
        # a footprint in metres stays meaningful between projected CRSs only
        footprint = self.footprint if crs.is_projected and self.crs.is_projected else None
        return VectorLabels(self.frame.to_crs(crs.to_wkt()), self.name, footprint)

    def rasterize(self, crs: CRS, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
        """uint8 class codes on a pixel grid (0 = unlabelled); pixel centres decide.

        Points with a `footprint` (So2Sat patch centres) burn the square around them.
        """
        from rasterio.features import rasterize
        from shapely.geometry import box

        frame = self.frame
        if self.footprint is not None and self.is_points:
            # squares drawn in the labels' own CRS, where the footprint is defined
            frame = frame.set_geometry(frame.geometry.buffer(self.footprint, cap_style="square"))
        frame = VectorLabels(frame, self.name).to_crs(crs).frame
        height, width = shape
        left, top = transform.c, transform.f
        area = box(left, top + height * transform.e, left + width * transform.a, top)
        hits = frame.iloc[frame.sindex.query(area)]
        if hits.empty:
            return np.zeros(shape, np.uint8)
        pairs = zip(hits.geometry, hits["lcz"].astype(int), strict=True)
        return rasterize(pairs, out_shape=shape, transform=transform, fill=0, dtype="uint8")


class RasterLabels:
    """An LCZ raster (any coding declared or detected) used as (weak) labels on any grid."""

    def __init__(
        self,
        path: str | os.PathLike,
        coding: str = "auto",
        mapping: Mapping[int, int] | None = None,
        band: int | None = None,
        nodata: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.path, self.name = Path(path), str(path)
        with open_raster(self.path, "labels") as ds:
            if ds.crs is None:
                raise LczError("labels", f"{self.path} has no CRS; assign one first")
            choice = choose_band(
                ds, band, nodata, progress or Progress(), self.path.name, LABEL_PREFIX
            )
            self.crs, self.nodata = ds.crs, ds.nodata
            present = _raster_values(ds, choice.band, choice.nodata)
        self.band, self.extra_nodata = choice.band, choice.nodata
        try:
            self.coding, self.table = resolve_lookup(
                coding, present, mapping, choice.assume, prefix=LABEL_PREFIX
            )
        except LczCodingError as error:
            raise LczError(error.parameter, f"{self.path}, band {self.band}: {error}") from None

    def rasterize(self, crs: CRS, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
        """uint8 class codes warped (nearest) onto a pixel grid (0 = unlabelled)."""
        import rasterio
        from rasterio.warp import Resampling, reproject

        values = np.full(shape, np.nan, dtype=np.float64)
        with rasterio.open(self.path) as ds:
            reproject(
                rasterio.band(ds, self.band),
                values,
                src_nodata=self.nodata,
                dst_transform=transform,
                dst_crs=crs,
                dst_nodata=np.nan,
                resampling=Resampling.nearest,
            )
        valid = np.isfinite(values) & ~np.isin(values, self.extra_nodata)
        valid &= np.isin(values, list(self.table))
        return apply_lookup(values, self.table, valid)


def _raster_values(ds, band: int, nodata: tuple[float, ...]) -> list[int]:
    """The distinct valid class values of a label raster, block by block."""
    found: set[int] = set()
    for _, window in ds.block_windows(band):
        values, valid = read_classes(ds, band, window, f"{LABEL_PREFIX}band", nodata)
        found.update(np.unique(values[valid]).astype(np.int64).tolist())
    return sorted(found)


def _codes(values: Any, coding: str, mapping: Mapping[int, int] | None) -> tuple[np.ndarray, str]:
    """Class values of an attribute column (numbers or text like 'A', 'LCZ 2') -> (uint8 0-17, coding).

    0 marks features a mapping sends to nodata.
    """
    import pandas as pd

    series = pd.Series(values)
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().all() and (numeric == numeric.round()).all():
        ints = numeric.astype(np.int64).to_numpy()
        try:
            # the user named the field as LCZ classes: built classes alone are read as 1-17
            used, table = resolve_lookup(coding, np.unique(ints), mapping, "lcz17", raster=False)
            return apply_lookup(ints, table, np.ones(len(ints), bool)), used
        except LczCodingError as error:
            raise LczError(error.parameter, str(error)) from None
    if mapping:
        raise LczError(
            "mapping",
            f"the field holds text such as {series.iloc[0]!r}; a mapping translates numbers: "
            "drop it (classes written as 1-10, A-G or 'LCZ A' are read as they are)",
        )
    codes, unknown = {}, []
    for value in series.unique():
        try:
            codes[value] = code_from_text(value)
        except LczCodingError:
            unknown.append(str(value))
    if unknown:
        raise LczError(
            "class_field",
            f"values {', '.join(sorted(unknown)[:10])} are not LCZ classes (1-10, A-G, 101-107); "
            "fix them or choose another field",
        )
    return series.map(codes).to_numpy(dtype=np.uint8), "text"


# fields that hold LCZ classes in files met in the wild, used when no class field is named
KNOWN_CLASS_FIELDS = {
    "LCZ_PRIMARY": "GeoClimate",
    "lcz": "this project's points and polygons",
}


def _class_field(frame: Any, path: Any, class_field: str | None, progress: Progress) -> str:
    """`class_field`, or the one known LCZ field the file has; else refuse listing its fields."""
    fields = [c for c in frame.columns if c != frame.geometry.name]
    if class_field:
        if class_field not in fields:
            raise LczError(
                "class_field",
                f"{path} has no field {class_field!r}; its fields: {', '.join(fields)}",
            )
        return class_field
    known = [f for f in fields if f in KNOWN_CLASS_FIELDS]
    if len(known) != 1:
        raise LczError(
            "class_field",
            f"name the field of {Path(path).name} that holds the LCZ class; its fields: "
            f"{', '.join(fields)}",
        )
    progress.log(f"{Path(path).name}: class field {known[0]} ({KNOWN_CLASS_FIELDS[known[0]]})")
    return known[0]


def read_vector_labels(
    path: str | os.PathLike,
    class_field: str | None = None,
    layer: str | None = None,
    coding: str = "auto",
    mapping: Mapping[int, int] | None = None,
    progress: Progress | None = None,
) -> VectorLabels:
    """Polygons or points (GeoPackage, GeoJSON, Shapefile, ...) with classes in `class_field`.

    Without `class_field` a known LCZ field (GeoClimate's LCZ_PRIMARY, this project's lcz) is used.
    """
    import geopandas as gpd
    import pyogrio

    progress = progress or Progress()
    try:
        layers = [name for name, _ in pyogrio.list_layers(path)]
    except Exception as error:  # pyogrio raises DataSourceError and friends
        raise LczError("labels", f"cannot read {path}: {error}") from None
    if layer is None and len(layers) > 1:
        raise LczError("layer", f"{path} holds the layers {', '.join(layers)}; name one")
    if layer is not None and layer not in layers:
        raise LczError("layer", f"{path} has no layer {layer!r}; its layers: {', '.join(layers)}")
    try:
        frame = gpd.read_file(path, layer=layer)
    except Exception as error:
        raise LczError("labels", f"cannot read {path}: {error}") from None
    if frame.crs is None:
        raise LczError("labels", f"{path} has no CRS; assign one before using it as labels")
    class_field = _class_field(frame, path, class_field, progress)
    frame = frame[frame[class_field].notna() & frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise LczError("labels", f"{path} has no features with a geometry and a class")
    codes, used = _codes(frame[class_field], coding, mapping)
    progress.log(f"{Path(path).name}: classes of {class_field} read as {used}")
    keep = codes > 0  # features a mapping sent to nodata
    out = gpd.GeoDataFrame(
        {"lcz": codes[keep]}, geometry=frame.geometry.to_numpy()[keep], crs=frame.crs
    )
    if out.empty:
        raise LczError("mapping", f"it sends every feature of {path} to nodata")
    return VectorLabels(out, str(path))


def read_kml(path: str | os.PathLike, progress: Progress | None = None) -> VectorLabels:
    """WUDAPT training areas (KML, or KMZ read through /vsizip/): class = folder name."""
    import geopandas as gpd
    import pandas as pd
    import pyogrio

    path = Path(path)
    source = str(path)
    try:
        if path.suffix.lower() == ".kmz":
            with zipfile.ZipFile(path) as archive:
                inner = [n for n in archive.namelist() if n.lower().endswith(".kml")]
            if not inner:
                raise LczError("labels", f"{path} holds no .kml document")
            source = f"/vsizip/{path}/{inner[0]}"
        layers = [
            (name, gpd.read_file(source, layer=name)) for name, _ in pyogrio.list_layers(source)
        ]
    except (OSError, zipfile.BadZipFile, pyogrio.errors.DataSourceError) as error:
        raise LczError(
            "labels", f"cannot read {path} as KML/KMZ ({error}); export it again from Google Earth"
        ) from None
    frames, strays = [], []
    for name, frame in layers:
        frame = frame[frame.geometry.notna() & frame.geom_type.isin(["Polygon", "MultiPolygon"])]
        if frame.empty:
            continue
        try:
            code = code_from_text(name)
        except LczCodingError:
            strays.append(name)
            continue
        frames.append(
            gpd.GeoDataFrame(
                {"lcz": np.full(len(frame), code, np.uint8)},
                geometry=frame.geometry.to_numpy(),
                crs=frame.crs,
            )
        )
    if strays and progress is not None:
        # the LCZ Generator template keeps its region of interest in the document folder
        progress.log(f"{path.name}: skipped folders not named as LCZ classes: {', '.join(strays)}")
    if not frames:
        raise LczError("labels", f"{path} has no polygons in folders named 1-10 or A-G")
    frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
    return VectorLabels(frame, str(path))


# metres: a So2Sat label is the class of the 100 m label cell at its patch centre (the centres
# lie on a 100 m lattice); the 320 m patches around them overlap
SO2SAT_HALF_CELL = 50.0


def so2sat_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(main file with `label`, `*_geo.h5` companion with `coord` and `epsg`) for either name."""
    path = Path(path)
    if path.stem.endswith("_geo"):
        return path.with_name(path.stem[: -len("_geo")] + path.suffix), path
    return path, path.with_name(f"{path.stem}_geo{path.suffix}")


def read_so2sat(path: str | os.PathLike, epsg: int | None = None) -> VectorLabels:
    """So2Sat LCZ42 patch centres with classes, for one city's UTM zone (`epsg`)."""
    import geopandas as gpd
    import h5py

    from .lcz import decode_one_hot

    main, geo = so2sat_paths(path)
    for needed in (main, geo):
        if not needed.is_file():
            raise LczError(
                "labels", f"{needed} is missing; So2Sat needs the image file and its _geo.h5"
            )
    with h5py.File(geo, "r") as g:
        coord = g["coord"][:, :2]
        codes_epsg = g["epsg"][:].ravel()
    zones = sorted(int(z) for z in np.unique(codes_epsg))
    if epsg is None:
        if len(zones) > 1:
            raise LczError(
                "epsg", f"{geo} holds cities in EPSG {', '.join(map(str, zones))}; choose one"
            )
        epsg = zones[0]
    if epsg not in zones:
        raise LczError(
            "epsg", f"{geo} has no patches in EPSG:{epsg}; it has {', '.join(map(str, zones))}"
        )
    chosen = np.flatnonzero(codes_epsg == epsg)
    with h5py.File(main, "r") as m:
        if m["label"].shape[0] != codes_epsg.size:
            raise LczError(
                "labels", f"{main} has {m['label'].shape[0]} patches, {geo} {codes_epsg.size}"
            )
        # the one-hot table is read in slices: a full LCZ42 file is large
        parts = [
            decode_one_hot(m["label"][s : s + 65536]) for s in range(0, codes_epsg.size, 65536)
        ]
    codes = np.concatenate(parts)[chosen]
    frame = gpd.GeoDataFrame(
        {"lcz": codes, "index": chosen},
        geometry=gpd.points_from_xy(coord[chosen, 0], coord[chosen, 1]),
        crs=f"EPSG:{epsg}",
    )
    return VectorLabels(frame, f"{main} (EPSG:{epsg})", footprint=SO2SAT_HALF_CELL)


def open_labels(
    path: str | os.PathLike,
    kind: str = "auto",
    class_field: str | None = None,
    coding: str = "auto",
    mapping: Mapping[int, int] | str | None = None,
    layer: str | None = None,
    epsg: int | None = None,
    progress: Progress | None = None,
    label_band: int | None = None,
    label_nodata: float | None = None,
) -> VectorLabels | RasterLabels:
    """Open a label source of any kind; 'auto' decides from the file name.

    `layer` names a layer of a multi-layer vector file, `epsg` the city of a So2Sat file;
    `label_band` and `label_nodata` apply to raster labels as band and nodata do to LCZ maps.
    """
    path = Path(path)
    if not path.exists():
        raise LczError("labels", f"{path} does not exist")
    mapping = as_mapping(mapping)
    suffix = path.suffix.lower()
    if kind == "auto":
        kind = {".kmz": "kml", ".kml": "kml", ".h5": "so2sat"}.get(suffix)
        kind = kind or ("raster" if suffix in RASTER_SUFFIXES else "polygons")
    if kind not in LABEL_KINDS:
        raise LczError(
            "label_kind", f"unknown label kind {kind!r}; use one of {', '.join(LABEL_KINDS)}"
        )
    if layer is not None and kind not in ("polygons", "points"):
        raise LczError("layer", f"{path.name} is read as {kind} labels, which have no layers")
    if kind == "kml":
        return read_kml(path, progress)
    if kind == "so2sat":
        return read_so2sat(path, epsg)
    if kind == "raster":
        return RasterLabels(path, coding, mapping, label_band, label_nodata, progress)
    return read_vector_labels(path, class_field, layer, coding, mapping, progress)


def rasterize_to_file(
    labels: VectorLabels | RasterLabels,
    output: str | os.PathLike,
    crs: CRS,
    transform: Affine,
    width: int,
    height: int,
    progress: Progress | None = None,
    block: int = 1024,
) -> dict[str, Any]:
    """Write the labels as a styled LCZ GeoTIFF on a pixel grid, block by block."""
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    progress = progress or Progress()
    windows = [
        Window(c, r, min(block, width - c), min(block, height - r))
        for r in range(0, height, block)
        for c in range(0, width, block)
    ]
    with LczRasterWriter(
        output, crs=crs, transform=transform, width=width, height=height
    ) as writer:
        for i, window in enumerate(windows):
            progress.report(100.0 * i / len(windows), "rasterising labels")
            shape = (window.height, window.width)
            writer.write(labels.rasterize(crs, window_transform(window, transform), shape), window)
        if not writer.codes_present:  # raised inside the block: no empty file is left behind
            raise LczError(
                "labels",
                f"{labels.name} has no label inside the output grid; check the extent and the labels' CRS",
            )
        counts = {str(c): int(writer.counts[c]) for c in writer.codes_present}
    progress.report(100.0, "rasterised")
    return {"output": str(output), "labelled_pixels": sum(counts.values()), "class_pixels": counts}
