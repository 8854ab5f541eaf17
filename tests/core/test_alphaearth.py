"""AlphaEarth as published: bottom-up COGs per UTM zone and year with an index, a city read across
files and zones, locally and over HTTP range requests; missing pixels and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from product_world import expected_on, sample_world, zone_grid
from pyproj import Transformer
from rasterio.windows import Window
from test_tessera import city_part, read_all

from lcz_core.alphaearth import read_index
from lcz_core.errors import LczError
from lcz_core.layouts import write_aef_mirror
from lcz_core.rasters import open_source

LONDON = (-0.02, 51.49, 0.02, 51.51)


def unit_world(crs, transform, width, height) -> np.ndarray:
    """64-band unit vectors of the place (the test world repeated to 64 bands)."""
    data = np.concatenate([sample_world(crs, transform, width, height)] * 4)
    return data / np.linalg.norm(data, axis=0)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A mirror over London in two zones, 2024, files of 160 px; a -128 hole in zone 30."""
    root = tmp_path_factory.mktemp("aef") / "v1" / "annual"
    grids = {}
    for crs, box in (
        ("EPSG:32630", (-0.05, 51.47, 0.01, 51.53)),
        ("EPSG:32631", (-0.01, 51.47, 0.05, 51.53)),
    ):
        transform, width, height = zone_grid(crs, box)
        data = unit_world(crs, transform, width, height)
        if crs.endswith("30"):  # written as -128, west of the other zone's data
            x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(-0.02, 51.5)
            row, col = int((transform.f - y) // 10), int((x - transform.c) // 10)
            data[:, row : row + 10, col : col + 10] = np.nan
        write_aef_mirror(root, data, transform, crs, 2024, file_px=160, index=False)
        grids[crs] = (transform, width, height)
    write_aef_mirror(root, data, transform, "EPSG:32631", 2023, file_px=400)  # writes the index
    index = next(root.glob("aef_index.*"))
    return index, grids


def dequantised_file_values(root, crs, transform, width, height) -> np.ndarray:
    """The zone's pixels as the files hold them, dequantised, NaN at -128 (read with rasterio)."""
    out = np.full((64, height, width), np.nan, np.float32)
    zone = "30N" if crs.endswith("30") else "31N"
    for path in (root / "2024" / zone).glob("*.tiff"):
        with rasterio.open(path) as dataset:
            raw = dataset.read()[:, ::-1, :]  # bottom-up rows
            top = dataset.transform.f + dataset.height * dataset.transform.e
            row, col = (
                round((transform.f - top) / 10),
                round((dataset.transform.c - transform.c) / 10),
            )
        v = raw.astype(np.float32)
        values = np.sign(v) * (v / 127.5) ** 2
        values[raw == -128] = np.nan
        out[:, row : row + raw.shape[1], col : col + raw.shape[2]] = values
    return out


def test_mirror_files_and_index_as_published(mirror):
    index, _ = mirror
    frame = read_index(index)
    for column in ("path", "year", "crs", "utm_zone", "wgs84_west", "wgs84_north", "utm_south"):
        assert column in frame.columns
    assert set(frame["utm_zone"]) == {"30N", "31N"} and set(frame["year"]) == {2023, 2024}
    first = frame.iloc[0]
    assert first["path"].startswith("s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual/")
    name = first["path"].rsplit("/", 1)[1]
    assert name.endswith(".tiff") and name.split("-")[1] == "0000000000"  # {id}-{yoff}-{xoff}
    with rasterio.open(next((index.parent / "2024" / "30N").glob("*.tiff"))) as dataset:
        assert dataset.transform.e > 0  # bottom-up rows, like the free mirror
        assert dataset.dtypes[0] == "int8" and dataset.nodata == -128 and dataset.count == 64
        assert dataset.descriptions[0] == "A00" and dataset.crs.to_epsg() == 32630


def test_city_across_files_and_zones(mirror):
    index, grids = mirror
    with open_source(index, year=2024, extent=LONDON) as source:
        assert source.crs.to_epsg() == 32631 and len(source.members) >= 4
        assert source.feature_space == "alphaearth (quadratic dequantisation)"
        assert source.band_names[:2] == ["A00", "A01"]
        city = city_part(source, LONDON)
        out = read_all(city)
    root = index.parent
    expected31 = expected_on(
        city,
        "EPSG:32631",
        grids["EPSG:32631"][0],
        dequantised_file_values(root, "EPSG:32631", *grids["EPSG:32631"]),
    )
    expected30 = expected_on(
        city,
        "EPSG:32630",
        grids["EPSG:32630"][0],
        dequantised_file_values(root, "EPSG:32630", *grids["EPSG:32630"]),
    )
    expected = np.where(np.isnan(expected31), expected30, expected31)
    same = ((out == expected) | (np.isnan(out) & np.isnan(expected))).all(axis=0)
    assert same.mean() > 0.999
    norms = np.linalg.norm(out, axis=0)
    valid = np.isfinite(norms)
    assert 80 < valid.size - valid.sum() < 120  # the 10 x 10 px hole (-128), resampled
    assert np.abs(norms[valid] - 1).max() < 0.03  # unit vectors after dequantisation


def test_city_over_http_fetches_only_what_it_reads(mirror, http_folder):
    index, _ = mirror
    root = index.parent
    with open_source(index, year=2024, extent=LONDON) as local:
        expected = local.read(Window(0, 0, local.width, local.height))
    server = http_folder(root)
    with open_source(f"{server.url}/{index.name}", year=2024, extent=LONDON) as remote:
        np.testing.assert_array_equal(
            remote.read(Window(0, 0, remote.width, remote.height)), expected
        )
    files = sum(p.stat().st_size for p in root.rglob("*.tiff"))
    tiff_bytes = sum(n for _, path, n in server.requests() if path.endswith(".tiff"))
    assert tiff_bytes < 0.6 * files  # only the files of 2024 that meet the city, by range


def test_bad_input_named(mirror, http_folder, tmp_path):
    index = Path(shutil.copytree(mirror[0].parent, tmp_path / "annual")) / mirror[0].name
    with pytest.raises(LczError, match=r"2019 is not in .* \[2023, 2024\]") as error:
        open_source(index, year=2019, extent=LONDON)
    assert error.value.parameter == "year"
    with pytest.raises(LczError, match="no AlphaEarth file of 2024") as error:
        open_source(index, year=2024, extent=(10.0, 50.0, 10.01, 50.01))
    assert error.value.parameter == "extent"
    server = http_folder(index.parent)
    victim = next((index.parent / "2024" / "31N").glob("*.tiff"))
    victim.unlink()
    with pytest.raises(LczError, match="is missing") as error:
        open_source(index, year=2024, extent=LONDON)
    assert error.value.parameter == "embeddings"
    with pytest.raises(LczError, match=f"{server.url}/2024/31N/{victim.name}"):
        open_source(f"{server.url}/{index.name}", year=2024, extent=LONDON)
    with pytest.raises(LczError, match=f"{server.url}/nothing.gpkg was not found"):
        open_source(f"{server.url}/nothing.gpkg", kind="aef-index", year=2024, extent=LONDON)
