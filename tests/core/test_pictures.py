"""Embedding pictures: the PCA false-colour RGB and the cosine-similarity map, on real files."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from lcz_core import pictures
from lcz_core.errors import LczError
from lcz_core.pictures import embedding_rgb, embedding_similarity
from lcz_core.rasters import open_source

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def city_data(demo_city):
    """The demo city's embeddings (C, H, W; NaN = missing), labels and georeference."""
    with open_source(demo_city.embeddings_tif) as source:
        data = source.read(Window(0, 0, source.width, source.height))
        transform, crs = source.transform, source.crs
    with rasterio.open(demo_city.labels) as labels:
        codes = labels.read(1)
    return data, codes, transform, crs


@pytest.fixture(scope="module")
def city_rgb(demo_city, tmp_path_factory):
    """The default RGB (percentile stretch) of the whole demo city, with its PNG."""
    folder = tmp_path_factory.mktemp("rgb")
    result = embedding_rgb(demo_city.embeddings_tif, folder / "rgb.tif", png=folder / "rgb.png")
    with rasterio.open(result["output"]) as dataset:
        return result, dataset.read(), dataset.profile, dataset.colorinterp


def principal_scores(data: np.ndarray) -> np.ndarray:
    """(n, 3) scores of the valid pixels on the top 3 components of all of them (numpy only)."""
    pixels = data.reshape(data.shape[0], -1).T.astype(np.float64)
    pixels = pixels[~np.isnan(pixels).any(axis=1)]
    z = (pixels - pixels.mean(axis=0)) / pixels.std(axis=0)
    _, _, vt = np.linalg.svd(z.T @ z)  # right singular vectors of z, from its Gram matrix
    top = vt[:3]
    top *= np.sign(top[np.arange(3), np.abs(top).argmax(axis=1)])[:, None]
    return z @ top.T


def test_rgb_is_an_rgba_geotiff_on_the_source_grid(demo_city, city_data, city_rgb):
    result, rgba, profile, colorinterp = city_rgb
    data, _, transform, crs = city_data
    assert profile["count"] == 4 and profile["dtype"] == "uint8"
    assert colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)
    assert profile["crs"] == crs and profile["transform"] == transform
    missing = np.isnan(data).any(axis=0)
    assert missing.any() and np.array_equal(rgba[3] == 0, missing)
    assert np.all(rgba[:3, missing] == 0) and np.all(rgba[3, ~missing] == 255)
    assert result["valid_pixels"] == int((~missing).sum())
    assert result["sample_pixels"] == pictures.SAMPLE_PIXELS < result["valid_pixels"]
    with open(result["png"], "rb") as png:
        assert png.read(8) == PNG_SIGNATURE
    assert 'type="multibandcolor"' in open(result["qml"]).read()


def test_percentile_stretch_clips_two_percent_at_each_end(city_rgb):
    _, rgba, _, _ = city_rgb
    valid = rgba[3] > 0
    for channel in rgba[:3]:
        values = channel[valid]
        assert 0.015 < (values == 0).mean() < 0.03
        assert 0.015 < (values == 255).mean() < 0.03


def test_channels_are_the_first_three_principal_components(city_data, city_rgb):
    _, rgba, _, _ = city_rgb
    data = city_data[0]
    scores = principal_scores(data)
    valid = rgba[3].ravel() > 0
    for i in range(3):
        channel = rgba[i].ravel()[valid].astype(np.float64)
        assert np.corrcoef(channel, scores[:, i])[0, 1] > 0.95


def test_picture_does_not_depend_on_windows_or_format(demo_city, city_rgb, tmp_path, monkeypatch):
    monkeypatch.setattr(pictures, "BLOCK", 112)  # windows that do not divide the city
    result = embedding_rgb(demo_city.embeddings_zarr, tmp_path / "rgb.tif")
    with rasterio.open(result["output"]) as dataset:
        assert np.array_equal(dataset.read(), city_rgb[1])


