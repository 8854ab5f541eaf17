"""The 64 x 64 screen: embeddings (PCA RGB) or an LCZ map on a Divoom Pixoo-64's grid.

The grid is 64 x 64 square cells, north up, centred on a point, in the data's CRS (for data in
degrees: the UTM zone of the centre); `size_m` is its side (default 640 m: 10 m cells). Each cell
is sampled on a finer grid, nearest neighbour, at about the data's pixel size (at most MAX_SAMPLES
a side): embeddings become PCA RGB (as `pictures.embedding_rgb`, fitted on the area's samples) and
a cell takes their mean colour; an LCZ map gives a cell its most frequent class (ties: the lower
code) in the LCZ palette. Cells without data are black.

The picture is written as a PNG scaled up PNG_SCALE times (nearest neighbour), and optionally sent
to the device over its local HTTP API (`POST http://HOST:PORT/post`: Draw/ResetHttpGifId, then
Draw/SendHttpGif with the 64 x 64 x 3 RGB bytes, row-major from the top-left, in base64), or
written as the JSON of the Draw/SendHttpGif command instead (`dry_run`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .errors import LczError
from .extents import utm_crs_for
from .lcz import LCZ_CLASSES, NUM_CLASSES, classes_present
from .outputs import atomic_path, check_writable, write_text_atomic
from .pictures import SAMPLE_PIXELS, PixelSample, check_stretch, fit_rgb, to_crs, to_uint8
from .progress import Progress, SubProgress, track
from .rasters import EmbeddingSource, open_source

SCREEN = 64  # cells a side
PNG_SCALE = 8  # PNG pixels per cell a side
MAX_SAMPLES = 32  # samples per cell a side
MAX_CELL_PIXELS = 256  # data pixels a cell may span a side (bounds the memory of a read)
BLOCK_SAMPLES = 256  # samples a side of the blocks of cells read at once
DEFAULT_PORT = 80
RESET_COMMAND = {"Command": "Draw/ResetHttpGifId"}


@dataclass(frozen=True)
class ScreenGrid:
    """The 64 x 64 cells (`transform`, in `crs`), samples and data pixels per cell a side."""

    crs: CRS
    transform: Affine
    samples: int
    data_pixels: float
    center: tuple[float, float]
    cell_m: float

    def blocks(self) -> Iterator[tuple[int, int, int, int]]:
        """(row, col, rows, cols) of the blocks of cells read at once (at most about
        BLOCK_SAMPLES samples and data pixels a side)."""
        step = max(1, min(SCREEN, BLOCK_SAMPLES // max(self.samples, math.ceil(self.data_pixels))))
        for row in range(0, SCREEN, step):
            for col in range(0, SCREEN, step):
                yield row, col, min(step, SCREEN - row), min(step, SCREEN - col)

    def sample_transform(self, row: int = 0, col: int = 0) -> Affine:
        """The transform of the sample grid whose top-left is that of cell (row, col)."""
        return self.transform * Affine.translation(col, row) * Affine.scale(1 / self.samples)


def screen_grid(
    center: tuple[float, float],
    center_crs: str | None,
    size_m: float,
    data_crs: CRS,
    data_bounds: tuple[float, float, float, float],
    data_width: int,
) -> ScreenGrid:
    """The grid of `size_m` centred on `center`; refuses a centre outside the data."""
    from rasterio.warp import transform_bounds

    if not size_m > 0:
        raise LczError("size_m", f"{size_m} must be a positive side length in metres")
    x, y = to_crs(*center, center_crs, data_crs, "center_crs")
    left, bottom, right, top = data_bounds
    if not (left <= x <= right and bottom <= y <= top):
        raise LczError(
            "center",
            f"({center[0]:.6g}, {center[1]:.6g}) is ({x:.6g}, {y:.6g}) in {data_crs.to_string()}, "
            f"outside the data ({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}); give a centre "
            "inside the data (and its CRS in center_crs)",
        )
    if data_crs.is_projected:
        crs = data_crs
    else:
        lon, lat = to_crs(x, y, data_crs, CRS.from_epsg(4326), "center_crs")
        crs = CRS.from_user_input(utm_crs_for(lon, lat))
        x, y = to_crs(x, y, data_crs, crs, "center_crs")
    metres = crs.linear_units_factor[1]
    cell = size_m / SCREEN / metres
    box = transform_bounds(data_crs, crs, *data_bounds, densify_pts=21)
    pixel = (box[2] - box[0]) / data_width
    if cell > MAX_CELL_PIXELS * pixel:
        raise LczError(
            "size_m",
            f"{size_m:g} m makes cells of {cell * metres:g} m, over {MAX_CELL_PIXELS} pixels of the "
            f"data a side; give at most {SCREEN * MAX_CELL_PIXELS * pixel * metres:g} m",
        )
    samples = max(1, min(MAX_SAMPLES, math.ceil(cell / pixel - 1e-6)))
    half = SCREEN * cell / 2
    transform = Affine(cell, 0, x - half, 0, -cell, y + half)
    return ScreenGrid(crs, transform, samples, cell / pixel, (x, y), cell * metres)


def no_data_error(grid: ScreenGrid) -> LczError:
    """The error for a screen without data."""
    x, y = grid.center
    return LczError(
        "center",
        f"there is no data in the {SCREEN * grid.cell_m:g} m square around ({x:.6g}, {y:.6g}) "
        f"in {grid.crs.to_string()}; move the centre onto the data",
    )


def _sample_embeddings(
    source: EmbeddingSource, grid: ScreenGrid, row: int, col: int, rows: int, cols: int
) -> np.ndarray:
    """(C, rows * k, cols * k) embeddings at the samples of a block of cells (nearest)."""
    from rasterio.transform import array_bounds
    from rasterio.warp import Resampling, reproject, transform_bounds
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    k = grid.samples
    transform = grid.sample_transform(row, col)
    shape = (rows * k, cols * k)
    box = transform_bounds(grid.crs, source.crs, *array_bounds(*shape, transform), densify_pts=21)
    window = source.window_for(box)
    window = Window(window.col_off - 1, window.row_off - 1, window.width + 2, window.height + 2)
    out = np.full((source.count, *shape), np.nan, np.float32)
    reproject(
        source.read(window),
        out,
        src_transform=window_transform(window, source.transform),
        src_crs=source.crs,
        src_nodata=np.nan,
        dst_transform=transform,
        dst_crs=grid.crs,
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    return out


def embedding_cells(
    source: EmbeddingSource,
    grid: ScreenGrid,
    stretch: str = "percentile",
    percentiles: tuple[float, float] = (2.0, 98.0),
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(64, 64, 3) uint8 mean PCA colours, (64, 64) bool cells with data, explained variance."""
    progress = progress or Progress()
    blocks = list(grid.blocks())
    k = grid.samples
    sample = PixelSample(SAMPLE_PIXELS, seed)
    for row, col, rows, cols in track(
        blocks, SubProgress(progress, 0, 50), len(blocks), "sampling"
    ):
        sample.add(_sample_embeddings(source, grid, row, col, rows, cols), row * k, col * k)
    if sample.valid_pixels == 0:
        raise no_data_error(grid)
    fit = fit_rgb(sample.values(), stretch, percentiles, "center")
    sums = np.zeros((3, SCREEN, SCREEN))
    counts = np.zeros((SCREEN, SCREEN))
    for row, col, rows, cols in track(
        blocks, SubProgress(progress, 50, 100), len(blocks), "colouring"
    ):
        rgb = fit.rgb(_sample_embeddings(source, grid, row, col, rows, cols))
        valid = ~np.isnan(rgb[0])
        cells = (slice(row, row + rows), slice(col, col + cols))
        sums[:, cells[0], cells[1]] = np.nan_to_num(rgb).reshape(3, rows, k, cols, k).sum((2, 4))
        counts[cells] = valid.reshape(rows, k, cols, k).sum((1, 3))
    mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    image = np.moveaxis(to_uint8(mean), 0, 2)
    return image, counts > 0, [round(float(v), 4) for v in fit.explained]


