"""The embedding check: counts, mask raster, reports, per-part records, on written files."""

from __future__ import annotations

import json
import logging
import math
import time

import distributed
import numpy as np
import pytest
import rasterio
from affine import Affine

import lcz_core
from lcz_core.cluster import BLOCKS_PER_TASK, PARTS_PER_WORKER
from lcz_core.embedding_qa import check_embeddings, stripes
from lcz_core.errors import LczError
from lcz_core.layouts import quantise_aef, write_tessera_zone
from lcz_core.progress import Cancelled, Progress


class Recorder(Progress):
    """Progress that keeps what it was told, and cancels once `marker` is in a message."""

    def __init__(self, marker: str | None = None) -> None:
        super().__init__()
        self.marker = marker
        self.seen: list[float] = []
        self.messages: list[str] = []

    def _emit(self, percent: float, message: str | None) -> None:
        self.seen.append(percent)
        self.messages.append(message or "")
        if self.marker and self.marker in (message or ""):
            self.cancel()


def _unit_vectors(rng, shape, bands=64):
    data = rng.normal(size=(bands, *shape)).astype(np.float32)
    return data / np.linalg.norm(data, axis=0)


def test_stripes_found_along_rows_and_columns():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3, 20, 30)).astype(np.float32)
    data[:, 4, 5:15] = data[:, 4, 5:6]  # 10 identical along a row
    data[:, 8:13, 20] = data[:, 8:9, 20]  # 5 along a column
    data[:, 15, 0:9] = data[:, 15, 0:1]
    data[0, 15, 4] = np.nan  # a gap breaks that run: 4 + 4
    found = stripes(data, 5)
    assert found[4, 5:15].all() and found[8:13, 20].all() and found.sum() == 15


def _write_aef(path):
    """A 170 x 150 AlphaEarth file: nodata, all-zero vectors, a stripe across a 64 px block
    edge, far norms."""
    rng = np.random.default_rng(1)
    data = _unit_vectors(rng, (150, 170))
    data[:, 10:15, 20:25] = np.nan  # 25 px nodata (-128)
    data[:, 40, 60:63] = 0.0  # 3 all-zero vectors
    data[:, 70, 45:75] = data[:, 70, 45:46]  # striping across a block edge (block 64)
    data[:, 100, 100:104] *= 0.25  # 4 vectors far from unit length
    raw = quantise_aef(data)
    profile = dict(driver="GTiff", width=170, height=150, count=64, dtype="int8", nodata=-128)
    profile.update(crs="EPSG:32633", transform=Affine(10, 0, 380_000, 0, -10, 5_820_000))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(raw)
    return path


