"""Real training on small data: beats the majority class, reproducible, checkpointed, cancellable."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lcz_core.cli import main
from lcz_core.datasets import Batch, open_dataset, write_dataset
from lcz_core.errors import LczError
from lcz_core.evaluate import evaluate_model
from lcz_core.labels import open_labels
from lcz_core.lcz import code_from_text
from lcz_core.models import load_model, prepare_inputs, read_model_metadata
from lcz_core.progress import Cancelled, Progress
from lcz_core.rasters import open_source
from lcz_core.sampling import CityInput, SplitConfig, make_dataset
from lcz_core.train import (
    TrainConfig,
    class_weights,
    read_experiment,
    train,
    train_experiment,
    training_batch,
)

pytestmark = pytest.mark.slow
# one training thread leaves a core of two to a loader worker
FAST = {"epochs": 12, "batch_size": 16, "seed": 0, "threads": 1}


def make_demo_dataset(demo_city, folder, kind: str):
    """Patches or 32 px tiles of the demo city, split in random 3 x 3-cell blocks."""
    city = CityInput(
        "synthetica", open_source(demo_city.embeddings_tif), open_labels(demo_city.labels)
    )
    split = SplitConfig(method="blocks", block_cells=3, seed=0, buffer_m=None)
    make_dataset([city], folder, kind=kind, patch_size=32, split=split)
    return folder


@pytest.fixture(scope="module")
def patch_dataset(demo_city, tmp_path_factory):
    return make_demo_dataset(demo_city, tmp_path_factory.mktemp("data") / "patches", "patches")


@pytest.fixture(scope="module")
def tile_dataset(demo_city, tmp_path_factory):
    return make_demo_dataset(demo_city, tmp_path_factory.mktemp("data") / "tiles", "tiles")


@pytest.fixture(scope="module")
def patch_run(patch_dataset, tmp_path_factory):
    return train(patch_dataset, tmp_path_factory.mktemp("runs") / "patch", TrainConfig(**FAST))


def majority_baseline_oa(dataset) -> float:
    """OA on the test split of always answering the training split's most frequent class."""
    ds = open_dataset(dataset)
    y, split = ds.y[:], ds.split[:]
    train_y, test_y = y[split == 0], y[split == 2]
    counts = np.bincount(train_y[train_y > 0].ravel(), minlength=18)
    test_labelled = test_y[test_y > 0]
    return float(np.mean(test_labelled == counts.argmax()))


def test_patch_classifier_beats_the_majority_class(patch_dataset, patch_run):
    baseline = majority_baseline_oa(patch_dataset)
    test = patch_run["metrics"]["test"]
    assert test["n"] >= 20
    assert test["oa"] >= baseline + 0.4, (test, baseline)
    assert test["macro_f1"] >= 0.6 and test["kappa"] >= 0.6


def test_segmentation_beats_the_majority_class(tile_dataset, tmp_path):
    run = train(tile_dataset, tmp_path / "seg", TrainConfig(task="segmentation", **FAST))
    baseline = majority_baseline_oa(tile_dataset)
    test = run["metrics"]["test"]
    assert test["n"] > 10_000  # pixels
    assert test["oa"] >= baseline + 0.4, (test, baseline)
    assert read_model_metadata(run["model"])["architecture"] == "unet"


