"""Scale-out on dask.distributed: a step's work split into windows run by a cluster's workers.

A step given `scheduler` (the ADDRESS of a running dask.distributed scheduler) or `workers` (N: a
LocalCluster of N single-threaded worker processes, started for the run and closed after it)
sends its windows to the cluster. `predict` sends row bands of the map, each predicted by a
worker into part files of its own that the run then assembles into the outputs: the same map
byte for byte as a single-process run. `sample-patches` sends its cities (a large one in windows
of its samples), whose batches the run then writes in order: the same dataset as without.
`check-embeddings` sends the blocks of its two passes (`map_blocks`, a few blocks a task, each
on a source the worker opens again): the run gathers the counts, value ranges, norm samples and
mask classes in order and writes the reports and the mask itself, the same as without.
Workers read the inputs and write the parts at the paths the run gives them: on a cluster of
several machines the inputs and the output folder must be on a file system they all see at the
same paths. Cancelling the run cancels the tasks not yet done; a LocalCluster is closed, which
also stops those running (a running task on someone else's cluster finishes its window, and its
result is dropped).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import Batch
from .errors import LczError
from .progress import Progress, SubProgress

# bands per worker: enough to balance uneven windows, few enough that opening the model and the
# source again for each stays small beside predicting it
PARTS_PER_WORKER = 4
CONNECT_SECONDS = 30
# a LocalCluster's workers stop on their own when the run that started them is gone this long
DEATH_SECONDS = 60
POLL_SECONDS = 0.5
ROWS_PER_WRITE = 256
# batches of samples a sample-patches task reads: a city, or a window of a large one
BATCHES_PER_PART = 64
# windows a task of map_blocks reads (check-embeddings): enough that reopening the source for
# each stays small beside reading them, few enough that results stay small and tasks balance
BLOCKS_PER_TASK = 8
# what an embedding source counts as it reads
SOURCE_COUNTS = ("masked_pixels", "zero_pixels", "read_pixels")


@contextlib.contextmanager
def cluster_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A dask.distributed Client of the scheduler at `scheduler`, or of a LocalCluster of
    `workers` single-threaded processes that lives as long as the block; None when neither is
    given (the work runs in this process)."""
    if not (scheduler or workers):
        yield None
        return
    if scheduler and workers:
        raise LczError(
            "workers", "give scheduler (a running cluster) or workers (a local one), not both"
        )
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise LczError(
            "scheduler" if scheduler else "workers",
            "dask.distributed is not installed in this Python: pip install 'dask[distributed]', "
            "or run without scheduler and workers",
        ) from None
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(Client(scheduler, timeout=CONNECT_SECONDS))
            except (OSError, TimeoutError, ValueError, TypeError) as error:
                raise LczError(
                    "scheduler",
                    f"cannot reach a Dask scheduler at {scheduler!r} ({error}); give the address "
                    "a running scheduler prints (tcp://host:8786), or workers for a local cluster",
                ) from None
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                    death_timeout=DEATH_SECONDS,
                )
            )
            client = stack.enter_context(Client(cluster))
        yield client


def run_tasks(client: Any, futures: list, progress: Progress, what: str) -> list:
    """The results of `futures` in their order, reporting progress as they finish. The first
    failure is raised as it comes; it, or a cancel, cancels the tasks not yet done."""
    return list(iter_tasks(client, list(futures), progress, what))


def iter_tasks(client: Any, futures: list, progress: Progress, what: str) -> Iterator[Any]:
    """The results of `futures` in their order, each as soon as it and those before it are done,
    reporting progress as they finish. The first failure is raised as it comes; it, a cancel or
    leaving the loop early cancels the tasks not yet done. Each future is dropped from the list
    once its result is out, so that the cluster lets go of it."""
    from distributed import wait

    total, out = len(futures), 0
    try:
        pending, finished = set(futures), -1
        while True:
            if finished != total - len(pending):
                finished = total - len(pending)
                progress.report(100.0 * finished / total, f"{what} {finished}/{total}")
            while out < total and futures[out] not in pending:
                result, futures[out] = futures[out].result(), None
                out += 1
                yield result
            if not pending:
                break
            try:
                done, pending = wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                progress.check()
                continue
            for future in done:
                if future.status == "error":
                    future.result()  # raises the task's error here
    finally:
        client.cancel([future for future in futures if future is not None])


