"""Nothing lost, nothing silently wrong: outputs, bounded resources, refusals with a fix."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from lcz_core.cities import load_catalogue, pick_cities
from lcz_core.compare import compare_lcz_maps
from lcz_core.datasets import Batch, open_dataset, write_dataset
from lcz_core.errors import LczError
from lcz_core.grid import make_grid
from lcz_core.labels import open_labels
from lcz_core.lcz import CLASS_BY_CODE
from lcz_core.lczmap import import_lcz_map
from lcz_core.models import create_model, load_model, read_model_metadata, save_model
from lcz_core.outputs import atomic_path, write_text_atomic
from lcz_core.predict import predict_raster
from lcz_core.rasters import open_source
from lcz_core.sampling import CityInput, SplitConfig, make_dataset
from lcz_core.train import TrainConfig, read_experiment, train, train_experiment

REPO = Path(__file__).resolve().parents[2]
LINUX = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")


@pytest.fixture
def umask():
    """Set the process umask for a test; restore it after."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def dataset_manifest(bands: int = 3, size: int = 4) -> dict:
    return {
        "kind": "patches",
        "patch_size": size,
        "pixel_size": 10.0,
        "band_names": [f"b{i}" for i in range(bands)],
        "embedding_source": "test numbers",
        "cities": ["a"],
        "crs": "EPSG:32633",
        "seed": 0,
        "split_method": "random",
        "split_fractions": [0.7, 0.15, 0.15],
        "buffer_m": 0.0,
    }


def batches(n: int = 6, bands: int = 3, size: int = 4):
    rng = np.random.default_rng(0)
    yield Batch(
        x=rng.normal(size=(n, bands, size, size)).astype(np.float32),
        y=rng.integers(1, 18, size=n).astype(np.uint8),
        split=np.arange(n) % 3,
        city=np.zeros(n),
        centre_x=np.arange(n) * 40.0,
        centre_y=np.arange(n) * -40.0,
    )


def run_limited(code: str, budget_gib: float) -> dict:
    """Run `code` in a Python whose address space may grow by `budget_gib` once the modules it
    names are imported (a regression fails with MemoryError instead of taking the machine down);
    return the JSON it prints: the parameter and message of its LczError, or {"result": ...}."""
    modules = sorted(set(re.findall(r"lcz_core\.\w+", code)))
    script = f"""
import json, resource
import {", ".join(["lcz_core.errors", *modules])}
size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
limit = size + int({budget_gib} * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    result = {code}
    print(json.dumps({{"result": result}}, default=str))
except lcz_core.errors.LczError as error:
    print(json.dumps({{"parameter": error.parameter, "message": error.message}}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "lcz_qgis" / "lib"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ outputs: modes, partials


def test_outputs_keep_the_umask_for_files_and_folders(umask, tmp_path, model_metadata):
    text = tmp_path / "a.txt"
    text.write_text("old")
    os.chmod(text, 0o644)
    write_text_atomic(text, "new")  # overwriting a 0644 file keeps it 0644
    assert text.read_text() == "new" and mode(text) == 0o644
    write_dataset(tmp_path / "ds", batches(), dataset_manifest())
    assert mode(tmp_path / "ds") == 0o755 and mode(tmp_path / "ds" / "manifest.json") == 0o644
    meta = model_metadata()
    save_model(tmp_path / "m.safetensors", create_model(meta), meta)
    assert mode(tmp_path / "m.safetensors") == 0o644
    umask(0o077)
    write_text_atomic(tmp_path / "private.txt", "x")
    assert mode(tmp_path / "private.txt") == 0o600


@LINUX
def test_partials_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    target, folder = tmp_path / "map.tif", tmp_path / "ds"
    script = f"""