class ThreadsSeen(Progress):
    """Notes torch's thread count at every report."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def _emit(self, percent: float, message: str | None) -> None:
        self.threads.add(torch.get_num_threads())


def test_rerunning_the_experiment_file_gives_identical_weights_and_metrics(patch_run, tmp_path):
    dataset, output, config = read_experiment(patch_run["experiment"])
    assert output.name == "patch" and config == TrainConfig(**FAST)
    used = config.threads
    assert config.loader_workers == 2  # the run read its batches in worker processes
    other = used + 1  # the rerun sets the recorded count, whatever the process has
    torch.set_num_threads(other)
    seen = ThreadsSeen()
    # read by the training process itself, from the dataset held in memory: the same run
    held = open_dataset(dataset).load()
    try:
        again = train(held, tmp_path / "again", replace(config, loader_workers=0), seen)
        assert seen.threads == {used} and torch.get_num_threads() == other
    finally:
        torch.set_num_threads(used)
    assert again["metrics"] == patch_run["metrics"]
    first, second = load_file(patch_run["model"]), load_file(again["model"])
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)

    def rows(path):
        with open(path, newline="") as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]

    assert rows(patch_run["log"]) == rows(again["log"])


def test_run_folder_and_model_metadata(patch_dataset, patch_run):
    manifest = open_dataset(patch_dataset).manifest
    with open(patch_run["log"], newline="") as f:
        log = list(csv.DictReader(f))
    assert len(log) == patch_run["epochs_run"] and log[0]["epoch"] == "1"
    assert open(patch_run["curves"], "rb").read(4) == b"\x89PNG"
    meta = load_model(patch_run["model"]).metadata
    assert meta["architecture"] == "resnet10t" and meta["task"] == "patch"
    assert meta["band_count"] == 64 and meta["band_names"] == manifest["band_names"]
    assert meta["embedding_source"] == manifest["embedding_source"]
    assert len(meta["normalisation"]["mean"]) == len(meta["normalisation"]["std"]) == 64
    assert meta["classes"] == sorted(code_from_text(c) for c in manifest["class_counts"]["train"])
    assert meta["patch_size"] == 32 and meta["pixel_size"] == 10.0
    assert meta["training_cities"] == ["synthetica"]
    assert meta["metrics"] == patch_run["metrics"] and meta["epoch"] == patch_run["best_epoch"]
    assert {"torch", "timm", "numpy", "lcz_core"} <= set(meta["library_versions"])
    assert meta["config"]["seed"] == 0


class CancelAt(Progress):
    """Cancels the run when a progress message or a log line mentions `marker`."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker, self.children = marker, 0

    def log(self, message: str) -> None:
        self._emit(0.0, message)

    def _emit(self, percent: float, message: str | None) -> None:
        if message and self.marker in message:
            self.children = len(multiprocessing.active_children())  # loader workers then
            self.cancel()


def test_cancel_leaves_nothing_and_keeps_the_earlier_run(patch_dataset, patch_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    before = {}
    for key in ("experiment", "log", "curves", "model"):  # an earlier run in the folder
        target = run / Path(patch_run[key]).name
        target.write_bytes(Path(patch_run[key]).read_bytes())
        before[target.name] = target.read_bytes()
    config = TrainConfig(epochs=5, batch_size=16, patience=5, threads=1)
    progress = CancelAt("epoch 1/5:")  # logged at its end: cancelled in epoch 2
    with pytest.raises(Cancelled):
        train(patch_dataset, run, config, progress, overwrite=True)
    assert progress.children == min(2, len(os.sched_getaffinity(0)) - 1)  # a core each
    assert not multiprocessing.active_children()  # the loader's workers are gone
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(Cancelled):  # a new folder: nothing appears, not even experiment.toml
        train(patch_dataset, tmp_path / "new", config, CancelAt("training"))  # at batch 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_class_weights():
    weights = class_weights(np.array([3, 1] + [0] * 15), "balanced")
    np.testing.assert_allclose(weights[:2], [4 / 6, 2.0])
    assert np.all(weights[2:] == 0)  # absent classes
    np.testing.assert_allclose(
        class_weights(np.array([3, 1] + [0] * 15), "sqrt")[:2], [(2 / 3) ** 0.5, 2**0.5]
    )
    np.testing.assert_allclose(class_weights(np.array([3, 1] + [0] * 15), "none")[:2], [1, 1])


def test_training_batch_turns_pixels_and_labels_together():
    y = np.tile(np.arange(1, 17, dtype=np.uint8).reshape(1, 4, 4), (8, 1, 1))
    x = np.stack([y, -y.astype(np.float32)], axis=1).astype(
        np.float32
    )  # band 0 = label, 1 = -label
    ops = np.arange(8)
    plain = np.zeros(2, np.float32), np.ones(2, np.float32)  # no normalisation
    xb, targets = training_batch(x, y, ops, *plain)
    assert xb.shape == (8, 2, 4, 4) and xb.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(xb[:, 0], (targets + 1).float()) and torch.equal(xb[:, 1], -xb[:, 0])
    assert len({tuple(t.flatten().tolist()) for t in targets}) == 8  # all 8 symmetries
    assert torch.equal(targets[0] + 1, torch.from_numpy(y[0]).long())  # op 0: unchanged
    assert torch.equal(targets[1] + 1, torch.from_numpy(np.rot90(y[0]).copy()).long())
    assert torch.equal(targets[4] + 1, torch.from_numpy(y[0, :, ::-1].copy()).long())
    # patch labels (one per sample) stay with their sample; unlabelled 0 becomes -1
    xp, tp = training_batch(x, np.array([5, 0, 7, 9, 1, 2, 3, 4], np.uint8), ops, *plain)
    assert tp.tolist() == [4, -1, 6, 8, 0, 1, 2, 3] and torch.equal(xp, xb)


def test_training_batch_normalises_as_prediction_does():
    """Stored float16 (NaN = missing, inf) in, the same float32 values as prepare_inputs out."""
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(16, 5, 6, 6)) * 40).astype(np.float16)
    x[0, 1, 2, 3], x[1, 0, 0, 0], x[2, 4, 5, 5] = np.nan, np.inf, -np.inf
    mean, std = rng.normal(size=5).astype(np.float32), rng.uniform(1, 9, 5).astype(np.float32)
    y = rng.integers(1, 18, 16).astype(np.uint8)
    ops = np.arange(16) % 8
    xb, _ = training_batch(x, y, ops, mean, std)
    expected = prepare_inputs(x, mean, std)
    for n, op in enumerate(ops):
        turned = np.rot90(expected[n], op % 4, axes=(1, 2))
        turned = turned[..., ::-1] if op >= 4 else turned
        np.testing.assert_array_equal(xb[n].numpy(), turned)  # bit for bit
    assert xb.dtype == torch.float32 and torch.isfinite(xb).all()


