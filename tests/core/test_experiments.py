"""Experiments: the file checked, one split per city whatever the embedding, merged datasets, and
whole experiments on the demo city that rank a clean source above a noisy one and resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from lcz_core import run_experiment, sample_patches
from lcz_core.datasets import merge_datasets, open_dataset
from lcz_core.errors import LczError
from lcz_core.experiments import check_same_splits, read_config, resolved_toml
from lcz_core.progress import Cancelled, Progress

REPO = Path(__file__).resolve().parents[2]
SIZE = 320  # pixels a side of the demo city: 3.2 km, a few seconds per training
HALF = 381_600.0  # easting splitting the demo city into a western and an eastern city


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A small demo city, its embeddings again with strong noise (a second GeoTIFF), and the
    demo experiment comparing the two."""
    from lcz_core.demo import make_demo_city
    from lcz_core.demo_experiment import write_demo_experiment

    folder = tmp_path_factory.mktemp("sources")
    city = make_demo_city(folder / "city", size=SIZE)
    config = write_demo_experiment(city, folder / "experiment", epochs=4, patch_size=16)
    return city, folder / "experiment" / "noisy_embeddings.tif", config


def city_table(name: str, extent, embeddings: dict[str, Path], labels: Path) -> str:
    lines = [f"[cities.{name}]", f"extent = {list(extent)}", 'extent_crs = "EPSG:32633"']
    for source, path in embeddings.items():
        lines += [f"[cities.{name}.embeddings.{source}]", f'path = "{path}"']
    lines += [f"[cities.{name}.labels.demo]", f'path = "{labels}"', 'kind = "raster"']
    return "\n".join(lines) + "\n"


def write_config(folder: Path, text: str, cities: str) -> Path:
    path = folder / "experiment.toml"
    path.write_text(text + cities, encoding="utf-8")
    return path


def bounds(city) -> tuple[float, float, float, float]:
    with rasterio.open(city.embeddings_tif) as src:
        return tuple(src.bounds)


MODEL = """
[models.resnet]
task = "patch"
epochs = 4
width = 8
threads = 1
"""


def test_the_experiment_file_is_checked_before_any_work(sources, tmp_path):
    city, noisy, _ = sources
    cities = city_table(
        "synthetica", bounds(city), {"clean": city.embeddings_tif, "noisy": noisy}, city.labels
    )
    good = "[experiment]\nembeddings = ['clean', 'noisy']\n" + MODEL
    read_config(write_config(tmp_path, good, cities))
    bad = {
        "[experiment]\nembedings = ['clean']\n" + MODEL: "unknown keys embedings",
        "[experiment]\nembeddings = ['clean', 'aef']\n" + MODEL: "no embedding source aef",
        "[plan]\nmulti_city = true\n" + MODEL: "multi_city needs at least two cities",
        "[plan]\nper_city = false\n" + MODEL: "plans nothing",
        "[sampling]\nseed = -1\n" + MODEL: "sampling.seed",
        "[sampling]\nsplit_method = 'hexagons'\n" + MODEL: "sampling.split_method",
        "[models.m]\ntask = 'forest'\n": "models.m.task",
        "[models.m]\ntask = 'patch'\nepochs = 0\n": "models.m.epochs",
        "[models.m]\ntask = 'patch'\nepoch = 3\n": "unknown keys epoch",
        "[experiment]\ntitle = 'x'\n": "at least one model",
        "[sampling]\npatch_size = 20\n[models.u]\ntask = 'segmentation'\n": "multiple of 8",
        "[references]\nparis = 'p.tif'\n" + MODEL: "references.paris",
    }
    for text, message in bad.items():
        with pytest.raises(LczError) as error:
            read_config(write_config(tmp_path, text, cities))
        assert error.value.parameter == "config"
        assert message in error.value.message, text
    with pytest.raises(LczError, match="either as"):
        read_config(write_config(tmp_path, "[experiment]\ncatalogue = 'c.toml'\n" + MODEL, cities))


def test_the_documented_example_is_a_valid_experiment():
    example = read_config(REPO / "docs" / "experiment_example.toml")
    assert [c.name for c in example.cities] == ["berlin", "paris"]
    assert example.embeddings == ["aef", "tessera_v1", "tessera_v1_1"]
    assert all(example.plan.values())
    assert [(m.name, m.kind) for m in example.models] == [("resnet", "patches"), ("unet", "tiles")]


