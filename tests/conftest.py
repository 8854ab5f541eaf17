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
    """Write a GeoTIFF (2-D: one band, 3-D: bands first) in EPSG:32633 and return its path."""
    import numpy as np
    import rasterio
    from affine import Affine

    def write(path, values, nodata=None, pixel=100.0, origin=(400_000, 5_800_000)):
        bands = values if values.ndim == 3 else values[np.newaxis]
        profile = {
            "driver": "GTiff",
            "dtype": bands.dtype.name,
            "count": bands.shape[0],
            "nodata": nodata,
            "width": bands.shape[2],
            "height": bands.shape[1],
            "crs": "EPSG:32633",
            "transform": Affine(pixel, 0, origin[0], 0, -pixel, origin[1]),
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(bands)
        return path

    return write


@pytest.fixture
def model_metadata():
    """Model-file metadata for tests of the mechanics (task, bands, classes, stem chosen)."""

    def metadata(task="patch", bands=6, classes=(2, 6, 14), stem="3x3", mean=0.5, std=2.0):
        return {
            "task": task,
            "architecture": "resnet10t" if task == "patch" else "unet",
            "width": 8,
            "stem": stem,
            "band_count": bands,
            "band_names": [f"A{i:02d}" for i in range(bands)],
            "embedding_source": "test embeddings",
            "normalisation": {"mean": [mean] * bands, "std": [std] * bands},
            "classes": list(classes),
            "patch_size": 32,
            "pixel_size": 10.0,
        }

    return metadata