import os, signal
from lcz_core.outputs import atomic_path, atomic_folder
with atomic_path({str(target)!r}) as tmp, atomic_folder({str(folder)!r}, ["x"]) as part:
    tmp.write_text("half")
    (part / "x").write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO / "lcz_qgis" / "lib")}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and all(".partial-" in name for name in left)
    # a live writer's partial (this process's) and another output's partial stay
    live = tmp_path / f".map.partial-{os.getpid()}-0a0a.tif"
    other = tmp_path / f".other.partial-{left[0].split('-')[1]}-0b0b.tif"
    live.write_text("busy")
    other.write_text("not ours")
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    write_dataset(folder, batches(), dataset_manifest())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ds", "map.tif", live.name, other.name]
    )


def test_dataset_output_replaces_only_its_own_entries(tmp_path):
    folder = tmp_path / "ds"
    write_dataset(folder, batches(4), dataset_manifest())
    (folder / "notes.txt").write_text("mine")
    (folder / "model.safetensors").write_bytes(b"mine too")
    write_dataset(folder, batches(6), dataset_manifest())
    assert len(open_dataset(folder)) == 6
    assert sorted(p.name for p in folder.iterdir()) == [
        "data.zarr", "manifest.json", "model.safetensors", "notes.txt"
    ]  # fmt: skip
    assert (folder / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"name": "a web app"}')
    (other / "index.html").write_text("keep")
    with pytest.raises(LczError, match="not a dataset") as error:
        write_dataset(other, batches(), dataset_manifest())
    assert error.value.parameter == "output" and (other / "index.html").is_file()


# ------------------------------------------------------------------ datasets read back


def test_damaged_manifests_are_refused_before_reading(tmp_path):
    folder = tmp_path / "ds"
    write_dataset(folder, batches(), dataset_manifest())
    good = json.loads((folder / "manifest.json").read_text())
    cases = {
        "patch_size": (100_000, "patch_size is 100000"),
        "band_count": ("3", "band_count is '3'"),
        "band_names": (["b0"], "a list of 3 items"),
        "kind": ("pixels", "one of patches, tiles"),
        "pixel_size": (float("nan"), "positive number"),
    }
    for key, (value, message) in cases.items():
        (folder / "manifest.json").write_text(json.dumps({**good, key: value}))
        with pytest.raises(LczError, match=message) as error:
            open_dataset(folder)
        assert error.value.parameter == "dataset" and "rebuild" in error.value.message
    (folder / "manifest.json").write_text(json.dumps({**good, "patch_size": 8}))
    with pytest.raises(LczError, match="array x has shape"):
        open_dataset(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(LczError, match="not valid JSON"):
        open_dataset(folder)


def test_all_missing_embeddings_give_no_empty_dataset(tmp_path, write_raster):
    nan = np.full((4, 320, 320), np.nan, np.float32)
    embeddings = write_raster(tmp_path / "nan.tif", nan, pixel=10.0)
    labels = write_raster(tmp_path / "labels.tif", np.full((320, 320), 2, np.uint8), pixel=10.0)
    city = CityInput("void", open_source(embeddings), open_labels(labels, coding="lcz17"))
    with pytest.raises(LczError, match="dropping 100 samples with more than 50% missing") as error:
        make_dataset([city], tmp_path / "ds", split=SplitConfig(method="random", buffer_m=None))
    assert error.value.parameter == "max_missing"
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".*"))


# ------------------------------------------------------------------ experiment files


def test_experiment_files_have_strict_types(tmp_path):
    bad = {
        'augment = "no"': ("augment", "true or false"),
        'epochs = "10"': ("epochs", "whole number"),
        "batch_size = -5": ("batch_size", "at least 2"),
        "width = 4096": ("width", "from 4 to 512"),
        "learning_rate = nan": ("learning_rate", "positive number"),
        "seed = -1": ("seed", "whole number"),
    }
    for line, (key, message) in bad.items():
        toml = tmp_path / "e.toml"
        toml.write_text(f'dataset = "d"\noutput = "o"\n[train]\n{line}\n')
        with pytest.raises(LczError, match=f"\\[train\\] {key} is .*{message}") as error:
            read_experiment(toml)
        assert error.value.parameter == "experiment"
    for text, message in {
        'dataset = 3\noutput = "o"\n': "dataset is 3, expected text",
        'output = "o"\n': "lacks the keys dataset",
        'dataset = "d"\noutput = "o"\nepochs = 3\n': "unknown keys epochs",
        'dataset = "d"\noutput = "o"\ntrain = 5\n': "expected a table",
    }.items():
        toml.write_text(text)
        with pytest.raises(LczError, match=message):
            read_experiment(toml)
    with pytest.raises(LczError, match="cannot read .*Is a directory"):
        read_experiment(tmp_path)
    assert TrainConfig(learning_rate=1).learning_rate == 1.0  # an int is a fine float
    with pytest.raises(LczError) as error:
        TrainConfig(augment="no")
    assert error.value.parameter == "augment"