def test_the_demo_experiment_compares_the_clean_and_the_noisy_embeddings(sources):
    city, noisy, config = sources
    demo = read_config(config)
    assert demo.embeddings == ["clean", "noisy"]
    assert [m.task for m in demo.models] == ["patch", "segmentation"]
    assert demo.references == {"synthetica": str(city.reference.resolve())}
    with rasterio.open(city.embeddings_tif) as a, rasterio.open(noisy) as b:
        clean, noisier = a.read(), b.read()
        assert (a.transform, a.crs, a.descriptions) == (b.transform, b.crs, b.descriptions)
    assert np.array_equal(np.isnan(clean), np.isnan(noisier))
    valid = ~np.isnan(clean)
    assert 2.5 < np.std(noisier[valid] - clean[valid]) / np.std(clean[valid]) < 3.5


def test_the_resolved_experiment_reads_back_the_same(sources, tmp_path):
    city, noisy, _ = sources
    cities = city_table(
        "synthetica", bounds(city), {"clean": city.embeddings_tif, "noisy": noisy}, city.labels
    )
    text = (
        "[experiment]\nembeddings = ['noisy']\nglobal_lcz_map = false\n"
        "[sampling]\nfractions = [0.6, 0.2, 0.2]\nseed = 3\n" + MODEL
    )
    first = read_config(write_config(tmp_path, text, cities))
    (tmp_path / "again").mkdir()
    again = read_config(write_config(tmp_path / "again", resolved_toml(first), ""))
    for field in ("embeddings", "labels", "sampling", "plan", "references", "global_lcz_map"):
        assert getattr(again, field) == getattr(first, field), field
    assert again.sampling["fractions"] == "0.6,0.2,0.2" and again.sampling["seed"] == 3
    assert [(m.name, m.task, m.options) for m in again.models] == [
        (m.name, m.task, m.options) for m in first.models
    ]
    assert list(again.cities[0].embeddings) == ["noisy"]
    assert again.cities[0].embeddings["noisy"]["path"] == str(noisy)
    assert again.cities[0].extent == first.cities[0].extent


def splits_by_centre(folder: Path) -> dict[tuple[float, float], int]:
    ds = open_dataset(folder)
    return dict(zip(zip(ds.centre_x[:], ds.centre_y[:], strict=True), ds.split[:], strict=True))


def test_two_sources_on_one_grid_give_every_cell_the_same_split(sources, tmp_path):
    city, noisy, _ = sources
    settings = {"labels": str(city.labels), "patch_size": 16, "split_method": "blocks"}
    folders = {}
    for name, path, seed in (
        ("clean", city.embeddings_tif, 0),
        ("noisy", noisy, 0),
        ("reseeded", noisy, 1),
    ):
        folders[name] = tmp_path / name
        sample_patches(embeddings=str(path), seed=seed, output=str(folders[name]), **settings)
    clean, noisy_splits = splits_by_centre(folders["clean"]), splits_by_centre(folders["noisy"])
    common = clean.keys() & noisy_splits.keys()
    assert len(common) > 0.9 * len(clean)
    assert all(clean[c] == noisy_splits[c] for c in common)
    assert {clean[c] for c in common} == {0, 1, 2}
    found = check_same_splits("synthetica", {k: folders[k] for k in ("clean", "noisy")})
    assert found["same_grid"]
    assert found["cells_compared"] == len(common)
    # another seed deals the cells otherwise: the check must see it
    with pytest.raises(LczError, match="different splits"):
        check_same_splits("synthetica", {k: folders[k] for k in ("clean", "reseeded")})