def lcz_cells(dataset, grid: ScreenGrid, progress: Progress | None = None) -> np.ndarray:
    """(64, 64) uint8 most frequent LCZ code of each cell (0 where no class) of an LCZ raster."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    progress = progress or Progress()
    k = grid.samples
    codes = np.zeros((SCREEN, SCREEN), np.uint8)
    blocks = list(grid.blocks())
    with WarpedVRT(
        dataset,
        crs=grid.crs,
        transform=grid.sample_transform(),
        width=SCREEN * k,
        height=SCREEN * k,
        resampling=Resampling.nearest,
        nodata=0,
    ) as vrt:
        for row, col, rows, cols in track(blocks, progress, len(blocks), "reading"):
            values = vrt.read(1, window=Window(col * k, row * k, cols * k, rows * k))
            if values.dtype.kind == "f":
                values = np.nan_to_num(values, nan=0.0)
            unknown = np.setdiff1d(np.unique(values), np.arange(NUM_CLASSES + 1))
            if unknown.size:
                raise LczError(
                    "lcz_map",
                    f"values {unknown[:10].tolist()} are not LCZ codes 1-17; import the map "
                    "first (import_lcz_map) to translate its coding",
                )
            cells = values.astype(np.uint8).reshape(rows, k, cols, k).transpose(0, 2, 1, 3)
            counts = (cells.reshape(rows, cols, k * k, 1) == np.arange(1, NUM_CLASSES + 1)).sum(2)
            mode = (counts.argmax(axis=2) + 1).astype(np.uint8)
            codes[row : row + rows, col : col + cols] = np.where(counts.max(axis=2) > 0, mode, 0)
    return codes


def lcz_palette() -> np.ndarray:
    """(18, 3) uint8 colours of codes 0-17 (0, no class: black, as the screen shows it)."""
    table = np.zeros((NUM_CLASSES + 1, 3), np.uint8)
    for c in LCZ_CLASSES:
        table[c.code] = c.rgb
    return table


def pixoo_payload(image: np.ndarray) -> dict[str, Any]:
    """The Draw/SendHttpGif command showing a (64, 64, 3) uint8 image (row-major, top-left first)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.shape != (SCREEN, SCREEN, 3):
        raise ValueError(f"a Pixoo-64 picture is {SCREEN} x {SCREEN} x 3, got {image.shape}")
    return {
        "Command": "Draw/SendHttpGif",
        "PicNum": 1,
        "PicWidth": SCREEN,
        "PicOffset": 0,
        "PicID": 1,
        "PicSpeed": 1000,
        "PicData": base64.b64encode(image.tobytes()).decode("ascii"),
    }


