"""Grid, splits and sampling on real files: Berlin S2 + polygons, So2Sat patch locations, demo city."""

from __future__ import annotations

import os

import geopandas as gpd
import h5py
import numpy as np
import pytest
import rasterio
from affine import Affine
from log_lines import LogLines
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window
from shapely.geometry import box

from lcz_core.datasets import open_dataset
from lcz_core.demo import DEMO_CRS, DEMO_ORIGIN, demo_labels
from lcz_core.errors import LczError
from lcz_core.grid import make_grid
from lcz_core.labels import open_labels
from lcz_core.lcz import LCZ_CLASSES
from lcz_core.outputs import LczRasterWriter
from lcz_core.progress import Progress
from lcz_core.rasters import open_source
from lcz_core.sampling import (
    CHECKERBOARD_SHARES,
    CityInput,
    SplitConfig,
    assign_splits,
    cell_footprints,
    check_shares,
    find_candidates,
    grid_with_splits,
    make_dataset,
    split_candidates,
)

SHORT_LABELS = [c.short for c in LCZ_CLASSES]


def test_grid_snaps_to_the_pixel_grid_and_refuses_extent_outside(demo_city):
    with open_source(demo_city.embeddings_tif) as source:
        left, bottom, right, top = source.bounds
        grid = make_grid(source, (left + 13, bottom + 1000, left + 1005, top - 7), cell_px=32)
        assert grid.transform.c == left + 10 and grid.transform.f == top
        assert (grid.rows, grid.cols) == (12, 4)  # 380 rows and 100 columns of pixels
        assert grid.pixel_window(1, 2, source) == Window(1 + 64, 32, 32, 32)
        with pytest.raises(LczError, match="outside the embeddings") as error:
            make_grid(source, (0, 0, 1000, 1000))
    assert error.value.parameter == "extent"


def _demo_dataset(demo_city, folder, seed, buffer_m=320.0, method="blocks", progress=None):
    source = open_source(demo_city.embeddings_zarr)
    labels = open_labels(demo_city.labels)
    split = SplitConfig(method=method, seed=seed, block_cells=3, buffer_m=buffer_m)
    return make_dataset(
        [CityInput("synthetica", source, labels)],
        folder / "ds",
        split=split,
        grid_output=folder / "grid.gpkg",
        progress=progress,
    )


def test_splits_reproducible_byte_for_byte_and_leak_free(demo_city, tmp_path):
    runs, log = [], LogLines()
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        (tmp_path / name).mkdir()
        result = _demo_dataset(demo_city, tmp_path / name, seed, progress=log)
        runs.append(open_dataset(tmp_path / name / "ds"))
    assert result["count"] > 50 and result["excluded_cells"] > 0
    a, b, c = runs
    for array in ("x", "y", "split", "city", "centre_x", "centre_y"):
        assert getattr(a, array)[:].tobytes() == getattr(b, array)[:].tobytes()
    assert a.manifest == b.manifest
    assert a.split[:].tobytes() != c.split[:].tobytes()

    cells = gpd.read_file(tmp_path / "a" / "grid.gpkg")
    train = cells[cells.split == "train"].union_all()
    held_out = cells[cells.split.isin(["val", "test"])]
    assert len(held_out) >= 3
    # no validation or test cell closer than the 320 m buffer to a training cell
    assert held_out.distance(train).min() >= 320.0
    # realised shares and counts, as asked and as written, in the manifest and the result
    counts = np.bincount(c.split[:], minlength=3)
    names = ("train", "val", "test")
    assert c.manifest["split_counts"] == dict(zip(names, counts.tolist(), strict=True))
    assert result["split_counts"] == c.manifest["split_counts"]
    assert result["split_shares"] == c.manifest["split_shares"]
    assert c.manifest["split_fractions"] == [0.7, 0.15, 0.15]
    for name, share in result["split_shares"].items():
        assert share == pytest.approx(counts[names.index(name)] / counts.sum(), abs=1e-4)
        assert abs(share - result["split_fractions"][name]) <= 0.05
    # class counts keyed by LCZ labels (A-G for 11-17) everywhere, with shares per class
    y, split = c.y[:], c.split[:]
    for name in names:
        assert set(result["class_counts"][name]) <= set(SHORT_LABELS)
        for short, n in result["class_counts"][name].items():
            assert n == int(
                ((split == names.index(name)) & (y == SHORT_LABELS.index(short) + 1)).sum()
            )
    assert {"A", "D"} <= set(result["class_shares"])
    for shares in result["class_shares"].values():
        assert sum(shares.values()) == pytest.approx(1, abs=1e-3)
    # what was dropped is counted, logged and recorded
    assert result["dropped_buffer"] == result["excluded_cells"] > 0
    assert result["dropped_min_share"] > 0
    assert c.manifest["dropped"]["buffer"] == result["dropped_buffer"]
    assert any(line.startswith("split: train") for line in log.lines)
    assert any(f"{result['dropped_buffer']} within the buffer" in line for line in log.lines)
    assert any(line.startswith("class D: train") for line in log.lines)
    centres = gpd.points_from_xy(a.centre_x[:], a.centre_y[:])
    joined = gpd.sjoin(gpd.GeoDataFrame(geometry=centres, crs=cells.crs), cells, predicate="within")
    split_names = {0: "train", 1: "val", 2: "test"}
    assert [split_names[s] for s in a.split[:]] == joined.sort_index()["split"].tolist()