# ------------------------------------------------------------------ model files


def write_model(path, metadata, weights_metadata=None) -> Path:
    """A model file whose metadata may differ from the one its weights were built from."""
    network = create_model(weights_metadata or metadata)
    return save_model(path, network, metadata)


def test_model_metadata_is_checked(tmp_path, model_metadata):
    good = model_metadata()
    cases = {
        "classes": ([], "expected distinct LCZ codes"),
        "patch_size": (100_000, "patch_size is 100000"),
        "band_names": (["x"], "a list of 6 items"),
        "normalisation": ({"mean": [0] * 6, "std": [0] * 6}, "std item is 0.0"),
        "task": ("detection", "one of patch, segmentation"),
    }
    for key, (value, message) in cases.items():
        path = write_model(tmp_path / f"{key}.safetensors", {**good, key: value}, good)
        with pytest.raises(LczError, match=message) as error:
            read_model_metadata(path)
        assert error.value.parameter == "model" and "retrain" in error.value.message
    path = write_model(tmp_path / "c.safetensors", {**good, "classes": [2, 18]}, good)
    with pytest.raises(LczError, match="classes item is 18"):
        load_model(path)
    with pytest.raises(LczError, match="is a folder"):
        load_model(tmp_path)


def test_weights_must_match_the_metadata(tmp_path, model_metadata):
    good = model_metadata()
    path = write_model(tmp_path / "m.safetensors", {**good, "width": 16}, good)  # stored: 8
    with pytest.raises(LczError, match="do not match the network") as error:
        load_model(path)
    assert error.value.parameter == "model"


@LINUX
def test_a_model_claiming_width_512_is_refused_without_building_it(tmp_path, model_metadata):
    good = model_metadata(bands=64)
    path = write_model(tmp_path / "m.safetensors", {**good, "width": 512}, good)
    # built for real, resnet10t at width 512 would hold 1.2 GiB of weights (over the budget)
    code = f"lcz_core.models.load_model({str(path)!r})"
    outcome = run_limited(code, budget_gib=1.0).get("message", "")
    assert "do not match the network" in outcome


def test_predict_refuses_bad_batch_sizes_and_empty_maps(tmp_path, model_metadata, write_raster):
    meta = model_metadata(bands=4, mean=0.0, std=1.0)
    model = write_model(tmp_path / "m.safetensors", meta)
    data = np.random.default_rng(0).normal(size=(4, 96, 96)).astype(np.float32)
    embeddings = write_raster(tmp_path / "e.tif", data, pixel=10.0)
    for batch_size, message in ((-5, "at least 1"), (2.5, "whole number"), (10**9, "memory")):
        with pytest.raises(LczError, match=message) as error:
            predict_raster(model, embeddings, tmp_path / "lcz.tif", batch_size=batch_size)
        assert error.value.parameter == "batch_size"
    with pytest.raises(LczError, match="batch_size"):
        load_model(model).predict(data[None, :, :32, :32], batch_size=-5)
    zeros = write_raster(tmp_path / "z.tif", np.zeros_like(data), pixel=10.0)  # all-zero vectors
    with pytest.raises(LczError, match="no valid pixel") as error:
        predict_raster(model, zeros, tmp_path / "lcz.tif")
    assert error.value.parameter == "embeddings"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.tif", "m.safetensors", "z.tif"]
    for extent, extent_crs, parameter in (
        ((-1e308, 0, 1, 1), "EPSG:4326", "extent"),
        ((0, 0, 1, 1), "EPSG:99999", "extent_crs"),
        ((1, 1, 0, 0), None, "extent"),
    ):
        with pytest.raises(LczError) as error:
            predict_raster(
                model, embeddings, tmp_path / "lcz.tif", extent=extent, extent_crs=extent_crs
            )
        assert error.value.parameter == parameter
    result = predict_raster(model, embeddings, tmp_path / "lcz.tif", stride=8)
    assert set(result["class_counts"]) <= {CLASS_BY_CODE[c].short for c in meta["classes"]}


