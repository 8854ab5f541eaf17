"""Run one measurement in a fresh interpreter and take the whole process's peak memory.

The peak resident set counts everything the process held: GDAL's block cache, torch's and
numpy's buffers, the libraries loaded (tracemalloc sees only Python's allocations). The child
reads it itself (VmHWM, counted from its exec): the maximum resident set that wait4 or
getrusage(RUSAGE_CHILDREN) report for a child starts from its parent's peak on Linux, so a
parent that has imported torch would add its own gigabyte to every figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux: VmHWM of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory is measured on Linux only")


def report(result: dict) -> None:
    """Print a measurement's result (a JSON object) with the process's peak memory, last."""
    print(json.dumps({**result, "peak_rss": peak_rss()}), flush=True)


def measured(module: str, *args: object) -> dict:
    """Run `python -m module args...`, which ends by `report`ing; return what it reported."""
    child = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    if child.returncode:
        raise RuntimeError(f"{module} {args} failed ({child.returncode}): {child.stdout}")
    return json.loads(child.stdout.strip().splitlines()[-1])