def test_patterns_follow_their_layout(demo_city, tmp_path):
    with open_source(demo_city.embeddings_tif) as source:
        grid = make_grid(source, cell_px=32)
        used = cell_footprints(grid)
        stripes = assign_splits(grid, used, SplitConfig(method="stripes", buffer_m=None)).splits
        assert all(len(set(row)) == 1 for row in stripes)  # horizontal stripes
        runs = [int(s) for i, s in enumerate(stripes[:, 0]) if i == 0 or s != stripes[i - 1, 0]]
        assert runs.count(1) >= 2 and runs.count(2) >= 2  # the cycle repeats over the extent
        plan = assign_splits(
            grid, used, SplitConfig(method="checkerboard", block_cells=1, buffer_m=None)
        )
        board = plan.splits
        assert plan.asked == CHECKERBOARD_SHARES  # always half train, whatever the fractions
        assert (board[:, :-1] == 0).sum() + (board[:, 1:] == 0).sum() > 0
        assert not ((board[:, :-1] == 0) & (board[:, 1:] == 0)).any()  # train never beside train
        # the buffer drops the southern (on a row: eastern) cell of each close pair, whichever split
        plan = assign_splits(grid, used, SplitConfig(method="blocks", buffer_m=1.0, seed=2))
        dropped = plan.pattern[plan.splits == -1]
        assert (dropped == 0).any() and (dropped > 0).any()
        train, held = plan.splits == 0, plan.splits > 0
        assert not (train[:-1] & held[1:]).any() and not (held[:-1] & train[1:]).any()
        assert (
            not (train[:, :-1] & held[:, 1:]).any() and not (train[:-1, :-1] & held[1:, 1:]).any()
        )
        left, bottom, right, top = grid.bounds
        north = box(left, top - 7 * grid.cell_size, right, top)  # rows 0-6
        layer = gpd.GeoDataFrame(
            {"split": ["train", "Test"]},
            geometry=[north, box(*grid.bounds).difference(north)],
            crs=grid.crs.to_wkt(),
        )
        layer.to_file(tmp_path / "split.gpkg")
        config = SplitConfig(method="polygons", polygons=str(tmp_path / "split.gpkg"), buffer_m=1.0)
        drawn = grid_with_splits(source, tmp_path / "grid.gpkg", split=config)
    cells = gpd.read_file(tmp_path / "grid.gpkg")
    assert list(cells.columns) == ["cell_id", "row", "col", "split", "geometry"]
    assert drawn["cells"] == len(cells) == 225 and drawn["val_cells"] == 0
    assert set(cells[cells.row <= 6].split) == {"train"}
    assert set(cells[cells.row >= 8].split) == {"test"}
    assert set(cells[cells.row == 7].split) == {"excluded"}  # the test row touching train
    assert drawn["excluded_cells"] == 15
    assert drawn["split_fractions"] == {"train": 105 / 225, "val": 0.0, "test": 120 / 225}
    assert drawn["split_shares"]["test"] == round(105 / 210, 4)