# ------------------------------------------------------------------ training (no training yet)


@LINUX
def test_training_reads_a_dataset_larger_than_memory_and_refuses_oversized_batches(tmp_path):
    folder = tmp_path / "big"
    n, bands, size = 5_000, 64, 32  # 1.3 GB as float32 (the layout of earlier datasets); NaN
    # chunks cost nothing on disk
    group = zarr.open_group(str(folder / "data.zarr"), mode="w")
    group.create_array("x", shape=(n, bands, size, size), chunks=(64, bands, size, size),
                       dtype="float32", fill_value=float("nan"))  # fmt: skip
    for name, dtype in (("y", "uint8"), ("split", "uint8"), ("city", "uint16")):
        group.create_array(name, shape=(n,), chunks=(n,), dtype=dtype, fill_value=0)
    group["y"][:] = 3
    group["split"][::10] = 1  # validation samples
    for name in ("centre_x", "centre_y"):
        group.create_array(name, shape=(n,), chunks=(n,), dtype="float64", fill_value=0)
    manifest = {**dataset_manifest(bands, size), "format_version": 1, "band_count": bands}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code = f"lcz_core.train.train({str(folder)!r}, {str(tmp_path / 'run')!r})"
    # read through within 1 GB: the training samples turn out to hold no value
    outcome = run_limited(code, budget_gib=1.0)
    assert outcome.get("parameter") == "dataset", outcome
    assert "training samples hold no embedding value" in outcome["message"], outcome
    config = "lcz_core.train.TrainConfig(batch_size=200_000)"
    code = f"lcz_core.train.train({str(folder)!r}, {str(tmp_path / 'run')!r}, {config})"
    outcome = run_limited(code, budget_gib=1.0)
    assert outcome.get("parameter") == "batch_size", outcome
    needed = float(outcome["message"].split("needs about ")[1].split(" GiB")[0])
    assert needed >= 200_000 * bands * size * size * 4 / 2**30, outcome["message"]
    assert not (tmp_path / "run").exists()


def learnable_batches(n: int = 60, size: int = 8):
    """Patches of 3 bands whose band 0 tells the class (2, 6 or 14); band 1 is all NaN."""
    rng = np.random.default_rng(1)
    y = np.array([2, 6, 14], np.uint8)[np.arange(n) % 3]
    x = rng.normal(size=(n, 3, size, size)).astype(np.float32)
    x[:, 0] += y[:, None, None] / 2
    x[:, 1] = np.nan
    split = np.where(np.arange(n) % 5 == 0, 1, 0)
    yield Batch(x, y, split, np.zeros(n), np.arange(n) * 80.0, np.zeros(n))


def test_run_folder_that_holds_files_is_refused_without_overwrite(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"an earlier model")
    with pytest.raises(LczError, match="holds a run .*set overwrite") as error:
        train(tmp_path / "no dataset", run)
    assert error.value.parameter == "output"
    toml = tmp_path / "e.toml"  # an experiment whose output names that run folder
    toml.write_text(f'dataset = "data"\noutput = "{run.name}"\n')
    with pytest.raises(LczError, match="holds a run") as error:
        train_experiment(toml)
    assert error.value.parameter == "output"
    assert [p.name for p in run.iterdir()] == ["model.safetensors"]
    assert (run / "model.safetensors").read_bytes() == b"an earlier model"


