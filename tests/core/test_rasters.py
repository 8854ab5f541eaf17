"""Embedding sources on real and written files: GeoTIFF, tiles, zarr (v3, xarray-style v2),
AlphaEarth int8 (bottom-up rows), masks; cities and UTM zones (TESSERA: test_tessera.py)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from rasterio.windows import Window

from lcz_core.cities import load_catalogue
from lcz_core.errors import LczError
from lcz_core.extents import extent_to_utm, reproject_extent, utm_crs_for
from lcz_core.rasters import GeoTiffSource, open_source

BERLIN_TIF = "berlin/Berlin_S2_2024-10-24_sample.tif"


def _write_tif(path, data, transform, crs="EPSG:32633", nodata=None):
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0])
    profile.update(dtype=str(data.dtype), crs=crs, transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_berlin_geotiff_window_reads_match_rasterio_and_pad_outside(real_data):
    path = real_data / BERLIN_TIF
    with open_source(path) as source, rasterio.open(path) as ds:
        assert source.count == 10 and source.crs.to_epsg() == 32633 and source.res == 10.0
        inside = source.read(Window(100, 50, 32, 32))
        np.testing.assert_array_equal(
            inside, ds.read(window=Window(100, 50, 32, 32)).astype(np.float32)
        )
        edge = source.read(Window(-8, 340, 16, 16))
        assert np.isnan(edge[:, :, :8]).all() and np.isnan(edge[:, 8:, :]).all()
        np.testing.assert_array_equal(edge[:, :8, 8:], ds.read(window=Window(0, 340, 8, 8)))
        assert source.read_pixels == 32 * 32 + 16 * 16
        assert source.masked_pixels == int(np.isnan(edge[0]).sum())  # real pixels are all valid


def test_missing_pixels_masked_and_counted(tmp_path):
    data = np.arange(3 * 6 * 6, dtype=np.int16).reshape(3, 6, 6) + 1
    data[:, 0, 0] = 0  # all-zero vector: an artefact, not a value
    data[1, 2, 3] = -9999  # nodata in one band masks the pixel
    path = _write_tif(tmp_path / "e.tif", data, Affine(10, 0, 0, 0, -10, 60), nodata=-9999)
    with open_source(path) as source:
        out = source.read(Window(0, 0, 6, 6))
    assert out.dtype == np.float32
    assert np.isnan(out[:, 0, 0]).all() and np.isnan(out[:, 2, 3]).all()
    assert source.masked_pixels == 2 and np.isfinite(out).sum() == 3 * 34


def test_folder_of_tiles_reads_like_one_file(tmp_path, demo_city):
    (tmp_path / "tiles").mkdir()
    with rasterio.open(demo_city.embeddings_tif) as ds:
        whole = ds.read(window=Window(0, 0, 200, 100))
        for i, col in enumerate((0, 120)):
            window = Window(col, 0, 120 if col == 0 else 80, 100)
            _write_tif(
                tmp_path / "tiles" / f"t{i}.tif",
                ds.read(window=window),
                ds.window_transform(window),
                nodata=float("nan"),
            )
    with open_source(tmp_path / "tiles") as mosaic:
        assert (mosaic.width, mosaic.height) == (200, 100)
        np.testing.assert_array_equal(
            mosaic.read(Window(100, 10, 40, 40)), whole[:, 10:50, 100:140]
        )


def test_zarr_band_first_matches_geotiff(demo_city):
    with open_source(demo_city.embeddings_zarr) as z, open_source(demo_city.embeddings_tif) as t:
        assert z.count == 64 and z.crs == t.crs and z.transform == t.transform
        assert z.band_names == t.band_names
        np.testing.assert_array_equal(
            z.read(Window(470, 10, 32, 32)), t.read(Window(470, 10, 32, 32))
        )
        assert z.masked_pixels == t.masked_pixels > 0


def test_xarray_style_zarr_v2_pixel_last(tmp_path):
    data = np.random.default_rng(1).normal(size=(20, 30, 4)).astype(np.float32)
    data[5, 7] = -1.0
    root = zarr.open_group(str(tmp_path / "x.zarr"), mode="w", zarr_format=2)
    array = root.create_array("emb", shape=data.shape, dtype="float32", chunks=(10, 10, 4))
    array[:] = data
    array.attrs.update(
        _ARRAY_DIMENSIONS=["y", "x", "band"], grid_mapping="spatial_ref", _FillValue=-1.0
    )
    ref = root.create_array("spatial_ref", shape=(), dtype="int64")
    ref.attrs.update(
        crs_wkt=rasterio.crs.CRS.from_epsg(32631).to_wkt(), GeoTransform="500000 10 0 6000000 0 -10"
    )
    with open_source(tmp_path / "x.zarr") as source:
        assert source.crs.to_epsg() == 32631 and source.transform == Affine(
            10, 0, 500000, 0, -10, 6000000
        )
        out = source.read(Window(0, 0, 30, 20))
    np.testing.assert_array_equal(out[:, 2, 3], data[2, 3])
    assert np.isnan(out[:, 5, 7]).all() and source.masked_pixels == 1


def test_zarr_without_georeference_refused(tmp_path):
    root = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    root.create_array("emb", shape=(2, 4, 4), dtype="float32")
    with pytest.raises(LczError, match="no CRS attribute"):
        open_source(tmp_path / "bare.zarr")


def test_alphaearth_int8_bottom_up_dequantised(tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.integers(-127, 128, size=(64, 8, 5), dtype=np.int8)
    raw[:, 0, 0] = -128  # bottom row in the file = the southern-most row
    # rows stored bottom-up: positive y pixel size, origin at the southern edge
    path = _write_tif(tmp_path / "aef.tif", raw, Affine(10, 0, 1000, 0, 10, 2000), nodata=-128)
    with open_source(path, kind="aef") as source:
        assert source.transform == Affine(10, 0, 1000, 0, -10, 2080)
        assert source.band_names[:2] == ["A00", "A01"]
        out = source.read(Window(0, 0, 5, 8))
    north_up = raw[:, ::-1, :].astype(np.float64)
    expected = np.sign(north_up) * (north_up / 127.5) ** 2
    assert np.isnan(out[:, 7, 0]).all() and source.masked_pixels == 1
    np.testing.assert_allclose(out[:, :7], expected[:, :7], rtol=1e-6)
    with open_source(path, kind="aef", dequantise="linear") as linear:
        np.testing.assert_allclose(
            linear.read(Window(1, 0, 4, 8)), north_up[:, :, 1:] / 127, rtol=1e-6
        )
    with pytest.raises(LczError, match="unknown rule") as error:
        open_source(path, kind="aef", dequantise="cubic")
    assert error.value.parameter == "dequantise"


def test_utm_zones_and_extent_reprojection():
    assert utm_crs_for(13.4, 52.5) == "EPSG:32633"  # Berlin
    assert utm_crs_for(144.96, -37.81) == "EPSG:32755"  # Melbourne
    assert utm_crs_for(5.3, 60.4) == "EPSG:32632"  # Bergen: the Norway exception
    assert utm_crs_for(-0.1, 51.5) == "EPSG:32630"
    box, crs = extent_to_utm((13.30, 52.45, 13.45, 52.55), "EPSG:4326")
    assert crs == "EPSG:32633" and 380_000 < box[0] < box[2] < 400_000
    back = reproject_extent(box, crs, "EPSG:4326")
    assert back[0] <= 13.30 and back[2] >= 13.45  # the densified box covers the original
    with pytest.raises(LczError):
        utm_crs_for(0, 85)


def test_city_catalogue_opens_sources(tmp_path, real_data):
    (tmp_path / "cities.toml").write_text(
        f"""
[cities.berlin]
year = 2024
extent = [13.28, 52.47, 13.32, 52.50]
[cities.berlin.embeddings.s2]
kind = "geotiff"
path = "{real_data / BERLIN_TIF}"
[cities.berlin.labels.wudapt]
kind = "polygons"
path = "{real_data / "berlin/Berlin_labels.shp"}"
class_field = "Name"
""",
        encoding="utf-8",
    )
    cities = load_catalogue(tmp_path / "cities.toml")
    berlin = cities["berlin"]
    with berlin.open_embeddings() as source:
        assert isinstance(source, GeoTiffSource) and source.count == 10
        extent = berlin.extent_in(source.crs)
        assert extent[0] < source.bounds[2] and extent[2] > source.bounds[0]
    assert berlin.label_settings()["class_field"] == "Name"
    with pytest.raises(LczError, match="no source named"):
        berlin.open_embeddings("aef")
