"""Evaluating a model on datasets: metrics overall and per city, confusion plots, an HTML report.

The same call covers the three cases of an LCZ study: the test split of the training data, a city
the model never saw (cross-city transfer: give that city's dataset and split "all"), and several
cities at once (one row per city, each marked as seen in training or not).

Every measure comes with a 90% interval from a spatial block bootstrap: the samples are grouped
in squares of `block_cells` x `block_cells` cells of their city's grid (the split's block size,
from the dataset manifest), and whole blocks are resampled, so that neighbouring samples, whose
errors go together, are never counted as independent evidence.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from . import checks, html_table
from .choices import EVALUATION_SPLITS
from .datasets import SPLIT_CODES, PatchDataset, open_dataset
from .errors import LczError
from .lcz import CLASS_BY_CODE, code_from_text
from .metrics import (
    MEASURE_DEFINITIONS,
    MEASURE_LABELS,
    MEASURES,
    Bootstrap,
    block_confusions,
    bootstrap_confusions,
    lcz_metrics,
    plot_bootstrap,
    plot_confusion,
    summary,
)
from .models import LczModel, load_model, pick_device, torch_threads
from .outputs import atomic_folder, write_text_atomic
from .progress import Progress, SubProgress

INTERVAL_LEVEL = 0.9
FEW_BLOCKS = 10  # below this many blocks a block bootstrap understates the uncertainty
MAX_BOOTSTRAP_DRAWS = 100_000


def sample_blocks(ds: PatchDataset) -> tuple[np.ndarray, int]:
    """Spatial block (0..B-1) of every sample, and the block side in grid cells.

    A block is `block_cells` x `block_cells` cells of the sample's city grid, counted from the
    grid's upper-left corner as the split's blocks are. Datasets that do not record their grids
    (written before city_grids) get blocks of the same size counted from the CRS origin.
    """
    cities = len(ds.manifest["cities"])
    # the block size each city's split used (chosen per city when block_cells was 0); random
    # and polygon splits record none: their samples are resampled cell by cell
    used = ds.manifest.get("block_cells_used") or [ds.manifest.get("block_cells") or 4] * cities
    sizes = np.asarray([k or 1 for k in used], dtype=np.int64)
    cell = float(ds.manifest["patch_size"]) * float(ds.manifest["pixel_size"])
    grids = ds.manifest.get("city_grids") or [[0.0, 0.0, cell]] * cities
    city = ds.city[:].astype(np.int64)
    left, top, side = np.asarray(grids, dtype=np.float64)[city].T
    k = sizes[city]
    shift = np.asarray(ds.manifest.get("block_shifts") or [[0, 0]] * cities, dtype=np.int64)[city]
    row = (np.floor((top - ds.centre_y[:]) / side).astype(np.int64) + shift[:, 0]) // k
    col = (np.floor((ds.centre_x[:] - left) / side).astype(np.int64) + shift[:, 1]) // k
    _, blocks = np.unique(np.stack([city, row, col], axis=1), axis=0, return_inverse=True)
    k = int(sizes.max())
    return blocks.ravel(), k


def _predict_dataset(
    model: LczModel,
    folder: str | os.PathLike,
    split: str,
    cities: list[str] | None,
    batch_size: int,
    device,
    progress: Progress,
) -> tuple[dict[tuple[str, int], np.ndarray], int]:
    """Confusion matrices of a model on a dataset's chosen samples by (city, spatial block), and
    the block side in cells."""
    ds = open_dataset(folder)
    meta = model.metadata
    expected_kind = "patches" if meta["task"] == "patch" else "tiles"
    if ds.kind != expected_kind:
        raise LczError("dataset", f"{ds.folder} holds {ds.kind}; this model reads {expected_kind}")
    if int(ds.manifest["band_count"]) != int(meta["band_count"]):
        raise LczError(
            "dataset",
            f"the model was trained on {meta['band_count']} bands of '{meta['embedding_source']}'"
            f" but {ds.folder} has {ds.manifest['band_count']} bands of "
            f"'{ds.manifest['embedding_source']}'; evaluate on data from the same source",
        )
    trained_on, holds = meta.get("feature_space", ""), ds.manifest.get("feature_space", "")
    if trained_on and holds and trained_on != holds:
        raise LczError(
            "dataset",
            f"the model was trained on {trained_on} embeddings but {ds.folder} holds {holds} ones; "
            "evaluate on data of the same feature space",
        )
    names = ds.manifest["cities"]
    unknown = sorted(set(cities or []) - set(names))
    if unknown:
        raise LczError(
            "cities", f"{', '.join(unknown)} not in {ds.folder} (it holds {', '.join(names)})"
        )
    wanted = np.ones(len(ds), bool) if split == "all" else ds.split[:] == SPLIT_CODES[split]
    city = ds.city[:]
    if cities:
        wanted &= np.isin(city, [names.index(c) for c in cities])
    blocks, block_cells = sample_blocks(ds)
    block_city = np.zeros(blocks.max(initial=-1) + 1, np.int64)
    block_city[blocks] = city
    confusions: dict[tuple[str, int], np.ndarray] = {}
    chunk = ds.block * max(1, batch_size // ds.block)
    starts = [s for s in range(0, len(ds), chunk) if wanted[s : s + chunk].any()]
    for done, start in enumerate(starts):
        progress.report(
            100.0 * done / len(starts), f"{ds.folder.name}: block {done + 1}/{len(starts)}"
        )
        chosen = np.flatnonzero(wanted[start : start + chunk])
        x = np.asarray(ds.x[start : start + chunk])[chosen]
        y = np.asarray(ds.y[start : start + chunk])[chosen]
        codes, _ = model.predict(x, batch_size, device)
        for block, c in zip(*block_confusions(y, codes, blocks[start + chosen]), strict=True):
            key = (names[int(block_city[block])], int(block))
            confusions[key] = confusions.get(key, 0) + c
    return confusions, block_cells


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "city"


def evaluate_model(
    model: str | os.PathLike,
    datasets: list[str | os.PathLike],
    output: str | os.PathLike,
    split: str = "test",
    cities: list[str] | None = None,
    batch_size: int = 256,
    device: str = "auto",
    threads: int = 0,
    bootstrap_draws: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a model file on datasets; write metrics.json, confusion PNGs and report.html.

    With `bootstrap_draws` > 0 every measure gets a 90% interval from that many draws of a
    spatial block bootstrap (seeded by `seed`), drawn as box plots in bootstrap.png.
    """
    progress = progress or Progress()
    if split not in EVALUATION_SPLITS:
        raise LczError(
            "split", f"unknown split {split!r}; use one of {', '.join(EVALUATION_SPLITS)}"
        )
    if not datasets:
        raise LczError("dataset", "give at least one dataset folder")
    if not 0 <= bootstrap_draws <= MAX_BOOTSTRAP_DRAWS:
        raise LczError(
            "bootstrap_draws",
            f"{bootstrap_draws} draws; give 0 (no intervals) to {MAX_BOOTSTRAP_DRAWS} "
            "(1000 is plenty for 90% intervals)",
        )
    checks.integer(threads, "threads", "threads", 0)
    loaded = load_model(model)
    run_on = pick_device(device)
    loaded.network.to(run_on)
    folder = Path(output)
    if not folder.parent.is_dir():
        raise LczError("output", f"folder {folder.parent} does not exist; create it first")

    blocks: dict[tuple[int, str, int], np.ndarray] = {}
    block_cells = []
    with torch_threads(threads):
        for i, dataset in enumerate(datasets):
            sub = SubProgress(progress, 90.0 * i / len(datasets), 90.0 * (i + 1) / len(datasets))
            found, cells = _predict_dataset(loaded, dataset, split, cities, batch_size, run_on, sub)
            blocks.update({(i, name, block): c for (name, block), c in found.items()})
            block_cells.append(cells)
    per_city: dict[str, np.ndarray] = {}
    for (_, name, _), c in blocks.items():
        per_city[name] = per_city.get(name, 0) + c
    if not per_city:
        raise LczError("split", f"no samples in split {split!r} of the given datasets and cities")
    progress.report(92, "metrics, bootstrap and plots")
    total = sum(per_city.values())
    metrics = lcz_metrics(total)
    trained_on = set(loaded.metadata.get("training_cities", []))
    class_counts = loaded.metadata.get("class_counts") or {}
    # keyed by LCZ label (older models: by code); the code of the most frequent class
    majority = code_from_text(max(class_counts, key=class_counts.get)) if class_counts else None
    baseline = float(total[majority - 1].sum() / total.sum()) if majority and total.sum() else None
    cities_out = {
        name: {**summary(lcz_metrics(c)), "seen_in_training": name in trained_on}
        for name, c in sorted(per_city.items())
    }

    def bootstrap(keys: list) -> Bootstrap | None:
        if not bootstrap_draws:
            return None
        stack = np.stack([blocks[k] for k in keys])
        return bootstrap_confusions(stack, bootstrap_draws, seed, INTERVAL_LEVEL)

    overall = bootstrap(list(blocks))
    if overall and len(blocks) < FEW_BLOCKS:
        progress.log(
            f"only {len(blocks)} spatial blocks hold samples: the intervals understate the "
            "uncertainty; evaluate on more blocks (a larger test split or more cities)"
        )
    city_intervals = {
        name: (b.intervals() if (b := bootstrap([k for k in blocks if k[1] == name])) else None)
        for name in cities_out
    }
    names = {"metrics_json": "metrics.json", "confusion_png": "confusion.png"}
    if overall:
        names["bootstrap_png"] = "bootstrap.png"
    city_names = (
        {name: f"confusion_{_slug(name)}.png" for name in per_city} if len(per_city) > 1 else {}
    )
    names["report"] = "report.html"  # last: it names the others
    paths = {key: folder / name for key, name in names.items()}
    city_plots = {name: folder / file for name, file in city_names.items()}
    intervals = overall.intervals() if overall else None
    record = {
        "model": str(model),
        "datasets": [str(d) for d in datasets],
        "split": split,
        "metrics": metrics,
        "intervals": intervals,
        "bootstrap": {
            "draws": bootstrap_draws,
            "seed": seed,
            "level": INTERVAL_LEVEL,
            "blocks": len(blocks),
            "block_cells": block_cells,
            "method": "percentile intervals of the measures over draws of the spatial blocks "
            "(block_cells x block_cells grid cells of a city), resampled with replacement",
        },
        "definitions": MEASURE_DEFINITIONS,
        "majority_class": majority,
        "majority_baseline_oa": baseline,
        "per_city": {
            name: {**v, "intervals": city_intervals[name]} for name, v in cities_out.items()
        },
        "confusion_matrix": total.tolist(),
    }
    title = f"{split} split: {', '.join(sorted(per_city))}"
    # built aside: a failure leaves nothing, and only these files of an earlier report change
    with atomic_folder(folder, [*city_names.values(), *names.values()]) as tmp:
        plot_confusion(total, tmp / names["confusion_png"], title)
        if overall:
            plot_bootstrap(overall, metrics, tmp / names["bootstrap_png"], title)
        for name, c in per_city.items():
            if name in city_names:
                plot_confusion(c, tmp / city_names[name], name)
        write_text_atomic(tmp / names["metrics_json"], json.dumps(record, indent=2))
        report = report_html(loaded.metadata, record, paths, city_plots)
        write_text_atomic(tmp / names["report"], report)
    progress.report(100, "done")
    return {
        **{k: str(v) for k, v in paths.items()},
        "metrics": summary(metrics),
        "intervals": intervals,
        "majority_baseline_oa": baseline,
        "per_city": cities_out,
    }