def test_merged_datasets_keep_each_city_its_samples_grid_and_split(sources, tmp_path):
    city, _, _ = sources
    left, bottom, right, top = bounds(city)
    parts = {"west": (left, bottom, HALF, top), "east": (HALF, bottom, right, top)}
    folders = []
    for name, extent in parts.items():
        catalogue = tmp_path / f"{name}.toml"
        catalogue.write_text(
            city_table(name, extent, {"demo": city.embeddings_tif}, city.labels), encoding="utf-8"
        )
        folders.append(tmp_path / name)
        sample_patches(cities=str(catalogue), patch_size=16, output=str(folders[-1]))
    merged = merge_datasets(folders, tmp_path / "both")
    ds, west, east = (open_dataset(f) for f in (tmp_path / "both", *folders))
    assert ds.manifest["cities"] == ["west", "east"]
    assert ds.manifest["city_grids"] == west.manifest["city_grids"] + east.manifest["city_grids"]
    assert merged["count"] == len(west) + len(east) == len(ds)
    assert np.array_equal(ds.city[:], np.repeat([0, 1], [len(west), len(east)]))
    for name in ("split", "y", "centre_x"):
        together = np.concatenate([getattr(west, name)[:], getattr(east, name)[:]])
        assert np.array_equal(getattr(ds, name)[:], together)
    assert np.array_equal(ds.x[-3:], east.x[-3:], equal_nan=True)
    with pytest.raises(LczError, match="appears twice"):
        merge_datasets([folders[0], folders[0]], tmp_path / "twice")
    sample_patches(
        cities=str(tmp_path / "east.toml"),
        dataset_kind="tiles",
        patch_size=16,
        output=str(tmp_path / "t"),
    )
    with pytest.raises(LczError, match="differ in kind"):
        merge_datasets([folders[0], tmp_path / "t"], tmp_path / "mixed")