def test_split_polygons_read_from_the_named_layer_of_a_geopackage(demo_city, tmp_path):
    """QGIS names a layer of a multi-layer GeoPackage as 'path|layername=name'."""
    with open_source(demo_city.embeddings_tif) as source:
        grid = make_grid(source, cell_px=32)
        left, bottom, right, top = grid.bounds
        north = box(left, top - 5 * grid.cell_size, right, top)
        rest = box(*grid.bounds).difference(north)
        path = tmp_path / "layers.gpkg"
        decoy = {"split": ["test", "train"]}  # the first layer: the other way round
        gpd.GeoDataFrame(decoy, geometry=[north, rest], crs=grid.crs.to_wkt()).to_file(
            path, layer="decoy"
        )
        splits = {"split": ["train", "val"]}
        gpd.GeoDataFrame(splits, geometry=[north, rest], crs=grid.crs.to_wkt()).to_file(
            path, layer="splits"
        )
        used = cell_footprints(grid)
        for polygons, layer in ((f"{path}|layername=splits", None), (str(path), "splits")):
            config = SplitConfig(
                method="polygons", polygons=polygons, polygons_layer=layer, buffer_m=None
            )
            pattern = assign_splits(grid, used, config).pattern
            assert set(pattern[:5].ravel()) == {0} and set(pattern[5:].ravel()) == {1}
        with pytest.raises(LczError, match="no layer 'nope'") as error:
            assign_splits(
                grid, used, SplitConfig(method="polygons", polygons=f"{path}|layername=nope")
            )
    assert error.value.parameter == "split_polygons_layer"
    with pytest.raises(LczError, match="holds the layers decoy, splits") as error:
        assign_splits(grid, used, SplitConfig(method="polygons", polygons=str(path)))
    assert error.value.parameter == "split_polygons_layer"


@pytest.fixture(scope="module")
def city_960(tmp_path_factory):
    """The grid and patch candidates of the 9.6 km demo city (its labels suffice to split)."""
    path = tmp_path_factory.mktemp("city_960") / "labels.tif"
    transform = Affine(10, 0, DEMO_ORIGIN[0], 0, -10, DEMO_ORIGIN[1])
    with LczRasterWriter(path, crs=DEMO_CRS, transform=transform, width=960, height=960) as out:
        out.write(demo_labels(0, 960))
    source = open_source(path)
    grid = make_grid(source, cell_px=32)
    city = CityInput("synthetica", source, open_labels(path))
    candidates, _ = find_candidates(city, grid, "patches", 0.5, Progress())
    return grid, candidates


def _split_960(city_960, config):
    grid, candidates = city_960
    kept, plan = split_candidates(candidates.take(slice(None)), grid, config, 0)
    assert (np.bincount(kept.split, minlength=3) == plan.counts()).all()
    return plan