def test_another_seed_samples_other_pixels_with_the_same_colours(demo_city, city_rgb, tmp_path):
    result = embedding_rgb(demo_city.embeddings_tif, tmp_path / "rgb.tif", seed=1)
    with rasterio.open(result["output"]) as dataset:
        other = dataset.read()
    reference = city_rgb[1]
    valid = reference[3] > 0
    assert not np.array_equal(other, reference)
    for i in range(3):  # component signs are fixed: the same picture, not an inverted one
        a, b = reference[i][valid].astype(float), other[i][valid].astype(float)
        assert np.corrcoef(a, b)[0, 1] > 0.95


def quarter_extent(transform) -> tuple[float, float, float, float]:
    """The demo city's north-west quarter (240 x 240 pixels) in its CRS."""
    left, top = transform * (0, 0)
    right, bottom = transform * (240, 240)
    return left, bottom, right, top


def test_equalize_spreads_each_channel_evenly(demo_city, city_data, tmp_path):
    extent = quarter_extent(city_data[2])
    result = embedding_rgb(
        demo_city.embeddings_tif, tmp_path / "eq.tif", extent=extent, stretch="equalize"
    )
    with rasterio.open(result["output"]) as dataset:
        assert (dataset.width, dataset.height) == (240, 240)
        assert tuple(dataset.bounds) == pytest.approx(extent)
        rgba = dataset.read()
    valid = rgba[3] > 0
    for channel in rgba[:3]:
        assert np.percentile(channel[valid], [25, 50, 75]) == pytest.approx([64, 128, 191], abs=6)


def test_sigma_stretch_maps_one_standard_deviation_to_a_fifth(demo_city, city_data, tmp_path):
    extent = quarter_extent(city_data[2])
    result = embedding_rgb(
        demo_city.embeddings_tif, tmp_path / "s.tif", extent=extent, stretch="sigma"
    )
    with rasterio.open(result["output"]) as dataset:
        rgba = dataset.read()
    valid = rgba[3] > 0
    for channel in rgba[:3]:
        values = channel[valid].astype(float)
        assert values.std() == pytest.approx(255 / (2 * pictures.SIGMA), rel=0.08)
        assert ((values == 0) | (values == 255)).mean() < 0.03


def test_extent_in_degrees_is_reprojected(demo_city, city_data, tmp_path):
    extent = quarter_extent(city_data[2])
    lons, lats = transform_points(city_data[3], "EPSG:4326", extent[::2], extent[1::2])
    lonlat = (min(lons), min(lats), max(lons), max(lats))
    result = embedding_rgb(
        demo_city.embeddings_tif, tmp_path / "deg.tif", extent=lonlat, extent_crs="EPSG:4326"
    )
    with rasterio.open(result["output"]) as dataset:
        left, bottom, right, top = dataset.bounds
    assert left <= extent[0] and bottom <= extent[1] and right >= extent[2] and top >= extent[3]
    assert result["width"] < 260 and result["height"] < 260


def test_user_errors_name_the_parameter(tmp_path, write_raster, demo_city):
    values = np.ones((3, 20, 20), np.float32) * np.arange(20, dtype=np.float32)
    values[:, :, :10] = np.nan
    path = write_raster(tmp_path / "half.tif", values)
    with rasterio.open(path) as dataset:
        left, bottom, right, top = dataset.bounds
    middle = (left + right) / 2
    with pytest.raises(LczError) as error:
        embedding_rgb(path, tmp_path / "a.tif", extent=(left, bottom, middle - 1, top))
    assert error.value.parameter == "extent" and "no valid" in error.value.message
    with pytest.raises(LczError) as error:
        embedding_rgb(path, tmp_path / "b.tif", extent=(right + 1e4, bottom, right + 2e4, top))
    assert error.value.parameter == "extent"
    with pytest.raises(LczError) as error:
        embedding_rgb(path, tmp_path / "c.tif", stretch="log")
    assert error.value.parameter == "stretch"
    two_bands = write_raster(tmp_path / "two.tif", np.ones((2, 5, 5), np.float32))
    with pytest.raises(LczError) as error:
        embedding_rgb(two_bands, tmp_path / "d.tif")
    assert error.value.parameter == "embeddings"
    assert not list(tmp_path.glob("[abcd].tif")) and not list(tmp_path.glob(".*partial*"))


# ---------------------------------------------------------------- similarity


