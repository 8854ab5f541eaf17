"""Sampling speed: 10,000 patches of 32 x 32 x 128 from a GeoTIFF over 30 km x 30 km, read by the
sampler (float32, masks, batches) versus plain rasterio windowed reads of the same windows.

The benchmark raster (int8, tiled, about 1.2 GB) is generated once, block by block, into
$LCZ_BENCH_CACHE (default ~/.cache/lcz_qgis/bench), outside the repository. Peak memory is the
whole process's peak resident set (bench.measure: GDAL's block cache included), reading 2,000
patches over a 10 km and over the 30 km extent, each in a fresh process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from bench.measure import measured, report

PIXELS = 3000  # 30 km at 10 m
BANDS = 128
PATCH = 32
COUNT = 10_000
ORIGIN = (500_000.0, 5_800_000.0)


def bench_raster() -> Path:
    """The cached benchmark GeoTIFF, written block by block the first time."""
    folder = Path(os.environ.get("LCZ_BENCH_CACHE", Path.home() / ".cache" / "lcz_qgis" / "bench"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"embeddings_{PIXELS}px_{BANDS}b_int8.tif"
    if path.is_file():
        return path
    from lcz_core.outputs import atomic_path

    profile = dict(driver="GTiff", width=PIXELS, height=PIXELS, count=BANDS, dtype="int8")
    profile.update(crs="EPSG:32633", transform=Affine(10, 0, *ORIGIN[:1], 0, -10, ORIGIN[1]))
    profile.update(tiled=True, blockxsize=256, blockysize=256, interleave="pixel", nodata=-128)
    rng = np.random.default_rng(0)
    pattern = rng.integers(-127, 128, (BANDS, 256, 256), dtype=np.int8)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for _, window in dst.block_windows(1):
            shift = (window.row_off // 256 + 3 * (window.col_off // 256)) % 7
            block = np.roll(pattern, shift, axis=0)[:, : window.height, : window.width]
            dst.write(block, window=window)
    return path


def windows(extent_px: int, seed: int = 0) -> list[Window]:
    """COUNT random patch windows inside the upper-left extent_px x extent_px pixels."""
    rng = np.random.default_rng(seed)
    cols, rows = rng.integers(0, extent_px - PATCH, (2, COUNT))
    return [Window(int(c), int(r), PATCH, PATCH) for c, r in zip(cols, rows, strict=True)]


def plain_read(path: Path, chosen: list[Window]) -> float:
    """Seconds for rasterio to read the windows (the baseline)."""
    with rasterio.open(path) as ds:
        start = time.perf_counter()
        for window in chosen:
            ds.read(window=window)
        return time.perf_counter() - start


def sampler_read(path: Path, chosen: list[Window], batch: int = 64) -> float:
    """Seconds for the sampler's read path (source.read into batches of float32)."""
    from lcz_core.rasters import open_source

    with open_source(path) as source:
        start = time.perf_counter()
        for i in range(0, len(chosen), batch):
            np.stack([source.read(w) for w in chosen[i : i + batch]])
        return time.perf_counter() - start


def sampler_peak(extent_px: int) -> int:
    """Peak resident bytes of a process reading 2,000 patches of the extent by the sampler's path."""
    return measured("bench.bench_sampling", "peak", extent_px)["peak_rss"]


def main() -> None:
    """Print the timings, the speed ratio and the peak memory on two extents."""
    path = bench_raster()
    chosen = windows(PIXELS)
    plain_read(path, chosen[:500])  # warm the page cache for both
    baseline = plain_read(path, chosen)
    sampled = sampler_read(path, chosen)
    peak_30, peak_10 = sampler_peak(PIXELS), sampler_peak(PIXELS // 3)
    print(f"plain rasterio windowed read: {COUNT} patches in {baseline:.2f} s")
    print(f"sampler read (float32, masks, batches): {sampled:.2f} s")
    print(f"speed ratio sampler/plain: {baseline / sampled:.2f} (target >= 0.5)")
    print(
        f"peak resident memory of the whole process: 10 km extent {peak_10 / 2**20:.0f} MiB, "
        f"30 km {peak_30 / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["peak"]:  # a child of sampler_peak
        sampler_read(bench_raster(), windows(int(sys.argv[2]))[:2000])
        report({})
    else:
        main()