@pytest.mark.parametrize(
    ("method", "buffer_m"),
    [
        ("random", 0.0),
        ("random", None),
        ("blocks", 0.0),
        ("blocks", 320.0),
        ("blocks", 500.0),
        ("stripes", 0.0),
        ("stripes", 500.0),
        ("checkerboard", 0.0),
        ("checkerboard", 500.0),
    ],
)
def test_every_method_deals_its_shares_on_the_demo_city(city_960, method, buffer_m):
    """Each split within 5 points of its share, for seeds 0-19, on the 9.6 km demo city."""
    grid, candidates = city_960
    assert (grid.rows, grid.cols) == (30, 30) and len(candidates.y) > 700
    for seed in range(20):
        config = SplitConfig(method=method, seed=seed, buffer_m=buffer_m)
        plan = _split_960(city_960, config)
        shares = plan.counts() / plan.counts().sum()
        assert np.abs(shares - plan.asked).max() <= 0.05, (seed, shares)
        check_shares(config, plan.asked, plan.counts(False), plan.counts(), [plan.block_cells])
    assert plan.asked == (CHECKERBOARD_SHARES if method == "checkerboard" else (0.7, 0.15, 0.15))


@pytest.mark.parametrize(
    ("config", "parameter"),
    [
        (SplitConfig(method="blocks", block_cells=30), "block_cells"),
        (SplitConfig(method="checkerboard", block_cells=30), "block_cells"),
        (SplitConfig(method="blocks", buffer_m=3000.0), "buffer"),
        (SplitConfig(method="checkerboard", buffer_m=3000.0), "buffer"),
    ],
)
def test_splits_that_cannot_deliver_are_refused(city_960, config, parameter):
    plan = _split_960(city_960, config)
    with pytest.raises(LczError) as error:
        check_shares(config, plan.asked, plan.counts(False), plan.counts(), [plan.block_cells])
    assert error.value.parameter == parameter


def test_refusals_name_the_parameter_and_write_nothing(demo_city, tmp_path):
    source = open_source(demo_city.embeddings_tif)
    labels = open_labels(demo_city.labels)
    with pytest.raises(LczError, match="most held-out cells") as error:
        SplitConfig(method="random", buffer_m=100.0).check()
    assert error.value.parameter == "buffer"
    left, bottom, right, top = source.bounds
    tiny = CityInput("synthetica", source, labels, (left, top - 640, left + 640, top))  # 4 cells
    with pytest.raises(LczError) as error:
        make_dataset([tiny], tmp_path / "ds", split=SplitConfig(method="random"))
    assert error.value.parameter == "fractions"
    city = CityInput("synthetica", source, labels)
    with pytest.raises(LczError, match="buffer of 1500 m") as error:
        make_dataset([city], tmp_path / "ds", split=SplitConfig(buffer_m=1500.0))
    assert error.value.parameter == "buffer"
    assert not list(tmp_path.iterdir())


def test_the_buffer_holds_between_point_footprints(demo_city, tmp_path):
    """Points off the cell centres: no held-out footprint comes closer than the buffer to a
    training one, and those further away are kept."""
    points = gpd.read_file(demo_city.patches)
    rng = np.random.default_rng(0)
    shift = rng.integers(-14, 15, size=(len(points), 2)) * 10.0  # up to 140 m off the centre
    points = points.set_geometry(
        gpd.points_from_xy(points.geometry.x + shift[:, 0], points.geometry.y + shift[:, 1]),
        crs=points.crs,
    )
    points.to_file(tmp_path / "points.gpkg")
    source = open_source(demo_city.embeddings_tif)
    labels = open_labels(tmp_path / "points.gpkg", class_field="lcz")
    for buffer_m in (0.0, 100.0):
        folder = tmp_path / f"ds{buffer_m:g}"
        result = make_dataset(
            [CityInput("synthetica", source, labels)],
            folder,
            split=SplitConfig(method="blocks", buffer_m=buffer_m),
            max_missing=1.0,
        )
        ds = open_dataset(folder)
        x, y, split = ds.centre_x[:], ds.centre_y[:], ds.split[:]
        footprints = gpd.GeoSeries(
            [box(a - 160, b - 160, a + 160, b + 160) for a, b in zip(x, y, strict=True)]
        )
        train = footprints[split == 0].union_all()
        gaps = footprints[split > 0].distance(train)
        assert gaps.min() >= buffer_m
        assert footprints[split > 0].intersection(train).area.max() == 0  # never overlapping
        assert result["dropped_buffer"] > 0
        assert result["count"] + result["dropped_buffer"] == len(points)


