"""Training throughput of the default patch classifier on 32 x 32 x 128 patches, 2 CPU threads.

The target: 10,000 patches x 10 epochs in under 5 minutes on the project's 2-core machine. By
default a smaller run (LCZ_BENCH_PATCHES training patches, LCZ_BENCH_EPOCHS epochs) is timed
through the real `train` (dataset read, normalisation, augmentation, AdamW, validation,
checkpoints) and the full run is projected from its throughput; LCZ_BENCH_PATCHES=10000
LCZ_BENCH_EPOCHS=10 times the full run itself (a 2.6 GB dataset, streamed from disk).
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = 128
PATCH = 32
TARGET_PATCHES, TARGET_EPOCHS, TARGET_SECONDS = 10_000, 10, 300.0
THREADS = 2


def write_bench_dataset(folder: Path, n_train: int, n_val: int) -> Path:
    """A patch dataset of n_train training then n_val validation patches: a random pattern
    shifted batch by batch plus a class signal (the speed does not depend on the values; a
    pattern is fast to make even for hundreds of thousands of patches)."""
    from lcz_core.datasets import Batch, write_dataset

    rng = np.random.default_rng(0)
    pattern = rng.normal(size=(512, BANDS, PATCH, PATCH)).astype(np.float32)
    n = n_train + n_val

    def batches():
        for start in range(0, n, 256):
            k = min(256, n - start)
            y = rng.integers(1, 18, k).astype(np.uint8)
            x = np.roll(pattern, start // 256, axis=0)[:k] + y[:, None, None, None] * 0.1
            split = (np.arange(start, start + k) >= n_train).astype(np.uint8)
            zeros = np.zeros(k)
            yield Batch(x, y, split, zeros.astype(np.uint16), zeros, zeros)

    manifest = {
        "kind": "patches",
        "patch_size": PATCH,
        "pixel_size": 10.0,
        "band_names": [f"E{i:03d}" for i in range(BANDS)],
        "embedding_source": "benchmark pattern embeddings",
        "cities": ["bench"],
        "crs": "EPSG:32633",
        "seed": 0,
        "split_method": "random",
        "split_fractions": [0.9, 0.1, 0.0],
        "buffer_m": 0.0,
    }
    write_dataset(folder, batches(), manifest, expected=n)
    return folder


def main() -> None:
    """Time the default classifier's training and print patches/s and the projected full run."""
    import torch

    from lcz_core.train import TrainConfig, train

    n_train = int(os.environ.get("LCZ_BENCH_PATCHES", 1024))
    epochs = int(os.environ.get("LCZ_BENCH_EPOCHS", 3))
    n_val = max(64, n_train // 10)
    with tempfile.TemporaryDirectory(prefix="lcz_bench_training_") as tmp:
        started = time.perf_counter()
        dataset = write_bench_dataset(Path(tmp) / "patches", n_train, n_val)
        print(
            f"dataset: {n_train} + {n_val} patches written in {time.perf_counter() - started:.1f} s"
        )
        config = TrainConfig(epochs=epochs, patience=epochs, threads=THREADS, device="cpu")
        started = time.perf_counter()
        result = train(dataset, Path(tmp) / "run", config)
        total = time.perf_counter() - started
        with open(result["log"], newline="") as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    # the first epoch pays one-off costs (allocator, kernels); later epochs are the steady state
    steady = seconds[1:] or seconds
    throughput = n_train / (sum(steady) / len(steady))
    projected = TARGET_PATCHES * TARGET_EPOCHS / throughput
    print(
        f"classifier: {config.architecture}, width {config.width}, stem {config.stem}, "
        f"batch {config.batch_size}, {THREADS} CPU threads (torch {torch.__version__})"
    )
    print(f"epoch seconds (train + validation): {', '.join(f'{s:.1f}' for s in seconds)}")
    print(f"{n_train} patches x {epochs} epochs: {sum(seconds):.1f} s measured (all epochs)")
    print(f"whole run including data loading and the test pass: {total:.1f} s")
    print(f"throughput: {throughput:.0f} patches/s (validation time included)")
    print(
        f"{TARGET_PATCHES} patches x {TARGET_EPOCHS} epochs: {projected:.0f} s projected, target "
        f"{TARGET_SECONDS:.0f} s, ratio {projected / TARGET_SECONDS:.2f} "
        f"({'PASS' if projected < TARGET_SECONDS else 'FAIL'})"
    )


if __name__ == "__main__":
    main()
