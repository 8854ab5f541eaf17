"""TESSERA as published: zarr stores (both layouts, any zone and hemisphere), tile folders (.npy
and exported GeoTIFFs), local and over HTTP; scale masks, years, variants, cities across zones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from product_world import BANDS, expected_on, sample_world, zone_grid
from pyproj import Transformer
from rasterio.windows import Window

from lcz_core.errors import LczError
from lcz_core.extents import reproject_extent
from lcz_core.layouts import write_tessera_zone
from lcz_core.rasters import crop_to_extent, open_source
from lcz_core.tessera import (
    TESSERA_EMBEDDINGS,
    TESSERA_LANDMASKS,
    TESSERA_METADATA,
    tessera_feature_space,
)

LONDON = (-0.02, 51.49, 0.02, 51.51)  # straddles the zone 30 / 31 border at 0 degrees


def city_part(source, extent):
    """The part of a city grid covering a lon/lat extent (the grid has a margin around it)."""
    return crop_to_extent(source, reproject_extent(extent, "EPSG:4326", source.crs))


def read_all(source) -> np.ndarray:
    """Every pixel of a source."""
    return source.read(Window(0, 0, source.width, source.height))


def write_zone(store, crs, lonlat_box, years=(2024,), layout="utm", **options):
    """A zone group of the world over a lon/lat box; returns (transform, stored float data)."""
    transform, width, height = zone_grid(crs, lonlat_box)
    data = np.stack(
        [sample_world(crs, transform, width, height) * (1 + i) for i in range(len(years))]
    )
    write_tessera_zone(
        store, data, transform, crs, list(years), layout=layout, shard=128, **options
    )
    return transform, data


def stored_values(store, group: str, t: int = 0) -> np.ndarray:
    """The dequantised (bands, y, x) of a zone group read with zarr itself (NaN where invalid)."""
    root = zarr.open_group(str(store), mode="r")
    emb = np.asarray(root[group]["embeddings"][t])
    if emb.shape[-1] == BANDS and emb.shape[0] != BANDS:  # (y, x, band)
        emb = np.moveaxis(emb, 2, 0)
    scales = np.asarray(root[group]["scales"][t])
    ok = np.isfinite(scales) & (scales > 0) & (scales < 1)
    return emb.astype(np.float32) * np.where(ok, scales, np.nan)


def test_fixture_store_has_geotessera_layout(tmp_path):
    store = tmp_path / "tessera.zarr"
    transform, _ = write_zone(store, "EPSG:32631", (0.0, 51.49, 0.02, 51.51), years=(2023, 2024))
    root = zarr.open_group(str(store), mode="r")
    assert root.metadata.zarr_format == 3 and root.attrs["geoemb:spatial_layout"] == "utm_zones"
    zone = root["utm31"]
    emb, scales = zone["embeddings"], zone["scales"]
    assert emb.dtype == np.int8 and emb.metadata.dimension_names == ("time", "band", "y", "x")
    assert scales.dtype == np.float32 and scales.metadata.dimension_names == ("time", "y", "x")
    assert emb.fill_value == 0 and np.isinf(scales.fill_value)
    assert list(zone["time"][:]) == [2023, 2024] and zone["band"].shape == (BANDS,)
    assert zone.attrs["proj:code"] == "EPSG:32631"
    assert zone.attrs["spatial:transform"] == [10.0, 0.0, transform.c, 0.0, -10.0, transform.f]
    assert zone["x"][0] == transform.c + 5 and zone["y"][0] == transform.f - 5  # centres, y down


def test_store_read_for_a_year_dequantised_with_invalid_scales_masked(tmp_path):
    store = tmp_path / "tessera.zarr"
    box = (2.30, 48.84, 2.36, 48.87)  # Paris, zone 31
    transform, _ = write_zone(store, "EPSG:32631", box, years=(2023, 2024))
    extent = (2.32, 48.85, 2.34, 48.86)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(2.33, 48.855)
    r, c = int((transform.f - y) // 10), int((x - transform.c) // 10)  # the extent's centre
    scales = zarr.open_group(str(store), mode="r+")["utm31"]["scales"]
    # water, no data, a huge published scale, zero, negative, the upper bound
    bad = dict(
        zip([(r, c + i) for i in range(6)], [np.nan, np.inf, 3e38, 0.0, -0.5, 1.0], strict=True)
    )
    for (row, col), value in bad.items():
        scales[1, row, col] = value
    with open_source(store, year=2024, extent=extent) as source:
        assert source.crs.to_epsg() == 32631 and source.feature_space == "tessera 1.1 dclimate"
        assert source.band_names[:2] == ["T000", "T001"] and source.count == BANDS
        city = city_part(source, extent)
        out = read_all(city)
    expected = expected_on(city, "EPSG:32631", transform, stored_values(store, "utm31", 1))
    both = np.isfinite(expected[0])
    assert both.sum() == both.size - len(bad)
    np.testing.assert_array_equal(out[:, both], expected[:, both])  # the same grid: pasted
    col0, row0 = (
        round((transform.c - city.transform.c) / 10),
        round((city.transform.f - transform.f) / 10),
    )
    for row, col in bad:
        assert np.isnan(out[:, row0 + row, col0 + col]).all()
    with open_source(store, year=2023, extent=extent) as older:
        first = read_all(city_part(older, extent))
    np.testing.assert_allclose(out[:, both] / 2, first[:, both], rtol=0.02, atol=0.02)
    with pytest.raises(LczError, match=r"2022 is not in .* \[2023, 2024\]") as error:
        open_source(store, year=2022, extent=extent)
    assert error.value.parameter == "year"
    with pytest.raises(LczError, match="give one") as error:
        open_source(store, extent=extent)
    assert error.value.parameter == "year"


@pytest.mark.parametrize("layout", ["utm", "hemisphere"])
def test_city_across_two_zones_is_one_seamless_raster(tmp_path, layout):
    store = tmp_path / "tessera.zarr"
    t30, _ = write_zone(store, "EPSG:32630", (-0.05, 51.47, 0.01, 51.53), layout=layout)
    t31, _ = write_zone(store, "EPSG:32631", (-0.01, 51.47, 0.05, 51.53), layout=layout)
    names = ("utm30", "utm31") if layout == "utm" else ("30N", "31N")
    v30, v31 = (stored_values(store, n) for n in names)
    with open_source(store, kind="tessera-zarr", year=2024, extent=LONDON) as source:
        assert source.crs.to_epsg() == 32631  # the zone of the extent's centre (0 deg)
        assert [m.crs.to_epsg() for m in source.members] == [32631, 32630]
        city = city_part(source, LONDON)
        out = read_all(city)
    assert not np.isnan(out).any()  # seamless: no gap at the zone border
    from31 = expected_on(city, "EPSG:32631", t31, v31)
    from30 = expected_on(city, "EPSG:32630", t30, v30)
    expected = np.where(np.isnan(from31), from30, from31)
    same = (out == expected).all(axis=0)
    assert np.isfinite(from30[0]).sum() > 0.2 * same.size  # a good part comes from zone 30
    assert same.mean() > 0.999  # nearest resampling: only pixels on a cell edge may differ
    with open_source(store, year=2024, extent=LONDON, crs="EPSG:32630") as in30:
        assert in30.crs.to_epsg() == 32630 and in30.members[0].crs.to_epsg() == 32630
        assert not np.isnan(read_all(city_part(in30, LONDON))).any()


@pytest.mark.parametrize("layout", ["utm", "hemisphere"])
def test_southern_zone_read_in_its_own_crs(tmp_path, layout):
    store = tmp_path / "tessera.zarr"
    box = (-43.25, -22.93, -43.19, -22.88)  # Rio de Janeiro, zone 23 south
    transform, _ = write_zone(store, "EPSG:32723", box, layout=layout)
    group = "utm23" if layout == "utm" else "23S"
    attrs = zarr.open_group(str(store), mode="r")[group].attrs
    if layout == "utm":  # geotessera's store: EPSG:326NN everywhere, northings negative
        assert attrs["proj:code"] == "EPSG:32623" and attrs["spatial:transform"][5] < 0
    with open_source(store, year=2024, extent=(-43.23, -22.92, -43.21, -22.90)) as source:
        assert source.crs.to_epsg() == 32723 and source.transform.f > 7_000_000
        assert source.members[0].crs.to_epsg() == 32723  # pasted, not resampled
        out = source.read(Window(0, 0, source.width, source.height))
    expected = expected_on(source, "EPSG:32723", transform, stored_values(store, group))
    np.testing.assert_array_equal(out, expected)


def test_feature_space_names_and_store_variants(tmp_path):
    assert tessera_feature_space("v1.1-cam") == "tessera 1.1 cambridge"
    assert tessera_feature_space("1.1", "dclimate") == "tessera 1.1 dclimate"
    assert tessera_feature_space("v1") == tessera_feature_space("1.0", "vultr") == "tessera 1.0"
    assert tessera_feature_space("v2-2B-L~beta1") == "tessera 2.0 2B-L~beta1"
    with pytest.raises(LczError, match="two variants") as error:
        tessera_feature_space("1.1")
    assert error.value.parameter == "variant"
    box, extent = (2.30, 48.84, 2.36, 48.87), (2.32, 48.85, 2.34, 48.86)
    unnamed = tmp_path / "unnamed.zarr"
    write_zone(unnamed, "EPSG:32631", box, variant=None)
    with pytest.raises(LczError, match="does not say which TESSERA version") as error:
        open_source(unnamed, year=2024, extent=extent)
    assert error.value.parameter == "variant"
    with open_source(unnamed, year=2024, extent=extent, variant="1.1-cambridge") as source:
        assert source.feature_space == "tessera 1.1 cambridge"
    (tmp_path / TESSERA_METADATA).write_text(
        json.dumps({"dataset_version": "1.0", "dataset_variant": "vultr"}), encoding="utf-8"
    )
    with open_source(unnamed, year=2024, extent=extent) as source:  # the sidecar beside it
        assert source.feature_space == "tessera 1.0"
    named = tmp_path / "named.zarr"
    write_zone(named, "EPSG:32631", box, variant="1.1-dclimate")
    with pytest.raises(
        LczError, match="holds tessera 1.1 dclimate embeddings, not tessera 1.1 cambridge"
    ):
        open_source(named, year=2024, extent=extent, variant="1.1-cambridge")


def test_bad_stores_refused_with_the_parameter_at_fault(tmp_path):
    box, extent = (2.30, 48.84, 2.36, 48.87), (2.32, 48.85, 2.34, 48.86)
    store = tmp_path / "tessera.zarr"
    write_zone(store, "EPSG:32631", box)
    with pytest.raises(LczError, match="no UTM zone group covering") as error:
        open_source(store, year=2024, extent=(100.0, 10.0, 100.01, 10.01))
    assert error.value.parameter == "extent"
    with pytest.raises(LczError, match="outside the zones") as error:
        open_source(store, year=2024, extent=(4.0, 52.0, 4.01, 52.01))  # zone 31, no data there
    assert error.value.parameter == "extent"
    with pytest.raises(LczError, match="give the extent") as error:
        open_source(store, kind="tessera-zarr", year=2024)
    assert error.value.parameter == "extent"
    root = zarr.open_group(str(store), mode="r+")
    del root["utm31"]["scales"]
    zarr.consolidate_metadata(str(store))
    with pytest.raises(LczError, match="has no 'scales' array") as error:
        open_source(store, year=2024, extent=extent)
    assert error.value.parameter == "embeddings"
    bare = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    bare.create_group("utm31").create_array("embeddings", shape=(1, 2, 4, 4), dtype="int8")
    bare["utm31"].create_array("time", shape=(1,), dtype="int32")[:] = [2024]
    with pytest.raises(LczError, match="no 'scales' array"):
        open_source(tmp_path / "bare.zarr", year=2024, extent=extent, variant="1.0")


def _tile(root, year, name, transform, crs, values, scales):
    folder = root / TESSERA_EMBEDDINGS / str(year) / name
    folder.mkdir(parents=True)
    np.save(folder / f"{name}.npy", values)
    np.save(folder / f"{name}_scales.npy", scales)
    (root / TESSERA_LANDMASKS).mkdir(exist_ok=True)
    profile = dict(driver="GTiff", width=values.shape[1], height=values.shape[0], count=1)
    profile.update(dtype="uint8", crs=crs, transform=transform)
    with rasterio.open(root / TESSERA_LANDMASKS / f"{name}.tiff", "w", **profile) as dst:
        dst.write(np.ones((1, *values.shape[:2]), np.uint8))


def test_npy_tiles_stitched_with_invalid_scales_masked(tmp_path):
    rng = np.random.default_rng(3)
    crs = "EPSG:32630"  # tiles near lon -1.95, lat 48.05 (Rennes): UTM 30N
    left = {
        "values": rng.integers(-127, 128, (12, 10, 128), dtype=np.int8),
        "scales": rng.uniform(0.01, 0.2, (12, 10)).astype(np.float32),
    }
    right = {
        "values": rng.integers(-127, 128, (12, 10, 128), dtype=np.int8),
        "scales": rng.uniform(0.01, 0.2, (12, 10, 128)).astype(np.float32),
    }
    left["scales"][3, 6:9] = [np.inf, np.nan, 3.4e38]  # no data, water, a huge published scale
    right["scales"][4, 2, 7] = 1.5  # one band's scale out of range masks the pixel
    x0, y0 = 577_000.0, 5_323_000.0
    _tile(tmp_path, 2024, "grid_-1.95_48.05", Affine(10, 0, x0, 0, -10, y0), crs, **left)
    _tile(tmp_path, 2024, "grid_-1.85_48.05", Affine(10, 0, x0 + 100, 0, -10, y0), crs, **right)
    (tmp_path / TESSERA_METADATA).write_text('{"dataset_path": "v1.1-cam"}', encoding="utf-8")
    extent = (-1.99, 48.01, -1.81, 48.09)  # meets both tiles' names (their 0.1 degree cells)
    with open_source(tmp_path, year=2024, extent=extent, crs=crs) as source:
        assert source.feature_space == "tessera 1.1 cambridge" and source.count == 128
        window = source.window_for((x0, y0 - 120, x0 + 200, y0))
        out = source.read(window)
    with np.errstate(all="ignore"):
        expected_left = left["values"].astype(np.float32) * left["scales"][..., None]
    expected_right = right["values"].astype(np.float32) * right["scales"]
    valid_left = np.isfinite(expected_left).all(axis=2) & (left["scales"] < 1)
    assert valid_left.sum() == 12 * 10 - 3
    np.testing.assert_allclose(
        out[:, :, :10][:, valid_left], np.moveaxis(expected_left, 2, 0)[:, valid_left], rtol=1e-6
    )
    assert np.isnan(out[:, 3, 6:9]).all() and np.isnan(out[:, 4, 12]).all()
    np.testing.assert_allclose(out[:, 5, 10:], np.moveaxis(expected_right, 2, 0)[:, 5], rtol=1e-6)
    with pytest.raises(LczError, match=r"2023 is not in .* \[2024\]") as error:
        open_source(tmp_path, kind="tessera", year=2023, extent=extent)
    assert error.value.parameter == "year"
    with pytest.raises(LczError, match="no TESSERA tiles") as error:
        open_source(tmp_path, kind="tessera", year=2024, extent=(10.0, 50.0, 10.1, 50.1))
    assert error.value.parameter == "extent"


def _exported_tiles(root, year, variant_tags=True):
    """geotessera's exported tile GeoTIFFs of the world: two tiles on two UTM zones at 0 deg."""
    tiles = {}
    for name, lon, crs in (
        ("grid_-0.05_51.45", -0.05, "EPSG:32630"),
        ("grid_0.05_51.45", 0.05, "EPSG:32631"),
    ):
        box = (lon - 0.05, 51.4, lon + 0.05, 51.5)
        transform, width, height = zone_grid(crs, box)
        data = sample_world(crs, transform, width, height)
        data[:, :3, :3] = np.nan  # nodata corner
        folder = root / str(year) / name
        folder.mkdir(parents=True)
        profile = dict(driver="GTiff", width=width, height=height, count=BANDS, dtype="float32")
        profile.update(crs=crs, transform=transform, nodata=float("nan"), tiled=True)
        with rasterio.open(folder / f"{name}_{year}.tiff", "w", **profile) as dst:
            dst.write(data)
            if variant_tags:
                dst.update_tags(TESSERA_DATASET_VERSION="1.1", TESSERA_DATASET_VARIANT="dclimate")
        tiles[name] = (crs, transform, data)
    return tiles


