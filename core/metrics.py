"""Accuracy measures of LCZ maps (Bechtel et al. 2017, Demuzere et al. 2021), their spatial block
bootstrap intervals, and confusion and bootstrap plots.

Confusion matrices here have the reference classes as rows and the predicted classes as columns,
over the 17 LCZ codes in order (row/column i = LCZ i + 1); label 0 (nodata) is never counted.
Measures (MEASURE_DEFINITIONS): OA, Cohen's kappa, OA_u (built classes only), OA_bu (built versus
natural, E left out), OA_w (LCZ similarity weights), macro F1 and per-class PA/UA/F1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .lcz import BUILT_CODES, CLASS_BY_CODE, CODES, LCZ_CLASSES, NUM_CLASSES

# LCZ similarity weights for the weighted overall accuracy OA_w, cell by cell as published in
# tables/LCZ_metric.csv of the LCZ Generator authors' public code (github.com/matthiasdemuzere/
# multitemporal-lcz-mapping, read by its create_plots.py), after Bechtel, B. et al. (2017)
# Urban Science 1(2):15 and Bechtel, B. et al. (2020) Remote Sensing 12(11):1769; the LCZ
# Generator: Demuzere, M., Kittner, J., Bechtel, B. (2021) Frontiers in Environmental Science
# 9:637455. The values are twelfths printed to two decimals (0.92 = 11/12) and kept as printed,
# so that OA_w matches the published figures. Rows: reference, columns: predicted, LCZ 1-10, A-G.
_W = """
1.00 0.92 0.83 0.67 0.58 0.50 0.58 0.75 0.42 0.75 0.33 0.25 0.08 0.00 0.25 0.00 0.00
0.92 1.00 0.92 0.58 0.67 0.58 0.67 0.83 0.42 0.83 0.42 0.33 0.25 0.08 0.33 0.08 0.08
0.83 0.92 1.00 0.50 0.58 0.67 0.75 0.92 0.58 0.92 0.50 0.42 0.33 0.17 0.42 0.17 0.17
0.67 0.58 0.50 1.00 0.92 0.83 0.75 0.50 0.75 0.58 0.50 0.58 0.50 0.33 0.08 0.33 0.33
0.58 0.67 0.58 0.92 1.00 0.92 0.83 0.67 0.83 0.67 0.58 0.67 0.50 0.42 0.17 0.42 0.42
0.50 0.58 0.67 0.83 0.92 1.00 0.92 0.75 0.92 0.75 0.67 0.75 0.67 0.58 0.25 0.50 0.50
0.58 0.67 0.75 0.75 0.83 0.92 1.00 0.67 0.83 0.67 0.75 0.67 0.58 0.42 0.17 0.42 0.42
0.75 0.83 0.92 0.50 0.67 0.75 0.67 1.00 0.75 0.92 0.42 0.50 0.42 0.25 0.50 0.33 0.33
0.42 0.42 0.58 0.75 0.83 0.92 0.83 0.75 1.00 0.67 0.58 0.67 0.75 0.58 0.33 0.58 0.58
0.75 0.83 0.92 0.58 0.67 0.75 0.67 0.92 0.67 1.00 0.42 0.50 0.42 0.25 0.50 0.33 0.33
0.33 0.42 0.50 0.50 0.58 0.67 0.75 0.42 0.58 0.42 1.00 0.92 0.83 0.67 0.42 0.67 0.67
0.25 0.33 0.42 0.58 0.67 0.75 0.67 0.50 0.67 0.50 0.92 1.00 0.92 0.75 0.50 0.75 0.75
0.08 0.25 0.33 0.50 0.50 0.67 0.58 0.42 0.75 0.42 0.83 0.92 1.00 0.83 0.58 0.83 0.83
0.00 0.08 0.17 0.33 0.42 0.58 0.42 0.25 0.58 0.25 0.67 0.75 0.83 1.00 0.75 0.92 0.92
0.25 0.33 0.42 0.08 0.17 0.25 0.17 0.50 0.33 0.50 0.42 0.50 0.58 0.75 1.00 0.75 0.75
0.00 0.08 0.17 0.33 0.42 0.50 0.42 0.33 0.58 0.33 0.67 0.75 0.83 0.92 0.75 1.00 0.92
0.00 0.08 0.17 0.33 0.42 0.50 0.42 0.33 0.58 0.33 0.67 0.75 0.83 0.92 0.75 0.92 1.00
"""
LCZ_SIMILARITY_WEIGHTS: np.ndarray = np.array(
    [[float(v) for v in line.split()] for line in _W.strip().splitlines()]
)
LCZ_SIMILARITY_WEIGHTS.flags.writeable = False

# the scalar measures, in report order, with the definitions printed beside them in reports
MEASURES: tuple[str, ...] = ("oa", "kappa", "oa_u", "oa_bu", "oa_w", "macro_f1")
SUMMARY_KEYS: tuple[str, ...] = ("n", *MEASURES)
MEASURE_LABELS: dict[str, str] = {
    "oa": "OA",
    "kappa": "kappa",
    "oa_u": "OA_u",
    "oa_bu": "OA_bu",
    "oa_w": "OA_w",
    "macro_f1": "macro F1",
}
MEASURE_DEFINITIONS: dict[str, str] = {
    "oa": "overall accuracy: share of samples whose predicted class is the reference class",
    "kappa": "Cohen's kappa: (OA - p_e) / (1 - p_e), p_e the agreement expected by chance from "
    "the reference and predicted class totals",
    "oa_u": "OA of the urban classes: agreement within LCZ 1-10 over the samples that are built "
    "(1-10) in both reference and prediction",
    "oa_bu": "built versus natural OA: agreement on built (LCZ 1-10) against natural (A, B, C, D, "
    "F, G), over the samples whose reference and prediction are both not E (bare rock or "
    "paved), which belongs to neither",
    "oa_w": "weighted OA: sum of w_ij c_ij / N with the LCZ similarity weights w (twelfths; "
    "LCZ Generator table, after Bechtel et al. 2017, 2020): partial credit for similar classes",
    "macro_f1": "mean F1 (2 PA UA / (PA + UA)) of the classes present in the reference or the "
    "prediction",
}

_BUILT = np.isin(CODES, BUILT_CODES)
_E = np.array([c.short == "E" for c in LCZ_CLASSES])  # bare rock or paved: not in OA_bu
_NATURAL = ~_BUILT & ~_E


def _pairs(reference: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mask of labelled pairs (no 0) and their flat cell index (row * 17 + col)."""
    if reference.shape != predicted.shape:
        raise ValueError(f"{reference.size} reference labels but {predicted.size} predictions")
    keep = (reference > 0) & (predicted > 0)
    if np.any(reference[keep] > NUM_CLASSES) or np.any(predicted[keep] > NUM_CLASSES):
        raise ValueError(f"LCZ codes must be 1-{NUM_CLASSES} (0 = nodata)")
    return keep, (reference[keep] - 1) * NUM_CLASSES + (predicted[keep] - 1)


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """17 x 17 counts (rows: reference LCZ 1-17, columns: predicted); pairs with a 0 are skipped."""
    _, cells = _pairs(
        np.asarray(reference, dtype=np.int64).ravel(), np.asarray(predicted, dtype=np.int64).ravel()
    )
    return np.bincount(cells, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def block_confusions(
    reference: np.ndarray, predicted: np.ndarray, blocks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(block ids, B x 17 x 17 counts) of the blocks holding a labelled pair.

    `blocks` gives one id per label, or one per sample (first axis) for samples of many labels
    (tiles); ids may be any sortable values, e.g. a block's row * columns + column.
    """
    reference = np.asarray(reference, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    blocks = np.asarray(blocks)
    if blocks.shape != reference.shape:
        if blocks.shape != reference.shape[:1]:
            raise ValueError(f"block ids of shape {blocks.shape} for labels {reference.shape}")
        blocks = np.broadcast_to(blocks.reshape(-1, *[1] * (reference.ndim - 1)), reference.shape)
    keep, cells = _pairs(reference.ravel(), predicted.ravel())
    ids, index = np.unique(blocks.ravel()[keep], return_inverse=True)
    counts = np.bincount(index * NUM_CLASSES**2 + cells, minlength=ids.size * NUM_CLASSES**2)
    return ids, counts.reshape(ids.size, NUM_CLASSES, NUM_CLASSES)


def _measures(c: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """The measures of confusion matrices (..., 17, 17); NaN where a denominator is empty."""
    n = c.sum(axis=(-2, -1))
    rows, cols = c.sum(axis=-1), c.sum(axis=-2)
    diag = np.diagonal(c, axis1=-2, axis2=-1)
    built = c[..., _BUILT, :][..., _BUILT]
    natural = c[..., _NATURAL, :][..., _NATURAL]
    present = rows + cols > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        oa = diag.sum(axis=-1) / n
        expected = (rows * cols).sum(axis=-1) / (n * n)
        f1 = 2 * diag / (rows + cols)
        return {
            "oa": oa,
            "kappa": np.where(expected == 1.0, 1.0, (oa - expected) / (1.0 - expected)),
            "oa_u": np.trace(built, axis1=-2, axis2=-1) / built.sum(axis=(-2, -1)),
            "oa_bu": (built.sum(axis=(-2, -1)) + natural.sum(axis=(-2, -1)))
            / c[..., ~_E, :][..., ~_E].sum(axis=(-2, -1)),
            "oa_w": (w * c).sum(axis=(-2, -1)) / n,
            "macro_f1": np.where(present, f1, 0.0).sum(axis=-1) / present.sum(axis=-1),
            "f1": f1,
        }


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def lcz_metrics(confusion: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """OA, kappa, OA_u, OA_bu, OA_w, macro F1 and per-class PA/UA/F1 of a 17 x 17 confusion matrix.

    Ratios with an empty denominator are None (e.g. OA_u without built samples); definitions in
    MEASURE_DEFINITIONS.
    """
    c = np.asarray(confusion, dtype=np.float64)
    if c.shape != (NUM_CLASSES, NUM_CLASSES):
        raise ValueError(f"confusion matrix must be {NUM_CLASSES} x {NUM_CLASSES}, got {c.shape}")
    w = LCZ_SIMILARITY_WEIGHTS if weights is None else np.asarray(weights, dtype=np.float64)
    m = _measures(c, w)
    rows, cols, diag = c.sum(axis=1), c.sum(axis=0), np.diag(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        producer, user = diag / rows, diag / cols
    per_class = {
        code: {
            "name": CLASS_BY_CODE[code].label,
            "support": int(rows[i]),
            "predicted": int(cols[i]),
            "producer_accuracy": _value(producer[i]),
            "user_accuracy": _value(user[i]),
            "f1": _value(m["f1"][i]),
        }
        for i, code in enumerate(CODES)
        if rows[i] or cols[i]
    }
    return {
        "n": int(c.sum()),
        **{k: _value(m[k]) for k in MEASURES},
        "per_class": per_class,
    }


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar measures of a metrics dict (no per-class table)."""
    return {k: metrics[k] for k in SUMMARY_KEYS}


@dataclass(frozen=True)
class Bootstrap:
    """Measures over bootstrap draws of spatial blocks, and their percentile intervals."""

    draws: int
    seed: int
    level: float
    blocks: int
    values: dict[str, np.ndarray]  # measure -> (draws,), NaN where a draw leaves it undefined
    f1: dict[int, np.ndarray]  # class code -> (draws,), for the classes of the whole sample

    def interval(self, values: np.ndarray) -> list[float] | None:
        """The central `level` percentile interval of the draws where a measure is defined."""
        defined = values[~np.isnan(values)]
        if defined.size == 0:
            return None
        tail = (1.0 - self.level) / 2
        return [float(v) for v in np.quantile(defined, [tail, 1.0 - tail])]

    def intervals(self) -> dict[str, Any]:
        """{measure: [low, high]} and per_class_f1 {code: [low, high]}, as JSON-ready values."""
        return {
            **{k: self.interval(v) for k, v in self.values.items()},
            "per_class_f1": {str(code): self.interval(v) for code, v in self.f1.items()},
        }


def bootstrap_confusions(
    confusions: np.ndarray,
    draws: int = 1000,
    seed: int = 0,
    level: float = 0.9,
    weights: np.ndarray | None = None,
) -> Bootstrap:
    """Resample the blocks whose confusion matrices (B x 17 x 17) are given, with replacement.

    Each draw takes B blocks at random (a block can come more than once), sums their confusion
    matrices and computes the measures: a percentile bootstrap that keeps the samples of a block
    together, so spatially correlated errors widen the interval as they should.
    """
    c = np.asarray(confusions, dtype=np.float64)
    if c.ndim != 3 or c.shape[1:] != (NUM_CLASSES, NUM_CLASSES) or len(c) == 0:
        raise ValueError(f"need B x {NUM_CLASSES} x {NUM_CLASSES} block confusions, got {c.shape}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie between 0 and 1, got {level}")
    w = LCZ_SIMILARITY_WEIGHTS if weights is None else np.asarray(weights, dtype=np.float64)
    n_blocks = len(c)
    flat = c.reshape(n_blocks, -1)
    rng = np.random.default_rng(seed)
    chunk = max(1, 2**22 // n_blocks)  # draws per step: about 32 MB of block picks
    totals = np.empty((draws, flat.shape[1]))
    for start in range(0, draws, chunk):
        k = min(chunk, draws - start)
        picks = rng.integers(0, n_blocks, size=(k, n_blocks)) + n_blocks * np.arange(k)[:, None]
        times = np.bincount(picks.ravel(), minlength=k * n_blocks).reshape(k, n_blocks)
        totals[start : start + k] = times @ flat
    m = _measures(totals.reshape(draws, NUM_CLASSES, NUM_CLASSES), w)
    whole = c.sum(axis=0)
    present = (whole.sum(axis=0) + whole.sum(axis=1)) > 0
    return Bootstrap(
        draws=draws,
        seed=seed,
        level=level,
        blocks=n_blocks,
        values={k: m[k] for k in MEASURES},
        f1={code: m["f1"][:, i] for i, code in enumerate(CODES) if present[i]},
    )


def block_bootstrap(
    reference: np.ndarray,
    predicted: np.ndarray,
    blocks: np.ndarray,
    draws: int = 1000,
    seed: int = 0,
    level: float = 0.9,
    weights: np.ndarray | None = None,
) -> Bootstrap:
    """Spatial block bootstrap of the measures of labels and predictions grouped in `blocks`."""
    return bootstrap_confusions(
        block_confusions(reference, predicted, blocks)[1], draws, seed, level, weights
    )


def plot_confusion(
    confusion: np.ndarray, path: str | os.PathLike, title: str = "Confusion matrix"
) -> Path:
    """PNG of a confusion matrix (counts and row-normalised) over the classes present."""
    from .plot import new_figure, save_png

    c = np.asarray(confusion, dtype=np.int64)
    present = np.flatnonzero((c.sum(axis=0) + c.sum(axis=1)) > 0)
    sub = c[np.ix_(present, present)]
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = sub / sub.sum(axis=1, keepdims=True)
    labels = [CLASS_BY_CODE[CODES[i]].short for i in present]
    size = 2.5 + 0.45 * len(present)
    fig = new_figure(2 * size + 1.5, size)
    axes = fig.subplots(1, 2)
    for ax, values, name, fmt in (
        (axes[0], sub, "counts", "d"),
        (axes[1], normalised, "row-normalised (producer's accuracy)", ".2f"),
    ):
        image = ax.imshow(np.nan_to_num(values.astype(float)), cmap="Blues")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted LCZ")
        ax.set_ylabel("reference LCZ")
        ax.set_title(name)
        high = np.nanmax(values) if values.size else 0
        for (i, j), v in np.ndenumerate(values):
            if v > 0:
                ax.text(
                    j,
                    i,
                    format(v, fmt),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.6 * high else "black",
                )
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def plot_bootstrap(
    bootstrap: Bootstrap,
    metrics: dict[str, Any],
    path: str | os.PathLike,
    title: str = "Bootstrap of the accuracy measures",
) -> Path:
    """PNG of box plots of the bootstrap draws (measures and per-class F1), point values marked.

    Boxes span the quartiles and whiskers the `level` interval; a diamond marks the point value.
    """
    from matplotlib.colors import to_rgb

    from .plot import new_figure, save_png

    tail = 100 * (1 - bootstrap.level) / 2
    panels = [
        (
            [MEASURE_LABELS[k] for k in bootstrap.values],
            list(bootstrap.values.values()),
            [metrics[k] for k in bootstrap.values],
            ["#9ecae1"] * len(bootstrap.values),
            "measures",
        ),
        (
            [CLASS_BY_CODE[code].short for code in bootstrap.f1],
            list(bootstrap.f1.values()),
            [metrics["per_class"][code]["f1"] for code in bootstrap.f1],
            [CLASS_BY_CODE[code].color for code in bootstrap.f1],
            "F1 per class",
        ),
    ]
    fig = new_figure(4 + 0.45 * (len(bootstrap.values) + len(bootstrap.f1)), 4.2)
    axes = fig.subplots(
        1, 2, gridspec_kw={"width_ratios": [len(bootstrap.values), max(1, len(bootstrap.f1))]}
    )
    for ax, (labels, draws, points, colors, name) in zip(axes, panels, strict=True):
        positions = np.arange(1, len(labels) + 1)
        boxes = ax.boxplot(
            [d[~np.isnan(d)] for d in draws],
            positions=positions,
            whis=(tail, 100 - tail),
            showfliers=False,
            patch_artist=True,
            widths=0.6,
        )
        for box, median, color in zip(boxes["boxes"], boxes["medians"], colors, strict=True):
            box.set_facecolor(color)
            box.set_edgecolor("#333333")
            r, g, b = to_rgb(color)
            median.set_color("white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.45 else "#333333")
        shown = [(p, v) for p, v in zip(positions, points, strict=True) if v is not None]
        if shown:
            ax.scatter(
                *zip(*shown, strict=True),
                marker="D",
                s=26,
                color="#d62728",
                edgecolors="white",
                zorder=3,
            )
        ax.set_xticks(positions, labels)
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
        ax.grid(axis="y", color="#dddddd")
        ax.set_title(name)
    fig.suptitle(
        f"{title}\n{bootstrap.draws} draws of {bootstrap.blocks} blocks; whiskers: "
        f"{100 * bootstrap.level:g}% interval, diamond: point value",
        fontsize=10,
    )
    fig.tight_layout()
    return save_png(fig, path, dpi=110)
