"""Import any LCZ raster as a normalised, styled 1-17 GeoTIFF (optionally clipped and reprojected)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LczError
from .lcz import CLASS_BY_CODE, LczCodingError, apply_lookup, resolve_lookup
from .outputs import LczRasterWriter, check_writable
from .progress import Progress, SubProgress, track

ROWS_PER_BLOCK = 256


def open_raster(path: str | Path, parameter: str = "input"):
    """Open a raster with rasterio, or fail naming `parameter` if GDAL cannot read it."""
    import rasterio

    if not Path(path).exists() and not str(path).startswith("/vsi"):
        raise LczError(parameter, f"{path} does not exist")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise LczError(
            parameter, f"{path} is not a raster GDAL can read ({error}); give a GeoTIFF or similar"
        ) from None


@contextlib.contextmanager
def _warped(src, target_crs: str | None, resolution: float | None) -> Iterator[Any]:
    """The source itself, or a nearest-neighbour WarpedVRT onto `target_crs`/`resolution`."""
    if target_crs is None and resolution is None:
        yield src
        return
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import calculate_default_transform

    try:
        crs = CRS.from_user_input(target_crs) if target_crs else src.crs
    except Exception as error:
        raise LczError(
            "target_crs", f"{target_crs!r} is not a CRS ({error}); e.g. EPSG:32633"
        ) from None
    if resolution is not None and resolution <= 0:
        raise LczError("resolution", f"{resolution} must be a positive pixel size")
    transform, width, height = calculate_default_transform(
        src.crs, crs, src.width, src.height, *src.bounds, resolution=resolution
    )
    nodata = (
        src.nodata
        if src.nodata is not None
        else (np.nan if src.dtypes[0].startswith("float") else None)
    )
    with WarpedVRT(
        src,
        crs=crs,
        transform=transform,
        width=width,
        height=height,
        resampling=Resampling.nearest,
        nodata=nodata,
        add_alpha=nodata is None,
    ) as vrt:
        yield vrt


def clip_window(dataset, extent, extent_crs: str | None):
    """The window of `dataset` covered by `extent` (xmin, ymin, xmax, ymax in `extent_crs`)."""
    from rasterio.errors import WindowError
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window, from_bounds

    full = Window(0, 0, dataset.width, dataset.height)
    if extent is None:
        return full
    if extent_crs:
        try:
            extent = transform_bounds(extent_crs, dataset.crs, *extent)
        except Exception as error:
            raise LczError(
                "extent_crs", f"cannot use {extent_crs!r} ({error}); e.g. EPSG:4326"
            ) from None
    b = dataset.bounds
    if extent[0] >= b.right or extent[2] <= b.left or extent[1] >= b.top or extent[3] <= b.bottom:
        raise LczError(
            "extent",
            f"({', '.join(f'{v:.6g}' for v in extent)}) does not overlap the raster "
            f"({b.left:.6g}, {b.bottom:.6g}, {b.right:.6g}, {b.top:.6g}) in {dataset.crs}; "
            "choose an extent inside the data",
        )
    window = from_bounds(*extent, transform=dataset.transform).round_offsets().round_lengths()
    try:
        window = window.intersection(full)
    except WindowError:  # rounded to no pixel at all
        window = Window(0, 0, 0, 0)
    if window.width < 1 or window.height < 1:
        raise LczError("extent", "the extent covers less than one pixel of the raster; enlarge it")
    return window


def row_blocks(width: int, height: int, col_off: int = 0, row_off: int = 0) -> list:
    """Windows of ROWS_PER_BLOCK full-width rows covering a width x height area."""
    from rasterio.windows import Window

    return [
        Window(col_off, row, width, min(ROWS_PER_BLOCK, row_off + height - row))
        for row in range(row_off, row_off + height, ROWS_PER_BLOCK)
    ]


def read_classes(
    dataset, band: int, window, parameter: str = "band"
) -> tuple[np.ndarray, np.ndarray]:
    """Class values and validity (not nodata, not NaN, inside the source) of one block."""
    values = dataset.read(band, window=window)
    valid = dataset.read_masks(band, window=window) > 0
    if values.dtype.kind == "f":
        valid &= np.isfinite(values)
        fractional = valid & (values != np.round(values))
        if fractional.any():
            raise LczError(
                parameter,
                f"band {band} of {dataset.name} holds non-integer values such as {values[fractional][0]:g}; "
                "LCZ classes are integers: choose the band with the classes (not a probability band)",
            )
    return values, valid


def import_lcz_map(
    input: str | Path,
    output: str | Path,
    *,
    coding: str = "auto",
    mapping: Mapping[int, int] | None = None,
    band: int = 1,
    extent: tuple[float, float, float, float] | None = None,
    extent_crs: str | None = None,
    target_crs: str | None = None,
    resolution: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Translate an LCZ raster (any coding, CRS, nodata) into a styled 1-17 uint8 GeoTIFF."""
    progress = progress or Progress()
    output = check_writable(output)
    with open_raster(input) as src:
        if not 1 <= band <= src.count:
            raise LczError(
                "band", f"{input} has {src.count} band(s); choose a band from 1 to {src.count}"
            )
        if src.crs is None:
            raise LczError(
                "input", f"{input} has no CRS; assign one (e.g. with gdal_edit -a_srs) first"
            )
        with _warped(src, target_crs, resolution) as dataset:
            window = clip_window(dataset, extent, extent_crs)
            blocks = row_blocks(
                int(window.width), int(window.height), int(window.col_off), int(window.row_off)
            )
            scan = SubProgress(progress, 0, 30)
            present: set[int] = set()
            for block in track(blocks, scan, len(blocks), "scanning classes"):
                values, valid = read_classes(dataset, band, block)
                present.update(np.unique(values[valid]).astype(np.int64).tolist())
            if not present:
                raise LczError("input", f"{input} holds no valid pixels in the chosen extent")
            try:
                coding_name, table = resolve_lookup(coding, present, mapping)
            except LczCodingError as error:
                raise LczError("coding", str(error)) from None
            write = SubProgress(progress, 30, 100)
            transform = dataset.window_transform(window)
            with LczRasterWriter(
                output,
                crs=dataset.crs,
                transform=transform,
                width=int(window.width),
                height=int(window.height),
            ) as writer:
                for block in track(blocks, write, len(blocks), "writing LCZ map"):
                    values, valid = read_classes(dataset, band, block)
                    codes = apply_lookup(values, table, valid)
                    writer.write(
                        codes,
                        window=block.__class__(
                            0, block.row_off - window.row_off, block.width, block.height
                        ),
                    )
            crs = dataset.crs.to_string()
    counts = {CLASS_BY_CODE[c].short: int(writer.counts[c]) for c in writer.codes_present}
    progress.log(f"coding {coding_name}; classes present: {', '.join(counts)}")
    return {
        "output": str(output),
        "style": str(output.with_suffix(".qml")),
        "coding": coding_name,
        "class_counts": counts,
        "nodata_pixels": int(writer.counts[0]),
        "crs": crs,
        "width": int(window.width),
        "height": int(window.height),
    }
