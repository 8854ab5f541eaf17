"""Label readers on real files (WUDAPT KMZ, GeoClimate polygons, LCZ rasters) and bad inputs."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box

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
    with pytest.raises(LczError, match="55, 120"):
        open_labels(tmp_path / "l.gpkg", class_field="num")
    labels = open_labels(tmp_path / "l.gpkg", class_field="num", mapping={55: 17, 120: 11})
    assert labels.frame["lcz"].tolist() == [2, 17, 3, 11]
    with pytest.raises(LczError, match="no field 'lcz'; its fields: cls, num"):
        open_labels(tmp_path / "l.gpkg", class_field="lcz")


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
