"""Embedding sources: one interface for "a per-pixel feature raster over some place".

Every source exposes a north-up pixel grid (`crs`, `transform`, `width`, `height`), its bands
(`count`, `band_names`), the stored `dtype`, and `read(window)`, which returns float32
(bands, rows, cols) with NaN for every missing pixel. Windows may reach past the raster (NaN
there). Missing pixels are nodata values, NaN/inf, and all-zero vectors (artefacts of real
AEF and TESSERA downloads); each source counts them in `masked_pixels` (of `read_pixels`).
Reads are window by window: no source ever loads a whole city.

Implementations: GeoTIFF (one file, a VRT, or a folder of tiles), zarr arrays, AlphaEarth int8
GeoTIFFs here; TESSERA tiles and zarr stores in `tessera`, AlphaEarth's COG layout (index of
files) in `alphaearth`. Those products cover the globe: they are read onto a *city grid* (the
extent plus a margin, in the UTM zone of its centre or a CRS the user gives), stitched across
files and UTM zones with nearest resampling. `open_source` is the one entry point for all kinds;
paths may be https:// or s3:// URLs (see `remote`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from .choices import SOURCE_KINDS
from .errors import LczError
from .extents import Bounds

GEOTIFF_SUFFIXES = (".tif", ".tiff", ".vrt")


# Pixels of margin around a city's extent on its grid, so that patches and U-Net context at the
# extent's border see real pixels (a 32 px patch centred on the border needs 16).
CITY_MARGIN_PX = 64
CITY_SNAP_PX = 320


def missing_mask(data: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: pixels with a non-finite band or an all-zero vector."""
    return non_finite(data) | zero_vectors(data)


