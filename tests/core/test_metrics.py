"""LCZ accuracy measures against confusion matrices worked out by hand, and their block bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from lcz_core.metrics import (
    LCZ_SIMILARITY_WEIGHTS,
    MEASURES,
    block_bootstrap,
    block_confusions,
    bootstrap_confusions,
    confusion_matrix,
    lcz_metrics,
    plot_bootstrap,
    plot_confusion,
)

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
    # published weights: 2-6 and 6-2 0.58 (7/12), 6-D 0.58, D-A 0.67 (8/12)
    assert m["oa_w"] == pytest.approx((12 + 0.58 + 0.58 + 0.58 + 0.67) / 16)
    pc = m["per_class"]
    assert set(pc) == {2, 6, 11, 14}
    assert pc[6]["producer_accuracy"] == pytest.approx(3 / 5)
    assert pc[6]["user_accuracy"] == pytest.approx(3 / 4)
    assert pc[6]["f1"] == pytest.approx(6 / 9)
    assert pc[11]["producer_accuracy"] == 1.0 and pc[11]["user_accuracy"] == pytest.approx(2 / 3)
    assert pc[14]["support"] == 4 and pc[14]["predicted"] == 4
    assert m["macro_f1"] == pytest.approx((0.8 + 6 / 9 + 0.8 + 0.75) / 4)


def test_weighted_accuracy_uses_the_published_similarity_weights():
    def oa_w(reference, predicted):
        return lcz_metrics(confusion_matrix(np.array(reference), np.array(predicted)))["oa_w"]

    assert oa_w([16], [17]) == 0.92 and oa_w([14], [17]) == 0.92  # F-G, D-G: 11/12
    assert oa_w([1], [14]) == 0.0 and oa_w([2], [17]) == 0.08  # 1-D nothing, 2-G 1/12
    assert oa_w([15], [4]) == 0.08 and oa_w([9], [13]) == 0.75  # E-4, 9-C
    # F taken for G twice, 1 for 8 once, 3 right once: (0.92 + 0.92 + 0.75 + 1) / 4
    assert oa_w([16, 16, 1, 3], [17, 17, 8, 3]) == pytest.approx(3.59 / 4)
    m = lcz_metrics(confusion_matrix(*_labels()))
    assert m["oa"] < m["oa_w"] < 1
    # with the identity as weights, OA_w is plain OA
    assert lcz_metrics(confusion_matrix(*_labels()), weights=np.eye(17))["oa_w"] == m["oa"]


def test_similarity_weight_matrix_shape():
    assert W.shape == (17, 17)
    assert np.array_equal(W, W.T)
    assert np.all(np.diag(W) == 1) and np.all((W >= 0) & (W <= 1))
    assert np.all(W[~np.eye(17, dtype=bool)] < 1)
    assert np.abs(W - np.round(W * 12) / 12).max() <= 0.005  # twelfths to two decimals
    assert not W.flags.writeable


def test_similarity_weights_equal_the_shared_csv(real_data):
    csv = real_data.parent / "lcz_similarity_weights.csv"
    if not csv.is_file():
        pytest.skip(f"{csv} is absent")
    assert np.array_equal(W, np.loadtxt(csv, delimiter=","))


def test_built_versus_natural_leaves_e_out():
    pairs = [(1, 1), (1, 1), (2, 8), (15, 1), (3, 15), (15, 15), (17, 11), (16, 2), (5, 14)]
    m = lcz_metrics(confusion_matrix(*np.array(pairs).T))
    # E in reference or prediction leaves 6 pairs: 1-1 twice, 2-8 and G-A agree, F-2 and 5-D not
    assert m["oa_bu"] == pytest.approx(4 / 6)
    assert m["oa"] == pytest.approx(3 / 9)  # OA still counts E
    assert m["oa_u"] == pytest.approx(2 / 3)  # built block: 1-1, 1-1, 2-8
    assert lcz_metrics(confusion_matrix(np.array([15, 1]), np.array([1, 15])))["oa_bu"] is None


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


def _blocks_of(accuracies: list[float], size: int = 10) -> tuple[np.ndarray, ...]:
    """Patches of LCZ 2 in blocks of `size`; in block i the first accuracies[i] share are right."""
    right = np.concatenate([np.arange(size) < round(a * size) for a in accuracies])
    reference = np.full(right.size, 2)
    return reference, np.where(right, 2, 6), np.repeat(np.arange(len(accuracies)), size)


def test_block_confusions_sum_per_block_and_spread_a_tile_id_over_its_pixels():
    reference, predicted = _labels()
    blocks = np.arange(reference.size) % 3 * 10
    ids, c = block_confusions(reference, predicted, blocks)
    assert ids.tolist() == [0, 10, 20] and c.shape == (3, 17, 17)
    assert np.array_equal(c.sum(axis=0), confusion_matrix(reference, predicted))
    assert np.array_equal(c[1], confusion_matrix(reference[1::3], predicted[1::3]))
    tiles = np.stack([reference[:16].reshape(4, 4), predicted[:16].reshape(4, 4)])
    ids, c = block_confusions(tiles[0], tiles[1], np.array([7, 5, 7, 5]))
    assert ids.tolist() == [5, 7] and c[0].sum() == 8
    with pytest.raises(ValueError, match="block ids"):
        block_confusions(tiles[0], tiles[1], np.array([1, 2]))


def test_bootstrap_resamples_blocks_not_patches():
    # one block all right, one all wrong: a draw takes both blocks (OA 0.5) or one twice (0 or 1)
    reference, predicted, blocks = _blocks_of([1.0, 0.0])
    by_block = block_bootstrap(reference, predicted, blocks)
    assert set(np.unique(by_block.values["oa"])) == {0.0, 0.5, 1.0}
    assert by_block.intervals()["oa"] == [0.0, 1.0]
    # the same 20 patches resampled one by one: OA of 20 coin flips, far narrower
    low, high = block_bootstrap(reference, predicted, np.arange(20)).intervals()["oa"]
    assert 0.2 < low < 0.5 < high < 0.8


def test_small_test_sets_get_wide_intervals():
    # blocks alternately all right and 40 % right; a draw's OA is 0.4 + 0.6 k / B, k ~ Bin(B, 1/2)
    few = block_bootstrap(*_blocks_of([1.0, 0.4] * 2)).intervals()["oa"]
    many = block_bootstrap(*_blocks_of([1.0, 0.4] * 200)).intervals()["oa"]
    assert few[1] - few[0] > 0.3  # 4 blocks: k = 0 and k = 4 each have odds 1/16 > 5 %
    assert many[1] - many[0] < 0.07  # 400 blocks: 90 % of 0.4 + 0.6 k / B within 0.049
    assert many[0] < 0.7 < many[1]


def test_bootstrap_is_seeded_and_its_intervals_nest():
    reference, predicted, blocks = _blocks_of([1.0, 0.4, 0.8, 0.6, 0.9, 0.2])
    a = block_bootstrap(reference, predicted, blocks, draws=300, seed=5)
    b = block_bootstrap(reference, predicted, blocks, draws=300, seed=5)
    c = block_bootstrap(reference, predicted, blocks, draws=300, seed=6)
    assert a.values["oa"].shape == (300,) and a.blocks == 6
    assert np.array_equal(a.values["oa"], b.values["oa"])
    assert not np.array_equal(a.values["oa"], c.values["oa"])
    half = block_bootstrap(reference, predicted, blocks, draws=300, seed=5, level=0.5)
    (lo, hi), (lo50, hi50) = a.intervals()["oa"], half.intervals()["oa"]
    assert lo < lo50 < hi50 < hi


def test_one_block_gives_the_point_values_and_all_intervals():
    reference, predicted = _labels()
    point = lcz_metrics(confusion_matrix(reference, predicted))
    result = block_bootstrap(reference, predicted, np.zeros(reference.size), draws=20)
    intervals = result.intervals()
    for key in MEASURES:
        assert intervals[key] == pytest.approx([point[key]] * 2), key
    assert set(intervals["per_class_f1"]) == {"2", "6", "11", "14"}
    assert intervals["per_class_f1"]["6"] == pytest.approx([6 / 9, 6 / 9])


def test_per_class_f1_interval_counts_only_draws_that_hold_the_class():
    # LCZ A appears in one block of three: draws without it leave its F1 undefined
    reference = np.array([2, 2, 6, 6, 11, 11])
    predicted = np.array([2, 2, 6, 6, 11, 14])
    result = block_bootstrap(reference, predicted, np.array([0, 0, 1, 1, 2, 2]), draws=200)
    undefined = np.isnan(result.f1[11])
    assert 0 < undefined.sum() < 200  # (2/3)^3 of draws miss the block
    assert np.all(result.f1[11][~undefined] == 2 / 3)
    assert result.intervals()["per_class_f1"]["11"] == pytest.approx([2 / 3, 2 / 3])
    assert not np.isnan(result.values["oa"]).any()


def test_bootstrap_refuses_bad_settings():
    with pytest.raises(ValueError, match="draws"):
        bootstrap_confusions(np.zeros((2, 17, 17)), draws=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_confusions(np.zeros((2, 17, 17)), level=1.0)
    with pytest.raises(ValueError, match="block confusions"):
        bootstrap_confusions(np.zeros((0, 17, 17)))


def test_plot_bootstrap_writes_a_png(tmp_path):
    reference, predicted = _labels()
    result = block_bootstrap(reference, predicted, np.arange(reference.size) % 5, draws=200)
    point = lcz_metrics(confusion_matrix(reference, predicted))
    path = plot_bootstrap(result, point, tmp_path / "bootstrap.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
