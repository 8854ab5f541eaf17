"""Prediction over an embedding raster, window by window, to a styled LCZ GeoTIFF + confidence.

A patch classifier labels each output pixel from the patch (its training patch size) centred on
it; output pixels are `stride` input pixels wide (default: about 100 m, the LCZ mapping scale). A
U-Net labels every input pixel, each block read with a margin so that block edges see context.
Inputs are normalised with the model's statistics and missing values set to 0 (the mean); an
output pixel whose input pixels all lack every band is nodata (0, confidence NaN).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from . import checks
from .cities import reproject_extent
from .errors import LczError
from .lcz import CLASS_BY_CODE
from .models import LczModel, load_model, pick_device, working_bytes
from .outputs import LczRasterWriter, atomic_path
from .progress import Progress
from .rasters import CroppedSource, EmbeddingSource, crop_to_extent, open_source

LCZ_SCALE_M = 100.0
SEGMENTATION_BLOCK = 256
SEGMENTATION_MARGIN = 32


def check_source(model: LczModel, source: EmbeddingSource, progress: Progress) -> None:
    """Refuse a source whose bands or pixel size differ from the model's training data."""
    meta = model.metadata
    if source.count != meta["band_count"]:
        raise LczError(
            "embeddings",
            f"the model was trained on {meta['band_count']} bands of "
            f"'{meta['embedding_source']}' but {source.name} has {source.count} bands; predict "
            "with embeddings of the same source and version as the training data",
        )
    trained_on = meta.get("feature_space", "")
    if trained_on and source.feature_space and source.feature_space != trained_on:
        raise LczError(
            "embeddings",
            f"the model was trained on {trained_on} embeddings but {source.name} holds "
            f"{source.feature_space} ones, another feature space; predict with {trained_on}",
        )
    pixel = float(meta["pixel_size"])
    if abs(source.res - pixel) > 0.05 * pixel:
        raise LczError(
            "embeddings",
            f"the model was trained on {pixel:g} m pixels but {source.name} has pixels of "
            f"{source.res:g} (CRS {source.crs.to_string()}); resample the embeddings to {pixel:g} m",
        )
    named = [n for n in source.band_names if not n.startswith("band_")]
    if named and named != meta["band_names"]:
        progress.log(
            f"band names differ from the model's ({', '.join(named[:3])}... vs "
            f"{', '.join(meta['band_names'][:3])}...): check the band order"
        )


def _check_memory(meta: dict, bands: int, stride: int, block: int, batch_size: int) -> None:
    """Refuse a prediction whose window and batch would not fit in memory."""
    if meta["task"] == "patch":
        side = (block - 1) * stride + int(meta["patch_size"])
        needed = 4 * bands * side**2 + working_bytes(meta, batch_size, int(meta["patch_size"]))
        parameter, fix = "batch_size", "give a smaller batch_size"
        what = f"predicting windows of {side} x {side} pixels in batches of {batch_size}"
    else:
        multiple = 2 ** int(meta.get("depth", 3))
        side = math.ceil((block + 2 * SEGMENTATION_MARGIN) / multiple) * multiple
        needed = 4 * bands * side**2 + working_bytes(meta, 1, side)
        parameter, fix = "model", "predict with a smaller model or on a machine with more memory"
        what = f"predicting windows of {side} x {side} pixels"
    checks.check_memory(needed, parameter, what, fix)