def test_exported_tile_geotiffs_read_as_one_city(tmp_path):
    tiles = _exported_tiles(tmp_path, 2024)
    extent = (-0.03, 51.44, 0.03, 51.46)
    with open_source(tmp_path, year=2024, extent=extent) as source:
        assert source.feature_space == "tessera 1.1 dclimate" and source.crs.to_epsg() == 32631
        out = source.read(Window(0, 0, source.width, source.height))
    crs31, t31, d31 = tiles["grid_0.05_51.45"]
    crs30, t30, d30 = tiles["grid_-0.05_51.45"]
    a, b = expected_on(source, crs31, t31, d31), expected_on(source, crs30, t30, d30)
    expected = np.where(np.isnan(a), b, a)
    known = np.isfinite(expected[0])
    assert known.mean() > 0.99 and (out[:, known] == expected[:, known]).all(axis=0).mean() > 0.999


def test_remote_store_reads_only_the_chunks_needed(tmp_path, http_folder):
    store = tmp_path / "tessera.zarr"
    box = (2.28, 48.82, 2.39, 48.89)  # about 8 x 8 km
    write_zone(store, "EPSG:32631", box)
    total = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    server = http_folder(tmp_path)
    extent = (2.33, 48.85, 2.34, 48.855)
    with open_source(store, year=2024, extent=extent) as local:
        expected = read_all(city_part(local, extent))
    with open_source(f"{server.url}/tessera.zarr", year=2024, extent=extent) as remote:
        assert remote.feature_space == "tessera 1.1 dclimate"
        np.testing.assert_array_equal(read_all(city_part(remote, extent)), expected)
    fetched = sum(n for _, _, n in server.requests())
    assert fetched < 0.2 * total, (fetched, total)
    assert any(m == "GET" and "/c/" in p for m, p, _ in server.requests())  # chunk reads


