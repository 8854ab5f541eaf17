"""Import any LCZ raster as a normalised, styled 1-17 GeoTIFF (optionally clipped and reprojected);
clip the global LCZ map the same way."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LczError
from .lcz import (
    CLASS_BY_CODE,
    LCZ_CLASSES,
    NUM_CLASSES,
    LczCodingError,
    apply_lookup,
    as_mapping,
    resolve_lookup,
)
from .outputs import LczRasterWriter, check_writable
from .progress import Progress, SubProgress, track
from .rasters import open_raster, row_blocks

# Demuzere et al. (2022), ESSD 14:3835, doi:10.5194/essd-14-3835-2022, CC BY 4.0: the global LCZ
# map v3, Gaussian-filtered, 100 m, classes 1-17 and 0 = nodata, as a Cloud Optimized GeoTIFF;
# GDAL fetches only the blocks of the window read.
GLOBAL_LCZ_MAP_URL = "https://lcz-generator.rub.de/cogs/lcz_filter_v3_cog.tif"
GLOBAL_LCZ_MAP_ENV = "LCZ_GLOBAL_LCZ_MAP"  # a local copy (or another URL) read instead


@contextlib.contextmanager
def _warped(src, window, target_crs: str | None, resolution: float | None) -> Iterator[Any]:
    """The source itself, or a nearest-neighbour WarpedVRT onto `target_crs`/`resolution` over
    `window` of the source."""
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
    if resolution is not None:
        _check_resolution(src, crs, resolution)
    transform, width, height = calculate_default_transform(
        src.crs,
        crs,
        int(window.width),
        int(window.height),
        *src.window_bounds(window),
        resolution=resolution,
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


# nearest-neighbour resampling adds nothing below 1/100 of the source's pixel side
MAX_UPSAMPLING = 100


def _check_resolution(src, crs, resolution: float) -> None:
    """Refuse a pixel size that is not positive, or so fine the map would hold absurdly many
    pixels (GDAL itself fails past 2**31 a side)."""
    from rasterio.warp import transform_bounds

    if resolution <= 0:
        raise LczError("resolution", f"{resolution} must be a positive pixel size")
    left, bottom, right, top = transform_bounds(src.crs, crs, *src.bounds)
    finest = max(right - left, top - bottom) / (MAX_UPSAMPLING * max(src.width, src.height))
    if resolution < finest:
        raise LczError(
            "resolution",
            f"{resolution:g} would cut the {src.width} x {src.height} px map into "
            f"{(right - left) / resolution:.3g} x {(top - bottom) / resolution:.3g} px; give a "
            f"pixel size of at least {finest:.3g} (in the units of the target CRS)",
        )


def extent_window(dataset, extent, extent_crs: str | None):
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


def read_classes(
    dataset, band: int, window, parameter: str = "band", nodata: Collection[float] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Class values and validity (not nodata, not NaN, inside the source) of one block.

    `nodata` lists values read as nodata besides those the file declares.
    """
    values = dataset.read(band, window=window)
    valid = dataset.read_masks(band, window=window) > 0
    if len(nodata):
        valid &= ~np.isin(values, list(nodata))
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


@dataclass(frozen=True)
class BandChoice:
    """The band that holds the classes and what else the file's layout tells."""

    band: int
    nodata: tuple[float, ...]  # values read as nodata besides those the file declares
    assume: str | None  # the coding the file itself declares, if any


def _generator_band(src) -> tuple[int, str] | None:
    """(filtered band, evidence) where `src` looks like an LCZ Generator output, else None.

    Its three bands are raw LCZ, Gaussian-filtered LCZ and probability (0-100); the evidence is
    the band descriptions (lcz, lczFilter, classProbability) or a third band holding 0-100.
    """
    described = [(d or "").lower().replace("_", "") for d in src.descriptions]
    filtered = [i for i, d in enumerate(described, 1) if "filter" in d]
    if len(filtered) == 1 and any("prob" in d for d in described):
        return filtered[0], "band descriptions name a filtered LCZ band and a probability band"
    if src.count != 3 or any(described):
        return None
    highest = -1.0
    for block in row_blocks(src.width, src.height):
        values = src.read(3, window=block)
        values = values[(src.read_masks(3, window=block) > 0) & np.isfinite(values)]
        if not values.size:
            continue
        if values.min() < 0 or values.max() > 100 or not np.array_equal(values, np.round(values)):
            return None
        highest = max(highest, float(values.max()))
    if highest <= NUM_CLASSES:  # a third band of classes, not probabilities
        return None
    return 2, "three bands, the third holding 0-100 like a probability band"


def _declared_coding(src, band: int) -> str | None:
    """'lcz17' where the file says so: this project's LCZ_CODING tag or the LCZ colour table."""
    if src.tags().get("LCZ_CODING", "").startswith("1-17"):
        return "lcz17"
    try:
        colours = src.colormap(band)
    except ValueError:  # no colour table
        return None
    if all(colours.get(c.code, (-1,))[:3] == c.rgb for c in LCZ_CLASSES):
        return "lcz17"
    return None


