"""Label readers on real files (WUDAPT KMZ, GeoClimate polygons, LCZ rasters) and bad inputs."""

from __future__ import annotations

import os

import geopandas as gpd
import h5py
import numpy as np
import pytest
import rasterio
from affine import Affine
from log_lines import LogLines
from rasterio.crs import CRS
from shapely.geometry import box

from lcz_core.cities import load_catalogue
from lcz_core.errors import LczError
from lcz_core.labels import open_labels, rasterize_to_file


def test_melbourne_kmz_folders_become_classes(real_data):
    labels = open_labels(real_data / "melbourne/melbourne_2016_JamesBennie.kmz")
    frame = labels.frame
    assert len(frame) == 101 and labels.crs.to_epsg() == 4326
    assert set(frame.geom_type) <= {"Polygon", "MultiPolygon"}
    counts = frame["lcz"].value_counts().to_dict()
    # folders 1, 3, 6, 8, 9 and A, B, D, G (11, 12, 14, 17) hold the polygons
    assert counts == {1: 3, 3: 5, 6: 15, 8: 15, 9: 13, 11: 13, 12: 13, 14: 13, 17: 11}
    lon, lat = frame.union_all().centroid.coords[0]
    assert 144 < lon < 146 and -39 < lat < -37


def test_redon_geoclimate_wudapt_coding_to_1_17(real_data):
    path = real_data / "redon/osm_2022_Redon_rsu_lcz.geojson"
    raw = gpd.read_file(path)["LCZ_PRIMARY"].to_numpy()
    labels = open_labels(path, class_field="LCZ_PRIMARY")
    codes = labels.frame["lcz"].to_numpy()
    assert len(codes) == 521 and codes.min() >= 1 and codes.max() <= 17
    np.testing.assert_array_equal(codes[raw >= 101], raw[raw >= 101] - 90)  # 101-107 -> 11-17
    np.testing.assert_array_equal(codes[raw <= 10], raw[raw <= 10])


def test_geoclimate_class_field_recognised_without_being_named(real_data):
    path = real_data / "redon/osm_2022_Redon_rsu_lcz.geojson"
    progress = LogLines()
    labels = open_labels(path, progress=progress)
    named = open_labels(path, class_field="LCZ_PRIMARY")
    assert labels.frame["lcz"].tolist() == named.frame["lcz"].tolist()
    assert "class field LCZ_PRIMARY (GeoClimate)" in progress.lines[0]
    assert "read as wudapt" in progress.lines[1]


def test_unknown_codes_and_missing_field_refused(tmp_path):
    frame = gpd.GeoDataFrame(
        {"cls": ["2", "A", "X", "LCZ 99"], "num": [2, 55, 3, 120]},
        geometry=[box(i, 0, i + 1, 1) for i in range(4)],
        crs="EPSG:32633",
    )
    frame.to_file(tmp_path / "l.gpkg")
    with pytest.raises(LczError, match="LCZ 99, X") as error:
        open_labels(tmp_path / "l.gpkg", class_field="cls")
    assert error.value.parameter == "class_field"
    with pytest.raises(LczError, match="55, 120.*choose the field") as error:
        open_labels(tmp_path / "l.gpkg", class_field="num")
    assert error.value.parameter == "class_field"
    # a partial mapping is refused, naming what it leaves out
    with pytest.raises(LczError, match="values 2, 3 are present but not in the mapping") as error:
        open_labels(tmp_path / "l.gpkg", class_field="num", mapping={55: 17, 120: 11})
    assert error.value.parameter == "mapping"
    labels = open_labels(tmp_path / "l.gpkg", class_field="num", mapping="2:2,3:3,55:G,120:nodata")
    assert labels.frame["lcz"].tolist() == [2, 17, 3]  # the feature mapped to nodata is left out
    with pytest.raises(LczError, match="no field 'lcz'; its fields: cls, num") as error:
        open_labels(tmp_path / "l.gpkg", class_field="lcz")
    assert error.value.parameter == "class_field"
    with pytest.raises(LczError, match="name the field of l.gpkg .*; its fields: cls, num"):
        open_labels(tmp_path / "l.gpkg")


