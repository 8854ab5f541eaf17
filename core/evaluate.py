"""Evaluating a model on datasets: metrics overall and per city, confusion plots, an HTML report.

The same call covers the three cases of an LCZ study: the test split of the training data, a city
the model never saw (cross-city transfer: give that city's dataset and split "all"), and several
cities at once (one row per city, each marked as seen in training or not).
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import SPLIT_CODES, open_dataset
from .errors import LczError
from .lcz import CLASS_BY_CODE, code_from_text
from .metrics import confusion_matrix, lcz_metrics, plot_confusion
from .models import LczModel, load_model, pick_device
from .outputs import write_text_atomic
from .progress import Progress, SubProgress
from .train import summary

SPLITS = (*SPLIT_CODES, "all")


def _predict_dataset(
    model: LczModel,
    folder: str | os.PathLike,
    split: str,
    cities: list[str] | None,
    batch_size: int,
    device,
    progress: Progress,
) -> dict[str, np.ndarray]:
    """Confusion matrices per city of a model on one dataset's chosen samples."""
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
    confusions: dict[str, np.ndarray] = {}
    block = max(1, int(ds.x.chunks[0]))
    starts = [s for s in range(0, len(ds), block) if wanted[s : s + block].any()]
    for done, start in enumerate(starts):
        progress.report(
            100.0 * done / len(starts), f"{ds.folder.name}: block {done + 1}/{len(starts)}"
        )
        chosen = np.flatnonzero(wanted[start : start + block])
        x = np.asarray(ds.x[start : start + block])[chosen]
        y = np.asarray(ds.y[start : start + block])[chosen]
        codes, _ = model.predict(x, batch_size, device)
        for index in np.unique(city[start + chosen]):
            here = city[start + chosen] == index
            name = names[int(index)]
            confusions[name] = confusions.get(name, 0) + confusion_matrix(y[here], codes[here])
    return confusions


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
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a model file on datasets; write metrics.json, confusion PNGs and report.html."""
    progress = progress or Progress()
    if split not in SPLITS:
        raise LczError("split", f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not datasets:
        raise LczError("dataset", "give at least one dataset folder")
    loaded = load_model(model)
    run_on = pick_device(device)
    loaded.network.to(run_on)
    folder = Path(output)
    if not folder.parent.is_dir():
        raise LczError("output", f"folder {folder.parent} does not exist; create it first")
    folder.mkdir(exist_ok=True)

    per_city: dict[str, np.ndarray] = {}
    for i, dataset in enumerate(datasets):
        sub = SubProgress(progress, 90.0 * i / len(datasets), 90.0 * (i + 1) / len(datasets))
        found = _predict_dataset(loaded, dataset, split, cities, batch_size, run_on, sub)
        for name, c in found.items():
            per_city[name] = per_city.get(name, 0) + c
    if not per_city:
        raise LczError("split", f"no samples in split {split!r} of the given datasets and cities")
    progress.report(92, "metrics and plots")
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
    paths = {
        "metrics_json": folder / "metrics.json",
        "confusion_png": folder / "confusion.png",
        "report": folder / "report.html",
    }
    plot_confusion(total, paths["confusion_png"], f"{split} split: {', '.join(sorted(per_city))}")
    city_plots = {}
    if len(per_city) > 1:
        for name, c in per_city.items():
            city_plots[name] = plot_confusion(c, folder / f"confusion_{_slug(name)}.png", name)
    record = {
        "model": str(model),
        "datasets": [str(d) for d in datasets],
        "split": split,
        "metrics": metrics,
        "majority_class": majority,
        "majority_baseline_oa": baseline,
        "per_city": cities_out,
        "confusion_matrix": total.tolist(),
    }
    write_text_atomic(paths["metrics_json"], json.dumps(record, indent=2))
    write_text_atomic(
        paths["report"], report_html(loaded.metadata, record, paths["confusion_png"], city_plots)
    )
    progress.report(100, "done")
    return {
        **{k: str(v) for k, v in paths.items()},
        "metrics": summary(metrics),
        "majority_baseline_oa": baseline,
        "per_city": cities_out,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def report_html(
    metadata: dict[str, Any], record: dict[str, Any], confusion_png: Path, city_plots: dict
) -> str:
    """A self-describing HTML page of an evaluation (images referenced beside it)."""
    m = record["metrics"]
    keys = ("n", "oa", "kappa", "oa_u", "oa_bu", "oa_w", "macro_f1")
    overall = _table(
        ["samples", "OA", "kappa", "OA_u", "OA_bu", "OA_w", "macro F1", "majority-class OA"],
        [[_fmt(m[k]) for k in keys] + [_fmt(record["majority_baseline_oa"])]],
    )
    cities = _table(
        ["city", "in training", *("samples", "OA", "kappa", "OA_u", "OA_bu", "OA_w", "macro F1")],
        [
            [_fmt(name), "yes" if v["seen_in_training"] else "no (transfer)"]
            + [_fmt(v[k]) for k in keys]
            for name, v in record["per_city"].items()
        ],
    )
    classes = _table(
        ["LCZ", "name", "reference", "predicted", "producer's acc.", "user's acc.", "F1"],
        [
            [
                f'<span class="swatch" style="background:{CLASS_BY_CODE[code].color}"></span>'
                f"{CLASS_BY_CODE[code].short}",
                _fmt(CLASS_BY_CODE[code].name),
                _fmt(c["support"]),
                _fmt(c["predicted"]),
                _fmt(c["producer_accuracy"]),
                _fmt(c["user_accuracy"]),
                _fmt(c["f1"]),
            ]
            for code, c in m["per_class"].items()
        ],
    )
    model_rows = [
        ["architecture", _fmt(f"{metadata['task']}: {metadata['architecture']}")],
        ["embeddings", _fmt(f"{metadata['embedding_source']} ({metadata['band_count']} bands)")],
        ["patch / pixel size", _fmt(f"{metadata['patch_size']} px / {metadata['pixel_size']}")],
        ["training cities", _fmt(", ".join(metadata.get("training_cities", [])))],
        ["best epoch", _fmt(metadata.get("epoch"))],
        ["model file", _fmt(record["model"])],
        ["datasets", _fmt(", ".join(record["datasets"]))],
        ["split", _fmt(record["split"])],
    ]
    images = f'<img src="{html.escape(confusion_png.name)}" alt="confusion matrix">'
    images += "".join(
        f'<h3>{_fmt(name)}</h3><img src="{html.escape(Path(p).name)}" alt="{_fmt(name)}">'
        for name, p in city_plots.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LCZ model evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #eee; }} td:first-child {{ text-align: left; }}
.swatch {{ display: inline-block; width: 1em; height: 1em; margin-right: 0.4em;
  vertical-align: middle; border: 1px solid #555; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>LCZ model evaluation</h1>
{_table(["", ""], model_rows)}
<h2>Overall</h2>
{overall}
<p>OA: overall accuracy; OA_u: built classes 1-10 only; OA_bu: built vs natural; OA_w: weighted
by LCZ similarity (Bechtel et al. 2017, Urban Science 1(2):15; Bechtel et al. 2020, Remote
Sensing 12(11):1769; weights as written in lcz_core.metrics). Majority-class OA: always answering
the most frequent training class.</p>
<h2>Per city</h2>
{cities}
<h2>Per class</h2>
{classes}
<h2>Confusion matrices</h2>
{images}
</body></html>
"""