def test_bad_settings_name_their_parameter(patch_dataset, tile_dataset, tmp_path):
    with pytest.raises(LczError) as error:
        TrainConfig(epochs=0)
    assert error.value.parameter == "epochs"
    with pytest.raises(LczError) as error:
        TrainConfig(class_weighting="inverse")
    assert error.value.parameter == "class_weighting"
    with pytest.raises(LczError, match="holds tiles"):
        train(tile_dataset, tmp_path / "x", TrainConfig(task="patch"))
    toml = tmp_path / "bad.toml"
    toml.write_text('dataset = "d"\noutput = "o"\n[train]\nepochz = 3\n')
    with pytest.raises(LczError, match="\\[train\\]: unknown keys epochz") as error:
        train_experiment(toml)
    assert error.value.parameter == "experiment"


def test_berlin_sentinel2_crop_and_polygons_train_end_to_end(real_data, tmp_path):
    berlin = real_data / "berlin"
    city = CityInput(
        "berlin",
        open_source(berlin / "Berlin_S2_2024-10-24_sample.tif"),
        open_labels(berlin / "Berlin_labels.shp", class_field="Name"),
    )
    split = SplitConfig(method="random", fractions=(0.6, 0.2, 0.2), seed=0, buffer_m=None)
    made = make_dataset([city], tmp_path / "tiles", kind="tiles", patch_size=32, split=split)
    assert made["count"] >= 10
    config = TrainConfig(task="segmentation", epochs=3, batch_size=8)
    run = train(tmp_path / "tiles", tmp_path / "run", config)
    meta = read_model_metadata(run["model"])
    assert meta["band_count"] == 10 and meta["training_cities"] == ["berlin"]
    assert meta["metrics"]["val"]["n"] > 0 and 0 <= meta["metrics"]["val"]["oa"] <= 1


def test_evaluation_on_the_test_split_matches_training(patch_dataset, patch_run, tmp_path):
    result = evaluate_model(patch_run["model"], [patch_dataset], tmp_path / "eval")
    assert result["metrics"] == patch_run["metrics"]["test"]
    assert result["majority_baseline_oa"] == pytest.approx(majority_baseline_oa(patch_dataset))
    record = json.loads(open(result["metrics_json"]).read())
    assert np.array(record["confusion_matrix"]).sum() == result["metrics"]["n"]
    page = open(result["report"]).read()
    assert "OA_w" in page and "Bechtel" in page and 'src="confusion.png"' in page
    assert open(result["confusion_png"], "rb").read(4) == b"\x89PNG"
    assert result["per_city"]["synthetica"]["seen_in_training"]
    with pytest.raises(LczError) as error:
        evaluate_model(patch_run["model"], [patch_dataset], tmp_path / "e2", cities=["atlantis"])
    assert error.value.parameter == "cities"