def parse_device(device: str) -> tuple[str, int]:
    """(host, port) of a device address 'HOST' or 'HOST:PORT' (an http:// prefix is allowed)."""
    text = device.strip().removeprefix("http://").rstrip("/")
    host, _, port = text.partition(":")
    if not host or "/" in text or ":" in port or (port and not port.isdigit()):
        raise LczError("device", f"{device!r} is not HOST or HOST:PORT, e.g. 192.168.1.20")
    number = int(port) if port else DEFAULT_PORT
    if not 0 < number < 65536:
        raise LczError("device", f"port {number} must be 1 to 65535")
    return host, number


def _post(url: str, command: dict[str, Any], timeout: float) -> None:
    """POST one command; refuse a device that does not answer, or answers an error."""
    request = urllib.request.Request(
        url,
        data=json.dumps(command).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    name = command["Command"]
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        raise LczError(
            "device", f"{url} answered HTTP {error.code} to {name}; is it a Pixoo-64?"
        ) from None
    except OSError as error:  # URLError, refused connections and timeouts
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            raise LczError(
                "device",
                f"{url} did not answer {name} within {timeout:g} s; check the address (the Divoom "
                "app shows it), that the Pixoo-64 is on and on this computer's network",
            ) from None
        raise LczError(
            "device",
            f"cannot reach {url} ({reason}); check the address (the Divoom app shows it) and that "
            "the Pixoo-64 is on and on this computer's network",
        ) from None
    try:
        reply = json.loads(body)
        code = reply["error_code"]
    except (ValueError, TypeError, KeyError):
        raise LczError(
            "device",
            f"{url} answered {body[:80]!r} to {name}, not a Pixoo reply; check the address",
        ) from None
    if code != 0:
        raise LczError("device", f"the Pixoo-64 at {url} refused {name} (error_code {code})")


def send_to_pixoo(image: np.ndarray, device: str, timeout: float = 5.0) -> str:
    """Show a (64, 64, 3) uint8 image on the Pixoo-64 at `device` (HOST[:PORT]); return the URL."""
    host, port = parse_device(device)
    url = f"http://{host}:{port}/post"
    for command in (RESET_COMMAND, pixoo_payload(image)):
        _post(url, command, timeout)
    return url


def write_screen_png(image: np.ndarray, path: str | os.PathLike, parameter: str = "output") -> Path:
    """Write a (64, 64, 3) image as a PNG scaled up PNG_SCALE times (nearest neighbour)."""
    from matplotlib.image import imsave

    big = np.repeat(np.repeat(image, PNG_SCALE, axis=0), PNG_SCALE, axis=1)
    path = Path(path)
    with atomic_path(path, parameter) as tmp:
        imsave(tmp, big, format="png")
    return path


def square_around(
    center: tuple[float, float], center_crs: str | None, size_m: float
) -> tuple[tuple[float, float, float, float], str]:
    """A box a little larger than the square shown, in the centre's CRS (EPSG:4326 when none):
    what sources covering the globe (TESSERA, the AlphaEarth index) read for the screen."""
    from rasterio.crs import CRS

    crs = center_crs or "EPSG:4326"
    half_x = half_y = 0.75 * size_m  # half the side, and a margin
    if CRS.from_user_input(crs).is_geographic:
        half_y = half_y / 111_320.0
        half_x = half_y / max(math.cos(math.radians(center[1])), 0.01)
    x, y = center
    return (x - half_x, y - half_y, x + half_x, y + half_y), crs


def pixoo64(
    output: str | os.PathLike,
    *,
    center: tuple[float, float],
    embeddings: str | os.PathLike | None = None,
    lcz_map: str | os.PathLike | None = None,
    center_crs: str | None = None,
    size_m: float = 640.0,
    device: str | None = None,
    dry_run: str | os.PathLike | None = None,
    stretch: str = "percentile",
    percentiles: tuple[float, float] = (2.0, 98.0),
    seed: int = 0,
    timeout: float = 5.0,
    source_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Render embeddings (PCA RGB) or an LCZ map on a 64 x 64 grid: PNG, and to a Pixoo-64."""
    from .rasters import open_raster

    progress = progress or Progress()
    if (embeddings is None) == (lcz_map is None):
        raise LczError("embeddings", "give either embeddings or an lcz_map, not both")
    check_stretch(stretch, percentiles)
    output = check_writable(output)
    dry_run = check_writable(dry_run, "dry_run") if dry_run else None
    if device and not dry_run:
        parse_device(device)  # a bad address fails before the work
    result: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if embeddings is not None:
            square, square_crs = square_around(center, center_crs, size_m)
            source = stack.enter_context(
                open_source(
                    embeddings,
                    parameter="embeddings",
                    extent=square,
                    extent_crs=square_crs,
                    **(source_options or {}),
                )
            )
            grid = screen_grid(center, center_crs, size_m, source.crs, source.bounds, source.width)
            image, valid, explained = embedding_cells(
                source, grid, stretch, percentiles, seed, SubProgress(progress, 0, 90)
            )
            result["explained_variance"] = explained
        else:
            dataset = stack.enter_context(open_raster(lcz_map, "lcz_map"))
            if dataset.crs is None:
                raise LczError("lcz_map", f"{lcz_map} has no CRS; assign one first")
            bounds = tuple(dataset.bounds)
            grid = screen_grid(center, center_crs, size_m, dataset.crs, bounds, dataset.width)
            codes = lcz_cells(dataset, grid, SubProgress(progress, 0, 90))
            image, valid = lcz_palette()[codes], codes > 0
            result["classes"] = [c.short for c in classes_present(codes)]
    if not valid.any():
        raise no_data_error(grid)
    progress.report(90, "writing")
    write_screen_png(image, output)
    payload_path, url = None, None
    if dry_run:
        write_text_atomic(Path(dry_run), json.dumps(pixoo_payload(image)))
        payload_path = str(dry_run)
    elif device:
        progress.report(95, "sending")
        url = send_to_pixoo(image, device, timeout)
    progress.report(100, "done")
    return {
        "output": str(output),
        "payload": payload_path,
        "device": url,
        "crs": grid.crs.to_string(),
        "center": [round(v, 3) for v in grid.center],
        "size_m": float(size_m),
        "cell_size_m": grid.cell_m,
        "samples_per_cell": grid.samples**2,
        "cells_with_data": int(valid.sum()),
        **result,
    }
