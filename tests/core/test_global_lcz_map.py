"""The global LCZ map clipped to an extent: read by range requests (only the extent's window),
reprojected by nearest neighbour, styled, the default reference of compare-lcz-maps too."""

import json
import time

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform, transform_bounds
from rasterio.windows import from_bounds

from lcz_core import compare_lcz_maps, global_lcz_map
from lcz_core.errors import LczError
from lcz_core.lcz import CLASS_BY_CODE
from lcz_core.lczmap import GLOBAL_LCZ_MAP_ENV, GLOBAL_LCZ_MAP_URL, global_lcz_map_source
from lcz_core.outputs import lcz_colormap

# 4 km x 2 km in UTM 30N around 0.9 W, 41.6 N: about 50 x 20 px of the map, inside one 512 px tile
UTM_BOX = (686_000.0, 4_606_000.0, 690_000.0, 4_608_000.0)


def _served(global_lcz_cog, http_folder):
    server = http_folder(global_lcz_cog.parent)
    return server, f"{server.url}/{global_lcz_cog.name}"


def _fetched(server) -> int:
    return sum(n for _, _, n in server.requests())


def _classes(codes: np.ndarray) -> list[str]:
    return [CLASS_BY_CODE[int(c)].short for c in np.unique(codes) if c]


def test_window_read_by_range_requests_equals_the_map(global_lcz_cog, http_folder, tmp_path):
    server, url = _served(global_lcz_cog, http_folder)
    result = global_lcz_map(
        extent=UTM_BOX, extent_crs="EPSG:32630", source=url, output=tmp_path / "lcz.tif"
    )
    assert result.source_used == url
    with rasterio.open(tmp_path / "lcz.tif") as out, rasterio.open(global_lcz_cog) as cog:
        assert out.crs == cog.crs and out.res == pytest.approx(cog.res)
        codes = out.read(1)
        window = from_bounds(*out.bounds, transform=cog.transform)
        assert window.col_off == pytest.approx(round(window.col_off), abs=1e-6)
        expected = cog.read(1, window=window.round_offsets().round_lengths())
        assert out.dtypes[0] == "uint8" and out.nodata == 0
        assert out.colormap(1)[14] == lcz_colormap()[14]
        wanted = transform_bounds("EPSG:32630", cog.crs, *UTM_BOX)
        pixel = cog.res[0]
        assert out.bounds.left <= wanted[0] + pixel and out.bounds.right >= wanted[2] - pixel
        assert out.bounds.bottom <= wanted[1] + pixel and out.bounds.top >= wanted[3] - pixel
    assert 40 <= codes.shape[1] <= 60 and 15 <= codes.shape[0] <= 25
    np.testing.assert_array_equal(codes, expected)
    counts = json.loads(json.dumps(result.class_counts))
    assert list(counts) == _classes(expected)
    assert all(counts[c] == int((expected == code).sum()) for code, c in _codes(counts))
    assert 0 < len(counts) < 17  # a legend of the classes present only
    qml = (tmp_path / "lcz.qml").read_text()
    assert qml.count("<paletteEntry") == len(counts)
    # the header and one tile: a small part of the file
    size = global_lcz_cog.stat().st_size
    assert _fetched(server) < 0.1 * size, (_fetched(server), size)


def _codes(counts):
    return [(code, short) for code, c in CLASS_BY_CODE.items() if (short := c.short) in counts]


def test_reprojected_by_nearest_onto_the_target_grid(global_lcz_cog, http_folder, tmp_path):
    server, url = _served(global_lcz_cog, http_folder)
    options = {"extent": UTM_BOX, "extent_crs": "EPSG:32630", "target_crs": "EPSG:32630"}
    global_lcz_map(**options, resolution=50.0, source=url, output=tmp_path / "utm.tif")
    global_lcz_map(**options, resolution=50.0, source=global_lcz_cog, output=tmp_path / "local.tif")
    with rasterio.open(tmp_path / "utm.tif") as out, rasterio.open(tmp_path / "local.tif") as local:
        assert out.crs.to_epsg() == 32630 and out.res == (50.0, 50.0)
        left, bottom, right, top = out.bounds
        assert left <= UTM_BOX[0] + 50 and right >= UTM_BOX[2] - 50
        assert bottom <= UTM_BOX[1] + 50 and top >= UTM_BOX[3] - 50
        assert right - left < 4300 and top - bottom < 2300  # the extent's window, not the map's
        codes = out.read(1)
        np.testing.assert_array_equal(codes, local.read(1))
        rows, cols = np.indices(codes.shape)
        xs, ys = out.xy(rows.ravel(), cols.ravel())
    # each pixel holds the map's class at its centre
    with rasterio.open(global_lcz_cog) as cog:
        lon, lat = transform("EPSG:32630", cog.crs, xs, ys)
        source_rows, source_cols = rasterio.transform.rowcol(cog.transform, lon, lat)
        values = cog.read(1)[source_rows, source_cols].reshape(codes.shape)
    assert (values == codes).mean() > 0.99
    assert _fetched(server) < 0.1 * global_lcz_cog.stat().st_size