class CancelAtTraining(Progress):
    """Cancels the run when the `at`-th training starts."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.seen = at, 0

    def log(self, message: str) -> None:
        self.seen += message.startswith("training ")
        if self.seen == self.at:
            self.cancel()


class Recorder(Progress):
    """Keeps every percentage reported."""

    def __init__(self) -> None:
        super().__init__()
        self.percents: list[float] = []

    def _emit(self, percent: float, message: str | None) -> None:
        self.percents.append(percent)


@pytest.mark.slow
def test_an_experiment_ranks_the_clean_source_above_the_noisy_one_and_resumes(sources, tmp_path):
    city, noisy, _ = sources
    cities = city_table(
        "synthetica", bounds(city), {"clean": city.embeddings_tif, "noisy": noisy}, city.labels
    )
    text = (
        "[experiment]\ntitle = 'clean or noisy'\nbootstrap_draws = 200\n"
        f"[references]\nsynthetica = '{city.reference}'\n"
        "[sampling]\npatch_size = 16\n" + MODEL
    )
    config = write_config(tmp_path, text, cities)
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        run_experiment(config=str(config), output=str(out), progress=CancelAtTraining(2))
    runs = out / "runs"
    assert (runs / "clean/resnet/synthetica/model.safetensors").is_file()
    assert not (runs / "noisy/resnet/synthetica").exists()

    progress = Recorder()
    result = run_experiment(config=str(config), output=str(out), progress=progress)
    assert (result.runs, result.runs_skipped) == (2, 1)
    assert np.all(np.diff(progress.percents) > -1e-9) and progress.percents[-1] == 100
    report = json.loads(Path(result.report_json).read_text(encoding="utf-8"))
    oa = {r["embedding"]: r["oa"] for r in report["results"]}
    assert oa["clean"] > oa["noisy"] + 0.1
    assert [r["embedding"] for r in report["ranking"]["synthetica"]["resnet"]] == ["clean", "noisy"]
    assert report["splits"]["synthetica"]["patches"]["cells_compared"] > 100
    for r in report["results"]:
        low, high = r["intervals"]["oa"]
        assert low <= r["oa"] <= high and r["n"] > 20
    # both embeddings were sampled on one grid and split cell by cell alike
    folders = {e: next((out / "datasets/synthetica" / e).iterdir()) for e in ("clean", "noisy")}
    clean, noisy_splits = (splits_by_centre(f) for f in folders.values())
    assert all(clean[c] == noisy_splits[c] for c in clean.keys() & noisy_splits.keys())
    maps = report["maps"]["synthetica"]
    assert maps["reference"] and maps["note"] is None
    agreement = {m["embedding"]: m["agreement"]["oa"] for m in maps["maps"]}
    assert agreement["clean"] > agreement["noisy"]

    with open(result.report_csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["embedding"], float(r["oa"])) for r in rows] == [
        ("clean", oa["clean"]),
        ("noisy", oa["noisy"]),
    ]
    assert float(rows[0]["oa_low"]) <= oa["clean"] <= float(rows[0]["oa_high"])
    page = Path(result.report).read_text(encoding="utf-8")
    assert f"clean ({oa['clean']:.3f}) &gt; noisy ({oa['noisy']:.3f})" in page
    for figure in report["figures"]["synthetica"].values():
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{figure}"' in page
    for run in report["runs"]:
        assert (Path(run["folder"]) / "experiment.toml").is_file()

    model = runs / "noisy/resnet/synthetica/model.safetensors"
    evaluation = runs / "noisy/resnet/synthetica/evaluation_synthetica/metrics.json"
    before, evaluated = model.stat().st_mtime_ns, evaluation.stat().st_mtime_ns
    again = run_experiment(config=str(config), output=str(out))
    assert again.runs_skipped == 2 and model.stat().st_mtime_ns == before
    # changed training options make a new run; the datasets stay
    config.write_text(config.read_text(encoding="utf-8").replace("epochs = 4", "epochs = 3"))
    changed = run_experiment(config=str(config), output=str(out))
    assert changed.runs_skipped == 0 and model.stat().st_mtime_ns != before
    assert evaluation.stat().st_mtime_ns != evaluated
    assert all(len(list((out / "datasets/synthetica" / e).iterdir())) == 1 for e in folders)


@pytest.mark.slow
def test_an_experiment_over_two_cities_trains_every_plan_and_fills_the_transfer_matrix(
    sources, tmp_path
):
    city, _, _ = sources
    left, bottom, right, top = bounds(city)
    cities = city_table(
        "west", (left, bottom, HALF, top), {"demo": city.embeddings_tif}, city.labels
    ) + city_table("east", (HALF, bottom, right, top), {"demo": city.embeddings_tif}, city.labels)
    text = (
        "[experiment]\nbootstrap_draws = 50\nglobal_lcz_map = 'no_such_map.tif'\n"
        "[plan]\nper_city = true\nmulti_city = true\nleave_one_out = true\n"
        f"[references]\nwest = '{city.reference}'\n"
        "[sampling]\npatch_size = 16\n"
        + MODEL
        + "[models.unet]\ntask = 'segmentation'\nepochs = 2\nwidth = 8\nthreads = 1\n"
    )
    result = run_experiment(
        config=str(write_config(tmp_path, text, cities)), output=str(tmp_path / "out")
    )
    report = json.loads(Path(result.report_json).read_text(encoding="utf-8"))
    # per city 2, all cities 1, leave one out 2; for both models
    assert result.runs == 10 and result.runs_skipped == 0
    trained = {(r["model"], r["trained_on"], tuple(r["training_cities"])) for r in report["runs"]}
    assert ("unet", "all other cities", ("east",)) in trained
    assert ("resnet", "all cities", ("west", "east")) in trained
    for matrix in report["transfer"]:
        assert matrix["columns"] == ["west", "east"]
        rows = {row["trained_on"]: row["oa"] for row in matrix["rows"]}
        assert list(rows) == ["west", "east", "all cities", "all other cities"]
        assert all(v is not None for values in rows.values() for v in values)
    transfers = [r for r in report["results"] if r["transfer"]]
    assert {(r["trained_on"], r["tested_on"]) for r in transfers} == {
        ("west", "east"),
        ("east", "west"),
        ("all other cities", "west"),
        ("all other cities", "east"),
    }
    merged = open_dataset(
        next(p for p in (tmp_path / "out/datasets/merged/demo").iterdir() if "tiles-all" in p.name)
    )
    assert merged.manifest["cities"] == ["west", "east"] and merged.kind == "tiles"
    assert report["splits"]["east"]["tiles"] == {
        "same_grid": True,
        "grids": [["demo"]],
        "cells_compared": 0,
    }
    west, east = report["maps"]["west"], report["maps"]["east"]
    assert west["reference"] and all(m["agreement"] for m in west["maps"])
    assert east["reference"] is None and "not available" in east["note"]
    assert any("east" in w and "not available" in w for w in result.warnings)
    page = Path(result.report).read_text(encoding="utf-8")
    assert "Reference: the global LCZ map was not available" in page
    assert page.count("<h3>demo / ") == 2  # a transfer matrix per model