def test_remote_failures_name_the_url_and_never_hang(tmp_path, http_folder, monkeypatch):
    store = tmp_path / "tessera.zarr"
    write_zone(store, "EPSG:32631", (2.30, 48.84, 2.36, 48.87))
    extent = (2.32, 48.85, 2.34, 48.86)
    base = http_folder(tmp_path, delay=3.0).url
    with pytest.raises(LczError, match=f"{base}/missing.zarr") as error:
        open_source(f"{base}/missing.zarr", year=2024, extent=extent)
    assert error.value.parameter == "embeddings"
    monkeypatch.setenv("LCZ_HTTP_TIMEOUT", "1")
    import time

    start = time.perf_counter()
    with pytest.raises(LczError, match="did not answer within 1 s"):
        open_source(f"{base}/slow/tessera.zarr", year=2024, extent=extent)
    assert time.perf_counter() - start < 10


def test_remote_tile_folder(tmp_path, http_folder):
    _exported_tiles(tmp_path / "tiles", 2024)
    extent = (-0.03, 51.44, 0.03, 51.46)
    base = http_folder(tmp_path).url
    with open_source(tmp_path / "tiles", year=2024, extent=extent) as local:
        expected = local.read(Window(0, 0, local.width, local.height))
    with open_source(f"{base}/tiles", kind="tessera", year=2024, extent=extent) as remote:
        np.testing.assert_array_equal(
            remote.read(Window(0, 0, remote.width, remote.height)), expected
        )


