"""Accuracy measures of LCZ maps (Bechtel et al. 2017, Demuzere et al. 2021) and confusion plots.

Confusion matrices here have the reference classes as rows and the predicted classes as columns,
over the 17 LCZ codes in order (row/column i = LCZ i + 1); label 0 (nodata) is never counted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .lcz import BUILT_CODES, CLASS_BY_CODE, CODES, NUM_CLASSES
from .outputs import atomic_path

# LCZ similarity weights for the weighted overall accuracy OA_w, after Bechtel, B.; Demuzere, M.;
# Sismanidis, P.; et al. (2017) "Quality of crowdsourced data on urban morphology - the human
# influence experiment (HUMINEX)", Urban Science 1(2):15, as used by Bechtel et al. (2020) Remote
# Sensing 12(11):1769 and the LCZ Generator (Demuzere et al. 2021). Rows/columns: LCZ 1-10, A-G.
# The values follow the published design (1 on the diagonal; partial credit, in steps of 1/11,
# between built types of similar height and density and between similar land-cover types; 0
# between unrelated types) but are not yet verified cell by cell against the published table:
# check them before quoting OA_w beside LCZ Generator figures. `lcz_metrics` takes another
# matrix through `weights`.
_W = """
1     .909  .818  .909  .818  .727  .545  .636  .545  .636  0     0     0     0     0     0     0
.909  1     .909  .818  .909  .818  .636  .727  .636  .727  0     0     0     0     0     0     0
.818  .909  1     .727  .818  .909  .727  .818  .727  .636  0     0     0     0     0     0     0
.909  .818  .727  1     .909  .818  .545  .636  .727  .545  0     0     0     0     0     0     0
.818  .909  .818  .909  1     .909  .636  .727  .818  .636  0     0     0     0     0     0     0
.727  .818  .909  .818  .909  1     .727  .818  .909  .545  0     0     0     0     0     0     0
.545  .636  .727  .545  .636  .727  1     .818  .727  .636  0     0     0     0     0     0     0
.636  .727  .818  .636  .727  .818  .818  1     .727  .909  0     0     0     0     .455  0     0
.545  .636  .727  .727  .818  .909  .727  .727  1     .545  .364  .545  .455  .455  0     0     0
.636  .727  .636  .545  .636  .545  .636  .909  .545  1     0     0     0     0     .455  .364  0
0     0     0     0     0     0     0     0     .364  0     1     .909  .727  .636  0     0     0
0     0     0     0     0     0     0     0     .545  0     .909  1     .909  .818  0     0     0
0     0     0     0     0     0     0     0     .455  0     .727  .909  1     .909  0     .727  0
0     0     0     0     0     0     0     0     .455  0     .636  .818  .909  1     0     .818  0
0     0     0     0     0     0     0     .455  0     .455  0     0     0     0     1     .818  0
0     0     0     0     0     0     0     0     0     .364  0     0     .727  .818  .818  1     0
0     0     0     0     0     0     0     0     0     0     0     0     0     0     0     0     1
"""
LCZ_SIMILARITY_WEIGHTS: np.ndarray = np.array(
    [[float(v) for v in line.split()] for line in _W.strip().splitlines()]
)
LCZ_SIMILARITY_WEIGHTS.flags.writeable = False


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """17 x 17 counts (rows: reference LCZ 1-17, columns: predicted); pairs with a 0 are skipped."""
    reference = np.asarray(reference, dtype=np.int64).ravel()
    predicted = np.asarray(predicted, dtype=np.int64).ravel()
    if reference.shape != predicted.shape:
        raise ValueError(f"{reference.size} reference labels but {predicted.size} predictions")
    keep = (reference > 0) & (predicted > 0)
    if np.any(reference[keep] > NUM_CLASSES) or np.any(predicted[keep] > NUM_CLASSES):
        raise ValueError(f"LCZ codes must be 1-{NUM_CLASSES} (0 = nodata)")
    pairs = (reference[keep] - 1) * NUM_CLASSES + (predicted[keep] - 1)
    counts = np.bincount(pairs, minlength=NUM_CLASSES * NUM_CLASSES)
    return counts.reshape(NUM_CLASSES, NUM_CLASSES)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def lcz_metrics(confusion: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """OA, kappa, OA_u, OA_bu, OA_w, macro F1 and per-class PA/UA/F1 of a 17 x 17 confusion matrix.

    Ratios with an empty denominator are None (e.g. OA_u without built reference samples). Macro
    F1 averages the classes present in the reference or the prediction.
    """
    c = np.asarray(confusion, dtype=np.float64)
    if c.shape != (NUM_CLASSES, NUM_CLASSES):
        raise ValueError(f"confusion matrix must be {NUM_CLASSES} x {NUM_CLASSES}, got {c.shape}")
    w = LCZ_SIMILARITY_WEIGHTS if weights is None else np.asarray(weights, dtype=np.float64)
    n = c.sum()
    rows, cols, diag = c.sum(axis=1), c.sum(axis=0), np.diag(c)
    oa = _ratio(diag.sum(), n)
    expected = _ratio((rows * cols).sum(), n * n)
    kappa = None
    if oa is not None and expected is not None:
        kappa = 1.0 if expected == 1.0 else (oa - expected) / (1.0 - expected)
    built = np.array([code in BUILT_CODES for code in CODES])
    c_u = c[np.ix_(built, built)]
    agree_bu = c[np.ix_(built, built)].sum() + c[np.ix_(~built, ~built)].sum()

    per_class: dict[int, dict] = {}
    f1s = []
    for i, code in enumerate(CODES):
        if rows[i] == 0 and cols[i] == 0:
            continue
        producer = _ratio(diag[i], rows[i])
        user = _ratio(diag[i], cols[i])
        f1 = _ratio(2 * diag[i], rows[i] + cols[i])
        f1s.append(f1)
        per_class[code] = {
            "name": CLASS_BY_CODE[code].label,
            "support": int(rows[i]),
            "predicted": int(cols[i]),
            "producer_accuracy": producer,
            "user_accuracy": user,
            "f1": f1,
        }
    return {
        "n": int(n),
        "oa": oa,
        "kappa": kappa,
        "oa_u": _ratio(np.trace(c_u), c_u.sum()),
        "oa_bu": _ratio(agree_bu, n),
        "oa_w": _ratio((w * c).sum(), n),
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "per_class": per_class,
    }


def plot_confusion(
    confusion: np.ndarray, path: str | os.PathLike, title: str = "Confusion matrix"
) -> Path:
    """PNG of a confusion matrix (counts and row-normalised) over the classes present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = np.asarray(confusion, dtype=np.int64)
    present = np.flatnonzero((c.sum(axis=0) + c.sum(axis=1)) > 0)
    sub = c[np.ix_(present, present)]
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = sub / sub.sum(axis=1, keepdims=True)
    labels = [CLASS_BY_CODE[CODES[i]].short for i in present]
    size = 2.5 + 0.45 * len(present)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size))
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