def _interval(bounds: list[float] | None) -> str:
    return "&ndash;" if bounds is None else f"{bounds[0]:.3f}&ndash;{bounds[1]:.3f}"


def _with_interval(value: Any, intervals: dict | None, key: str) -> str:
    """A value with its interval below it, small."""
    if not intervals:
        return html_table.cell(value)
    return f"{html_table.cell(value)}<br><small>{_interval(intervals.get(key))}</small>"


def report_html(
    metadata: dict[str, Any], record: dict[str, Any], paths: dict[str, Path], city_plots: dict
) -> str:
    """A self-describing HTML page of an evaluation (images referenced beside it)."""
    m, intervals, boot = record["metrics"], record["intervals"], record["bootstrap"]
    level = f"{100 * boot['level']:g}%"
    overall = html_table.table(
        ["measure", "value", f"{level} interval", "definition"],
        [
            [
                "samples",
                html_table.cell(m["n"]),
                "",
                "reference samples with a prediction (pixels for tiles)",
            ]
        ]
        + [
            [
                MEASURE_LABELS[k],
                html_table.cell(m[k]),
                _interval(intervals[k]) if intervals else "&ndash;",
                html.escape(MEASURE_DEFINITIONS[k]),
            ]
            for k in MEASURES
        ]
        + [
            [
                "majority-class OA",
                html_table.cell(record["majority_baseline_oa"]),
                "",
                "OA of always answering the most frequent class of the training data",
            ]
        ],
    )
    labels = [MEASURE_LABELS[k] for k in MEASURES]
    cities = html_table.table(
        ["city", "in training", "samples", *labels],
        [
            [
                html_table.cell(name),
                "yes" if v["seen_in_training"] else "no (transfer)",
                html_table.cell(v["n"]),
            ]
            + [_with_interval(v[k], v["intervals"], k) for k in MEASURES]
            for name, v in record["per_city"].items()
        ],
    )
    f1_intervals = intervals["per_class_f1"] if intervals else {}
    classes = html_table.table(
        ["LCZ", "name", "reference", "predicted", "producer's acc.", "user's acc.", "F1"]
        + ([f"F1 {level} interval"] if intervals else []),
        [
            [
                f'<span class="swatch" style="background:{CLASS_BY_CODE[code].color}"></span>'
                f"{CLASS_BY_CODE[code].short}",
                html_table.cell(CLASS_BY_CODE[code].name),
                html_table.cell(c["support"]),
                html_table.cell(c["predicted"]),
                html_table.cell(c["producer_accuracy"]),
                html_table.cell(c["user_accuracy"]),
                html_table.cell(c["f1"]),
            ]
            + ([_interval(f1_intervals.get(str(code)))] if intervals else [])
            for code, c in m["per_class"].items()
        ],
    )
    if intervals:
        few = (
            f"""<p class="warning">Only {boot["blocks"]} blocks hold samples: with fewer than
{FEW_BLOCKS} the bootstrap has too few pieces to resample and its intervals understate the
uncertainty. Evaluate on more blocks (a larger test split, or more cities) before quoting
them.</p>"""
            if boot["blocks"] < FEW_BLOCKS
            else ""
        )
        sizes = " or ".join(f"{k} x {k}" for k in sorted(set(boot["block_cells"])))
        pixels = f"{metadata['patch_size']} x {metadata['patch_size']} pixels"
        uncertainty = f"""<p>Intervals: {level} percentile intervals over {boot["draws"]} draws
(seed {boot["seed"]}) of a spatial block bootstrap. The samples are grouped in blocks of {sizes}
grid cells of {pixels} in their city, the split's block size; {boot["blocks"]} blocks hold
samples here. Each draw takes as many blocks at random, with replacement, so that neighbouring
samples, whose errors go together, count as one piece of evidence: few blocks give wide
intervals. A class's F1 interval uses the draws that hold the class. Box plots: boxes span the
quartiles, whiskers the {level} interval, diamonds mark the values above.</p>{few}
<img src="{html.escape(paths["bootstrap_png"].name)}" alt="bootstrap box plots">"""
    else:
        uncertainty = "<p>No intervals: the bootstrap was switched off (bootstrap_draws 0).</p>"
    model_rows = [
        ["architecture", html_table.cell(f"{metadata['task']}: {metadata['architecture']}")],
        [
            "embeddings",
            html_table.cell(f"{metadata['embedding_source']} ({metadata['band_count']} bands)"),
        ],
        [
            "patch / pixel size",
            html_table.cell(f"{metadata['patch_size']} px / {metadata['pixel_size']}"),
        ],
        ["training cities", html_table.cell(", ".join(metadata.get("training_cities", [])))],
        ["best epoch", html_table.cell(metadata.get("epoch"))],
        ["model file", html_table.cell(record["model"])],
        ["datasets", html_table.cell(", ".join(record["datasets"]))],
        ["split", html_table.cell(record["split"])],
    ]
    images = f'<img src="{html.escape(paths["confusion_png"].name)}" alt="confusion matrix">'
    images += "".join(
        f'<h3>{html_table.cell(name)}</h3><img src="{html.escape(Path(p).name)}" alt="{html_table.cell(name)}">'
        for name, p in city_plots.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LCZ model evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #eee; }} td:first-child {{ text-align: left; }}
td:last-child:not(:only-child) {{ text-align: left; }}
small {{ color: #555; white-space: nowrap; }}
.swatch {{ display: inline-block; width: 1em; height: 1em; margin-right: 0.4em;
  vertical-align: middle; border: 1px solid #555; }}
img {{ max-width: 100%; }}
.warning {{ color: #a00000; }}
</style></head><body>
<h1>LCZ model evaluation</h1>
{html_table.table(["", ""], model_rows)}
<h2>Overall</h2>
{overall}
<p>Rows of the confusion matrix are the reference, columns the prediction. OA_w weights: the LCZ
similarity table of the LCZ Generator (Demuzere et al. 2021, Frontiers in Environmental Science
9:637455), after Bechtel et al. 2017 (Urban Science 1(2):15) and 2020 (Remote Sensing
12(11):1769), in lcz_core.metrics. OA_bu follows the published binary definition: both the built
and the natural block count as agreement (the LCZ Generator's code counts only the natural
diagonal, an indexing quirk); E is left out, as in that code.</p>
<h2>Uncertainty</h2>
{uncertainty}
<h2>Per city</h2>
{cities}
<h2>Per class</h2>
{classes}
<h2>Confusion matrices</h2>
{images}
</body></html>
"""