def non_finite(data: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: pixels with a NaN or infinite band."""
    # a float64 sum of finite float32 values cannot overflow: only NaN and inf make it non-finite;
    # a reduction over the band axis needs no (bands, rows, cols) temporary
    return ~np.isfinite(data.sum(axis=0, dtype=np.float64))


def zero_vectors(data: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: pixels whose every band is exactly 0 (an artefact, not a value)."""
    return (data.max(axis=0) == 0) & (data.min(axis=0) == 0)


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
    # The CRS an extent given without one is in: None = this source's CRS; the global products
    # (read onto a city grid they choose) take extents in degrees.
    default_extent_crs: str | None = None
    # True where `_read` leaves every missing pixel (all-zero vectors included) a whole vector
    # of NaN, so that band 0 tells the mask (mosaics of masked reads, TESSERA zones)
    whole_vector_nan = False

    def __init__(self) -> None:
        self.masked_pixels = 0
        self.zero_pixels = 0
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
        if self.whole_vector_nan:
            zero, mask = np.zeros(out.shape[1:], bool), np.isnan(out[0])
        else:
            zero = zero_vectors(out)
            mask = non_finite(out) | zero
        if not self.whole_vector_nan and mask.any():
            out[:, mask] = np.nan
        self.masked_pixels += int(mask.sum())
        self.zero_pixels += int(zero.sum())
        self.read_pixels += mask.size
        return out

    def parts(self) -> list[EmbeddingSource]:
        """The files, tiles or zones this source reads (itself for a single file)."""
        return [self]

    def read_quantised(self, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """For sources stored as integers times a per-pixel scale: (values (bands, rows, cols),
        float32 scales (rows, cols), NaN where missing) of a window inside the raster, so that
        resampling moves the small integers; None for other sources."""
        return None

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


@contextlib.contextmanager
def open_raster(path: str | Path, parameter: str = "input") -> Iterator[Any]:
    """A raster opened with rasterio (a URL through GDAL's /vsicurl/, with timeouts), or an
    LczError naming `parameter` where it cannot be opened or a remote read fails."""
    import rasterio

    from .remote import gdal_options, gdal_path, is_url

    remote = is_url(str(path)) or str(path).startswith("/vsicurl/")
    if not remote and not Path(path).exists() and not str(path).startswith("/vsi"):
        raise LczError(parameter, f"{path} does not exist")
    with rasterio.Env(**gdal_options()) if remote else contextlib.nullcontext():
        try:
            dataset = rasterio.open(gdal_path(path))
        except rasterio.errors.RasterioIOError as error:
            if remote:
                raise LczError(
                    parameter,
                    f"cannot read {path} ({error}); check the address or give a local copy",
                ) from None
            raise LczError(
                parameter,
                f"{path} is not a raster GDAL can read ({error}); give a GeoTIFF or similar",
            ) from None
        with dataset:
            try:
                yield dataset
            except rasterio.errors.RasterioIOError as error:
                if not remote:
                    raise
                raise LczError(
                    parameter, f"reading {path} failed ({error}); try again or give a local copy"
                ) from None


ROWS_PER_BLOCK = 256  # rows a block of a classified raster holds


def row_blocks(width: int, height: int, col_off: int = 0, row_off: int = 0) -> list:
    """Windows of ROWS_PER_BLOCK full-width rows covering a width x height area."""
    from rasterio.windows import Window

    return [
        Window(col_off, row, width, min(ROWS_PER_BLOCK, row_off + height - row))
        for row in range(row_off, row_off + height, ROWS_PER_BLOCK)
    ]


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
    """One GeoTIFF or VRT of any dtype (a path, or a URL read through GDAL's /vsicurl/); rows
    stored bottom-up are served north-up."""

    def __init__(self, path: str | os.PathLike, parameter: str = "embeddings") -> None:
        import rasterio

        from .remote import gdal_path, is_url

        super().__init__()
        self.path: str | Path = str(path) if is_url(path) else Path(path)
        try:
            self._dataset = rasterio.open(gdal_path(self.path))
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
        import rasterio

        if self._bottom_up:
            window = Window(
                window.col_off,
                self.height - window.row_off - window.height,
                window.width,
                window.height,
            )
        try:
            raw = self._dataset.read(window=window)
        except rasterio.errors.RasterioIOError as error:  # a remote file that went away
            raise LczError("embeddings", f"reading {self.path} failed: {error}") from None
        return raw[:, ::-1, :] if self._bottom_up else raw

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
    def zero_pixels(self) -> int:  # type: ignore[override]
        """All-zero vectors read so far (counted by the parent)."""
        return self.parent.zero_pixels

    @property
    def read_pixels(self) -> int:  # type: ignore[override]
        """Pixels read so far (counted by the parent)."""
        return self.parent.read_pixels

    def parts(self) -> list[EmbeddingSource]:
        """The parent's parts."""
        return self.parent.parts()

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


Grid = tuple[CRS, Affine, int, int]  # crs, north-up transform, width, height


def city_grid(
    extent: Bounds,
    extent_crs: str | CRS,
    crs: str | CRS | None = None,
    res: float = 10.0,
    margin: int = CITY_MARGIN_PX,
) -> Grid:
    """The pixel grid of a city: `extent` plus at least `margin` pixels, in `crs` (default the UTM
    zone of the extent's centre), on lines at whole multiples of `res` (where TESSERA and
    AlphaEarth pixels lie in every UTM zone, north and south)."""
    from .extents import reproject_extent, utm_crs_for

    if not (extent[0] < extent[2] and extent[1] < extent[3]):
        raise LczError("extent", f"{extent} is not xmin, ymin, xmax, ymax with xmin < xmax")
    if crs is None:
        west, south, east, north = reproject_extent(extent, extent_crs, "EPSG:4326")
        crs = utm_crs_for((west + east) / 2, (south + north) / 2)
    try:
        target = CRS.from_user_input(crs)
    except Exception as error:  # rasterio raises CRSError, pyproj others
        raise LczError("crs", f"{crs!r} is not a CRS rasterio understands: {error}") from None
    left, bottom, right, top = reproject_extent(extent, extent_crs, target)
    # the origin on whole multiples of CITY_SNAP_PX pixels: outputs at a coarser pixel (100 m
    # LCZ, 320 m patches) lie on the same lattice whatever the extent
    x0 = math.floor((left / res + 1e-6 - margin) / CITY_SNAP_PX) * CITY_SNAP_PX * res
    y0 = math.ceil((top / res - 1e-6 + margin) / CITY_SNAP_PX) * CITY_SNAP_PX * res
    width = math.ceil(right / res - 1e-6) + margin - round(x0 / res)
    height = round(y0 / res) - math.floor(bottom / res + 1e-6) + margin
    return target, Affine(res, 0, x0, 0, -res, y0), width, height


def grid_lonlat(grid: Grid) -> Bounds:
    """(west, south, east, north) in degrees of a grid's footprint (margin included)."""
    from rasterio.warp import transform_bounds

    crs, transform, width, height = grid
    right, bottom = transform * (width, height)
    return transform_bounds(
        crs, "EPSG:4326", transform.c, bottom, right, transform.f, densify_pts=21
    )


def overlaps_grid(source: EmbeddingSource, grid: Grid) -> bool:
    """True if the footprint of `source` meets the grid's."""
    from rasterio.warp import transform_bounds

    crs, transform, width, height = grid
    left, bottom, right, top = transform_bounds(source.crs, crs, *source.bounds, densify_pts=21)
    return (
        left < transform.c + width * transform.a
        and right > transform.c
        and bottom < transform.f
        and top > transform.f + height * transform.e
    )


class MosaicSource(EmbeddingSource):
    """Several sources on one grid: aligned members pasted, others resampled (nearest).

    The grid is the union of the members (in `crs`, default the first member's) or a given
    `grid` (a city's). Where members overlap, the first with a valid pixel wins."""

    whole_vector_nan = True

    def __init__(
        self,
        members: Sequence[EmbeddingSource],
        name: str,
        crs: CRS | None = None,
        res: float | None = None,
        parameter: str = "embeddings",
        grid: Grid | None = None,
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
        self.count, self.band_names, self.dtype = first.count, first.band_names, first.dtype
        self.feature_space = first.feature_space
        if grid is not None:
            self.crs, self.transform, self.width, self.height = grid
            return
        self.crs = CRS.from_user_input(crs) if crs is not None else first.crs
        res = float(res or first.res)
        boxes = [transform_bounds(m.crs, self.crs, *m.bounds, densify_pts=21) for m in members]
        # the grid is anchored on the first member aligned with it, so aligned tiles paste exactly
        anchor = next((m for m in members if m.crs == self.crs and m.res == res), None)
        ox, oy = (anchor.transform.c, anchor.transform.f) if anchor else (boxes[0][0], boxes[0][3])
        left = ox + math.floor((min(b[0] for b in boxes) - ox) / res) * res
        top = oy + math.ceil((max(b[3] for b in boxes) - oy) / res) * res
        self.transform = Affine(res, 0, left, 0, -res, top)
        self.width = math.ceil((max(b[2] for b in boxes) - left) / res - 1e-6)
        self.height = math.ceil((top - min(b[1] for b in boxes)) / res - 1e-6)

    def parts(self) -> list[EmbeddingSource]:
        """Every member's parts, in paste order."""
        return [part for member in self.members for part in member.parts()]

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
        out = None
        for member in self.members:
            offset = self._offset(member)
            if offset is None:
                out = self._paste_nearest(member, window, out)
            else:
                part = Window(
                    window.col_off - offset[0],
                    window.row_off - offset[1],
                    window.width,
                    window.height,
                )
                if clip_window(part, member.width, member.height) is None:
                    continue
                data = member.read(part)
                if out is None:
                    out = np.ascontiguousarray(data)  # a fresh array: no copy
                else:
                    # members' reads leave whole vectors NaN where missing: band 0 tells
                    fill = np.isnan(out[0]) & ~np.isnan(data[0])
                    np.copyto(out, data, where=fill[None])
            if out is not None and not np.isnan(out[0]).any():
                break  # later members would only fill gaps
        if out is None:
            return np.full((self.count, window.height, window.width), np.nan, dtype=np.float32)
        return out

    def _paste_nearest(
        self, member: EmbeddingSource, window: Window, out: np.ndarray | None
    ) -> np.ndarray | None:
        """Fill the gaps of `out` (None: all of `window`) with `member`, resampled (nearest)."""
        rows, cols = _member_pixels(self, member, window)
        wanted = (rows >= 0) & (rows < member.height) & (cols >= 0) & (cols < member.width)
        if out is not None:
            wanted &= np.isnan(out[0])
        if not wanted.any():
            return out
        r0, r1 = int(rows[wanted].min()), int(rows[wanted].max()) + 1
        c0, c1 = int(cols[wanted].min()), int(cols[wanted].max()) + 1
        box = Window(c0, r0, c1 - c0, r1 - r0)
        # the rectangle of the window holding the wanted pixels, gathered in one take along
        # each band's row, then pasted with a mask (a streaming copy)
        ys, xs = np.nonzero(wanted)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        index = (rows[y0:y1, x0:x1] - r0) * (c1 - c0) + (cols[y0:y1, x0:x1] - c0)
        np.clip(index, 0, box.width * box.height - 1, out=index)
        index = index.ravel()
        quantised = member.read_quantised(box)
        if quantised is None:
            src = np.ascontiguousarray(member.read(box)).reshape(self.count, -1)
            values = np.take(src, index, axis=1)
        else:  # gather the integers and scales, dequantise only the pixels kept
            ints, scales = (np.ascontiguousarray(a) for a in quantised)
            values = np.multiply(
                np.take(ints.reshape(self.count, -1), index, axis=1),
                np.take(scales.ravel(), index),
                dtype=np.float32,
            )
        values = values.reshape(self.count, y1 - y0, x1 - x0)
        paste = wanted[y0:y1, x0:x1] & ~np.isnan(values[0])
        shape = (self.count, window.height, window.width)
        if out is None and values.shape == shape and paste.all():
            return values
        if out is None:
            out = np.full(shape, np.nan, dtype=np.float32)
        np.copyto(out[:, y0:y1, x0:x1], values, where=paste[None])
        return out

    def close(self) -> None:
        """Close every member."""
        for member in self.members:
            member.close()


def _member_pixels(
    grid: EmbeddingSource, member: EmbeddingSource, window: Window, step: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) int arrays: the member pixel holding each pixel centre of `window`.

    Centres are projected exactly on a lattice every `step` pixels and interpolated bilinearly
    in between: UTM-to-UTM maps are smooth, so the error is far below a millimetre, and
    projecting every centre would cost more than reading the pixels."""
    from rasterio.warp import transform as warp_points

    h, w = window.height, window.width
    ly = np.unique(np.r_[np.arange(0, h, step), h - 1]).astype(np.float64)
    lx = np.unique(np.r_[np.arange(0, w, step), w - 1]).astype(np.float64)
    gx, gy = np.meshgrid(lx, ly)
    t = grid.transform
    xs = t.c + (window.col_off + gx + 0.5) * t.a
    ys = t.f + (window.row_off + gy + 0.5) * t.e
    px, py = warp_points(grid.crs, member.crs, xs.ravel(), ys.ravel())
    m = member.transform
    mcol = ((np.asarray(px) - m.c) / m.a).reshape(gx.shape)
    mrow = ((np.asarray(py) - m.f) / m.e).reshape(gx.shape)
    yy, xx = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    cols = np.floor(_bilinear(mcol, ly, lx, yy, xx)).astype(np.int64)
    rows = np.floor(_bilinear(mrow, ly, lx, yy, xx)).astype(np.int64)
    return rows, cols


def _bilinear(values: np.ndarray, ly: np.ndarray, lx: np.ndarray, yy: np.ndarray, xx: np.ndarray):
    """`values` given on the lattice ly x lx, interpolated (separably, linearly) at yy x xx."""
    wy = np.stack([np.interp(yy, ly, e) for e in np.eye(len(ly))], axis=1)
    wx = np.stack([np.interp(xx, lx, e) for e in np.eye(len(lx))], axis=1)
    return wy @ values @ wx.T


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


# ---------------------------------------------------------------- dispatch


GLOBAL_KINDS = ("tessera", "tessera-zarr", "aef-index")  # read onto a city grid


def open_source(
    path: str | os.PathLike,
    kind: str = "auto",
    parameter: str = "embeddings",
    *,
    array: str | None = None,
    dequantise: str = "quadratic",
    year: int | None = None,
    extent: Bounds | None = None,
    extent_crs: str | None = None,
    crs: str | None = None,
    variant: str = "auto",
) -> EmbeddingSource:
    """Open an embedding source of any kind (see SOURCE_KINDS) from a path or an https:// or
    s3:// URL: 'geotiff' (file, VRT or folder of tiles), 'zarr', 'aef' (one AlphaEarth file),
    'tessera' (a geotessera tile folder), 'tessera-zarr' (a TESSERA zarr store), 'aef-index'
    (AlphaEarth files listed by an aef_index). The last three cover the globe: they need the
    `extent` (in `extent_crs`, default EPSG:4326) and read it, with a margin, onto a city grid
    in `crs` (default the UTM zone of the extent's centre) for the `year`."""
    from .remote import is_url

    if kind not in SOURCE_KINDS:
        raise LczError(
            "source_kind", f"unknown source kind {kind!r}; use one of {', '.join(SOURCE_KINDS)}"
        )
    remote = is_url(path)
    if not remote:
        path = Path(path)
        if not path.exists():
            raise LczError(parameter, f"{path} does not exist")
    if kind == "auto":
        kind = _detect_kind(path, parameter)
    if kind in GLOBAL_KINDS:
        if extent is None:
            raise LczError(
                "extent",
                f"{kind} embeddings cover many places; give the extent of the city to read",
            )
        extent_crs = extent_crs or "EPSG:4326"
        grid_options = dict(year=year, extent=extent, extent_crs=extent_crs, crs=crs)
        if kind == "aef-index":
            from .alphaearth import aef_index_source

            return aef_index_source(
                path, dequantise=dequantise, parameter=parameter, **grid_options
            )
        from .tessera import tessera_store_source, tessera_tiles_source

        opener = tessera_store_source if kind == "tessera-zarr" else tessera_tiles_source
        return opener(path, variant=variant, parameter=parameter, **grid_options)
    if kind == "zarr":
        if remote:
            raise LczError(
                parameter, "zarr arrays are read from local paths; URLs are for TESSERA stores"
            )
        return ZarrSource(path, array, parameter)
    if kind == "aef":
        return AlphaEarthSource(path, dequantise, parameter)
    if not remote and Path(path).is_dir():
        return tiles_source(path, parameter)
    return GeoTiffSource(path, parameter)


def _detect_kind(path: str | Path, parameter: str) -> str:
    """The kind of a source from its name and content (a root group's attributes for zarr)."""
    from .remote import is_url

    name = str(path).rstrip("/")
    if name.endswith(".parquet") or Path(name).stem == "aef_index":
        return "aef-index"
    if is_url(path):
        from .remote import exists

        if name.lower().endswith(GEOTIFF_SUFFIXES):
            return "geotiff"
        is_store = name.endswith(".zarr") or exists(f"{name}/zarr.json", parameter)
        return "tessera-zarr" if is_store else "tessera"
    path = Path(path)
    if (path / "zarr.json").is_file() or (path / ".zgroup").is_file() or path.suffix == ".zarr":
        from .tessera import is_tessera_store

        return "tessera-zarr" if is_tessera_store(path) else "zarr"
    if (path / ".zarray").is_file():
        return "zarr"
    if path.is_dir():
        from .tessera import is_tessera_folder

        return "tessera" if is_tessera_folder(path) else "geotiff"
    return "geotiff"