def test_cross_city_transfer_and_per_city_metrics(demo_city, tmp_path):
    """Train on two cities (the demo's north-west and north-east), map a third (its south)."""
    source = open_source(demo_city.embeddings_tif)
    left, bottom, right, top = source.bounds
    mid_x, mid_y = (left + right) / 2, (bottom + top) / 2

    def city(name, extent):
        return CityInput(
            name, open_source(demo_city.embeddings_tif), open_labels(demo_city.labels), extent
        )

    split = SplitConfig(method="blocks", block_cells=2, seed=0, buffer_m=None)
    north = [
        city("north-west", (left, mid_y, mid_x, top)),
        city("north-east", (mid_x, mid_y, right, top)),
    ]
    make_dataset(north, tmp_path / "north", kind="patches", patch_size=32, split=split)
    south = [city("south", (left, bottom, right, mid_y))]
    make_dataset(south, tmp_path / "south", kind="patches", patch_size=32, split=split)
    run = train(tmp_path / "north", tmp_path / "run", TrainConfig(**FAST))
    assert read_model_metadata(run["model"])["training_cities"] == ["north-east", "north-west"]

    both = evaluate_model(
        run["model"], [tmp_path / "north", tmp_path / "south"], tmp_path / "eval", split="all"
    )
    assert set(both["per_city"]) == {"north-west", "north-east", "south"}
    assert [v["seen_in_training"] for v in both["per_city"].values()] == [True, True, False]
    assert sum(v["n"] for v in both["per_city"].values()) == both["metrics"]["n"]
    assert (tmp_path / "eval" / "confusion_south.png").is_file()

    transfer = evaluate_model(
        run["model"], [tmp_path / "south"], tmp_path / "transfer", split="all"
    )
    assert transfer["metrics"] == {
        k: v for k, v in both["per_city"]["south"].items() if k != "seen_in_training"
    }
    assert transfer["metrics"]["oa"] >= transfer["majority_baseline_oa"] + 0.3, transfer


