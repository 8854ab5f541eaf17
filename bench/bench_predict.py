"""Prediction speed and memory: the default patch classifier (resnet10t, width 16, 1x1 stem) over
a 10 km extent (LCZ_BENCH_LARGE=1: 10 km and 30 km) of a 128-band int8 GeoTIFF at 100 m, against

- floor: a plain rasterio read of the extent's blocks plus a bare forward pass of the same network
  on as many 32 x 32 patches (random inputs, batches of 256);
- naive: a script that reads the whole extent into RAM, normalises it, then classifies its patches
  batch by batch (np.stack of the patches of each batch);
- start-up: the peak memory of a process that only imports the libraries and loads the model.

Every measurement runs in its own subprocess, one after the other in one run (A/B on the same
machine): its time is taken inside it (start-up and imports excluded); its peak memory is the
whole process's peak resident set (bench.measure), which counts GDAL's block cache, torch's
buffers and the libraries loaded (tracemalloc sees none of them). LCZ_BENCH_PREDICT_KM="3,10" picks the extents explicitly,
LCZ_BENCH_REPEAT=n keeps the fastest of n runs of each measurement (a shared machine is noisy).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_sampling import BANDS, ORIGIN, PATCH, PIXELS, bench_raster
from bench.measure import measured, report

STRIDE = 10  # 100 m output pixels from 10 m embeddings
BATCH = 256
NODATA = -128


def write_model(path: Path) -> Path:
    """The default patch classifier (untrained: the speed does not depend on the weights)."""
    from lcz_core.lcz import CODES
    from lcz_core.models import create_model, save_model

    metadata = {
        "task": "patch",
        "architecture": "resnet10t",
        "width": 16,
        "stem": "1x1",
        "band_count": BANDS,
        "band_names": [f"A{i:02d}" for i in range(BANDS)],
        "embedding_source": "benchmark int8 embeddings",
        "normalisation": {"mean": [0.0] * BANDS, "std": [73.0] * BANDS},
        "classes": list(CODES),
        "patch_size": PATCH,
        "pixel_size": 10.0,
    }
    return save_model(path, create_model(metadata).eval(), metadata)


class Clock:
    """Wall and CPU seconds (all the process's threads) of a block of code."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def extent_bounds(km: int) -> tuple[float, float, float, float]:
    """The upper-left km x km of the benchmark raster."""
    x0, y1 = ORIGIN
    return x0, y1 - km * 1000.0, x0 + km * 1000.0, y1


def run_predict(model: str, raster: str, km: int, out: str) -> dict:
    """lcz_core's predict_raster over the extent."""
    import rasterio
    import timm  # noqa: F401  (imported on first use: start-up, outside the clock as for the others)

    from lcz_core.predict import predict_raster

    with Clock() as clock:
        result = predict_raster(model, raster, Path(out) / "lcz.tif", extent=extent_bounds(km))

    with rasterio.open(result["output"]) as lcz, rasterio.open(result["confidence"]) as conf:
        np.save(Path(out) / "predict_codes.npy", lcz.read(1))
        np.save(Path(out) / "predict_conf.npy", conf.read(1))
    return {"seconds": clock.wall, "cpu": clock.cpu, "patches": result["width"] * result["height"]}


def run_floor(model: str, raster: str, km: int, out: str) -> dict:
    """A plain read of the extent's blocks, then a bare forward pass on as many patches."""
    import rasterio
    import torch
    from rasterio.windows import Window

    from lcz_core.models import load_model

    side = km * 100  # pixels of the extent
    cells = (side // STRIDE) ** 2
    network = load_model(model).network
    with rasterio.open(raster) as ds, Clock() as read:
        for _, block in ds.block_windows(1):
            if block.row_off < side and block.col_off < side:
                ds.read(window=Window(block.col_off, block.row_off, block.width, block.height))
    batch = torch.randn(BATCH, BANDS, PATCH, PATCH).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), Clock() as forward:
        for first in range(0, cells, BATCH):
            network(batch[: min(BATCH, cells - first)])
    return {
        "seconds": read.wall + forward.wall,
        "cpu": read.cpu + forward.cpu,
        "read": read.wall,
        "forward": forward.wall,
        "patches": cells,
    }


def naive_map(loaded, raster: str, km: int) -> tuple[np.ndarray, np.ndarray]:
    """The extent in RAM as float32, normalised once, classified patch batch by patch batch."""
    import rasterio
    import torch
    from rasterio.windows import Window

    side, pad, n = km * 100, (PATCH - STRIDE) // 2, km * 100 // STRIDE
    with rasterio.open(raster) as ds:
        raw = ds.read(window=Window(-pad, -pad, side + 2 * pad, side + 2 * pad), boundless=True)
    data = np.empty(raw.shape, np.float32)
    for b, band in enumerate(data):  # band by band, so that temporaries stay small
        band[:] = raw[b]
        band[raw[b] == NODATA] = np.nan
        # normalised as lcz_core.models.prepare_inputs does (float32, NaN -> 0)
        band -= loaded.mean[b]
        band /= loaded.std[b]
        np.nan_to_num(band, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    del raw
    cells = [(r, c) for r in range(n) for c in range(n)]
    codes, confidence = [], []
    with torch.inference_mode():
        for first in range(0, len(cells), BATCH):
            patches = np.stack(
                [
                    data[:, r * STRIDE : r * STRIDE + PATCH, c * STRIDE : c * STRIDE + PATCH]
                    for r, c in cells[first : first + BATCH]
                ]
            )
            x = torch.from_numpy(patches).contiguous(memory_format=torch.channels_last)
            top, index = loaded.softmax(loaded.network(x)).max(dim=1)
            codes.append(index.numpy() + 1)
            confidence.append(top.numpy())
    return np.concatenate(codes).reshape(n, n), np.concatenate(confidence).reshape(n, n)


def run_naive(model: str, raster: str, km: int, out: str) -> dict:
    """The naive script (naive_map), timed."""
    from lcz_core.models import load_model

    loaded = load_model(model)
    with Clock() as clock:
        codes, confidence = naive_map(loaded, raster, km)
    np.save(Path(out) / "naive_codes.npy", codes)
    np.save(Path(out) / "naive_conf.npy", confidence)
    return {"seconds": clock.wall, "cpu": clock.cpu, "patches": codes.size}


def run_startup(model: str, raster: str, km: int, out: str) -> dict:
    """Only what every run holds: the libraries predict imports and the loaded model."""
    import lcz_core.predict  # noqa: F401
    from lcz_core.models import load_model

    load_model(model)
    return {"seconds": 0.0, "cpu": 0.0}


RUNS = {"predict": run_predict, "floor": run_floor, "naive": run_naive, "startup": run_startup}


def best_of(repeat: int, model: Path, raster: Path, km: int, out: Path) -> dict[str, dict]:
    """The fastest of `repeat` runs of each measurement (and the highest peak memory), each run
    in its own process; the measurements take turns, so that a busy spell of a shared machine
    hits all of them alike."""
    runs: dict[str, list[dict]] = {kind: [] for kind in RUNS}
    for _ in range(repeat):
        for kind, done in runs.items():
            done.append(measured("bench.bench_predict", kind, model, raster, km, out))
    return {
        kind: {
            **min(done, key=lambda r: r["seconds"]),
            "peak_rss": max(r["peak_rss"] for r in done),
        }
        for kind, done in runs.items()
    }


def main() -> None:
    """Print the table: predict, floor, ratio, naive, speed-up and peak memory per extent."""
    large = os.environ.get("LCZ_BENCH_LARGE", "") not in ("", "0")
    chosen = os.environ.get("LCZ_BENCH_PREDICT_KM", "10,30" if large else "10")
    extents = [int(km) for km in chosen.split(",")]
    if max(extents) * 100 > PIXELS:
        raise SystemExit(f"extents up to {PIXELS // 100} km (the benchmark raster)")
    repeat = int(os.environ.get("LCZ_BENCH_REPEAT", 1))
    raster = bench_raster()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lcz_bench_predict_") as tmp:
        model = write_model(Path(tmp) / "model.safetensors")
        for km in extents:
            out = Path(tmp) / f"{km}km"
            out.mkdir()
            runs = best_of(repeat, model, raster, km, out)
            same = np.load(out / "predict_codes.npy") == np.load(out / "naive_codes.npy")
            conf = np.load(out / "predict_conf.npy") - np.load(out / "naive_conf.npy")
            rows.append((km, runs))
            floor = runs["floor"]
            print(
                f"{km} km: {runs['predict']['patches']} patches; floor = read "
                f"{floor['read']:.1f} s + forward {floor['forward']:.1f} s; predict vs naive: "
                f"codes equal {same.mean():.4%}, confidence max diff {np.abs(conf).max():.1e}",
                flush=True,
            )
    print(
        "| extent | predict s | floor s | floor/predict (target >= 0.8) | naive s "
        "| naive/predict (target >= 3) | predict peak RSS (target < 1 GB) | of which start-up "
        "| naive peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for km, runs in rows:
        p, f, n, s = (runs[kind] for kind in RUNS)
        print(
            f"| {km} km | {p['seconds']:.1f} | {f['seconds']:.1f} | "
            f"{f['seconds'] / p['seconds']:.2f} | {n['seconds']:.1f} | "
            f"{n['seconds'] / p['seconds']:.2f} | {p['peak_rss'] / 1e9:.2f} GB | "
            f"{s['peak_rss'] / 1e9:.2f} GB | {n['peak_rss'] / 1e9:.2f} GB |"
        )
    for km, runs in rows:
        p, f, n = runs["predict"]["cpu"], runs["floor"]["cpu"], runs["naive"]["cpu"]
        print(
            f"{km} km in CPU seconds (less sensitive to other work on the machine): predict "
            f"{p:.1f}, floor {f:.1f} (floor/predict {f / p:.2f}), naive {n:.1f} "
            f"(naive/predict {n / p:.2f})"
        )
    print(
        "start-up: a process that only imports what predict imports (torch, timm, rasterio) and "
        "loads the model"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        kind, model_path, raster_path, km_text, out_dir = sys.argv[1:6]
        report(RUNS[kind](model_path, raster_path, int(km_text), out_dir))
    else:
        main()
