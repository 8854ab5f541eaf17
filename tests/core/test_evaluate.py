"""Evaluation reports: spatial blocks of the samples, bootstrap intervals, definitions beside values.

The model knows one class (its weights do not matter): these tests check the mechanics of the
report; tests/core/test_train.py evaluates trained models.
"""

from __future__ import annotations

import html
import json
import shutil

import numpy as np
import pytest

from lcz_core.datasets import open_dataset
from lcz_core.errors import LczError
from lcz_core.evaluate import evaluate_model, sample_blocks
from lcz_core.grid import make_grid
from lcz_core.labels import open_labels
from lcz_core.metrics import MEASURE_DEFINITIONS, MEASURES
from lcz_core.models import create_model, save_model
from lcz_core.rasters import open_source
from lcz_core.sampling import CityInput, SplitConfig, make_dataset


@pytest.fixture(scope="module")
def demo_extent(demo_city):
    """The demo city less its first column and row of pixels: a grid off the CRS's 960 m lattice."""
    left, bottom, right, top = open_source(demo_city.embeddings_tif).bounds
    return (left + 10.0, bottom, right, top - 10.0)


@pytest.fixture(scope="module")
def dataset(demo_city, demo_extent, tmp_path_factory):
    """Demo patches split in random blocks of 3 x 3 cells."""
    city = CityInput(
        "synthetica",
        open_source(demo_city.embeddings_tif),
        open_labels(demo_city.labels),
        demo_extent,
    )
    folder = tmp_path_factory.mktemp("data") / "patches"
    split = SplitConfig(method="blocks", block_cells=3, seed=0, buffer_m=None)
    make_dataset([city], folder, kind="patches", patch_size=32, split=split)
    return folder


@pytest.fixture(scope="module")
def model(dataset, tmp_path_factory):
    """A model that knows only the most frequent training class: its OA is that class's share."""
    counts = open_dataset(dataset).manifest["class_counts"]["train"]
    majority = int(max(counts, key=counts.get))
    metadata = {
        "task": "patch",
        "architecture": "resnet10t",
        "width": 8,
        "stem": "3x3",
        "band_count": 64,
        "band_names": [f"A{i:02d}" for i in range(64)],
        "embedding_source": "demo embeddings",
        "normalisation": {"mean": [0.0] * 64, "std": [1.0] * 64},
        "classes": [majority],
        "class_counts": counts,
        "patch_size": 32,
        "pixel_size": 10.0,
    }
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    return save_model(path, create_model(metadata).eval(), metadata)


@pytest.fixture(scope="module")
def all_samples(dataset, model, tmp_path_factory):
    """The evaluation of every sample of the dataset, with the default bootstrap."""
    return evaluate_model(model, [dataset], tmp_path_factory.mktemp("eval") / "all", split="all")