def test_default_source_is_the_setting_else_the_v3_cog(
    global_lcz_cog, http_folder, tmp_path, monkeypatch
):
    monkeypatch.delenv(GLOBAL_LCZ_MAP_ENV, raising=False)
    assert global_lcz_map_source() == GLOBAL_LCZ_MAP_URL
    assert GLOBAL_LCZ_MAP_URL == "https://lcz-generator.rub.de/cogs/lcz_filter_v3_cog.tif"
    server, url = _served(global_lcz_cog, http_folder)
    monkeypatch.setenv(GLOBAL_LCZ_MAP_ENV, url)
    assert global_lcz_map_source() == url
    assert global_lcz_map_source(global_lcz_cog) == str(global_lcz_cog)
    # compare-lcz-maps' default reference is read the same way, from the same setting
    clipped = global_lcz_map(
        extent=UTM_BOX, extent_crs="EPSG:32630", source=global_lcz_cog, output=tmp_path / "m.tif"
    )
    result = compare_lcz_maps(input=clipped.output, output=tmp_path / "agreement.json")
    report = json.loads((tmp_path / "agreement.json").read_text())
    assert report["reference"] == url and report["reference_coding"] == "lcz17"
    assert result.oa == 1.0 and result.details["n"] == sum(clipped.class_counts.values())
    assert _fetched(server) > 0


def test_remote_failures_name_the_parameter_and_url_never_hang(
    global_lcz_cog, http_folder, tmp_path, monkeypatch
):
    server = http_folder(global_lcz_cog.parent, delay=5.0)
    missing = f"{server.url}/lcz_missing.tif"
    with pytest.raises(LczError, match=f"cannot read {missing}.*404") as error:
        global_lcz_map(
            extent=UTM_BOX, extent_crs="EPSG:32630", source=missing, output=tmp_path / "a.tif"
        )
    assert error.value.parameter == "source"
    monkeypatch.setenv(GLOBAL_LCZ_MAP_ENV, missing)
    with pytest.raises(LczError, match=missing) as error:
        compare_lcz_maps(input=_small_map(global_lcz_cog, tmp_path), output=tmp_path / "a.json")
    assert error.value.parameter == "reference"
    monkeypatch.setenv("LCZ_HTTP_TIMEOUT", "1")
    slow = f"{server.url}/slow/{global_lcz_cog.name}"
    start = time.perf_counter()
    with pytest.raises(LczError, match=f"{slow}.*timed out") as error:
        global_lcz_map(
            extent=UTM_BOX, extent_crs="EPSG:32630", source=slow, output=tmp_path / "b.tif"
        )
    assert error.value.parameter == "source"
    assert time.perf_counter() - start < 15  # one second per try, three tries, 1 + 2 s apart
    assert not list(tmp_path.glob("[ab].*"))


def _small_map(global_lcz_cog, tmp_path):
    path = tmp_path / "small.tif"
    global_lcz_map(extent=UTM_BOX, extent_crs="EPSG:32630", source=global_lcz_cog, output=path)
    return path


def test_not_the_global_map_and_bad_extents_are_refused(global_lcz_cog, tmp_path):
    with rasterio.open(global_lcz_cog) as cog:
        profile = {**cog.profile, "driver": "GTiff"}
        percent = (cog.read(1).astype(np.uint16) * 37 % 101).astype(np.uint8)
    profile.pop("photometric", None)
    probability = tmp_path / "lcz_probability_v3.tif"
    with rasterio.open(probability, "w", **profile) as dst:
        dst.write(percent, 1)
    with pytest.raises(LczError, match="is not the global LCZ map") as error:
        global_lcz_map(
            extent=UTM_BOX, extent_crs="EPSG:32630", source=probability, output=tmp_path / "p.tif"
        )
    assert error.value.parameter == "source"
    with pytest.raises(LczError, match="does not overlap") as error:
        global_lcz_map(
            extent=(10.0, 50.0, 10.1, 50.1), source=global_lcz_cog, output=tmp_path / "o.tif"
        )
    assert error.value.parameter == "extent"
    with pytest.raises(LczError, match="Extent is required") as error:
        global_lcz_map(source=global_lcz_cog, output=tmp_path / "o.tif")
    assert error.value.parameter == "extent"
    with pytest.raises(LczError, match="would overwrite") as error:
        global_lcz_map(
            extent=UTM_BOX, extent_crs="EPSG:32630", source=probability, output=probability
        )
    assert error.value.parameter == "output"
    assert sorted(p.name for p in tmp_path.iterdir()) == [probability.name]
