"""LCZ accuracy measures against a confusion matrix worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lcz_core.metrics import LCZ_SIMILARITY_WEIGHTS, confusion_matrix, lcz_metrics, plot_confusion

W = LCZ_SIMILARITY_WEIGHTS

# (reference, predicted, count): LCZ 2, 6 (built) and 11 (A), 14 (D) (natural); 16 samples.
PAIRS = [
    (2, 2, 4),
    (2, 6, 1),
    (6, 6, 3),
    (6, 2, 1),
    (6, 14, 1),
    (11, 11, 2),
    (14, 14, 3),
    (14, 11, 1),
]


def _labels() -> tuple[np.ndarray, np.ndarray]:
    reference = np.concatenate([np.full(n, r) for r, _, n in PAIRS] + [np.array([0, 5])])
    predicted = np.concatenate([np.full(n, p) for _, p, n in PAIRS] + [np.array([3, 0])])
    return reference, predicted  # the last two pairs hold a 0 (nodata) and are skipped


def test_confusion_matrix_counts_pairs_and_skips_nodata():
    c = confusion_matrix(*_labels())
    assert c.shape == (17, 17)
    assert c.sum() == 16
    assert c[1, 1] == 4 and c[1, 5] == 1 and c[5, 1] == 1 and c[5, 13] == 1 and c[13, 10] == 1
    with pytest.raises(ValueError, match="1-17"):
        confusion_matrix(np.array([18]), np.array([1]))


def test_metrics_of_the_worked_example():
    m = lcz_metrics(confusion_matrix(*_labels()))
    assert m["n"] == 16
    assert m["oa"] == pytest.approx(12 / 16)
    # expected agreement: (5*5 + 5*4 + 2*3 + 4*4) / 16^2 = 67/256
    assert m["kappa"] == pytest.approx((12 / 16 - 67 / 256) / (1 - 67 / 256))
    assert m["kappa"] == pytest.approx(125 / 189)
    # built block [[4, 1], [1, 3]]
    assert m["oa_u"] == pytest.approx(7 / 9)
    # built-built 9, natural-natural 6, one built (6) mapped natural (14)
    assert m["oa_bu"] == pytest.approx(15 / 16)
    w = W[1, 5] + W[5, 1] + W[5, 13] + W[13, 10]
    assert m["oa_w"] == pytest.approx((12 + w) / 16)
    pc = m["per_class"]
    assert set(pc) == {2, 6, 11, 14}
    assert pc[6]["producer_accuracy"] == pytest.approx(3 / 5)
    assert pc[6]["user_accuracy"] == pytest.approx(3 / 4)
    assert pc[6]["f1"] == pytest.approx(6 / 9)
    assert pc[11]["producer_accuracy"] == 1.0 and pc[11]["user_accuracy"] == pytest.approx(2 / 3)
    assert pc[14]["support"] == 4 and pc[14]["predicted"] == 4
    assert m["macro_f1"] == pytest.approx((0.8 + 6 / 9 + 0.8 + 0.75) / 4)


def test_weighted_accuracy_gives_partial_credit_only_to_similar_classes():
    m = lcz_metrics(confusion_matrix(*_labels()))
    assert m["oa"] < m["oa_w"] < 1
    # with the identity as weights, OA_w is plain OA
    assert lcz_metrics(confusion_matrix(*_labels()), weights=np.eye(17))["oa_w"] == m["oa"]
    # compact mid-rise taken for compact high-rise earns more than for water
    one = lcz_metrics(confusion_matrix(np.array([2]), np.array([1])))["oa_w"]
    water = lcz_metrics(confusion_matrix(np.array([2]), np.array([17])))["oa_w"]
    assert one == W[1, 0] > 0.5 and water == 0.0


def test_similarity_weight_matrix_shape():
    assert W.shape == (17, 17)
    assert np.array_equal(W, W.T)
    assert np.all(np.diag(W) == 1) and np.all((W >= 0) & (W <= 1))
    off = W[~np.eye(17, dtype=bool)]
    assert np.all(off < 1)
    assert np.all(W[16, :16] == 0)  # water is like nothing else
    assert not W.flags.writeable


def test_empty_denominators_are_none():
    m = lcz_metrics(confusion_matrix(np.array([11, 12]), np.array([11, 11])))
    assert m["oa_u"] is None  # no built samples
    assert m["oa"] == 0.5 and m["oa_bu"] == 1.0
    assert m["per_class"][12]["user_accuracy"] is None
    assert lcz_metrics(np.zeros((17, 17)))["oa"] is None


def test_perfect_map_scores_one_everywhere():
    codes = np.arange(1, 18).repeat(3)
    m = lcz_metrics(confusion_matrix(codes, codes))
    assert m["oa"] == m["kappa"] == m["oa_u"] == m["oa_bu"] == m["oa_w"] == m["macro_f1"] == 1.0


def test_plot_confusion_writes_a_png(tmp_path):
    path = plot_confusion(confusion_matrix(*_labels()), tmp_path / "confusion.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*partial*"))