def test_command_line_train_evaluate_predict(demo_city, patch_dataset, patch_run, tmp_path, capsys):
    def run(*argv):
        assert main(["--jsonl", *argv]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines[-1]["type"] == "result"
        return lines[-1]["outputs"]

    # the experiment file of a run, with one setting overridden on the command line
    trained = run(
        "train-patch-classifier", "--experiment", patch_run["experiment"],
        "--output", str(tmp_path / "cli_run"), "--epochs", "2", "--augment", "false",
    )  # fmt: skip
    _, output, config = read_experiment(trained["experiment"])
    assert output == tmp_path / "cli_run"
    threads = torch.get_num_threads()
    assert config == TrainConfig(**{**FAST, "epochs": 2, "augment": False, "threads": threads})
    assert trained["epochs_run"] == 2
    evaluated = run(
        "evaluate-model", "--model", trained["model"], "--dataset", str(patch_dataset),
        "--output", str(tmp_path / "eval"), "--split", "val",
    )  # fmt: skip
    assert evaluated["metrics"] == read_model_metadata(trained["model"])["metrics"]["val"]
    predicted = run(
        "predict", "--model", trained["model"], "--embeddings", str(demo_city.embeddings_tif),
        "--output", str(tmp_path / "lcz.tif"), "--stride", "32",
    )  # fmt: skip
    assert (predicted["width"], predicted["height"], predicted["pixel_size"]) == (15, 15, 320.0)
    assert main(["--jsonl", "train-segmentation", "--dataset", str(patch_dataset)]) == 1
    error = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert error["type"] == "error" and error["parameter"] == "output"


def write_samples(folder, train_y: np.ndarray, val_y: np.ndarray, bands=3, size=8) -> Path:
    """A dataset whose band 0 tells the class: train then val samples; tiles when y is 3-D."""
    y = np.concatenate([train_y, val_y]).astype(np.uint8)
    kind, n = ("tiles" if y.ndim == 3 else "patches"), len(y)
    x = np.random.default_rng(2).normal(size=(n, bands, size, size)).astype(np.float32)
    x[:, 0] += (y if kind == "tiles" else y[:, None, None]) / 2
    split = np.repeat([0, 1], [len(train_y), len(val_y)])
    manifest = {
        "kind": kind, "patch_size": size, "pixel_size": 10.0,
        "band_names": [f"b{i}" for i in range(bands)], "embedding_source": "test numbers",
        "cities": ["a"], "crs": "EPSG:32633", "seed": 0, "split_method": "random",
        "split_fractions": [0.8, 0.2, 0.0], "buffer_m": 0.0,
    }  # fmt: skip
    batch = Batch(x, y, split, np.zeros(n), np.arange(n) * 80.0, np.zeros(n))
    write_dataset(folder, [batch], manifest)
    return folder


def test_validation_loss_is_the_weighted_mean_over_every_labelled_pixel(tmp_path, monkeypatch):
    """Val tiles one per batch: one without a labelled pixel, one of a class training lacks, and
    tiles labelled in part; the logged loss is the class-weighted cross-entropy over all of it."""
    rng = np.random.default_rng(3)
    train_y = rng.choice(np.array([2, 6], np.uint8), size=(16, 8, 8))
    val_y = rng.choice(np.array([0, 2, 6], np.uint8), size=(6, 8, 8))
    val_y[:2] = 0  # tile 0: nothing labelled; tile 1: LCZ 14 (not trained) and unlabelled
    val_y[1, :4] = 14
    val_y[2, :, :7] = 0  # one labelled column
    folder = write_samples(tmp_path / "tiles", train_y, val_y)
    monkeypatch.setattr("lcz_core.train.EVALUATION_BATCH", 1)
    config = TrainConfig(task="segmentation", epochs=1, batch_size=4, width=4, threads=1)
    run = train(folder, tmp_path / "run", config)
    with open(run["log"], newline="") as f:
        logged = float(next(csv.DictReader(f))["val_loss"])

    model = load_model(run["model"])  # epoch 1: the model the loss was measured on
    ds = open_dataset(folder)
    val = ds.split[:] == 1
    x = torch.from_numpy(prepare_inputs(ds.x[:][val], model.mean, model.std))
    with torch.no_grad():
        log_p = torch.log_softmax(model.network(x).double(), dim=1).numpy()
    targets = val_y.astype(np.int64) - 1
    n, h, w = np.nonzero(targets >= 0)
    nll = -log_p[n, targets[n, h, w], h, w]
    counts = np.bincount(train_y.ravel(), minlength=18)[1:]
    weights = class_weights(counts, "sqrt")[targets[n, h, w]]
    assert weights.min() == 0 and weights.max() > 0  # LCZ 14 weighs nothing
    assert logged == pytest.approx((weights * nll).sum() / weights.sum(), abs=2e-6)


class Recorder(Progress):
    """Keeps the log lines, the progress messages and the number of reports of a run."""

    def __init__(self) -> None:
        super().__init__()
        self.logs: list[str] = []
        self.messages: list[str] = []
        self.reports = 0

    def log(self, message: str) -> None:
        self.logs.append(message)

    def _emit(self, percent: float, message: str | None) -> None:
        self.reports += 1
        if message:  # the QGIS log shows every progress message as a line
            self.messages.append(message)


def test_a_run_logs_one_line_per_epoch(tmp_path):
    y = np.array([2, 6, 14], np.uint8)[np.arange(48) % 3]
    folder = write_samples(tmp_path / "ds", y[:40], y[40:], bands=1024)
    assert open_dataset(folder).x.chunks[0] < 40  # read in several blocks
    recorder = Recorder()
    config = TrainConfig(epochs=3, batch_size=4, width=4, patience=3)
    run = train(folder, tmp_path / "run", config, recorder)
    assert run["epochs_run"] == 3
    used = torch.get_num_threads()  # threads = 0 ran with torch's count: the run records it
    assert read_experiment(run["experiment"])[2].threads == used
    assert read_model_metadata(run["model"])["config"]["threads"] == used
    assert len(recorder.logs) == 3, recorder.logs
    number = r"\d+(\.\d+)?"
    for epoch, line in enumerate(recorder.logs, 1):
        assert re.fullmatch(
            rf"epoch {epoch}/3: train loss {number}, val loss {number}, val OA {number}, "
            rf"val macro F1 {number}, {number} s",
            line,
        ), line
    assert recorder.messages == ["reading the dataset", "training", "done"]
    assert recorder.reports >= 3 * 10  # the bar still moves batch by batch


def test_a_dataset_in_the_temporary_folder_is_named_in_the_experiment_file(tmp_path, monkeypatch):
    """QGIS names its temporary folder; a run on a dataset left there says its rerun needs it."""
    from lcz_core.spec import TEMPORARY_FOLDER_ENV

    y = np.array([2, 6], np.uint8)[np.arange(20) % 2]
    temporary = tmp_path / "processing_x"
    temporary.mkdir()
    monkeypatch.setenv(TEMPORARY_FOLDER_ENV, str(temporary))
    config = TrainConfig(epochs=1, batch_size=4, width=4, threads=1, loader_workers=0)
    kept = train(write_samples(tmp_path / "kept", y[:16], y[16:]), tmp_path / "a", config)
    assert kept["warnings"] == [] and "warning" not in Path(kept["experiment"]).read_text()

    dataset = write_samples(temporary / "dataset", y[:16], y[16:])
    run = train(dataset, tmp_path / "b", config)
    (warning,) = run["warnings"]
    assert f"{dataset} lies in {temporary}, a temporary folder" in warning
    text = Path(run["experiment"]).read_text()
    assert f"# warning: {warning}" in text.splitlines()
    assert read_experiment(run["experiment"]) == (dataset, tmp_path / "b", config)