def test_berlin_patches_carry_the_polygon_class(real_data, tmp_path):
    source = open_source(real_data / "berlin/Berlin_S2_2024-10-24_sample.tif")
    labels = open_labels(real_data / "berlin/Berlin_labels.shp", class_field="Name")
    result = make_dataset(
        [CityInput("berlin", source, labels)],
        tmp_path / "ds",
        split=SplitConfig(method="random", buffer_m=None, seed=1),
        min_share=0.5,
        min_count=3,
    )
    ds = open_dataset(tmp_path / "ds")
    assert len(ds) == result["count"] >= 5 and ds.manifest["band_count"] == 10
    polygons = gpd.read_file(real_data / "berlin/Berlin_labels.shp")
    with rasterio.open(real_data / "berlin/Berlin_S2_2024-10-24_sample.tif") as raw:
        for i in range(len(ds)):
            x, y = ds.centre_x[i], ds.centre_y[i]
            patch = box(x - 160, y - 160, x + 160, y + 160)
            shares = polygons.intersection(patch).area / patch.area
            best = shares.idxmax()
            assert shares[best] >= 0.5 and int(polygons.Name[best]) == ds.y[i]
            row, col = raw.index(x - 155, y + 155)  # upper-left pixel of the patch
            window = Window(col, row, 32, 32)
            # stored as float16: the DN to 11 significant bits
            np.testing.assert_array_equal(ds.x[i], raw.read(window=window).astype(np.float16))
    assert result["rare_classes"]["val"] == [
        c for c in ("2", "5") if result["class_counts"]["val"].get(c, 0) < 3
    ]


def test_so2sat_patch_locations_on_the_city_utm_grid(real_data):
    with h5py.File(real_data / "so2sat/validation_geo.h5", "r") as geo:
        epsg = geo["epsg"][:].ravel()
        city = epsg == 32748  # the UTM 48S city of the validation set: Jakarta
        coord, tfw = geo["coord"][:][city], geo["tfw"][:][city]
    x, y = coord[:, 0], coord[:, 1]
    # footprint from the centre +- 160 m; the tfw holds the upper-left corner and 10 m pixels
    np.testing.assert_allclose(tfw[:, 0], x - 160, atol=1e-3)
    np.testing.assert_allclose(tfw[:, 3], y + 160, atol=1e-3)
    assert np.allclose(tfw[:, 1], 10) and np.allclose(np.abs(tfw[:, 5]), 10)
    # one 10 m grid for the whole city (its Sentinel-2 scene), and the centres on its pixel corners
    assert np.ptp(np.round((x - x[0]) / 10) * 10 - (x - x[0])) < 1e-3
    assert np.ptp(np.round((y - y[0]) / 10) * 10 - (y - y[0])) < 1e-3
    lon, lat = warp_transform("EPSG:32748", "EPSG:4326", x, y)
    assert 106.3 < min(lon) and max(lon) < 107.3 and -6.7 < min(lat) and max(lat) < -5.9