def _patch_block(
    model: LczModel,
    source: EmbeddingSource,
    rows: range,
    cols: range,
    stride: int,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Codes and confidence of the output pixels rows x cols of a patch classifier's map."""
    size = int(model.metadata["patch_size"])
    pad = (size - stride) // 2
    h, w = len(rows), len(cols)
    window = Window(
        cols.start * stride - pad, rows.start * stride - pad, (w - 1) * stride + size,
        (h - 1) * stride + size,
    )  # fmt: skip
    data = source.read(window)
    present = ~np.isnan(data).all(axis=0)
    # an output pixel is valid when any input pixel of its stride x stride cell has data
    cells = present[pad : pad + h * stride, pad : pad + w * stride]
    cells = np.pad(cells, ((0, h * stride - cells.shape[0]), (0, w * stride - cells.shape[1])))
    valid = cells.reshape(h, stride, w, stride).any(axis=(1, 3))
    codes = np.zeros((h, w), np.uint8)
    confidence = np.full((h, w), np.nan, np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(data, (size, size), axis=(1, 2))
    ii, jj = np.nonzero(valid)
    for start in range(0, len(ii), batch_size):
        i, j = ii[start : start + batch_size], jj[start : start + batch_size]
        patches = windows[:, i * stride, j * stride].transpose(1, 0, 2, 3)
        codes[i, j], confidence[i, j] = model.predict(patches, batch_size, device)
    return codes, confidence


def _segmentation_block(
    model: LczModel, source: EmbeddingSource, rows: range, cols: range, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Codes and confidence of the input pixels rows x cols, with a margin of context."""
    m = SEGMENTATION_MARGIN
    multiple = 2 ** int(model.metadata.get("depth", 3))
    height = math.ceil((len(rows) + 2 * m) / multiple) * multiple
    width = math.ceil((len(cols) + 2 * m) / multiple) * multiple
    data = source.read(Window(cols.start - m, rows.start - m, width, height))
    codes, confidence = model.predict(data[None], 1, device)
    inner = (slice(m, m + len(rows)), slice(m, m + len(cols)))
    codes, confidence = codes[0][inner], confidence[0][inner]
    missing = np.isnan(data[:, inner[0], inner[1]]).all(axis=0)
    codes[missing] = 0
    confidence[missing] = np.nan
    return codes, confidence


def predict_raster(
    model: str | os.PathLike,
    embeddings: str | os.PathLike,
    output: str | os.PathLike,
    confidence: str | os.PathLike | None = None,
    *,
    stride: int | None = None,
    extent: tuple[float, float, float, float] | None = None,
    extent_crs: str | None = None,
    source_kind: str = "auto",
    array: str | None = None,
    dequantise: str = "quadratic",
    year: int | None = None,
    crs: str | None = None,
    variant: str = "auto",
    batch_size: int = 256,
    device: str = "auto",
    progress: Progress | None = None,
    part: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Map LCZ over an embedding raster (or its `extent`); write the LCZ and confidence GeoTIFFs.

    `part` (k, n): map only the k-th of n row bands of whole blocks (a distributed run's share,
    see `cluster`); an empty band writes nothing and returns {"output": None}."""
    progress = progress or Progress()
    checks.integer(batch_size, "batch_size", "batch_size", 1)
    if stride is not None:
        checks.integer(stride, "stride", "stride", 1)
    if extent is not None:
        extent = checks.extent(extent, "extent", "extent")
    loaded = load_model(model)
    meta = loaded.metadata
    output = Path(output)
    confidence_path = confidence_output(output, confidence)
    run_on = pick_device(device)
    loaded.network.to(run_on)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(
            open_source(
                embeddings,
                source_kind,
                "embeddings",
                array=array,
                dequantise=dequantise,
                year=year,
                extent=extent,
                extent_crs=extent_crs,
                crs=crs,
                variant=variant,
            )
        )
        check_source(loaded, source, progress)
        if meta["task"] == "patch":
            if stride is None:
                stride = max(1, round(LCZ_SCALE_M / source.res))
            if not 1 <= stride <= int(meta["patch_size"]):
                raise LczError(
                    "stride", f"{stride} must be 1 to the patch size ({meta['patch_size']} px)"
                )
            block = max(1, 256 // stride)
        else:
            stride, block = 1, SEGMENTATION_BLOCK
        _check_memory(meta, source.count, stride, block, batch_size)
        if extent is not None:
            if extent_crs or source.default_extent_crs:
                extent = reproject_extent(
                    extent, extent_crs or source.default_extent_crs, source.crs
                )
            source = crop_to_extent(source, extent, align=stride)
        if part is not None:
            source = _band(source, *part, block * stride)
            if source is None:
                return {"output": None}
        width, height = math.ceil(source.width / stride), math.ceil(source.height / stride)
        transform = source.transform * source.transform.scale(stride)
        writer = stack.enter_context(
            LczRasterWriter(output, crs=source.crs, transform=transform, width=width, height=height)
        )
        tmp_confidence = stack.enter_context(atomic_path(confidence_path, "confidence"))
        conf_dataset = stack.enter_context(
            open_confidence(tmp_confidence, source.crs, transform, width, height)
        )
        blocks = [
            (range(r, min(r + block, height)), range(c, min(c + block, width)))
            for r in range(0, height, block)
            for c in range(0, width, block)
        ]
        for done, (rows, cols) in enumerate(blocks):
            progress.report(100.0 * done / len(blocks), f"block {done + 1}/{len(blocks)}")
            if meta["task"] == "patch":
                codes, conf = _patch_block(loaded, source, rows, cols, stride, batch_size, run_on)
            else:
                codes, conf = _segmentation_block(loaded, source, rows, cols, run_on)
            window = Window(cols.start, rows.start, len(cols), len(rows))
            writer.write(codes, window=window)
            conf_dataset.write(conf, 1, window=window)
        if part is None:  # raised inside the block: no all-nodata map is left
            check_mapped(writer, source.name)
        counts = {CLASS_BY_CODE[c].short: int(writer.counts[c]) for c in writer.codes_present}
        nodata = int(writer.counts[0])
    progress.report(100, "done")
    return {
        "output": str(output),
        "confidence": str(confidence_path),
        "width": width,
        "height": height,
        "pixel_size": float(source.res * stride),
        "class_counts": counts,
        "nodata_pixels": nodata,
    }


def confidence_output(output: Path, confidence: str | os.PathLike | None) -> Path:
    """The confidence GeoTIFF's path: as given, else <output>_confidence.tif."""
    return Path(confidence) if confidence else output.with_name(f"{output.stem}_confidence.tif")


def check_mapped(writer: LczRasterWriter, name: str) -> None:
    """Refuse a map without a valid pixel (from inside the writer's block: none is left)."""
    if not writer.codes_present:
        raise LczError(
            "embeddings",
            f"{name} has no valid pixel in the mapped area (all NaN, nodata or all-zero "
            "vectors): the map would be empty; check the embeddings and the extent",
        )


def _band(source: EmbeddingSource, k: int, n: int, rows: int) -> CroppedSource | None:
    """The k-th of n bands of `source` made of whole blocks of `rows` input rows, so that each
    block is read and computed as in the whole run (None: more bands than blocks)."""
    blocks = math.ceil(source.height / rows)
    first, stop = k * blocks // n * rows, (k + 1) * blocks // n * rows
    if first == stop:
        return None
    return CroppedSource(source, Window(0, first, source.width, min(stop, source.height) - first))


@contextlib.contextmanager
def open_confidence(path: Path, crs, transform, width: int, height: int):
    """The confidence GeoTIFF (float32, NaN = nodata) opened for writing at `path`."""
    import rasterio

    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "width": width,
        "height": height,
        "crs": crs,
        "transform": transform,
        "nodata": float("nan"),
        "compress": "deflate",
    }
    if width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.set_band_description(1, "LCZ confidence (top class probability)")
        yield dataset