def test_alphaearth_file_counts_mask_and_reports(tmp_path):
    path = _write_aef(tmp_path / "aef.tif")
    progress = Recorder()
    result = check_embeddings(
        path, tmp_path / "check.json", source_kind="aef", block=64, progress=progress
    )
    report = json.loads((tmp_path / "check.json").read_text(encoding="utf-8"))
    assert report["bands"] == 64 and report["crs"] == "EPSG:32633"
    assert report["feature_space"] == "alphaearth (quadratic dequantisation)"
    assert report["pixels"] == 150 * 170
    assert report["missing_pixels"] == 28
    assert report["suspect"] == {"norm_outliers": 4, "stripes": 30, "constant_parts": 0}
    assert report["suspect_pixels"] == 34
    assert report["valid_pixels"] == 150 * 170 - 28 - 34
    assert report["parts"][0]["zero_vector_pixels"] == 3 and not report["parts"][0]["constant"]
    assert result["output"] == str(tmp_path / "check.json")
    with rasterio.open(tmp_path / "check_mask.tif") as mask:
        classes = mask.read(1)
        assert mask.colormap(1)[3][:3] == (215, 48, 31) and mask.crs.to_epsg() == 32633
    assert (classes[10:15, 20:25] == 2).all() and (classes[40, 60:63] == 2).all()
    assert (classes[70, 45:75] == 3).all() and (classes[100, 100:104] == 3).all()
    assert np.bincount(classes.ravel(), minlength=4)[1:].tolist() == [
        report["valid_pixels"],
        28,
        34,
    ]
    assert 'paletteEntry value="3"' in (tmp_path / "check_mask.qml").read_text(encoding="utf-8")
    assert "suspect" in (tmp_path / "check_mask.tif.aux.xml").read_text(encoding="utf-8")
    page = (tmp_path / "check.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "25,500" in page
    assert progress.seen[-1] == 100 and len(progress.seen) > 8


def _write_tiles(folder):
    """Two 60 x 50 float tiles side by side: t0 with one far norm, t1 constant."""
    rng = np.random.default_rng(2)
    folder.mkdir()
    for i, col in enumerate((0, 60)):
        data = rng.normal(size=(8, 50, 60)).astype(np.float32) + 3
        if i == 1:
            data[:] = data[:, :1, :1]  # a tile holding one vector everywhere
        else:
            data[:, 5, 5] *= 40  # a norm far from all others
        profile = dict(driver="GTiff", width=60, height=50, count=8, dtype="float32")
        profile.update(
            crs="EPSG:32633", transform=Affine(10, 0, 380_000 + 10 * col, 0, -10, 5_820_000)
        )
        with rasterio.open(folder / f"t{i}.tif", "w", **profile) as dst:
            dst.write(data)
    return folder


def test_constant_tile_and_norm_outliers_in_a_folder_of_tiles(tmp_path):
    _write_tiles(tmp_path / "tiles")
    (tmp_path / "out").mkdir()
    report = check_embeddings(tmp_path / "tiles", tmp_path / "out" / "check.json", stripe_px=1000)
    constant = {p["name"].rsplit("/", 1)[-1]: p["constant"] for p in report["parts"]}
    assert constant == {"t0.tif": False, "t1.tif": True}
    assert (
        report["suspect"]["constant_parts"] == 50 * 60 and report["suspect"]["norm_outliers"] == 1
    )
    assert report["feature_space"] == "" and report["valid_pixels"] == 120 * 50 - 3000 - 1


def test_tessera_store_checked_over_an_extent(tmp_path):
    rng = np.random.default_rng(3)
    transform = Affine(10, 0, 448_000, 0, -10, 5_412_000)  # near 2.3 E, 48.85 N: zone 31
    data = rng.normal(size=(1, 16, 300, 300)).astype(np.float32)
    data[0, :, 100:120, 100:120] = np.nan  # scale +inf: not embedded
    write_tessera_zone(tmp_path / "t.zarr", data, transform, "EPSG:32631", [2024], shard=128)
    report = check_embeddings(
        tmp_path / "t.zarr",
        tmp_path / "check.json",
        year=2024,
        extent=(449_000, 5_410_000, 450_500, 5_411_500),
        extent_crs="EPSG:32631",
    )
    assert report["feature_space"] == "tessera 1.1 dclimate" and report["bands"] == 16
    assert report["pixels"] == 150 * 150 and report["missing_pixels"] == 400
    assert report["parts"][0]["name"].endswith("utm31") and report["year"] == 2024


def test_bad_settings_write_nothing(tmp_path, demo_city):
    with pytest.raises(LczError) as error:
        check_embeddings(demo_city.embeddings_tif, tmp_path / "c.json", stripe_px=1)
    assert error.value.parameter == "stripe_px"
    with pytest.raises(LczError) as error:
        check_embeddings(demo_city.embeddings_tif, tmp_path / "missing" / "c.json")
    assert error.value.parameter == "output"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, started once for this module's cluster checks."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster


def _outputs(folder) -> tuple[dict, np.ndarray, dict, str]:
    """The JSON report less its output paths, the mask's pixels and tags, the HTML page."""
    report = json.loads((folder / "check.json").read_text(encoding="utf-8"))
    with rasterio.open(folder / "check_mask.tif") as mask:
        pixels, tags = mask.read(1), mask.tags()
        assert mask.colormap(1)[3][:3] == (215, 48, 31)
    page = (folder / "check.html").read_text(encoding="utf-8").replace(str(folder), "")
    paths = ("mask", "report_html")
    return {k: v for k, v in report.items() if k not in paths}, pixels, tags, page


@pytest.mark.parametrize(
    ("case", "settings"),
    [
        ("demo", {"block": 64}),
        ("demo", {"block": 100, "extent": (380_500, 5_821_000, 384_000, 5_824_300)}),
        ("aef", {"block": 64, "source_kind": "aef"}),
        ("tiles", {"block": 16, "stripe_px": 20}),
    ],
)
def test_check_on_a_dask_cluster_gives_the_same_report_and_mask(
    case, settings, cluster, demo_city, tmp_path
):
    embeddings = {
        "demo": lambda: demo_city.embeddings_tif,
        "aef": lambda: _write_aef(tmp_path / "aef.tif"),
        "tiles": lambda: _write_tiles(tmp_path / "tiles"),  # two parts, one constant
    }[case]()
    runs = {}
    for run in ("single", "cluster"):
        (tmp_path / run).mkdir()
        progress = Recorder()
        scheduler = cluster.scheduler_address if run == "cluster" else None
        check_embeddings(
            embeddings,
            tmp_path / run / "check.json",
            scheduler=scheduler,
            progress=progress,
            **settings,
        )
        runs[run] = (_outputs(tmp_path / run), progress.messages)
    (report, pixels, tags, page), _ = runs["single"]
    (spread, spread_pixels, spread_tags, spread_page), messages = runs["cluster"]
    assert spread == report and spread_tags == tags and spread_page == page
    np.testing.assert_array_equal(spread_pixels, pixels)
    assert report["pixels"] == pixels.size and set(np.unique(pixels)) <= {1, 2, 3}
    if case != "demo":
        assert report["suspect_pixels"] > 0 and len(report["parts"]) == (
            2 if case == "tiles" else 1
        )
    block = settings["block"]
    blocks = math.ceil(pixels.shape[0] / block) * math.ceil(pixels.shape[1] / block)
    size = min(BLOCKS_PER_TASK, math.ceil(blocks / (2 * PARTS_PER_WORKER)))  # 2 workers
    tasks = math.ceil(blocks / size)
    assert 1 < size and f"mask blocks done: {tasks}/{tasks}" in messages  # a few blocks a task
    assert f"mask blocks done: {blocks - 1}/{blocks}" in runs["single"][1]
    assert sorted(p.name for p in (tmp_path / "cluster").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir()
    )


def test_check_step_on_a_cluster_and_its_refusals(cluster, demo_city, tmp_path):
    arguments = {"embeddings": str(demo_city.embeddings_tif), "stripe_px": 8}
    single = lcz_core.check_embeddings(**arguments, output=str(tmp_path / "single.json"))
    spread = lcz_core.check_embeddings(
        **arguments, output=str(tmp_path / "spread.json"), scheduler=cluster.scheduler_address
    )
    paths = ("output", "mask", "report_html")
    assert {k: v for k, v in spread.as_dict().items() if k not in paths} == {
        k: v for k, v in single.as_dict().items() if k not in paths
    }
    written = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(LczError, match="not both") as error:
        lcz_core.check_embeddings(
            **arguments,
            output=str(tmp_path / "c.json"),
            scheduler="tcp://127.0.0.1:8786",
            workers=2,
        )
    assert error.value.parameter == "workers"
    assert sorted(p.name for p in tmp_path.iterdir()) == written


def test_cancel_on_a_cluster_cancels_the_tasks_and_writes_nothing(cluster, tmp_path):
    path = _write_aef(tmp_path / "aef.tif")
    progress = Recorder(marker="mask blocks done: 0/")
    with pytest.raises(Cancelled):
        check_embeddings(
            path, tmp_path / "check.json", block=32, scheduler=cluster.scheduler_address,
            progress=progress,
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aef.tif"]
    deadline = time.monotonic() + 10
    while any(str(key).startswith("lcz-") for key in cluster.scheduler.tasks):
        assert time.monotonic() < deadline, "the run's tasks stay on the scheduler"
        time.sleep(0.1)