def map_blocks(
    source: Any,
    reopen: Callable[[], Any],
    client: Any,
    function: Callable[[Any, Any], Any],
    items: Sequence[Any],
    progress: Progress,
    what: str,
) -> Iterator[Any]:
    """`function(source, item)` of each of `items`, in order: in this process, or on the
    cluster's workers given a `client`, in tasks of at most BLOCKS_PER_TASK items (fewer where
    that leaves a worker under PARTS_PER_WORKER tasks), each on a source of its own from
    `reopen()`. Progress counts the items here, the tasks there."""
    if client is None:
        for i, item in enumerate(items):
            progress.report(100.0 * i / len(items), f"{what} {i}/{len(items)}")
            yield function(source, item)
        return
    workers = max(1, len(client.scheduler_info()["workers"]))
    size = max(1, min(BLOCKS_PER_TASK, math.ceil(len(items) / (PARTS_PER_WORKER * workers))))
    run = uuid.uuid4().hex
    futures = [
        client.submit(_map_task, reopen, function, items[i : i + size], key=f"lcz-{run}-{i}")
        for i in range(0, len(items), size)
    ]
    for results in iter_tasks(client, futures, progress, what):
        yield from results


def _map_task(reopen: Callable[[], Any], function: Callable[[Any, Any], Any], items: list) -> list:
    """`function(source, item)` of each item on the source `reopen()` opens (in a worker)."""
    with reopen() as source:
        return [function(source, item) for item in items]


def predict_on_cluster(
    scheduler: str | None,
    workers: int | None,
    output: str | os.PathLike,
    confidence: str | os.PathLike | None = None,
    progress: Progress | None = None,
    **arguments: Any,
) -> dict[str, Any]:
    """`predict_raster`'s map made on a Dask cluster: row bands of whole blocks predicted by the
    workers into part files, then assembled into `output` and its confidence GeoTIFF."""
    from .outputs import check_writable, scratch_folder
    from .predict import predict_raster
    from .steps.modelling import default_confidence

    progress = progress or Progress()
    output = check_writable(output)
    confidence_path = check_writable(
        Path(confidence) if confidence else default_confidence(output), "confidence"
    )
    with cluster_client(scheduler, workers) as client, scratch_folder(output) as parts:
        n = PARTS_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
        run = uuid.uuid4().hex
        futures = [
            client.submit(
                predict_raster,
                output=parts / f"{k}.tif",
                confidence=parts / f"{k}_confidence.tif",
                part=(k, n),
                key=f"lcz-predict-{run}-{k}",
                **arguments,
            )
            for k in range(n)
        ]
        done = run_tasks(client, futures, SubProgress(progress, 0, 90), "row bands done:")
        written = [(Path(r["output"]), Path(r["confidence"])) for r in done if r["output"]]
        result = _assemble(
            written, output, confidence_path, str(arguments["embeddings"]),
            SubProgress(progress, 90, 100),
        )  # fmt: skip
    progress.report(100, "done")
    return result