def test_datasets_that_cannot_train_are_refused(tmp_path):
    nan = next(learnable_batches())
    nan.x[:] = np.nan
    write_dataset(tmp_path / "nan", [nan], {**dataset_manifest(size=8), "patch_size": 8})
    with pytest.raises(LczError, match="no embedding value") as error:
        train(tmp_path / "nan", tmp_path / "run")
    assert error.value.parameter == "dataset"
    write_dataset(tmp_path / "bad", learnable_batches(), {**dataset_manifest(), "patch_size": 8})
    group = zarr.open_group(str(tmp_path / "bad" / "data.zarr"), mode="r+")
    group["y"][0] = 20  # a label no LCZ has
    with pytest.raises(LczError, match="labels span 2-20"):
        train(tmp_path / "bad", tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "nan"]


def test_validation_samples_of_no_trained_class_are_refused(tmp_path):
    patches = next(learnable_batches())  # training: LCZ 2, 6 and 14
    patches.y[patches.split == 1] = 9
    write_dataset(tmp_path / "p", [patches], {**dataset_manifest(), "patch_size": 8})
    with pytest.raises(LczError) as error:
        train(tmp_path / "p", tmp_path / "run")
    assert error.value.parameter == "dataset"
    assert re.search(
        r"validation samples hold only LCZ 9 .*, which no training sample has", error.value.message
    ), error.value.message
    tiles = next(learnable_batches())  # tiles whose validation pixels are all unlabelled
    y = np.broadcast_to(tiles.y[:, None, None], (len(tiles.y), 8, 8)).copy()
    y[tiles.split == 1] = 0
    tiles = Batch(tiles.x, y, tiles.split, tiles.city, tiles.centre_x, tiles.centre_y)
    write_dataset(tmp_path / "t", [tiles], {**dataset_manifest(), "kind": "tiles", "patch_size": 8})
    config = TrainConfig(task="segmentation")
    with pytest.raises(LczError, match="validation tiles hold no labelled pixel") as error:
        train(tmp_path / "t", tmp_path / "run", config)
    assert error.value.parameter == "dataset"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "t"]


@pytest.mark.slow
def test_a_diverging_run_is_refused_naming_the_learning_rate(tmp_path):
    write_dataset(tmp_path / "ds", learnable_batches(), {**dataset_manifest(), "patch_size": 8})
    config = TrainConfig(epochs=1, batch_size=8, width=4, learning_rate=1e30, threads=1)
    with pytest.raises(LczError, match="never finite: the training diverged") as error:
        train(tmp_path / "ds", tmp_path / "run", config)
    assert error.value.parameter == "learning_rate"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.slow
def test_overwrite_replaces_only_the_run_files_and_warns_of_empty_bands(tmp_path):
    write_dataset(tmp_path / "ds", learnable_batches(), {**dataset_manifest(), "patch_size": 8})
    run = tmp_path / "run"
    config = TrainConfig(epochs=2, batch_size=8, width=4)
    first = train(tmp_path / "ds", run, config)
    assert first["warnings"] and "b1" in first["warnings"][0]
    (run / "predictions.tif").write_bytes(b"the user's")
    earlier = (run / "model.safetensors").read_bytes()
    second = train(
        tmp_path / "ds", run, TrainConfig(epochs=1, batch_size=8, width=4), overwrite=True
    )
    assert second["epochs_run"] == 1 and (run / "model.safetensors").read_bytes() != earlier
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["experiment.toml", "log.csv", "curves.png", "model.safetensors", "predictions.tif"]
    )
    assert read_experiment(run / "experiment.toml")[2].epochs == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "run"]


# ------------------------------------------------------------------ catalogues, extents