def test_remote_npy_tiles_and_s3_urls(tmp_path, http_folder, monkeypatch):
    rng = np.random.default_rng(5)
    values = rng.integers(-127, 128, (1000, 20, 128), dtype=np.int8)
    scales = rng.uniform(0.01, 0.2, (1000, 20)).astype(np.float32)
    scales[7, 3] = np.inf
    root = tmp_path / "bucket" / "tiles"
    _tile(
        root,
        2024,
        "grid_-1.95_48.05",
        Affine(10, 0, 577_000, 0, -10, 5_323_000),
        "EPSG:32630",
        values,
        scales,
    )
    (root / TESSERA_METADATA).write_text('{"dataset_version": "1.0"}', encoding="utf-8")
    extent = (-1.9656, 48.0508, -1.9652, 48.0514)  # near the top of a 10 km tall tile
    with open_source(root, year=2024, extent=extent) as local:
        expected = read_all(city_part(local, extent))
    assert np.isfinite(expected).all(axis=0).mean() > 0.9  # the extent lies on the tile
    server = http_folder(tmp_path)
    with open_source(f"{server.url}/bucket/tiles", year=2024, extent=extent) as remote:
        assert remote.feature_space == "tessera 1.0"
        np.testing.assert_array_equal(read_all(city_part(remote, extent)), expected)
    npy = [n for m, p, n in server.requests() if m == "GET" and p.endswith("grid_-1.95_48.05.npy")]
    assert 0 < sum(npy) < 0.2 * values.nbytes  # byte ranges of the rows needed, not the whole tile
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)  # s3://bucket/key, anonymous, path style
    with open_source("s3://bucket/tiles", kind="tessera", year=2024, extent=extent) as s3:
        np.testing.assert_array_equal(read_all(city_part(s3, extent)), expected)