def test_layer_of_a_multi_layer_file(tmp_path, write_raster):
    path = tmp_path / "two.gpkg"
    for name, code in (("centre", 2), ("parks", 11)):
        layer = gpd.GeoDataFrame({"lcz": [code]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:32633")
        layer.to_file(path, layer=name)
    with pytest.raises(LczError, match="holds the layers centre, parks; name one") as error:
        open_labels(path)
    assert error.value.parameter == "layer"
    with pytest.raises(LczError, match="no layer 'roads'; its layers: centre, parks"):
        open_labels(path, layer="roads")
    assert open_labels(path, layer="parks").frame["lcz"].tolist() == [11]
    raster = write_raster(tmp_path / "lcz.tif", np.full((4, 4), 11, np.uint8), nodata=0)
    with pytest.raises(LczError, match="layer: .*raster labels, which have no layers"):
        open_labels(raster, layer="parks")


def test_labels_without_crs_refused(tmp_path):
    frame = gpd.GeoDataFrame({"lcz": [2]}, geometry=[box(0, 0, 1, 1)])
    frame.to_file(tmp_path / "nocrs.shp")
    with pytest.raises(LczError, match="no CRS") as error:
        open_labels(tmp_path / "nocrs.shp", class_field="lcz")
    assert error.value.parameter == "labels"


def test_polygons_rasterised_in_another_crs(real_data):
    labels = open_labels(real_data / "berlin/Berlin_labels.shp", class_field="Name")
    in_degrees = type(labels)(labels.frame.to_crs("EPSG:4326"), "berlin in degrees")
    with rasterio.open(real_data / "berlin/Berlin_S2_2024-10-24_sample.tif") as ds:
        crs, transform, shape = ds.crs, ds.transform, ds.shape
    direct = labels.rasterize(crs, transform, shape)
    warped = in_degrees.rasterize(crs, transform, shape)
    # two of the polygons (LCZ 2 and 5) meet the crop
    assert set(np.unique(direct)) == {0, 2, 5} and (direct > 0).mean() > 0.1
    assert (direct == warped).mean() > 0.995  # only edge pixels may differ after reprojection


def test_wudapt_raster_warped_to_a_utm_grid(real_data, tmp_path):
    labels = open_labels(real_data / "shanghai/Shanghai.tif")
    assert labels.coding == "wudapt"
    with rasterio.open(real_data / "shanghai/Shanghai.tif") as ds:
        raw = ds.read(1)
        b = ds.bounds
    transform = Affine(50, 0, b.left + 20_000, 0, -50, b.top - 20_000)
    out = labels.rasterize(CRS.from_epsg(32651), transform, (200, 200))
    expected = raw[200:300, 200:300]  # 100 m source, 50 m grid: every source pixel twice
    expected = np.where(expected >= 101, expected - 90, expected)
    np.testing.assert_array_equal(out[::2, ::2], np.where(expected < 0, 0, expected))
    result = rasterize_to_file(
        labels, tmp_path / "l.tif", CRS.from_epsg(32651), transform, 200, 200, block=128
    )
    with rasterio.open(tmp_path / "l.tif") as written:
        np.testing.assert_array_equal(written.read(1), out)
        assert written.colormap(1)[17][:3] == (106, 106, 255)
    assert result["labelled_pixels"] == int((out > 0).sum())
    assert (tmp_path / "l.qml").is_file()


def test_european_lcz_raster_nan_nodata(real_data):
    labels = open_labels(real_data / "redon/redonWudapt.tif")
    with rasterio.open(real_data / "redon/redonWudapt.tif") as ds:
        raw, crs, transform, shape = ds.read(1), ds.crs, ds.transform, ds.shape
    out = labels.rasterize(crs, transform, shape)
    np.testing.assert_array_equal(out, np.nan_to_num(raw, nan=0).astype(np.uint8))


def test_rasterising_labels_far_from_the_grid_refused(real_data, tmp_path):
    labels = open_labels(real_data / "melbourne/melbourne_2016_JamesBennie.kmz")
    transform = Affine(10, 0, 384040, 0, -10, 5820320)  # Berlin
    with pytest.raises(LczError, match="no label inside the output grid"):
        rasterize_to_file(labels, tmp_path / "l.tif", CRS.from_epsg(32633), transform, 50, 50)
    assert list(tmp_path.iterdir()) == []


def test_lcz_generator_raster_as_labels(tmp_path, write_raster):
    raw = np.array([[0, 0, 0], [2, 11, 17], [8, 14, 14]], np.uint8)
    filtered = np.array([[0, 0, 0], [2, 14, 17], [14, 14, 14]], np.uint8)
    probability = np.array([[0, 0, 0], [55, 70, 100], [40, 90, 85]], np.uint8)
    source = write_raster(tmp_path / "gen.tif", np.stack([raw, filtered, probability]))
    progress = LogLines()
    labels = open_labels(source, progress=progress)
    assert labels.band == 2 and labels.coding == "lcz17"
    assert "band 2 used: the filtered LCZ band" in progress.lines[1]
    with rasterio.open(source) as ds:
        out = labels.rasterize(ds.crs, ds.transform, ds.shape)
    np.testing.assert_array_equal(out, filtered)
    assert open_labels(source, label_band=1).rasterize(ds.crs, ds.transform, ds.shape)[2, 0] == 8


def test_undeclared_zero_in_raster_labels_needs_label_nodata(tmp_path, write_raster):
    source = write_raster(tmp_path / "l.tif", np.array([[0, 3], [11, 17]], np.uint8))
    with pytest.raises(LczError, match="give label_nodata 0") as error:
        open_labels(source)
    assert error.value.parameter == "label_nodata"
    labels = open_labels(source, label_nodata=0)
    with rasterio.open(source) as ds:
        assert labels.rasterize(ds.crs, ds.transform, ds.shape).tolist() == [[0, 3], [11, 17]]


def test_so2sat_city_chosen_by_epsg_rasterised_as_label_cells(real_data, tmp_path):
    with h5py.File(real_data / "so2sat/validation_geo.h5", "r") as geo:
        coord = geo["coord"][:, :2]
        epsg = geo["epsg"][:].ravel()
    codes = np.random.default_rng(1).integers(0, 17, epsg.size)
    with h5py.File(tmp_path / "validation.h5", "w") as main:
        main["label"] = np.eye(17)[codes]
    os.symlink(real_data / "so2sat/validation_geo.h5", tmp_path / "validation_geo.h5")
    with pytest.raises(LczError, match="holds cities in EPSG 32610, .*; choose one") as error:
        open_labels(tmp_path / "validation.h5")
    assert error.value.parameter == "epsg"
    labels = open_labels(tmp_path / "validation.h5", epsg=32748)
    jakarta = np.flatnonzero(epsg == 32748)
    x0, y0 = coord[jakarta[0]]
    # a 10 m grid of 3 km around the first Jakarta patch centre
    transform = Affine(10, 0, x0 - 1500, 0, -10, y0 + 1500)
    result = rasterize_to_file(
        labels, tmp_path / "so2sat.tif", CRS.from_epsg(32748), transform, 300, 300
    )
    with rasterio.open(tmp_path / "so2sat.tif") as written:
        out = written.read(1)
    # every centre labels its 100 m cell (10 x 10 pixels) where it meets the grid, nothing else
    x, y = coord[jakarta, 0], coord[jakarta, 1]
    near = (np.abs(x - x0) < 1550) & (np.abs(y - y0) < 1550)
    expected = np.zeros_like(out)
    for cx, cy, code in zip(x[near], y[near], codes[jakarta][near] + 1, strict=True):
        col, row = (round(v) for v in ~transform * (cx - 50, cy + 50))
        expected[max(row, 0) : row + 10, max(col, 0) : col + 10] = code
    np.testing.assert_array_equal(out, expected)
    assert result["labelled_pixels"] == int((expected > 0).sum()) >= 100 * 10


def test_city_catalogue_label_settings_are_honoured(tmp_path):
    two = tmp_path / "labels.gpkg"
    for name, values in (("centre", [1, 2]), ("lcz", [7, 42])):
        frame = gpd.GeoDataFrame(
            {"code": values}, geometry=[box(0, 0, 1, 1), box(1, 0, 2, 1)], crs="EPSG:32633"
        )
        frame.to_file(two, layer=name)
    (tmp_path / "cities.toml").write_text(
        """
[cities.a]
extent = [0, 0, 2, 1]
extent_crs = "EPSG:32633"
[cities.a.labels.survey]
path = "labels.gpkg"
layer = "lcz"
class_field = "code"
mapping = {7 = "A", 42 = "nodata"}

[cities.b]
extent = [0, 0, 2, 1]
[cities.b.labels.survey]
path = "labels.gpkg"
class_fields = "code"
""",
        encoding="utf-8",
    )
    with pytest.raises(LczError, match="unknown keys class_fields; known: class_field,"):
        load_catalogue(tmp_path / "cities.toml")
    text = (tmp_path / "cities.toml").read_text(encoding="utf-8")
    (tmp_path / "cities.toml").write_text(text.replace("class_fields", "class_field"))
    catalogue = load_catalogue(tmp_path / "cities.toml")
    labels = catalogue["a"].open_labels()
    assert labels.frame["lcz"].tolist() == [11]