def test_city_catalogues_are_checked(tmp_path):
    def catalogue(text: str) -> Path:
        path = tmp_path / "cities.toml"
        path.write_text(text)
        return path

    head = "[cities.x]\nyear = 2024\nextent = [13.3, 52.4, 13.5, 52.6]\n"
    embeddings = '[cities.x.embeddings.s2]\npath = "x.tif"\n'
    cities = load_catalogue(catalogue(head + embeddings))
    assert [c.name for c in pick_cities(cities, ["x"])] == ["x"]
    with pytest.raises(LczError, match="no city 'atlantis'") as error:
        pick_cities(cities, ["atlantis"])
    assert error.value.parameter == "city"
    cases = {
        "[cities.x]\nextent = [-1e308, 0, 1, 1]\n": "extent: .* is not lon/lat",
        "[cities.x]\nextent = [1, 1, 0, 0]\n": "xmin < xmax",
        '[cities.x]\nextent = "berlin"\n': "expected a list",
        '[cities.x]\nyear = "2024"\n': "year is '2024'",
        "[cities.x]\nextents = [0, 0, 1, 1]\n": "unknown keys extents",
        head + '[cities.x.embeddings.s2]\nkind = "geotiff"\n': "lacks the keys path",
        head + '[cities.x.embeddings.s2]\npath = "a"\nkind = "tiff"\n': "kind is 'tiff'",
        head + '[cities.x.labels.w]\npath = "a"\nepsg = "32633"\n': "epsg is '32633'",
        '[cities.x]\nextent = [0, 0, 1, 1]\nextent_crs = "EPSG:99999"\n': "is not a CRS",
    }
    for text, message in cases.items():
        with pytest.raises(LczError, match=message) as error:
            load_catalogue(catalogue(text))
        assert error.value.parameter == "cities"


@LINUX
def test_a_huge_extent_is_clipped_to_the_data(tmp_path, write_raster):
    data = np.ones((2, 50, 40), np.float32)
    path = write_raster(tmp_path / "e.tif", data, pixel=10.0)
    with open_source(path) as source:
        grid = make_grid(source, (-1e300, -1e300, 1e300, 1e300), cell_px=4)
        assert (grid.rows, grid.cols) == (13, 10) and grid.bounds[0] == source.bounds[0]
    code = (
        f"lcz_core.sampling.grid_with_splits(lcz_core.rasters.open_source({str(path)!r}), "
        f"{str(tmp_path / 'g.gpkg')!r}, (-1e15, -1e15, 1e15, 1e15), 4)['cells']"
    )
    assert run_limited(code, budget_gib=1.0) == {"result": grid.rows * grid.cols}


# ------------------------------------------------------------------ readers


def test_broken_kmz_and_sub_pixel_extents_are_errors(tmp_path, demo_city):
    broken = tmp_path / "areas.kmz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LczError, match="cannot read .* as KML/KMZ") as error:
        open_labels(broken)
    assert error.value.parameter == "labels"
    empty = tmp_path / "empty.kmz"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("doc.kml", "<kml>not closed")
    with pytest.raises(LczError, match="KML/KMZ"):
        open_labels(empty)
    (tmp_path / "labels.tif").mkdir()  # unreadable as a raster
    with pytest.raises(LczError, match="not a raster GDAL can read") as error:
        open_labels(tmp_path / "labels.tif")
    assert error.value.parameter == "labels"
    with rasterio.open(demo_city.reference) as ref:
        left, top = ref.bounds.left, ref.bounds.top
    tiny = (left + 50, top - 50, left + 50.1, top - 49.9)  # 0.1 m inside a 100 m pixel
    with pytest.raises(LczError, match="less than one pixel") as error:
        import_lcz_map(demo_city.reference, tmp_path / "i.tif", extent=tiny)
    assert error.value.parameter == "extent"


def test_compare_refuses_a_raster_that_is_not_an_lcz_map(tmp_path, demo_city):
    with pytest.raises(LczError, match="64 band\\(s\\) of float32") as error:
        compare_lcz_maps(
            demo_city.embeddings_tif, tmp_path / "c.json", reference=demo_city.reference
        )
    assert error.value.parameter == "input" and not list(tmp_path.iterdir())


def test_atomic_path_is_removed_on_failure(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.tif") as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert not list(tmp_path.iterdir())
