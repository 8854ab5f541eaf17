"""Training streamed from disk versus the same patches held in memory: peak memory and speed.

A patch dataset of LCZ_BENCH_STREAM_PATCHES patches of 32 x 32 x 128 (default 1,200: minutes;
400000 is So2Sat-sized, about 105 GB on disk as float16) is generated once into
$LCZ_BENCH_CACHE (default ~/.cache/lcz_qgis/bench) with the project's writer. The default patch
classifier then trains LCZ_BENCH_STREAM_EPOCHS epochs (default 1) in two ways, alternately
LCZ_BENCH_STREAM_ROUNDS times (default 3), each run in its own Python so that its peak memory
(getrusage's maximum resident set) is its own:

- from disk: the dataset folder, batches read by up to 2 DataLoader worker processes (as many
  as there are cores the 2 training threads leave free; none on a 2-core machine);
- in memory: the dataset read into memory first (`open_dataset(...).load()`), batches made by
  the training process (skipped when the dataset would not fit in half the available memory).

Throughput is the training patches over the best epoch's seconds (training and validation; the
best of alternate runs, so that other load on the machine hits both alike); the target is
>= 0.8 of the in-memory runs', and a peak below 3 GB whatever the dataset's size.
Both runs draw the same batches, so they must end with identical weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_training import BANDS, PATCH, THREADS, write_bench_dataset

WORKERS = 2
RSS_TARGET_GB = 3.0
SPEED_TARGET = 0.8


def bench_dataset(n: int) -> Path:
    """The cached benchmark dataset of n patches (90% train, 10% validation)."""
    folder = Path(os.environ.get("LCZ_BENCH_CACHE", Path.home() / ".cache" / "lcz_qgis" / "bench"))
    path = folder / f"patches_{n}_{BANDS}b"
    if (path / "manifest.json").is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    n_val = max(64, n // 10)
    return write_bench_dataset(path, n - n_val, n_val)


RUN = """
import csv, json, resource, sys, time
from lcz_core.datasets import open_dataset
from lcz_core.train import TrainConfig, train
folder, run, epochs, workers, in_memory, threads = sys.argv[1:7]
started = time.perf_counter()
dataset = open_dataset(folder).load() if in_memory == "1" else folder
config = TrainConfig(epochs=int(epochs), patience=int(epochs), threads=int(threads), device="cpu",
                     loader_workers=int(workers))
result = train(dataset, run, config)
with open(result["log"], newline="") as f:
    seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
print(json.dumps({
    "seconds": seconds, "total": time.perf_counter() - started,
    "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "worker_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
}))
"""


def run_training(folder: Path, run: Path, epochs: int, workers: int, in_memory: bool) -> dict:
    """Train in a fresh Python; return its epoch seconds, total seconds, peak resident memory and
    the peak memory its loader workers held of their own (forked, they share the rest with it)."""
    import psutil

    command = [sys.executable, "-c", RUN, str(folder), str(run), str(epochs), str(workers)]
    with subprocess.Popen(
        [*command, "1" if in_memory else "0", str(THREADS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        trainer, workers_own = psutil.Process(process.pid), 0
        while process.poll() is None:
            own = 0
            with contextlib.suppress(psutil.Error):
                own = sum(c.memory_full_info().uss for c in trainer.children(recursive=True))
            workers_own = max(workers_own, own)
            time.sleep(0.2)
        out, err = process.communicate()
    if process.returncode:
        raise RuntimeError(err[-3000:])
    return {**json.loads(out.strip().splitlines()[-1]), "workers_own": workers_own}


def same_weights(a: Path, b: Path) -> bool:
    """Whether two model files hold identical weights."""
    from safetensors.numpy import load_file

    first, second = load_file(a), load_file(b)
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def main() -> None:
    """Print both modes' epoch times, throughput and peak memory, and the targets."""
    from lcz_core.checks import available_memory

    n = int(os.environ.get("LCZ_BENCH_STREAM_PATCHES", 1200))
    epochs = int(os.environ.get("LCZ_BENCH_STREAM_EPOCHS", 1))
    rounds = int(os.environ.get("LCZ_BENCH_STREAM_ROUNDS", 3))
    folder = bench_dataset(n)
    manifest = json.loads((folder / "manifest.json").read_text())
    n_train, stored = manifest["split_counts"]["train"], n * BANDS * PATCH * PATCH * 2
    print(
        f"dataset: {n} patches of {PATCH} x {PATCH} x {BANDS}, {stored / 2**30:.2f} GiB (float16)"
    )
    fits = stored < (available_memory() or 0) / 2
    disk, held, identical = [], [], None
    with tempfile.TemporaryDirectory(prefix="lcz_bench_streaming_") as tmp:
        for k in range(rounds):  # alternately, so that other load on the machine hits both alike
            disk.append(run_training(folder, Path(tmp) / f"disk{k}", epochs, WORKERS, False))
            if fits:
                held.append(run_training(folder, Path(tmp) / f"held{k}", epochs, 0, True))
                identical = same_weights(
                    Path(tmp) / f"disk{k}" / "model.safetensors",
                    Path(tmp) / f"held{k}" / "model.safetensors",
                )
    best = min(min(r["seconds"]) for r in disk)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(WORKERS, max(0, (cores or 1) - THREADS))  # on the cores training leaves free
    print(
        f"from disk ({THREADS} training threads, {workers} loader workers on {cores} cores), "
        f"{rounds} runs:"
    )
    print(f"  epoch seconds: {', '.join(f'{s:.1f}' for r in disk for s in r['seconds'])}")
    print(
        f"  one epoch of {n_train} patches: {best:.1f} s at best ({n_train / best:.0f} patches/s)"
    )
    rss, own = max(r["rss"] for r in disk), max(r["workers_own"] for r in disk)
    print(
        f"  peak RSS of the training process {rss / 2**30:.2f} GiB; its loader workers held "
        f"{own / 2**30:.2f} GiB of their own at most (RSS each <= "
        f"{max(r['worker_rss'] for r in disk) / 2**30:.2f} GiB, mostly pages shared with it); "
        f"together {(rss + own) / 2**30:.2f} GiB (target < {RSS_TARGET_GB:g} GB: "
        f"{'PASS' if rss + own < RSS_TARGET_GB * 1e9 else 'FAIL'})"
    )
    if not held:
        print("in memory: skipped (the dataset would take more than half the available memory)")
        return
    ratio = min(min(r["seconds"]) for r in held) / best
    print(f"in memory (read first, batches made by the training process), {rounds} runs:")
    print(f"  epoch seconds: {', '.join(f'{s:.1f}' for r in held for s in r['seconds'])}")
    print(f"  peak RSS: {max(r['rss'] for r in held) / 2**30:.2f} GiB")
    print(
        f"throughput from disk / in memory (best epochs): {ratio:.2f} (target >= {SPEED_TARGET}: "
        f"{'PASS' if ratio >= SPEED_TARGET else 'FAIL'}); identical weights: {identical}"
    )


if __name__ == "__main__":
    main()