def test_sample_blocks_are_the_split_blocks(dataset, demo_city, demo_extent):
    ds = open_dataset(dataset)
    blocks, k = sample_blocks(ds)
    assert k == 3 and blocks.shape == (len(ds),)
    # the cells of the sampling grid, found again from the centres, in squares of 3 x 3
    grid = make_grid(open_source(demo_city.embeddings_tif), demo_extent, 32)
    row, col = grid.cell_of(ds.centre_x[:], ds.centre_y[:])
    shift_row, shift_col = ds.manifest["block_shifts"][0]
    squares = ((row + shift_row) // 3) * grid.cols + (col + shift_col) // 3
    pairs = set(zip(blocks.tolist(), squares.tolist(), strict=True))
    assert len(pairs) == len(set(blocks.tolist())) == len(set(squares.tolist())) > 4
    split = ds.split[:]
    assert all(np.unique(split[blocks == b]).size == 1 for b in np.unique(blocks))


def test_datasets_without_their_grids_get_blocks_of_the_same_size(dataset):
    ds = open_dataset(dataset)
    for key in ("city_grids", "block_cells", "block_cells_used", "block_shifts"):
        del ds.manifest[key]  # as written before these were recorded
    blocks, k = sample_blocks(ds)
    assert k == 4  # the split's default
    side = 4 * 320.0
    x, y = ds.centre_x[:], ds.centre_y[:]
    for b in np.unique(blocks):
        here = blocks == b
        assert np.unique(np.floor(x[here] / side)).size == 1
        assert np.unique(np.floor(y[here] / side)).size == 1
    assert np.unique(blocks).size == np.unique(np.floor(x / side) * 1e6 + np.floor(y / side)).size


def test_a_split_of_single_cells_is_resampled_cell_by_cell(dataset, model, tmp_path):
    # random and polygon splits deal no blocks: sampling records no block size for them
    random = tmp_path / "random"
    shutil.copytree(dataset, random)
    manifest = json.loads((random / "manifest.json").read_text(encoding="utf-8"))
    manifest["block_cells_used"] = [None]
    (random / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    ds = open_dataset(random)
    blocks, k = sample_blocks(ds)
    assert k == 1 and np.unique(blocks).size == len(ds)  # one patch per cell
    found = evaluate_model(model, [random], tmp_path / "eval", bootstrap_draws=20)
    assert found["intervals"]["oa"][0] < found["intervals"]["oa"][1]


def test_the_report_gives_intervals_and_definitions(dataset, all_samples):
    result = all_samples
    record = json.loads(open(result["metrics_json"]).read())
    # the point values stay where they were; intervals sit beside them
    assert result["metrics"] == {k: record["metrics"][k] for k in ("n", *MEASURES)}
    assert result["metrics"]["oa"] == result["majority_baseline_oa"] > 0
    intervals = record["intervals"]
    assert intervals == result["intervals"]
    assert set(intervals) == {*MEASURES, "per_class_f1"}
    assert set(intervals["per_class_f1"]) == {str(c) for c in record["metrics"]["per_class"]}
    low, high = intervals["oa"]
    assert 0 < low < record["metrics"]["oa"] < high < 1
    assert intervals["kappa"] == [0.0, 0.0]  # one class predicted: no better than chance
    boot = record["bootstrap"]
    assert boot["draws"] == 1000 and boot["level"] == 0.9 and boot["block_cells"] == [3]
    assert boot["seed"] == 0
    assert boot["blocks"] == np.unique(sample_blocks(open_dataset(dataset))[0]).size
    assert record["per_city"]["synthetica"]["intervals"]["oa"] == intervals["oa"]
    page = open(result["report"]).read()
    for definition in MEASURE_DEFINITIONS.values():
        assert html.escape(definition) in page
    assert 'src="bootstrap.png"' in page and "90% interval" in page
    assert open(result["bootstrap_png"], "rb").read(4) == b"\x89PNG"


def test_a_test_split_of_few_blocks_is_flagged(dataset, model, all_samples, tmp_path):
    test = evaluate_model(model, [dataset], tmp_path / "test", bootstrap_draws=400, seed=7)
    boot = json.loads(open(test["metrics_json"]).read())["bootstrap"]
    assert boot["seed"] == 7 and boot["draws"] == 400 and boot["blocks"] < 10
    assert "too few pieces to resample" in open(test["report"]).read()
    assert "too few pieces" not in open(all_samples["report"]).read()


def test_no_draws_no_intervals(dataset, model, tmp_path):
    result = evaluate_model(model, [dataset], tmp_path / "eval", bootstrap_draws=0)
    record = json.loads(open(result["metrics_json"]).read())
    assert result["intervals"] is record["intervals"] is None
    assert record["per_city"]["synthetica"]["intervals"] is None
    assert "bootstrap_png" not in result and not (tmp_path / "eval" / "bootstrap.png").exists()
    assert "bootstrap was switched off" in open(result["report"]).read()
    with pytest.raises(LczError) as error:
        evaluate_model(model, [dataset], tmp_path / "bad", bootstrap_draws=-1)
    assert error.value.parameter == "bootstrap_draws"
