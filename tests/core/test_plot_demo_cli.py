"""Plots, the synthetic demo city and the command line / worker protocol."""

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import rasterio
from affine import Affine

from lcz_core.demo import DEMO_BANDS, DEMO_SIZE, make_demo_city
from lcz_core.lcz import CLASS_BY_CODE
from lcz_core.plot import plot_lcz, plot_lcz_raster, save_lcz_plot


def _has_colour(image, hex_color, min_pixels=50):
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    close = np.all(np.abs(image[..., :3] - rgb) < 2 / 255, axis=-1)
    return int(close.sum()) >= min_pixels


def test_plot_array_shows_only_present_classes(tmp_path):
    codes = np.zeros((60, 80), np.uint8)
    codes[:30] = 2
    codes[30:] = 17
    codes[:, :10] = 0
    fig = plot_lcz(codes, title="two classes")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["LCZ 2: Compact mid-rise", "LCZ G: Water"]
    path = save_lcz_plot(codes, tmp_path / "p.png", transform=Affine(10, 0, 5e5, 0, -10, 4e6))
    image = matplotlib.image.imread(path)
    assert _has_colour(image, CLASS_BY_CODE[2].color) and _has_colour(
        image, CLASS_BY_CODE[17].color
    )
    assert not _has_colour(image, CLASS_BY_CODE[14].color)


def test_plot_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        plot_lcz(np.zeros((2, 3, 4)))


def test_demo_city_is_complete_and_deterministic(demo_city, tmp_path):
    with rasterio.open(demo_city.labels) as src:
        labels = src.read(1)
        assert src.shape == (DEMO_SIZE, DEMO_SIZE) and src.crs.to_epsg() == 32633
    present = set(np.unique(labels).tolist())
    assert {1, 2, 5, 6, 8, 9, 10, 11, 12, 14, 17} <= present
    with rasterio.open(demo_city.embeddings_tif) as src:
        emb = src.read()
        assert src.count == DEMO_BANDS and src.descriptions[0] == "A00"
    missing = np.isnan(emb).all(axis=0)
    assert 0.001 < missing.mean() < 0.05
    import zarr

    array = zarr.open_group(str(demo_city.embeddings_zarr), mode="r")["embeddings"]
    assert np.array_equal(array[:, 100:120, 200:230], emb[:, 100:120, 200:230], equal_nan=True)
    # the embeddings carry the classes: per-class means differ far more than the noise
    means = np.array([np.nanmean(emb[:, labels == c], axis=1) for c in (2, 14, 17)])
    assert np.linalg.norm(means[0] - means[1]) > 3
    again = make_demo_city(tmp_path / "again")
    with rasterio.open(again.embeddings_tif) as src:
        assert np.array_equal(src.read(), emb, equal_nan=True)
    import geopandas as gpd

    patches = gpd.read_file(demo_city.patches)
    polygons = gpd.read_file(demo_city.polygons)
    assert len(patches) > 100 and set(patches["lcz"]) <= present
    assert len(polygons) >= 10 and patches.crs.to_epsg() == 32633


def test_demo_city_grows_with_its_size(tmp_path):
    from lcz_core.errors import LczError

    city = make_demo_city(tmp_path / "small", size=320)
    with rasterio.open(city.labels) as labels, rasterio.open(city.reference) as reference:
        assert labels.shape == (320, 320) and reference.shape == (32, 32)
        codes = labels.read(1)
    assert {2, 6, 14} <= set(np.unique(codes).tolist())
    with pytest.raises(LczError, match="size: 333 must be a multiple of 10"):
        make_demo_city(tmp_path / "odd", size=333)


def test_demo_reference_map_disagrees_realistically(demo_city):
    with rasterio.open(demo_city.reference) as src:
        reference = src.read(1)
        assert src.res == (100.0, 100.0)
    with rasterio.open(demo_city.labels) as src:
        labels = src.read(1)
    mode = np.array(
        [
            [
                np.bincount(labels[r : r + 10, c : c + 10].ravel()).argmax()
                for c in range(0, 480, 10)
            ]
            for r in range(0, 480, 10)
        ]
    )
    agreement = (mode == reference).mean()
    assert 0.7 < agreement < 0.95


def _cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "lcz_core", *args], capture_output=True, text=True, **kwargs
    )


def test_cli_worker_protocol_result_and_progress(demo_city, tmp_path):
    done = _cli(
        "--jsonl",
        "plot-lcz-map",
        "--input",
        str(demo_city.labels),
        "--output",
        str(tmp_path / "d.png"),
    )
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert {m["type"] for m in messages} >= {"progress", "result"}
    assert messages[-1]["type"] == "result" and messages[-1]["outputs"]["output"] == str(
        tmp_path / "d.png"
    )
    assert "G" in messages[-1]["outputs"]["classes"]


def test_cli_error_names_parameter(tmp_path):
    done = _cli(
        "--jsonl",
        "import-lcz-map",
        "--input",
        str(tmp_path / "nope.tif"),
        "--output",
        str(tmp_path / "o.tif"),
    )
    assert done.returncode == 1
    error = json.loads(done.stdout.splitlines()[-1])
    assert (
        error["type"] == "error"
        and error["parameter"] == "input"
        and "does not exist" in error["message"]
    )
    plain = _cli(
        "plot-lcz-map", "--input", str(tmp_path / "nope.tif"), "--output", str(tmp_path / "o.png")
    )
    assert plain.returncode == 1 and "input:" in plain.stderr and "Traceback" not in plain.stderr


def test_cli_sigterm_cancels_without_partial_output(tmp_path):
    out = tmp_path / "city"
    process = subprocess.Popen(
        [sys.executable, "-m", "lcz_core", "--jsonl", "demo", "--output", str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    first = json.loads(process.stdout.readline())
    assert first["type"] == "progress"
    process.terminate()
    rest = process.stdout.read()
    assert process.wait(timeout=60) == 130
    assert json.loads(rest.splitlines()[-1])["type"] == "cancelled"
    leftovers = [p.name for p in out.iterdir()] if out.exists() else []
    assert not [name for name in leftovers if "partial" in name]


def test_plot_raster_in_degrees(real_data, tmp_path):
    from lcz_core.lczmap import import_lcz_map

    import_lcz_map(real_data / "zaragoza/lcz_zaragoza.tif", tmp_path / "z.tif")
    result = plot_lcz_raster(tmp_path / "z.tif", tmp_path / "z.png")
    assert result["crs"] == "EPSG:4326" and result["classes"][0] == "2"
    assert _has_colour(matplotlib.image.imread(tmp_path / "z.png"), CLASS_BY_CODE[14].color)
