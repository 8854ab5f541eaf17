"""Reading a city from a local TESSERA zarr store that spans two UTM zones (London at 0 deg):
the project's reader (dequantised, masked, one seamless grid, window by window) versus zarr
alone reading the same slices of the same arrays (int8 values and float32 scales, as stored).

Default: a 12 km x 12 km city (about a minute). LCZ_BENCH_LARGE=1: 30 km x 30 km (minutes, a store of
about 2 GB). The store is generated once, shard by shard, into $LCZ_BENCH_CACHE (default
~/.cache/lcz_qgis/bench). Peak memory (tracemalloc) is measured on the city and on a third of
it: it depends on the window, not on the extent. Timings are the best of three runs, taken
alternately, so that other load on the machine hits both alike.
"""

from __future__ import annotations

import os
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.windows import Window

BANDS = 128
WINDOW = 512
CENTRE = (0.0, 51.5)  # the zone 30 / 31 border


def city_km() -> int:
    """The city's side in km: 30 with LCZ_BENCH_LARGE=1, else 12."""
    return 30 if os.environ.get("LCZ_BENCH_LARGE") else 12


def extent(km: float) -> tuple[float, float, float, float]:
    """A km x km box (lon/lat) centred on CENTRE."""
    half_lon = km / 2 / (111.32 * np.cos(np.radians(CENTRE[1])))
    half_lat = km / 2 / 110.57
    return CENTRE[0] - half_lon, CENTRE[1] - half_lat, CENTRE[0] + half_lon, CENTRE[1] + half_lat


class Pattern:
    """Embeddings of a zone made on the fly, a row band at a time (a store larger than memory)."""

    def __init__(self, height: int, width: int) -> None:
        self.shape = (1, BANDS, height, width)
        rng = np.random.default_rng(0)
        self.tile = rng.normal(size=(BANDS, 256, 256)).astype(np.float32)

    def __getitem__(self, key) -> np.ndarray:
        _, _, rows, _ = key
        r0, r1, _ = rows.indices(self.shape[2])
        reps = (1, (r1 - r0) // 256 + 2, self.shape[3] // 256 + 1)
        block = np.tile(self.tile, reps)[:, r0 % 256 : r0 % 256 + r1 - r0, : self.shape[3]]
        return block * (1 + (r0 // 256) % 5)


def bench_store(km: int) -> Path:
    """The cached two-zone store covering a km x km city (with the city grid's margin)."""
    from rasterio.warp import transform_bounds

    from lcz_core.layouts import write_tessera_zone

    folder = Path(os.environ.get("LCZ_BENCH_CACHE", Path.home() / ".cache" / "lcz_qgis" / "bench"))
    path = folder / f"tessera_{km}km_{BANDS}b.zarr"
    if (path / "zarr.json").is_file() and (path / "utm31" / "zarr.json").is_file():
        return path
    shutil.rmtree(path, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    west, south, east, north = extent(km + 8)  # room for the grid's margin and snapping
    for crs, box in (
        ("EPSG:32630", (west, south, 0.02, north)),
        ("EPSG:32631", (-0.02, south, east, north)),
    ):
        left, bottom, right, top = transform_bounds("EPSG:4326", crs, *box, densify_pts=21)
        x0, y0 = np.floor(left / 10) * 10, np.ceil(top / 10) * 10
        width, height = int((right - x0) // 10) + 1, int((y0 - bottom) // 10) + 1
        write_tessera_zone(
            path, Pattern(height, width), Affine(10, 0, x0, 0, -10, y0), crs, [2024], shard=1024
        )
    return path


def city_windows(source) -> list[Window]:
    """The windows the city is read in."""
    return [
        Window(c, r, min(WINDOW, source.width - c), min(WINDOW, source.height - r))
        for r in range(0, source.height, WINDOW)
        for c in range(0, source.width, WINDOW)
    ]


def open_city(store: Path, km: float):
    """The store's city grid and its crop to the km x km extent."""
    from lcz_core.extents import reproject_extent
    from lcz_core.rasters import crop_to_extent, open_source

    box = extent(km)
    source = open_source(store, year=2024, extent=box)
    return source, crop_to_extent(source, reproject_extent(box, "EPSG:4326", source.crs))


def reader_pass(store: Path, km: float, record: list | None = None) -> float:
    """Seconds for the project's reader to read the city window by window (float32 out)."""
    source, city = open_city(store, km)
    if record is not None:  # note which slices of which zone the reader asks zarr for
        for index, zone in enumerate(source.members):
            original = zone.read_quantised

            def recorded(window, original=original, index=index):
                record.append((index, window))
                return original(window)

            zone.read_quantised = recorded
    start = time.perf_counter()
    for window in city_windows(city):
        city.read(window)
    return time.perf_counter() - start


def zarr_pass(store: Path, km: float, record: list) -> float:
    """Seconds for zarr alone to read the same slices of the same zones (as stored)."""
    import zarr

    source, _ = open_city(store, km)
    root = zarr.open_group(str(store), mode="r")
    arrays = [
        (
            root[zone.name.rsplit("/", 1)[1]]["embeddings"],
            root[zone.name.rsplit("/", 1)[1]]["scales"],
        )
        for zone in source.members
    ]
    start = time.perf_counter()
    for index, window in record:
        emb, scales = arrays[index]
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        emb[0, :, rows, cols]
        scales[0, rows, cols]
    return time.perf_counter() - start


def reader_peak(store: Path, km: float) -> int:
    """Peak traced bytes of the reader over a km x km city (timed apart: tracing is slow)."""
    tracemalloc.start()
    reader_pass(store, km)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    """Print both timings, the speed ratio and the peak memory on two extents."""
    km = city_km()
    store = bench_store(km)
    record: list = []
    reader_pass(store, km, record)  # warms the page cache and notes the slices read
    runs = [(reader_pass(store, km), zarr_pass(store, km, record)) for _ in range(3)]
    ours, plain = min(r[0] for r in runs), min(r[1] for r in runs)
    pixels = sum(w.width * w.height for _, w in record)
    print(f"TESSERA zarr store, two UTM zones, city {km} km x {km} km, windows of {WINDOW} px")
    print(f"zarr alone, the same slices ({pixels / 1e6:.1f} Mpx x {BANDS} bands): {plain:.2f} s")
    print(f"reader (dequantise, mask, one grid across zones): {ours:.2f} s")
    print(f"speed ratio reader/zarr: {plain / ours:.2f} (target >= 0.5)")
    small, large = reader_peak(store, km / 2), reader_peak(store, km)
    print(
        f"peak memory: {km / 2:g} km city {small / 2**20:.0f} MiB, {km} km city {large / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