def cosine(data: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Cosine similarity of (C, H, W) embeddings to a (C,) vector, in float64 numpy."""
    d = data.astype(np.float64)
    return np.tensordot(vector, d, axes=1) / (np.linalg.norm(d, axis=0) * np.linalg.norm(vector))


def water_pixel(codes: np.ndarray, data: np.ndarray) -> tuple[int, int]:
    """(row, col) of a valid water (LCZ G) pixel in the middle of the river."""
    rows, cols = np.nonzero((codes == 17) & ~np.isnan(data).any(axis=0))
    return int(rows[len(rows) // 2]), int(cols[len(cols) // 2])


def test_similarity_to_a_point_given_in_degrees(demo_city, city_data, tmp_path):
    data, codes, transform, crs = city_data
    row, col = water_pixel(codes, data)
    x, y = transform * (col + 0.5, row + 0.5)
    lon, lat = (v[0] for v in transform_points(crs, "EPSG:4326", [x], [y]))
    result = embedding_similarity(
        demo_city.embeddings_zarr,
        tmp_path / "sim.tif",
        point=(lon, lat),
        point_crs="EPSG:4326",
        png=tmp_path / "sim.png",
    )
    with rasterio.open(result["output"]) as dataset:
        assert dataset.dtypes[0] == "float32" and np.isnan(dataset.nodata)
        assert dataset.transform == transform and dataset.crs == crs
        similarity = dataset.read(1)
    assert result["point"] == pytest.approx([x, y], abs=0.01)
    assert similarity[row, col] == pytest.approx(1.0, abs=1e-6)
    expected = cosine(data, data[:, row, col].astype(np.float64))
    assert np.array_equal(np.isnan(similarity), np.isnan(data).any(axis=0))
    assert np.allclose(similarity, expected, atol=1e-5, equal_nan=True)
    # the use: every pixel that looks like the river is water, and nearly all water looks alike
    similar = similarity > 0.6
    assert (codes[similar] == 17).mean() > 0.95
    assert (similarity[codes == 17] > 0.6).mean() > 0.95
    qml = open(result["qml"]).read()
    assert (
        'type="singlebandpseudocolor"' in qml and f'maximumValue="{result["ramp"][1]:.6g}"' in qml
    )
    with open(result["png"], "rb") as png:
        assert png.read(8) == PNG_SIGNATURE


def test_similarity_to_the_mean_of_polygons(demo_city, city_data, tmp_path):
    import geopandas as gpd
    from rasterio.features import rasterize

    data, _, transform, crs = city_data
    frame = gpd.read_file(demo_city.polygons)
    chosen = frame[frame["lcz"] == frame["lcz"].iloc[0]]  # the squares of one class
    chosen.to_crs("EPSG:4326").to_file(tmp_path / "chosen.gpkg")
    result = embedding_similarity(
        demo_city.embeddings_tif, tmp_path / "sim.tif", polygons=tmp_path / "chosen.gpkg"
    )
    inside = rasterize(chosen.geometry, out_shape=data.shape[1:], transform=transform).astype(bool)
    inside &= ~np.isnan(data).any(axis=0)
    assert result["reference_pixels"] == int(inside.sum())
    mean = data[:, inside].astype(np.float64).mean(axis=1)
    with rasterio.open(result["output"]) as dataset:
        similarity = dataset.read(1)
    assert np.allclose(similarity, cosine(data, mean), atol=1e-5, equal_nan=True)


def test_similarity_errors_name_the_parameter(demo_city, city_data, tmp_path):
    data, _, transform, _ = city_data
    rows, cols = np.nonzero(np.isnan(data).any(axis=0))
    on_missing = transform * (cols[0] + 0.5, rows[0] + 0.5)
    outside = transform * (-5, 10)
    cases = [
        ({"point": outside}, "point", "outside"),
        ({"point": on_missing}, "point", "missing"),
        ({"point": on_missing, "polygons": demo_city.polygons}, "point", "not both"),
        ({"point": (10.0, 50.0), "point_crs": "no such crs"}, "point_crs", "not a CRS"),
    ]
    for kwargs, parameter, words in cases:
        with pytest.raises(LczError) as error:
            embedding_similarity(demo_city.embeddings_tif, tmp_path / "sim.tif", **kwargs)
        assert error.value.parameter == parameter and words in error.value.message
    assert not (tmp_path / "sim.tif").exists()