def test_so2sat_points_sample_patches_on_their_footprint(real_data, tmp_path):
    with h5py.File(real_data / "so2sat/validation_geo.h5", "r") as geo:
        n = geo["epsg"].shape[0]
        coord = geo["coord"][:]
        epsg = geo["epsg"][:].ravel()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 17, n)
    with h5py.File(tmp_path / "validation.h5", "w") as main:
        main["label"] = np.eye(17)[codes]
    os.symlink(real_data / "so2sat/validation_geo.h5", tmp_path / "validation_geo.h5")
    labels = open_labels(tmp_path / "validation.h5", epsg=32748)
    assert len(labels.frame) == int((epsg == 32748).sum())
    # an embedding raster on the city's grid covering the first patch and its neighbours
    x0, y0 = coord[epsg == 32748][0, :2]
    transform = Affine(10, 0, x0 - 1500, 0, -10, y0 + 1500)
    data = rng.integers(-100, 100, (4, 300, 300)).astype(np.int8)
    with rasterio.open(tmp_path / "e.tif", "w", driver="GTiff", width=300, height=300, count=4,
                       dtype="int8", crs="EPSG:32748", transform=transform) as dst:  # fmt: skip
        dst.write(data)
    result = make_dataset(
        [CityInput("jakarta", open_source(tmp_path / "e.tif"), labels)],
        tmp_path / "ds",
        split=SplitConfig(method="random", buffer_m=None),
        max_missing=0.0,
    )
    ds = open_dataset(tmp_path / "ds")
    assert len(ds) == result["count"] >= 1
    for i in range(len(ds)):
        match = np.flatnonzero(
            (np.abs(coord[:, 0] - ds.centre_x[i]) < 1e-3)
            & (np.abs(coord[:, 1] - ds.centre_y[i]) < 1e-3)
        )
        assert match.size == 1 and ds.y[i] == codes[match[0]] + 1  # the patch sits on its point
        col, row = ~transform * (ds.centre_x[i] - 160, ds.centre_y[i] + 160)
        np.testing.assert_array_equal(
            ds.x[i], data[:, round(row) : round(row) + 32, round(col) : round(col) + 32]
        )


def test_tiles_hold_rasterised_labels(demo_city, tmp_path):
    source = open_source(demo_city.embeddings_tif)
    labels = open_labels(demo_city.polygons, class_field="lcz")
    result = make_dataset(
        [CityInput("synthetica", source, labels)],
        tmp_path / "tiles",
        kind="tiles",
        split=SplitConfig(method="random", buffer_m=None),
    )
    ds = open_dataset(tmp_path / "tiles")
    assert ds.kind == "tiles" and ds.y.shape == (result["count"], 64, 64) and len(ds) >= 3
    for i in range(len(ds)):
        x, y = ds.centre_x[i], ds.centre_y[i]
        tile_transform = Affine(10, 0, x - 320, 0, -10, y + 320)
        np.testing.assert_array_equal(
            ds.y[i], labels.rasterize(source.crs, tile_transform, (64, 64))
        )
    points = open_labels(demo_city.patches, class_field="lcz")
    with pytest.raises(LczError, match="tiles need polygons"):
        make_dataset([CityInput("synthetica", source, points)], tmp_path / "bad", kind="tiles")


def test_labels_beside_the_extent_refused(demo_city, tmp_path, real_data):
    source = open_source(demo_city.embeddings_tif)
    berlin = open_labels(real_data / "berlin/Berlin_labels.shp", class_field="Name")
    with pytest.raises(LczError, match="no patch of synthetica") as error:
        make_dataset([CityInput("synthetica", source, berlin)], tmp_path / "ds")
    assert error.value.parameter == "labels"
    assert not (tmp_path / "ds").exists()


def test_command_line_writes_grid_and_dataset(demo_city, tmp_path, capsys):
    import json

    from lcz_core.cli import main

    common = ["--embeddings", str(demo_city.embeddings_tif), "--seed", "3"]
    assert (
        main(["create-grid", *common, "--output", str(tmp_path / "g.gpkg"), "--cell-size", "64"])
        == 0
    )
    grid = json.loads(capsys.readouterr().out)
    assert grid["cells"] == 64 and len(gpd.read_file(tmp_path / "g.gpkg")) == 64
    args = ["sample-patches", *common, "--labels", str(demo_city.polygons), "--class-field", "lcz"]
    args += ["--min-share", "0.2"]  # the demo polygons are 160 m squares
    assert (
        main(
            [*args, "--output", str(tmp_path / "ds"), "--split-method", "random", "--buffer", "-1"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == len(open_dataset(tmp_path / "ds")) > 0
    assert main([*args, "--output", str(tmp_path / "bad"), "--class-field", "nope"]) == 1
    assert "--class-field: " in capsys.readouterr().err