def choose_band(
    src,
    band: int | None,
    nodata: float | None,
    progress: Progress,
    name: str = "input",
    prefix: str = "",
) -> BandChoice:
    """The band to read (`band`, or the filtered band of an LCZ Generator layout, or band 1).

    Logs the band descriptions and which band is used and why. An LCZ Generator layout also
    makes 0 nodata (its files often do not declare it) and its coding 1-17. `prefix` goes
    before the parameter names (band, nodata) in messages.
    """
    descriptions = ", ".join(f"{i} {d!r}" for i, d in enumerate(src.descriptions, 1) if d)
    declared = f"declared nodata {src.nodata:g}" if src.nodata is not None else "no declared nodata"
    progress.log(f"{name}: {src.count} band(s); descriptions: {descriptions or 'none'}; {declared}")
    generator = _generator_band(src)
    if band is not None:
        if not 1 <= band <= src.count:
            raise LczError(
                f"{prefix}band",
                f"{name} has {src.count} band(s); choose a band from 1 to {src.count}",
            )
        reason = f"chosen ({prefix}band)"
    elif generator is not None:
        band = generator[0]
        reason = f"the filtered LCZ band of an LCZ Generator layout ({generator[1]})"
    elif src.count == 1:
        band, reason = 1, "the only band"
    else:
        band = 1
        reason = (
            f"the first of {src.count} bands, no LCZ Generator layout recognised; "
            f"give {prefix}band to choose another"
        )
    extra: tuple[float, ...] = ()
    if nodata is not None and not np.isnan(nodata):  # NaN is nodata anyway
        extra += (nodata,)
        reason += f"; {nodata:g} read as nodata ({prefix}nodata)"
    if generator is not None and 0 not in extra:
        extra += (0,)
        reason += "; 0 read as nodata (LCZ Generator files use 0 for no data)"
    progress.log(f"{name}: band {band} used: {reason}")
    assume = "lcz17" if generator is not None else _declared_coding(src, band)
    return BandChoice(band, extra, assume)


def import_lcz_map(
    input: str | Path,
    output: str | Path,
    *,
    coding: str = "auto",
    mapping: Mapping[int, int] | str | None = None,
    band: int | None = None,
    nodata: float | None = None,
    extent: tuple[float, float, float, float] | None = None,
    extent_crs: str | None = None,
    target_crs: str | None = None,
    resolution: float | None = None,
    progress: Progress | None = None,
    parameter: str = "input",
) -> dict[str, Any]:
    """Translate an LCZ raster (any coding, CRS, nodata) into a styled 1-17 uint8 GeoTIFF.

    `input` may be a URL: only the extent's window is read. `parameter` names it in errors.
    """
    progress = progress or Progress()
    output = check_writable(output)
    mapping = as_mapping(mapping)
    with open_raster(input, parameter) as src:
        if src.crs is None:
            raise LczError(
                parameter, f"{input} has no CRS; assign one (e.g. with gdal_edit -a_srs) first"
            )
        choice = choose_band(src, band, nodata, progress, Path(str(input)).name)
        # the extent (in the input's CRS unless told) is taken in the source first, so that
        # a reprojection warps that window only, not the whole source
        source_window = extent_window(src, extent, extent_crs)
        with _warped(src, source_window, target_crs, resolution) as dataset:
            window = (
                source_window
                if dataset is src
                else extent_window(dataset, extent, extent_crs or src.crs.to_wkt())
            )
            blocks = row_blocks(
                int(window.width), int(window.height), int(window.col_off), int(window.row_off)
            )
            scan = SubProgress(progress, 0, 30)
            present: set[int] = set()
            for block in track(blocks, scan, len(blocks), "scanning classes"):
                values, valid = read_classes(dataset, choice.band, block, nodata=choice.nodata)
                present.update(np.unique(values[valid]).astype(np.int64).tolist())
            if not present:
                raise LczError(
                    "extent" if extent else parameter,
                    f"{input} holds no valid pixels in the chosen extent",
                )
            try:
                coding_name, table = resolve_lookup(coding, present, mapping, choice.assume)
            except LczCodingError as error:
                raise LczError(error.parameter, f"{input}, band {choice.band}: {error}") from None
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
                    values, valid = read_classes(dataset, choice.band, block, nodata=choice.nodata)
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
        "band_used": choice.band,
        "class_counts": counts,
        "nodata_pixels": int(writer.counts[0]),
        "crs": crs,
        "width": int(window.width),
        "height": int(window.height),
    }


def global_lcz_map_source(source: str | Path | None = None) -> str:
    """The global LCZ map to read: `source`, else $LCZ_GLOBAL_LCZ_MAP, else the v3 COG's URL."""
    return str(source or os.environ.get(GLOBAL_LCZ_MAP_ENV) or GLOBAL_LCZ_MAP_URL)


def global_lcz_map(
    output: str | Path,
    *,
    extent: tuple[float, float, float, float],
    extent_crs: str | None = None,
    source: str | Path | None = None,
    target_crs: str | None = None,
    resolution: float | None = None,
    progress: Progress | None = None,
    parameter: str = "source",
) -> dict[str, Any]:
    """The global LCZ map over `extent` (only its window read) as a styled 1-17 GeoTIFF.

    `source` is a local copy or a URL (default: `global_lcz_map_source`); its coding is 1-17 with
    0 = nodata. `parameter` names the source in errors.
    """
    source = global_lcz_map_source(source)
    try:
        result = import_lcz_map(
            source,
            output,
            coding="lcz17",
            nodata=0,
            extent=extent,
            extent_crs=extent_crs,
            target_crs=target_crs,
            resolution=resolution,
            progress=progress,
            parameter=parameter,
        )
    except LczError as error:
        if error.parameter not in ("band", "nodata", "coding", "mapping"):
            raise
        # a file whose values are not 1-17 is not (a copy of) the global LCZ map
        raise LczError(
            parameter,
            f"{error.message}; {source} is not the global LCZ map: give the filtered map "
            "(lcz_filter_v3.tif) or its COG",
        ) from None
    return {**result, "source": source}