def _assemble(
    parts: list[tuple[Path, Path]], output: Path, confidence: Path, name: str, progress: Progress
) -> dict[str, Any]:
    """Write the LCZ map and its confidence from their row bands (top to bottom)."""
    import rasterio
    from rasterio.windows import Window

    from .lcz import CLASS_BY_CODE
    from .outputs import LczRasterWriter, atomic_path
    from .predict import check_mapped, open_confidence

    with contextlib.ExitStack() as stack:
        bands = [
            (stack.enter_context(rasterio.open(codes)), stack.enter_context(rasterio.open(conf)))
            for codes, conf in parts
        ]
        first = bands[0][0]
        width, height = first.width, sum(codes.height for codes, _ in bands)
        grid = {"crs": first.crs, "transform": first.transform, "width": width, "height": height}
        writer = stack.enter_context(LczRasterWriter(output, **grid))
        tmp = stack.enter_context(atomic_path(confidence, "confidence"))
        conf_out = stack.enter_context(open_confidence(tmp, **grid))
        top = 0
        for done, (codes, conf) in enumerate(bands):
            progress.report(100.0 * done / len(bands), "assembling the map")
            for row in range(0, codes.height, ROWS_PER_WRITE):
                part = Window(0, row, width, min(ROWS_PER_WRITE, codes.height - row))
                window = Window(0, top + row, width, part.height)
                writer.write(codes.read(1, window=part), window=window)
                conf_out.write(conf.read(1, window=part), 1, window=window)
            top += codes.height
        check_mapped(writer, name)
        counts = {CLASS_BY_CODE[c].short: int(writer.counts[c]) for c in writer.codes_present}
        nodata = int(writer.counts[0])
    return {
        "output": str(output),
        "confidence": str(confidence),
        "width": width,
        "height": height,
        "pixel_size": float(first.res[0]),
        "class_counts": counts,
        "nodata_pixels": nodata,
    }


def read_cities_on_cluster(
    client: Any,
    cities: Sequence[tuple[Any, Any]],
    size: int,
    max_missing: float,
    batch_size: int,
    output: str | os.PathLike,
    progress: Progress,
) -> Iterator[tuple[str, int, Batch]]:
    """(city name, samples read, batch) as sampling's single-process reading yields them, the
    windows read by the cluster's workers: a task per city, or per BATCHES_PER_PART batches of a
    large one, into part files beside `output` that are read back in order."""
    from .outputs import scratch_folder

    lacking = [city.name for city, _ in cities if city.reopen is None]
    if lacking:
        raise ValueError(f"cities {', '.join(lacking)} lack reopen: no worker can open them")
    step = batch_size * BATCHES_PER_PART  # whole batches: the batches of a single run
    tasks = [(i, s) for i, (_, cand) in enumerate(cities) for s in range(0, len(cand.y), step)]
    with scratch_folder(output) as parts:
        run = uuid.uuid4().hex
        futures = [
            client.submit(
                _read_part,
                cities[i][0].reopen,
                cities[i][1].take(slice(s, s + step)),
                i,
                size,
                max_missing,
                batch_size,
                parts / f"{i}-{s}",
                key=f"lcz-sample-{run}-{i}-{s}",
            )
            for i, s in tasks
        ]
        done = run_tasks(client, futures, progress, "windows read:")
        for (i, _), (files, counts) in zip(tasks, done, strict=True):
            source = cities[i][0].source  # counts what the workers' copies read, as if it had
            for name, n in counts.items():
                setattr(source, name, getattr(source, name) + n)
            for path, read in files:
                with np.load(path) as part:
                    batch = Batch(**{name: part[name] for name in part.files})
                yield cities[i][0].name, read, batch


def _read_part(
    reopen: Any,
    cand: Any,
    index: int,
    size: int,
    max_missing: float,
    batch_size: int,
    folder: Path,
) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Read samples of a city into .npz files in `folder`, one per batch (in a worker): their
    paths and the samples read for each, and the pixels the source counted."""
    from .sampling import read_city

    folder.mkdir()
    written = []
    with reopen() as source:
        batches = read_city(source, cand, index, size, max_missing, batch_size)
        for k, (read, batch) in enumerate(batches):
            np.savez(folder / f"{k}.npz", **asdict(batch))
            written.append((str(folder / f"{k}.npz"), read))
        return written, {name: getattr(source, name) for name in SOURCE_COUNTS}
