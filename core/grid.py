"""A grid of square cells over an extent, aligned to an embedding source's pixel grid.

Cells are `cell_px` pixels a side (32 px = 320 m at 10 m for patches, 64 px for segmentation
tiles). A cell is (row, col) from the upper-left; its id is row * cols + col.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from .choices import SPLITS
from .errors import LczError
from .extents import Bounds
from .outputs import atomic_path, split_style_qml, write_text_atomic
from .rasters import EmbeddingSource

SPLIT_LABELS = {**dict(enumerate(SPLITS)), -1: "excluded"}


@dataclass(frozen=True)
class Grid:
    """Cells of `cell_px` pixels; `transform` is the pixel grid with its origin at cell (0, 0)."""

    crs: CRS
    transform: Affine
    cell_px: int
    rows: int
    cols: int

    @property
    def pixel_size(self) -> float:
        """Pixel size in CRS units."""
        return float(self.transform.a)

    @property
    def cell_size(self) -> float:
        """Cell side in CRS units."""
        return self.cell_px * self.pixel_size

    @property
    def cell_transform(self) -> Affine:
        """Transform of a raster with one pixel per cell."""
        return self.transform * Affine.scale(self.cell_px)

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) of all cells."""
        left, top = self.transform.c, self.transform.f
        return left, top - self.rows * self.cell_size, left + self.cols * self.cell_size, top

    def cell_id(self, row: np.ndarray | int, col: np.ndarray | int) -> np.ndarray | int:
        """Cell ids of (row, col)."""
        return row * self.cols + col

    def cell_bounds(self, row: int, col: int) -> Bounds:
        """(left, bottom, right, top) of one cell."""
        left = self.transform.c + col * self.cell_size
        top = self.transform.f - row * self.cell_size
        return left, top - self.cell_size, left + self.cell_size, top

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) int arrays of the cells holding points x, y (may fall outside the grid)."""
        col = np.floor((np.asarray(x) - self.transform.c) / self.cell_size).astype(np.int64)
        row = np.floor((self.transform.f - np.asarray(y)) / self.cell_size).astype(np.int64)
        return row, col

    def pixel_window(self, row: int, col: int, source: EmbeddingSource) -> Window:
        """The window of one cell in `source`'s pixels (the grid is aligned to that source)."""
        col0 = round((self.transform.c - source.transform.c) / self.pixel_size) + col * self.cell_px
        row0 = round((source.transform.f - self.transform.f) / self.pixel_size) + row * self.cell_px
        return Window(col0, row0, self.cell_px, self.cell_px)


def make_grid(
    source: EmbeddingSource,
    extent: Bounds | None = None,
    cell_px: int = 32,
    parameter: str = "cell_size",
) -> Grid:
    """Cells over `extent` (source CRS; default the whole source), snapped to its pixel grid.

    `parameter` names the cell size in errors (a patch size when cells are patches)."""
    if cell_px < 1:
        raise LczError(parameter, f"cell size must be at least one pixel, got {cell_px}")
    sl, sb, sr, st = source.bounds
    if extent is None:
        extent = source.bounds
    left, bottom, right, top = extent
    if left >= sr or right <= sl or bottom >= st or top <= sb:
        raise LczError(
            "extent",
            f"extent {tuple(round(v, 2) for v in extent)} lies outside the embeddings "
            f"{tuple(round(v, 2) for v in source.bounds)} ({source.crs.to_string()}); "
            "choose an extent over the data or check its CRS",
        )
    # clipped to the data: cells beyond it hold nothing, and a huge extent would size huge arrays
    left, bottom, right, top = max(left, sl), max(bottom, sb), min(right, sr), min(top, st)
    res = source.res
    # snap outward to whole pixels of the source so every cell is a plain window
    col0 = math.floor((left - source.transform.c) / res + 1e-6)
    row0 = math.floor((source.transform.f - top) / res + 1e-6)
    col1 = math.ceil((right - source.transform.c) / res - 1e-6)
    row1 = math.ceil((source.transform.f - bottom) / res - 1e-6)
    if cell_px > min(col1 - col0, row1 - row0):
        raise LczError(
            parameter,
            f"{cell_px} px is larger than the extent of the data ({col1 - col0} x "
            f"{row1 - row0} px): give at most {min(col1 - col0, row1 - row0)} or a larger extent",
        )
    origin = source.transform * (col0, row0)
    return Grid(
        crs=source.crs,
        transform=Affine(res, 0, origin[0], 0, -res, origin[1]),
        cell_px=cell_px,
        rows=max(1, math.ceil((row1 - row0) / cell_px)),
        cols=max(1, math.ceil((col1 - col0) / cell_px)),
    )


def grid_frame(grid: Grid, splits: np.ndarray | None = None, only_used: bool = False):
    """The cells as a GeoDataFrame (cell_id, row, col, split, geometry).

    `splits` (rows x cols, 0/1/2, -1 = excluded, -2 = no samples) names each cell's split;
    with `only_used` cells without samples are left out.
    """
    import geopandas as gpd
    from shapely.geometry import box

    rows, cols = np.mgrid[0 : grid.rows, 0 : grid.cols]
    rows, cols = rows.ravel(), cols.ravel()
    split = np.full(rows.size, -2) if splits is None else np.asarray(splits).ravel()
    keep = split > -2 if only_used else np.ones(rows.size, bool)
    return gpd.GeoDataFrame(
        {
            "cell_id": grid.cell_id(rows[keep], cols[keep]).astype(np.int64),
            "row": rows[keep].astype(np.int32),
            "col": cols[keep].astype(np.int32),
            "split": [SPLIT_LABELS.get(int(s), "") for s in split[keep]],
        },
        geometry=[
            box(*grid.cell_bounds(r, c)) for r, c in zip(rows[keep], cols[keep], strict=True)
        ],
        crs=grid.crs.to_wkt(),
    )


def write_grid(
    grid: Grid,
    path: str | os.PathLike,
    splits: np.ndarray | None = None,
    only_used: bool = False,
    parameter: str = "output",
) -> Path:
    """Write the grid as a GeoPackage of polygons (cell_id, row, col, split), styled by split."""
    path = Path(path)
    with atomic_path(path, parameter) as tmp:
        grid_frame(grid, splits, only_used).to_file(tmp, driver="GPKG", layer=path.stem)
    write_text_atomic(path.with_suffix(".qml"), split_style_qml())
    return path
