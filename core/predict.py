"""Prediction over an embedding raster, window by window, to a styled LCZ GeoTIFF + confidence.

A patch classifier labels each output pixel from the patch (its training patch size) centred on
it; output pixels are `stride` input pixels wide (default: about 100 m, the LCZ mapping scale). A
U-Net labels every input pixel, each block read with a margin so that block edges see context.
Inputs are normalised with the model's statistics and missing values set to 0 (the mean); an
output pixel whose input pixels all lack every band is nodata (0, confidence NaN).

Patches are classified one by one, as in training, so the map equals patch-by-patch inference;
what overlapping patches share (normalising, a 1x1 stem) is done once per window. GDAL's block
cache is bounded for the run, and large outputs get overviews.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window
from torch import nn

from . import checks
from .errors import LczError
from .extents import reproject_extent
from .lcz import CLASS_BY_CODE
from .models import LczModel, load_model, pick_device, torch_threads, working_bytes
from .outputs import LczRasterWriter, atomic_path, overview_factors
from .progress import Progress
from .rasters import CroppedSource, EmbeddingSource, crop_to_extent, open_source
from .steps.modelling import default_confidence

LCZ_SCALE_M = 100.0
SEGMENTATION_BLOCK = 256
SEGMENTATION_MARGIN = 32
# input pixels a patch classifier's window spans (plus the patch margin): at 100 m, 32 x 32
# output pixels, 4 batches of 256 patches
PATCH_WINDOW = 320
# GDAL's block cache for the run: its default (5% of RAM) grew the process by gigabytes. Reading
# the windows of 30 km of 128-band int8 took 1.2 x as long with this as unbounded (16 MB: 1.8 x)
GDAL_CACHE_BYTES = 128 * 2**20


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


def _patch_window(
    source: EmbeddingSource, rows: range, cols: range, stride: int, size: int, pin: bool
) -> tuple[torch.Tensor, np.ndarray]:
    """The embeddings under output pixels rows x cols (float32 (C, h, w), NaN where missing;
    pinned for a copy to the GPU) and which of those output pixels have any data."""
    pad = (size - stride) // 2
    h, w = len(rows), len(cols)
    window = Window(
        cols.start * stride - pad, rows.start * stride - pad, (w - 1) * stride + size,
        (h - 1) * stride + size,
    )  # fmt: skip
    data = source.read(window)
    present = ~np.isnan(data[0])  # a source masks whole pixels: all their bands are NaN
    # an output pixel is valid when any input pixel of its stride x stride cell has data
    cells = present[pad : pad + h * stride, pad : pad + w * stride]
    cells = np.pad(cells, ((0, h * stride - cells.shape[0]), (0, w * stride - cells.shape[1])))
    valid = cells.reshape(h, stride, w, stride).any(axis=(1, 3))
    data = torch.from_numpy(data)
    return (data.pin_memory() if pin else data), valid


class _PatchClassifier:
    """A patch classifier run over whole windows, with per-patch results.

    Each patch is still classified on its own (zero padding at its borders, as in training), so
    results equal those of patch-by-patch inference. What overlapping patches share is done
    once per window: normalising the embeddings and, for a 1x1 stem, the stem (convolution,
    batch norm and activation act on each pixel alone, so a patch's stem output is a crop of the
    window's). Patches are then gathered channels-last from the window's features in batches.
    """

    def __init__(self, model: LczModel, stride: int, batch_size: int, device: torch.device) -> None:
        self.model, self.stride, self.batch_size, self.device = model, stride, batch_size, device
        self.size = int(model.metadata["patch_size"])
        self.mean = torch.from_numpy(model.mean).to(device)
        self.std = torch.from_numpy(model.std).to(device)
        network = model.network
        conv = network.conv1
        if (
            isinstance(conv, nn.Conv2d)
            and conv.kernel_size == conv.stride == (1, 1)
            and isinstance(network.maxpool, nn.Identity)
        ):
            self.stem: nn.Module | None = nn.Sequential(network.conv1, network.bn1, network.act1)
            # the network's own forward with the stem made an identity (parameters shared)
            self.trunk = copy.copy(network)
            self.trunk._modules = dict(network._modules)
            self.trunk.conv1 = self.trunk.bn1 = self.trunk.act1 = nn.Identity()
        else:
            self.stem, self.trunk = None, network

    def __call__(self, data: torch.Tensor, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes and confidence of the output pixels of a window read by `_patch_window`."""
        codes = np.zeros(valid.shape, np.uint8)
        confidence = np.full(valid.shape, np.nan, np.float32)
        if not valid.any():
            return codes, confidence
        data = data.to(self.device, non_blocking=True)
        bands, height, width = data.shape
        # normalised once per window, pixel by pixel (h, w, C): the channels-last order of patches
        features = torch.empty((height, width, bands), device=self.device)
        torch.sub(data.permute(1, 2, 0), self.mean, out=features)
        features.div_(self.std).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        if self.stem is not None:
            features = self.stem(features.permute(2, 0, 1)[None])[0].permute(1, 2, 0)
        features = features.contiguous()
        k, (h, w) = features.shape[2], valid.shape
        s, size = self.stride, self.size
        patches = features.as_strided(
            (h, w, size, size, k), (s * width * k, s * k, width * k, k, 1)
        )
        ii, jj = np.nonzero(valid)
        for start in range(0, len(ii), self.batch_size):
            i, j = ii[start : start + self.batch_size], jj[start : start + self.batch_size]
            if self.device.type == "cpu":  # numpy copies whole rows of a patch, torch each value
                batch = torch.from_numpy(patches.numpy()[i, j])
            else:
                batch = patches[
                    torch.from_numpy(i).to(self.device), torch.from_numpy(j).to(self.device)
                ]
            # (n, size, size, k) seen as (n, k, size, size) channels-last, without a copy
            logits = self.trunk(batch.permute(0, 3, 1, 2))
            top, best = self.model.softmax(logits.cpu()).max(dim=1)
            codes[i, j], confidence[i, j] = (best + 1).to(torch.uint8).numpy(), top.numpy()
        return codes, confidence


def _segmentation_window(
    model: LczModel, source: EmbeddingSource, rows: range, cols: range
) -> np.ndarray:
    """The embeddings under input pixels rows x cols with a margin of context, sides rounded up
    to what the U-Net divides."""
    m = SEGMENTATION_MARGIN
    multiple = 2 ** int(model.metadata.get("depth", 3))
    height = math.ceil((len(rows) + 2 * m) / multiple) * multiple
    width = math.ceil((len(cols) + 2 * m) / multiple) * multiple
    return source.read(Window(cols.start - m, rows.start - m, width, height))


def _segmentation_block(
    model: LczModel, data: np.ndarray, rows: range, cols: range, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Codes and confidence of the input pixels rows x cols of a window from `_segmentation_window`."""
    m = SEGMENTATION_MARGIN
    codes, confidence = model.predict(data[None], 1, device)
    inner = (slice(m, m + len(rows)), slice(m, m + len(cols)))
    codes, confidence = codes[0][inner], confidence[0][inner]
    missing = np.isnan(data[:, inner[0], inner[1]]).all(axis=0)
    codes[missing] = 0
    confidence[missing] = np.nan
    return codes, confidence


def _read_ahead(
    read: Callable[[range, range], Any], blocks: list[tuple[range, range]], overlap: bool
) -> Iterator[tuple[range, range, Any]]:
    """(rows, cols, read(rows, cols)) of each block in turn.

    With `overlap` (a GPU computes) a thread reads the next block meanwhile. On the CPU the
    reading is done in line: a reader thread beside torch's own threads slows both down.
    """
    if not overlap:
        for rows, cols in blocks:
            yield rows, cols, read(rows, cols)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="lcz-read") as reader:
        pending = reader.submit(read, *blocks[0])
        for done, (rows, cols) in enumerate(blocks):
            data = pending.result()
            if done + 1 < len(blocks):
                pending = reader.submit(read, *blocks[done + 1])
            yield rows, cols, data


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
    threads: int = 0,
    progress: Progress | None = None,
    part: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Map LCZ over an embedding raster (or its `extent`); write the LCZ and confidence GeoTIFFs.

    `part` (k, n): map only the k-th of n row bands of whole blocks (a distributed run's share,
    see `cluster`); an empty band writes nothing and returns {"output": None}."""
    progress = progress or Progress()
    checks.integer(batch_size, "batch_size", "batch_size", 1)
    checks.integer(threads, "threads", "threads", 0)
    if stride is not None:
        checks.integer(stride, "stride", "stride", 1)
    if extent is not None:
        extent = checks.extent(extent, "extent", "extent")
    loaded = load_model(model)
    meta = loaded.metadata
    output = Path(output)
    confidence_path = Path(confidence) if confidence else default_confidence(output)
    run_on = pick_device(device)
    loaded.network.to(run_on)
    with contextlib.ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))
        stack.enter_context(torch_threads(threads))
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
            block = max(1, PATCH_WINDOW // stride)
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
        if meta["task"] == "patch":
            size = int(meta["patch_size"])
            classify = _PatchClassifier(loaded, stride, batch_size, run_on)

            def read(rows: range, cols: range):
                return _patch_window(source, rows, cols, stride, size, run_on.type == "cuda")

            def compute(window_data, rows: range, cols: range):
                return classify(*window_data)
        else:

            def read(rows: range, cols: range):
                return _segmentation_window(loaded, source, rows, cols)

            def compute(window_data, rows: range, cols: range):
                return _segmentation_block(loaded, window_data, rows, cols, run_on)

        windows = stack.enter_context(
            contextlib.closing(_read_ahead(read, blocks, overlap=run_on.type == "cuda"))
        )
        for done, (rows, cols, window_data) in enumerate(windows):
            progress.report(100.0 * done / len(blocks), f"block {done + 1}/{len(blocks)}")
            with torch.inference_mode():
                codes, conf = compute(window_data, rows, cols)
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
        factors = overview_factors(width, height)
        if factors:
            dataset.build_overviews(factors, Resampling.average)
