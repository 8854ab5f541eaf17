"""Prediction on a Dask LocalCluster against the single-process run: wall time and identity.

`python -m lcz_core predict` maps a 10 km extent (LCZ_BENCH_CLUSTER_KM) of the 128-band int8
benchmark raster at 100 m with the default patch classifier, as whole commands (start-up,
imports and for the cluster its start and stop included): once in one process, once with
`--workers 2` (LCZ_BENCH_CLUSTER_WORKERS): a LocalCluster of single-threaded workers started for
the run. The runs take turns LCZ_BENCH_REPEAT times (default 1) and the fastest of each counts;
the two LCZ maps must be identical byte for byte in their pixels. On a machine with as many cores
as workers the cluster brings no speed (the single process already uses every core through
torch's threads): it is there to spread a large extent over several machines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_predict import extent_bounds, write_model
from bench.bench_sampling import bench_raster
from bench.measure import REPO


def run_command(arguments: list[str]) -> float:
    """Wall seconds of `python -m lcz_core <arguments>` (the whole command)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lcz_core", *arguments], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"lcz_core {arguments[0]} failed: {done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    """Print both runs' wall time, the cores, and whether the maps are identical."""
    import rasterio

    km = int(os.environ.get("LCZ_BENCH_CLUSTER_KM", 10))
    workers = int(os.environ.get("LCZ_BENCH_CLUSTER_WORKERS", 2))
    repeat = int(os.environ.get("LCZ_BENCH_REPEAT", 1))
    raster = bench_raster()
    extent = ",".join(f"{v:.0f}" for v in extent_bounds(km))
    times: dict[str, list[float]] = {"single": [], "cluster": []}
    with tempfile.TemporaryDirectory(prefix="lcz_bench_cluster_") as tmp:
        model = write_model(Path(tmp) / "model.safetensors")
        common = ["predict", "--model", str(model), "--embeddings", str(raster)]
        common += ["--extent", extent]
        for _ in range(repeat):
            for kind, extra in (("single", []), ("cluster", ["--workers", str(workers)])):
                output = Path(tmp) / f"{kind}.tif"
                times[kind].append(run_command([*common, *extra, "--output", str(output)]))
        with (
            rasterio.open(Path(tmp) / "single.tif") as a,
            rasterio.open(Path(tmp) / "cluster.tif") as b,
        ):
            identical = a.profile == b.profile and np.array_equal(a.read(), b.read())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    single, cluster = min(times["single"]), min(times["cluster"])
    print(f"predict, {km} km extent, whole commands on {cores} cores (best of {repeat}):")
    print(f"  one process: {single:.1f} s")
    print(
        f"  Dask LocalCluster of {workers} workers: {cluster:.1f} s "
        f"({single / cluster:.2f}x the single process's speed)"
    )
    print(f"  LCZ maps identical byte for byte: {identical}")


if __name__ == "__main__":
    main()
