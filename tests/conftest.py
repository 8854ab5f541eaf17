"""Shared fixtures: the real data beside the repo and a demo city generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = Path(os.environ.get("LCZ_REAL_DATA", REPO.parent / "shared" / "data" / "real"))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real LCZ data (../shared/data/real); tests skip where it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent")
    return REAL_DATA


@pytest.fixture(scope="session")
def demo_city(tmp_path_factory):
    """The synthetic demo city, written once per test session."""
    from lcz_core.demo import make_demo_city

    return make_demo_city(tmp_path_factory.mktemp("demo_city"))


@pytest.fixture
def write_raster():
    """Write a one-band GeoTIFF (EPSG:32633, 100 m pixels unless told) and return its path."""
    import rasterio
    from affine import Affine

    def write(path, values, nodata=None, crs="EPSG:32633", pixel=100.0):
        profile = {
            "driver": "GTiff",
            "dtype": values.dtype.name,
            "count": 1,
            "nodata": nodata,
            "width": values.shape[1],
            "height": values.shape[0],
            "crs": crs,
            "transform": Affine(pixel, 0, 400000, 0, -pixel, 5800000),
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(values, 1)
        return path

    return write
