"""Shared fixtures: the real data beside the repo, a demo city generated once per session, a static
file server on 127.0.0.1 with HTTP range requests, and a small copy of the global LCZ map."""

from __future__ import annotations

import os
import subprocess
import sys
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


SERVER = Path(__file__).with_name("core") / "range_server.py"


class ServedFolder:
    """A folder served over HTTP: `url` is its address, `requests()` what was asked so far."""

    def __init__(self, folder: Path, log: Path, delay: float) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), str(folder), str(log), str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = f"http://127.0.0.1:{self.process.stdout.readline().strip()}"

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, bytes sent) of every request so far."""
        if not self.log.is_file():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [(m, p, int(n)) for m, p, n in (line.split(" ") for line in lines)]

    def stop(self) -> None:
        """End the server process."""
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process.stdout.close()


@pytest.fixture
def http_folder(tmp_path_factory):
    """Serve a folder on 127.0.0.1 (optionally `delay` seconds late under /slow/)."""
    served = []

    def serve(folder: Path, delay: float = 0.0) -> ServedFolder:
        log = tmp_path_factory.mktemp("http") / "requests.log"
        served.append(ServedFolder(folder, log, delay))
        return served[-1]

    yield serve
    for server in served:
        server.stop()


# the global LCZ map's grid (EPSG:4326) and file name, from its v3 COG
GLOBAL_PIXEL = 0.000898315284119518
GLOBAL_NAME = "lcz_filter_v3_cog.tif"


@pytest.fixture(scope="session")
def global_lcz_cog(tmp_path_factory) -> Path:
    """A small copy of the global LCZ map in its layout: one uint8 band of classes 1-17 in
    8 x 8 px patches, a few classes per area, 0 = nodata (declared), the LCZ colour table, EPSG:4326 on the map's grid
    (4096 x 2048 px over 1.50 W-2.18 E, 40.16-42.00 N), a COG of 512 px tiles with overviews."""
    import numpy as np
    from affine import Affine
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy

    from lcz_core.outputs import lcz_colormap

    rng = np.random.default_rng(2018)
    # each 64 x 64 px region draws its patches from four classes (0 among them now and then)
    palettes = np.sort(rng.random((32, 64, 18)).argsort(axis=-1)[..., :4], axis=-1)
    picks = rng.integers(0, 4, (256, 512))
    patches = np.take_along_axis(
        np.repeat(np.repeat(palettes, 8, axis=0), 8, axis=1), picks[..., None], axis=-1
    )[..., 0].astype(np.uint8)
    codes = np.kron(patches, np.ones((8, 8), np.uint8))
    west, north = (
        -180 + round(178.5 / GLOBAL_PIXEL) * GLOBAL_PIXEL,
        90 - round(48 / GLOBAL_PIXEL) * GLOBAL_PIXEL,
    )
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "nodata": 0,
        "width": codes.shape[1],
        "height": codes.shape[0],
        "crs": "EPSG:4326",
        "transform": Affine(GLOBAL_PIXEL, 0, west, 0, -GLOBAL_PIXEL, north),
    }
    path = tmp_path_factory.mktemp("global_lcz_map") / GLOBAL_NAME
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(codes, 1)
            dataset.write_colormap(1, lcz_colormap())
        with memory.open() as dataset:
            copy(
                dataset, path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512,
                OVERVIEW_RESAMPLING="NEAREST",
            )  # fmt: skip
    return path
