"""Scale-out on dask.distributed: the same map byte for byte, progress, cancel, refusals."""

from __future__ import annotations

import multiprocessing
import pickle

import distributed
import numpy as np
import pytest
import rasterio

from lcz_core import predict_lcz_map
from lcz_core.errors import LczError
from lcz_core.models import create_model, save_model
from lcz_core.predict import predict_raster
from lcz_core.progress import Cancelled, Progress


@pytest.fixture
def random_model(model_metadata, tmp_path):
    """An untrained model file: its map is arbitrary, which is all a comparison needs."""

    def write(task: str, bands: int = 64) -> str:
        metadata = model_metadata(task, bands, (2, 6, 11, 14), stem="1x1", mean=0.0, std=1.0)
        path = tmp_path / f"{task}.safetensors"
        return str(save_model(path, create_model(metadata).eval(), metadata))

    return write


def read(path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as dataset:
        return dataset.read(1), {"transform": dataset.transform, "crs": dataset.crs}


class Recording(Progress):
    """Progress that keeps what was reported, and cancels once `marker` is reported."""

    def __init__(self, marker: str | None = None) -> None:
        super().__init__()
        self.marker, self.reports = marker, []

    def _emit(self, percent: float, message: str | None) -> None:
        self.reports.append((percent, message))
        if self.marker and message and self.marker in message:
            self.cancel()


def test_row_bands_of_whole_blocks_stack_into_the_whole_map(demo_city, random_model, tmp_path):
    for task, stride in (("patch", 16), ("segmentation", None)):
        model = random_model(task)
        whole = predict_raster(
            model, demo_city.embeddings_tif, tmp_path / "whole.tif", stride=stride
        )
        codes, grid = read(tmp_path / "whole.tif")
        confidence, _ = read(tmp_path / "whole_confidence.tif")
        parts = [
            predict_raster(
                model, demo_city.embeddings_tif, tmp_path / f"{k}.tif", stride=stride, part=(k, 3)
            )
            for k in range(3)
        ]
        assert [p["output"] is None for p in parts] == [True, False, False]  # 2 block rows
        bands = [read(p["output"]) for p in parts[1:]]
        assert bands[0][1]["transform"] == grid["transform"]
        assert sum(p["height"] for p in parts[1:]) == whole["height"]
        np.testing.assert_array_equal(np.concatenate([b[0] for b in bands]), codes)
        band_confidence = [read(p["confidence"])[0] for p in parts[1:]]
        np.testing.assert_array_equal(np.concatenate(band_confidence), confidence)


def test_predict_on_a_dask_cluster_writes_the_same_map_byte_for_byte(
    demo_city, random_model, tmp_path
):
    model = random_model("patch")
    arguments = {"model": model, "embeddings": str(demo_city.embeddings_tif), "stride": 16}
    single = predict_lcz_map(**arguments, output=str(tmp_path / "single.tif")).as_dict()
    progress = Recording()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        spread = predict_lcz_map(
            **arguments,
            output=str(tmp_path / "cluster.tif"),
            scheduler=cluster.scheduler_address,
            progress=progress,
        ).as_dict()
    assert (tmp_path / "cluster.tif").read_bytes() == (tmp_path / "single.tif").read_bytes()
    np.testing.assert_array_equal(
        read(tmp_path / "cluster_confidence.tif")[0], read(tmp_path / "single_confidence.tif")[0]
    )
    for sidecar in (".qml", ".tif.aux.xml"):
        assert (tmp_path / f"cluster{sidecar}").read_text() == (
            tmp_path / f"single{sidecar}"
        ).read_text()
    paths = ("output", "confidence")
    assert {k: v for k, v in spread.items() if k not in paths} == {
        k: v for k, v in single.items() if k not in paths
    }
    assert any("row bands done: 8/8" in (m or "") for _, m in progress.reports)
    assert progress.reports[-1][0] == 100.0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_cancel_stops_the_local_cluster_and_leaves_nothing(demo_city, random_model, tmp_path):
    progress = Recording(marker="row bands done: 0/")
    with pytest.raises(Cancelled):
        predict_lcz_map(
            model=random_model("patch"),
            embeddings=str(demo_city.embeddings_tif),
            output=str(tmp_path / "lcz.tif"),
            workers=2,
            progress=progress,
        )
    assert not multiprocessing.active_children()  # the cluster's worker processes are gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch.safetensors"]


def test_scale_out_settings_are_checked(demo_city, random_model, tmp_path):
    arguments = {
        "model": random_model("patch"),
        "embeddings": str(demo_city.embeddings_tif),
        "output": str(tmp_path / "lcz.tif"),
    }
    with pytest.raises(LczError, match="not both") as error:
        predict_lcz_map(**arguments, scheduler="tcp://127.0.0.1:8786", workers=2)
    assert error.value.parameter == "workers"
    with pytest.raises(LczError, match="cannot reach a Dask scheduler at 'nonsense'") as error:
        predict_lcz_map(**arguments, scheduler="nonsense")
    assert error.value.parameter == "scheduler"
    with pytest.raises(LczError) as error:
        predict_lcz_map(**arguments, workers=0)
    assert error.value.parameter == "workers"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch.safetensors"]


def test_a_workers_error_reaches_the_run_with_its_parameter(demo_city, random_model, tmp_path):
    with pytest.raises(LczError, match="trained on 32 bands") as error:  # the demo has 64
        predict_lcz_map(
            model=random_model("patch", bands=32),
            embeddings=str(demo_city.embeddings_tif),
            output=str(tmp_path / "lcz.tif"),
            workers=2,
        )
    assert error.value.parameter == "embeddings"
    assert not multiprocessing.active_children()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch.safetensors"]
    error = pickle.loads(pickle.dumps(LczError("embeddings", "64 bands, the model wants 128")))
    assert (error.parameter, error.message) == ("embeddings", "64 bands, the model wants 128")
    assert str(error) == "embeddings: 64 bands, the model wants 128"


def test_sample_patches_on_a_dask_cluster_writes_the_same_dataset(demo_city, tmp_path):
    from lcz_core import sample_patches
    from lcz_core.datasets import ARRAYS, open_dataset

    left, top, half = 380_000.0, 5_825_000.0, 2_400.0  # the demo's two halves as two cities
    cities = "".join(
        f"""
[cities.{name}]
extent = [{left}, {top - (k + 1) * half}, {left + 2 * half}, {top - k * half}]
extent_crs = "EPSG:32633"
[cities.{name}.embeddings.demo]
kind = "geotiff"
path = "{demo_city.embeddings_tif}"
[cities.{name}.labels.demo]
kind = "raster"
path = "{demo_city.labels}"
"""
        for k, name in enumerate(("north", "south"))
    )
    (tmp_path / "cities.toml").write_text(cities, encoding="utf-8")
    arguments = {"cities": str(tmp_path / "cities.toml"), "block_cells": 2, "buffer": 0.0}
    single = sample_patches(**arguments, output=str(tmp_path / "single")).as_dict()
    progress = Recording()
    spread = sample_patches(
        **arguments, output=str(tmp_path / "spread"), workers=2, progress=progress
    ).as_dict()
    assert {k: v for k, v in spread.items() if k != "output"} == {
        k: v for k, v in single.items() if k != "output"
    }
    one, other = open_dataset(tmp_path / "single"), open_dataset(tmp_path / "spread")
    assert one.manifest == other.manifest and one.manifest["cities"] == ["north", "south"]
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(one, name)[:], getattr(other, name)[:])
    assert any("windows read: 2/2" in (m or "") for _, m in progress.reports)
    assert not multiprocessing.active_children()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cities.toml", "single", "spread"]
