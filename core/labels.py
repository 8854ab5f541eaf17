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

from .errors import LczError
from .lcz import LczCodingError, apply_lookup, code_from_text, resolve_lookup
from .lczmap import open_raster, read_classes
from .outputs import LczRasterWriter
from .progress import Progress

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".nc")


@dataclass
class VectorLabels:
    """Polygons or points with an `lcz` column (1-17) in a GeoDataFrame with a CRS."""

    frame: Any
    name: str

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
        return VectorLabels(self.frame.to_crs(crs.to_wkt()), self.name)

    def rasterize(self, crs: CRS, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
        """uint8 class codes on a pixel grid (0 = unlabelled); pixel centres decide."""
        from rasterio.features import rasterize
        from shapely.geometry import box

        frame = self.to_crs(crs).frame
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
        band: int = 1,
    ) -> None:
        self.path, self.band, self.name = Path(path), band, str(path)
        with open_raster(self.path, "labels") as ds:
            if ds.crs is None:
                raise LczError("labels", f"{self.path} has no CRS; assign one first")
            self.crs, self.nodata = ds.crs, ds.nodata
            present = _raster_values(ds, band)
        try:
            self.coding, self.table = resolve_lookup(coding, present, mapping)
        except LczCodingError as error:
            raise LczError("labels", f"{self.path}: {error}") from None

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
        valid = np.isfinite(values) & np.isin(values, list(self.table))
        return apply_lookup(values, self.table, valid)


def _raster_values(ds, band: int) -> list[int]:
    """The distinct valid class values of a label raster, block by block."""
    found: set[int] = set()
    for _, window in ds.block_windows(band):
        values, valid = read_classes(ds, band, window, "labels")
        found.update(np.unique(values[valid]).astype(np.int64).tolist())
    return sorted(found)


def _codes(
    values: Any, parameter: str, coding: str, mapping: Mapping[int, int] | None
) -> np.ndarray:
    """Class values of an attribute column (numbers or text like 'A', 'LCZ 2') -> uint8 1-17."""
    import pandas as pd

    series = pd.Series(values)
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().all() and (numeric == numeric.round()).all():
        try:
            _, table = resolve_lookup(coding, numeric.astype(int).unique(), mapping)
            return apply_lookup(numeric.astype(int).to_numpy(), table, np.ones(len(series), bool))
        except LczCodingError as error:
            raise LczError(parameter, str(error)) from None
    codes, unknown = {}, []
    for value in series.unique():
        try:
            codes[value] = (mapping or {}).get(value) or code_from_text(value)
        except LczCodingError:
            unknown.append(str(value))
    if unknown:
        raise LczError(
            parameter,
            f"values {', '.join(sorted(unknown)[:10])} are not LCZ classes (1-10, A-G, 101-107); "
            "fix them or choose another field",
        )
    return series.map(codes).to_numpy(dtype=np.uint8)


def read_vector_labels(
    path: str | os.PathLike,
    class_field: str,
    layer: str | None = None,
    coding: str = "auto",
    mapping: Mapping[int, int] | None = None,
) -> VectorLabels:
    """Polygons or points (GeoPackage, GeoJSON, Shapefile, ...) with classes in `class_field`."""
    import geopandas as gpd

    try:
        frame = gpd.read_file(path, layer=layer)
    except Exception as error:  # pyogrio raises DataSourceError and friends
        raise LczError("labels", f"cannot read {path}: {error}") from None
    if frame.crs is None:
        raise LczError("labels", f"{path} has no CRS; assign one before using it as labels")
    if class_field not in frame.columns:
        fields = ", ".join(c for c in frame.columns if c != "geometry")
        raise LczError("class_field", f"{path} has no field {class_field!r}; its fields: {fields}")
    frame = frame[frame[class_field].notna() & frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise LczError("labels", f"{path} has no features with a geometry and a class")
    codes = _codes(frame[class_field], "class_field", coding, mapping)
    out = gpd.GeoDataFrame({"lcz": codes}, geometry=frame.geometry.to_numpy(), crs=frame.crs)
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
    return VectorLabels(frame, f"{main} (EPSG:{epsg})")


LABEL_KINDS = ("auto", "polygons", "points", "kml", "so2sat", "raster")


def open_labels(
    path: str | os.PathLike,
    kind: str = "auto",
    class_field: str | None = None,
    coding: str = "auto",
    mapping: Mapping[int, int] | None = None,
    layer: str | None = None,
    epsg: int | None = None,
    progress: Progress | None = None,
) -> VectorLabels | RasterLabels:
    """Open a label source of any kind; 'auto' decides from the file name."""
    path = Path(path)
    if not path.exists():
        raise LczError("labels", f"{path} does not exist")
    suffix = path.suffix.lower()
    if kind == "auto":
        kind = {".kmz": "kml", ".kml": "kml", ".h5": "so2sat"}.get(suffix)
        kind = kind or ("raster" if suffix in RASTER_SUFFIXES else "polygons")
    if kind == "kml":
        return read_kml(path, progress)
    if kind == "so2sat":
        return read_so2sat(path, epsg)
    if kind == "raster":
        return RasterLabels(path, coding, mapping)
    if kind in ("polygons", "points"):
        if not class_field:
            raise LczError("class_field", f"name the field of {path.name} that holds the LCZ class")
        return read_vector_labels(path, class_field, layer, coding, mapping)
    raise LczError(
        "label_kind", f"unknown label kind {kind!r}; use one of {', '.join(LABEL_KINDS)}"
    )


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