def test_variants_are_not_mixed_in_one_dataset(tmp_path, demo_city):
    from lcz_core.labels import open_labels
    from lcz_core.sampling import CityInput, make_dataset

    with rasterio.open(demo_city.embeddings_tif) as dataset:
        data, transform, crs, bounds = (
            dataset.read(),
            dataset.transform,
            dataset.crs,
            dataset.bounds,
        )
    cities = []
    for variant in ("1.1-dclimate", "1.1-cambridge"):
        store = tmp_path / f"{variant}.zarr"
        write_tessera_zone(store, data[None], transform, crs, [2024], variant=variant, shard=256)
        source = open_source(store, year=2024, extent=tuple(bounds), extent_crs=crs.to_string())
        labels = open_labels(demo_city.polygons, class_field="lcz")
        cities.append(CityInput(variant, source, labels, tuple(bounds)))
    with pytest.raises(LczError, match="feature spaces differ") as error:
        make_dataset(cities, tmp_path / "dataset")
    assert error.value.parameter == "embeddings" and not (tmp_path / "dataset").exists()


def test_city_catalogue_names_a_store_year_and_variant(tmp_path):
    from lcz_core.cities import load_catalogue

    write_zone(tmp_path / "tessera.zarr", "EPSG:32631", (2.30, 48.84, 2.36, 48.87), variant=None)
    (tmp_path / "cities.toml").write_text(
        """
[cities.paris]
year = 2024
extent = [2.32, 48.85, 2.34, 48.86]
[cities.paris.embeddings.tessera]
kind = "tessera-zarr"
path = "tessera.zarr"
version = "v1.1-cam"
""",
        encoding="utf-8",
    )
    with load_catalogue(tmp_path / "cities.toml")["paris"].open_embeddings() as source:
        assert source.feature_space == "tessera 1.1 cambridge" and source.crs.to_epsg() == 32631
        city = city_part(source, (2.32, 48.85, 2.34, 48.86))
        assert np.isfinite(read_all(city)).all()
