"""Embedding sources: one interface for "a per-pixel feature raster over some place".

Every source exposes a north-up pixel grid (`crs`, `transform`, `width`, `height`), its bands
(`count`, `band_names`), the stored `dtype`, and `read(window)`, which returns float32
(bands, rows, cols) with NaN for every missing pixel. Windows may reach past the raster (NaN
there). Missing pixels are nodata values, NaN/inf, and all-zero vectors (artefacts of real
AEF and TESSERA downloads); each source counts them in `masked_pixels` (of `read_pixels`).
Reads are window by window: no source ever loads a whole city.

Implementations: GeoTIFF (one file, a VRT, or a folder of tiles), zarr arrays, TESSERA tiles in
the geotessera layout, AlphaEarth int8 GeoTIFFs. `open_source` picks one from a path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from .errors import LczError

Bounds = tuple[float, float, float, float]
GEOTIFF_SUFFIXES = (".tif", ".tiff", ".vrt")


def missing_mask(data: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: pixels with a non-finite band or an all-zero vector."""
    finite = np.isfinite(data).all(axis=0)
    return ~finite | ~np.any(data != 0, axis=0)


class EmbeddingSource:
    """Base of all embedding sources; subclasses set the grid attributes and define `_read`."""

    name: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    band_names: list[str]
    dtype: str
    # Named feature spaces (TESSERA versions, AlphaEarth) must never be mixed in one model;
    # "" is a feature raster without a name (any GeoTIFF or zarr), taken on trust.
    feature_space: str = ""

    def __init__(self) -> None:
        self.masked_pixels = 0
        self.read_pixels = 0

    def _read(self, window: Window) -> np.ndarray:
        """float32 (count, h, w) for a window inside the raster; NaN where nodata."""
        raise NotImplementedError

    def read(self, window: Window) -> np.ndarray:
        """float32 (bands, rows, cols) of `window`; NaN outside the raster and where missing."""
        window = Window(
            int(window.col_off), int(window.row_off), int(window.width), int(window.height)
        )
        inner = clip_window(window, self.width, self.height)
        if inner == window:  # the common case: no padding, no copy
            out = self._read(window)
        else:
            out = np.full((self.count, window.height, window.width), np.nan, dtype=np.float32)
            if inner is not None:
                r0, c0 = inner.row_off - window.row_off, inner.col_off - window.col_off
                out[:, r0 : r0 + inner.height, c0 : c0 + inner.width] = self._read(inner)
        mask = missing_mask(out)
        if mask.any():
            out[:, mask] = np.nan
        self.masked_pixels += int(mask.sum())
        self.read_pixels += mask.size
        return out

    @property
    def res(self) -> float:
        """Pixel size (square pixels, CRS units)."""
        return float(self.transform.a)

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) in the source CRS."""
        left, top = self.transform.c, self.transform.f
        return left, top + self.height * self.transform.e, left + self.width * self.res, top

    def window_for(self, bounds: Bounds) -> Window:
        """The window of whole pixels covering `bounds` (source CRS), possibly past the raster."""
        left, bottom, right, top = bounds
        col0 = math.floor((left - self.transform.c) / self.res + 1e-6)
        col1 = math.ceil((right - self.transform.c) / self.res - 1e-6)
        row0 = math.floor((self.transform.f - top) / self.res + 1e-6)
        row1 = math.ceil((self.transform.f - bottom) / self.res - 1e-6)
        return Window(col0, row0, col1 - col0, row1 - row0)

    def close(self) -> None:
        """Release open files."""

    def __enter__(self) -> EmbeddingSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clip_window(window: Window, width: int, height: int) -> Window | None:
    """The part of `window` inside a width x height raster, or None."""
    c0, r0 = max(window.col_off, 0), max(window.row_off, 0)
    c1 = min(window.col_off + window.width, width)
    r1 = min(window.row_off + window.height, height)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def north_up(transform: Affine, height: int, parameter: str) -> Affine:
    """The north-up equivalent of a transform (bottom-up rows flipped); refuse rotation."""
    if transform.b != 0 or transform.d != 0:
        raise LczError(parameter, "rotated rasters are not supported; warp it to north-up first")
    if abs(abs(transform.a) - abs(transform.e)) > 1e-9 * abs(transform.a) or transform.a < 0:
        raise LczError(parameter, "pixels must be square with positive x size; resample it first")
    if transform.e > 0:
        return Affine(
            transform.a, 0, transform.c, 0, -transform.e, transform.f + height * transform.e
        )
    return transform


class GeoTiffSource(EmbeddingSource):
    """One GeoTIFF or VRT of any dtype; rows stored bottom-up are served north-up."""

    def __init__(self, path: str | os.PathLike, parameter: str = "embeddings") -> None:
        import rasterio

        super().__init__()
        self.path = Path(path)
        try:
            self._dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as error:
            raise LczError(parameter, f"cannot read {self.path}: {error}") from None
        ds = self._dataset
        if ds.crs is None:
            raise LczError(parameter, f"{self.path} has no CRS; assign one (e.g. in QGIS) first")
        self.name, self.crs = str(self.path), ds.crs
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.dtype = ds.dtypes[0]
        self.nodata = ds.nodata
        self._bottom_up = ds.transform.e > 0
        self.transform = north_up(ds.transform, ds.height, parameter)
        self.band_names = [d or f"band_{i + 1}" for i, d in enumerate(ds.descriptions)]

    def _raw(self, window: Window) -> np.ndarray:
        if self._bottom_up:
            flipped = Window(
                window.col_off,
                self.height - window.row_off - window.height,
                window.width,
                window.height,
            )
            return self._dataset.read(window=flipped)[:, ::-1, :]
        return self._dataset.read(window=window)

    def _read(self, window: Window) -> np.ndarray:
        raw = self._raw(window)
        data = raw.astype(np.float32)
        if self.nodata is not None and not math.isnan(self.nodata):
            np.putmask(data, raw == self.nodata, np.nan)
        return data

    def close(self) -> None:
        """Close the file."""
        self._dataset.close()


AEF_DEQUANTISATION = {
    "quadratic": "sign(v) * (v / 127.5) ** 2 (the AlphaEarth export convention)",
    "linear": "v / 127",
}


class AlphaEarthSource(GeoTiffSource):
    """AlphaEarth Foundations int8 GeoTIFF/COG: -128 = nodata, dequantised by a named rule."""

    def __init__(
        self, path: str | os.PathLike, dequantise: str = "quadratic", parameter: str = "embeddings"
    ) -> None:
        super().__init__(path, parameter)
        if dequantise not in AEF_DEQUANTISATION:
            raise LczError(
                "dequantise", f"unknown rule {dequantise!r}; use {' or '.join(AEF_DEQUANTISATION)}"
            )
        if self.dtype != "int8":
            raise LczError(
                parameter, f"{self.path} holds {self.dtype}; AlphaEarth exports are int8"
            )
        self.dequantise = dequantise
        self.nodata = -128 if self.nodata is None else self.nodata
        if self.band_names[0] == "band_1":
            self.band_names = [f"A{i:02d}" for i in range(self.count)]
        self.name = f"alphaearth {dequantise} {self.path}"
        self.feature_space = f"alphaearth ({dequantise} dequantisation)"

    def _read(self, window: Window) -> np.ndarray:
        raw = self._raw(window)
        v = raw.astype(np.float32)
        data = np.sign(v) * (v / 127.5) ** 2 if self.dequantise == "quadratic" else v / 127.0
        data[raw == self.nodata] = np.nan
        return data


class CroppedSource(EmbeddingSource):
    """A window of another source seen as a source of its own (e.g. a city's extent).

    Reads past its edges still see the parent's pixels, so patches and U-Net margins at the
    crop's border get their real context."""

    def __init__(self, parent: EmbeddingSource, window: Window) -> None:
        self.parent = parent
        self.col_off, self.row_off = int(window.col_off), int(window.row_off)
        self.width, self.height = int(window.width), int(window.height)
        self.transform = parent.transform * Affine.translation(self.col_off, self.row_off)
        self.name, self.crs, self.count = parent.name, parent.crs, parent.count
        self.band_names, self.dtype = parent.band_names, parent.dtype
        self.feature_space = parent.feature_space

    @property
    def masked_pixels(self) -> int:  # type: ignore[override]
        """Masked pixels read so far (counted by the parent)."""
        return self.parent.masked_pixels

    @property
    def read_pixels(self) -> int:  # type: ignore[override]
        """Pixels read so far (counted by the parent)."""
        return self.parent.read_pixels

    def read(self, window: Window) -> np.ndarray:
        """float32 (bands, rows, cols) of `window`, in the crop's pixel coordinates."""
        return self.parent.read(
            Window(
                int(window.col_off) + self.col_off,
                int(window.row_off) + self.row_off,
                int(window.width),
                int(window.height),
            )
        )

    def close(self) -> None:
        """Close the parent."""
        self.parent.close()


def crop_to_extent(source: EmbeddingSource, extent: Bounds, align: int = 1) -> CroppedSource:
    """`source` cut to the pixels covering `extent` (source CRS); refuses no overlap.

    The crop starts on a multiple of `align` pixels, so that coarser outputs made from it sit on
    the same grid as those made from the whole source."""
    window = source.window_for(extent)
    col0, row0 = window.col_off // align * align, window.row_off // align * align
    window = Window(
        col0, row0, window.col_off + window.width - col0, window.row_off + window.height - row0
    )
    inside = clip_window(window, source.width, source.height)
    if inside is None:
        left, bottom, right, top = source.bounds
        raise LczError(
            "extent",
            f"({', '.join(f'{v:.6g}' for v in extent)}) does not overlap the embeddings "
            f"({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}) in {source.crs.to_string()}; "
            "choose an extent inside the data",
        )
    return CroppedSource(source, inside)


class MosaicSource(EmbeddingSource):
    """Several sources stitched into one grid: aligned members pasted, others warped (nearest)."""

    def __init__(
        self,
        members: Sequence[EmbeddingSource],
        name: str,
        crs: CRS | None = None,
        res: float | None = None,
        parameter: str = "embeddings",
    ) -> None:
        from rasterio.warp import transform_bounds

        super().__init__()
        if not members:
            raise LczError(parameter, f"{name}: no tiles found")
        first = members[0]
        counts = {m.count for m in members}
        if len(counts) > 1:
            raise LczError(parameter, f"{name}: tiles have different band counts {sorted(counts)}")
        self.members, self.name = list(members), name
        self.crs = CRS.from_user_input(crs) if crs is not None else first.crs
        res = float(res or first.res)
        self.count, self.band_names, self.dtype = first.count, first.band_names, first.dtype
        boxes = [transform_bounds(m.crs, self.crs, *m.bounds, densify_pts=21) for m in members]
        # the grid is anchored on the first member aligned with it, so aligned tiles paste exactly
        anchor = next((m for m in members if m.crs == self.crs and m.res == res), None)
        ox, oy = (anchor.transform.c, anchor.transform.f) if anchor else (boxes[0][0], boxes[0][3])
        left = ox + math.floor((min(b[0] for b in boxes) - ox) / res) * res
        top = oy + math.ceil((max(b[3] for b in boxes) - oy) / res) * res
        self.transform = Affine(res, 0, left, 0, -res, top)
        self.width = math.ceil((max(b[2] for b in boxes) - left) / res - 1e-6)
        self.height = math.ceil((top - min(b[1] for b in boxes)) / res - 1e-6)

    def _offset(self, member: EmbeddingSource) -> tuple[int, int] | None:
        """(col, row) of an aligned member's origin in this grid, or None if it must be warped."""
        if member.crs != self.crs or abs(member.res - self.res) > 1e-9:
            return None
        col = (member.transform.c - self.transform.c) / self.res
        row = (self.transform.f - member.transform.f) / self.res
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            return None
        return round(col), round(row)

    def _read(self, window: Window) -> np.ndarray:
        from rasterio.warp import Resampling, reproject, transform_bounds
        from rasterio.windows import bounds as window_bounds
        from rasterio.windows import transform as window_transform

        out = np.full((self.count, window.height, window.width), np.nan, dtype=np.float32)
        box = window_bounds(window, self.transform)
        for member in self.members:
            offset = self._offset(member)
            if offset is not None:
                part = Window(
                    window.col_off - offset[0],
                    window.row_off - offset[1],
                    window.width,
                    window.height,
                )
                if clip_window(part, member.width, member.height) is None:
                    continue
                data = member.read(part)
            else:
                mbox = transform_bounds(self.crs, member.crs, *box, densify_pts=21)
                mwin = member.window_for(mbox)
                mwin = Window(mwin.col_off - 1, mwin.row_off - 1, mwin.width + 2, mwin.height + 2)
                if clip_window(mwin, member.width, member.height) is None:
                    continue
                src = member.read(mwin)
                data = np.full_like(out, np.nan)
                reproject(
                    src,
                    data,
                    src_transform=window_transform(mwin, member.transform),
                    src_crs=member.crs,
                    src_nodata=np.nan,
                    dst_transform=window_transform(window, self.transform),
                    dst_crs=self.crs,
                    dst_nodata=np.nan,
                    resampling=Resampling.nearest,
                )
            fill = np.isnan(out) & ~np.isnan(data)
            out[fill] = data[fill]
        return out

    def close(self) -> None:
        """Close every member."""
        for member in self.members:
            member.close()


def tiles_source(folder: str | os.PathLike, parameter: str = "embeddings") -> EmbeddingSource:
    """A folder of GeoTIFF tiles as one source (a single file is returned as is)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in GEOTIFF_SUFFIXES)
    if not files:
        raise LczError(parameter, f"{folder} holds no GeoTIFF (.tif, .tiff, .vrt) files")
    if len(files) == 1:
        return GeoTiffSource(files[0], parameter)
    return MosaicSource(
        [GeoTiffSource(f, parameter) for f in files], str(folder), parameter=parameter
    )


# ---------------------------------------------------------------- zarr


ZARR_CONVENTION = """\
zarr convention read here: a 3-D array, (band, y, x) or (y, x, band), named by the array's
dimension_names (zarr v3) or `_ARRAY_DIMENSIONS` (xarray, zarr v2), else the `layout` attribute
("band,y,x" or "y,x,band"), else band-first. CRS from the attributes `crs_wkt`, `crs` or
`spatial_ref`, or from the attributes of the variable named by `grid_mapping` (rioxarray's
`spatial_ref` variable). Transform from `transform` (six affine coefficients a, b, c, d, e, f),
else `GeoTransform` (GDAL order c a b f d e, a list or a space-separated string), else the `x` and
`y` coordinate arrays of pixel centres beside the array. Band names from `band_names`, nodata
from `nodata` or `_FillValue`.
"""


class ZarrSource(EmbeddingSource):
    """A georeferenced 3-D zarr array (v3, or v2 where zarr-python reads it); see ZARR_CONVENTION."""

    def __init__(
        self, path: str | os.PathLike, array: str | None = None, parameter: str = "embeddings"
    ) -> None:
        import zarr

        super().__init__()
        self.path = Path(path)
        try:
            node = zarr.open(str(self.path), mode="r")
        except Exception as error:  # zarr raises several types for "not a zarr store"
            raise LczError(parameter, f"cannot open {self.path} as zarr: {error}") from None
        group = None
        if isinstance(node, zarr.Group):
            group = node
            names = [array] if array else [n for n, a in node.arrays() if a.ndim == 3]
            if not names or names[0] not in node:
                raise LczError(
                    parameter, f"{self.path} holds no 3-D array{f' named {array}' if array else ''}"
                )
            if len(names) > 1:
                raise LczError("array", f"{self.path} holds several 3-D arrays {names}; name one")
            node = node[names[0]]
        self._array = node
        attrs = dict(node.attrs)
        grid_mapping = attrs.get("grid_mapping")
        if grid_mapping and group is not None and grid_mapping in group:
            attrs = {**dict(group[grid_mapping].attrs), **attrs}
        dims = _dimension_names(node, attrs)
        if dims[0] in ("band", "bands", "channel", "feature"):
            self._band_first = True
        elif dims[2] in ("band", "bands", "channel", "feature"):
            self._band_first = False
        else:
            raise LczError(parameter, f"{self.path}: cannot tell the band axis from dims {dims}")
        shape = node.shape
        self.count, self.height, self.width = (
            shape if self._band_first else (shape[2], shape[0], shape[1])
        )
        wkt = attrs.get("crs_wkt") or attrs.get("crs") or attrs.get("spatial_ref")
        if not wkt:
            raise LczError(parameter, f"{self.path} has no CRS attribute.\n{ZARR_CONVENTION}")
        self.crs = CRS.from_user_input(wkt)
        stored = _zarr_transform(attrs, group, self.path, parameter)
        self._bottom_up = stored.e > 0
        self.transform = north_up(stored, self.height, parameter)
        self.band_names = list(
            attrs.get("band_names") or [f"band_{i + 1}" for i in range(self.count)]
        )
        nodata = attrs.get("nodata", attrs.get("_FillValue"))
        self.nodata = None if nodata in (None, "nan", "NaN") else float(nodata)
        self.dtype = str(node.dtype)
        self.name = str(self.path)

    def _read(self, window: Window) -> np.ndarray:
        rows = slice(window.row_off, window.row_off + window.height)
        if self._bottom_up:
            rows = slice(self.height - window.row_off - window.height, self.height - window.row_off)
        cols = slice(window.col_off, window.col_off + window.width)
        if self._band_first:
            raw = self._array[:, rows, cols]
        else:
            raw = np.moveaxis(self._array[rows, cols, :], 2, 0)
        if self._bottom_up:
            raw = raw[:, ::-1, :]
        data = raw.astype(np.float32)
        if self.nodata is not None:
            data[raw == self.nodata] = np.nan
        return data


def _dimension_names(node, attrs: dict) -> tuple[str, ...]:
    names = getattr(node.metadata, "dimension_names", None) or attrs.get("_ARRAY_DIMENSIONS")
    if not names and "layout" in attrs:
        names = [n.strip() for n in attrs["layout"].split(",")]
    return tuple(str(n).lower() for n in (names or ("band", "y", "x")))


def _zarr_transform(attrs: dict, group, path: Path, parameter: str) -> Affine:
    if "transform" in attrs:
        return Affine(*[float(v) for v in attrs["transform"][:6]])
    if "GeoTransform" in attrs:
        gt = attrs["GeoTransform"]
        values = [float(v) for v in (gt.split() if isinstance(gt, str) else gt)]
        return Affine.from_gdal(*values)
    if group is not None and "x" in group and "y" in group:
        x, y = group["x"][:], group["y"][:]
        dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
        return Affine(dx, 0, float(x[0]) - dx / 2, 0, dy, float(y[0]) - dy / 2)
    raise LczError(parameter, f"{path} has no transform attribute.\n{ZARR_CONVENTION}")


# ---------------------------------------------------------------- TESSERA


TESSERA_EMBEDDINGS = "global_0.1_degree_representation"
TESSERA_LANDMASKS = "global_0.1_degree_tiff_all"


class TesseraTile(EmbeddingSource):
    """One geotessera tile: int8 (H, W, 128) x scales, on the grid of its landmask GeoTIFF."""

    def __init__(self, npy: Path, landmask: Path, version: str) -> None:
        import rasterio

        super().__init__()
        stem = npy.stem
        self._values = np.load(npy, mmap_mode="r")
        self._scales = np.load(npy.with_name(f"{stem}_scales.npy"), mmap_mode="r")
        with rasterio.open(landmask) as mask:
            self.crs = mask.crs
            self.transform = north_up(mask.transform, mask.height, "embeddings")
            if mask.transform.e > 0:
                raise LczError(
                    "embeddings", f"{landmask}: bottom-up TESSERA landmasks are unexpected"
                )
            shape = (mask.height, mask.width)
        if self._values.shape[:2] != shape:
            raise LczError("embeddings", f"{npy} is {self._values.shape[:2]}, its landmask {shape}")
        self.height, self.width, self.count = self._values.shape
        self.band_names = [f"T{i:03d}" for i in range(self.count)]
        self.dtype = str(self._values.dtype)
        self.name = f"tessera {version} {stem}"
        self.feature_space = f"tessera {version}"

    def _read(self, window: Window) -> np.ndarray:
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        values = np.asarray(self._values[rows, cols], dtype=np.float32)
        scales = np.asarray(self._scales[rows, cols], dtype=np.float32)
        if scales.ndim == 2:
            scales = scales[..., None]
        return np.moveaxis(values * scales, 2, 0)


def tessera_tile_names(bounds_lonlat: Bounds) -> list[str]:
    """Names (grid_<lon>_<lat>, centres on 0.05 + k * 0.1 degrees) of tiles meeting a lon/lat box."""
    west, south, east, north = bounds_lonlat
    names = []
    for j in range(math.floor(south * 10), math.ceil(north * 10)):
        for i in range(math.floor(west * 10), math.ceil(east * 10)):
            names.append(f"grid_{(i + 0.5) / 10:.2f}_{(j + 0.5) / 10:.2f}")
    return names


def tessera_source(
    root: str | os.PathLike,
    year: int,
    bounds: Bounds,
    bounds_crs: str | CRS = "EPSG:4326",
    version: str = "v1.1",
    crs: str | CRS | None = None,
) -> MosaicSource:
    """The local geotessera tiles covering `bounds`, stitched into one source (in `crs`, default
    the UTM zone of the extent's centre). Layout under `root`:
    global_0.1_degree_representation/<year>/grid_X_Y/grid_X_Y.npy (+ _scales.npy) and
    global_0.1_degree_tiff_all/grid_X_Y.tiff (landmask: CRS and transform)."""
    from rasterio.warp import transform_bounds

    from .cities import utm_crs_for

    root = Path(root)
    lonlat = transform_bounds(
        CRS.from_user_input(bounds_crs), CRS.from_epsg(4326), *bounds, densify_pts=21
    )
    year_dir = root / TESSERA_EMBEDDINGS / str(year)
    if not year_dir.is_dir():
        raise LczError(
            "embeddings",
            f"{year_dir} does not exist; is {root} a geotessera copy with year {year}?",
        )
    tiles = []
    for name in tessera_tile_names(lonlat):
        npy = year_dir / name / f"{name}.npy"
        if npy.is_file():
            tiles.append(TesseraTile(npy, root / TESSERA_LANDMASKS / f"{name}.tiff", version))
    if not tiles:
        raise LczError(
            "extent",
            f"no TESSERA tiles of {year} under {root} cover lon/lat {tuple(round(v, 4) for v in lonlat)}",
        )
    target = crs or utm_crs_for((lonlat[0] + lonlat[2]) / 2, (lonlat[1] + lonlat[3]) / 2)
    mosaic = MosaicSource(tiles, f"tessera {version} {year} {root}", crs=target, res=10.0)
    mosaic.feature_space = f"tessera {version}"
    return mosaic


# ---------------------------------------------------------------- dispatch


SOURCE_KINDS = ("auto", "geotiff", "zarr", "aef")


def open_source(
    path: str | os.PathLike,
    kind: str = "auto",
    parameter: str = "embeddings",
    **options: Any,
) -> EmbeddingSource:
    """Open an embedding source: 'geotiff' (file, VRT or folder of tiles), 'zarr' or 'aef'."""
    path = Path(path)
    if not path.exists():
        raise LczError(parameter, f"{path} does not exist")
    if kind == "auto":
        is_zarr = (
            path.suffix == ".zarr"
            or (path / "zarr.json").is_file()
            or (path / ".zgroup").is_file()
            or (path / ".zarray").is_file()
        )
        kind = "zarr" if is_zarr else "geotiff"
    if kind == "zarr":
        return ZarrSource(path, options.get("array"), parameter)
    if kind == "aef":
        return AlphaEarthSource(path, options.get("dequantise", "quadratic"), parameter)
    if kind == "geotiff":
        return tiles_source(path, parameter) if path.is_dir() else GeoTiffSource(path, parameter)
    raise LczError(
        "source_kind", f"unknown source kind {kind!r}; use one of {', '.join(SOURCE_KINDS)}"
    )
