"""Sampling patches and tiles from embeddings with labels, and splitting them leak-free.

Samples live on a grid of cells aligned to the embeddings (core/grid.py). Each cell gets a split
(0 train, 1 val, 2 test; -1 excluded, -2 unused) from a seeded method:

- random: cells drawn at random in the given fractions;
- blocks: square blocks of `block_cells` x `block_cells` cells drawn at random (spatially blocked);
- stripes: horizontal stripes `block_cells` high in a repeating train/val/test cycle;
- checkerboard: blocks alternately train and held out (held-out blocks alternately val, test);
- polygons: a user layer whose `split_field` says train/val/test for the cells it covers.

Then, with `buffer_m` set, every val/test cell closer than `buffer_m` to a train cell (touching
counts) is excluded, so no held-out patch touches a training patch. Same inputs + seed give the
same split, byte for byte. Patches: one per grid cell whose majority class covers `min_share` of
it, or one per label point (So2Sat centres) snapped to the pixel grid. Tiles: one per cell with
at least `min_share` labelled pixels, labels rasterised (0 = unlabelled).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from . import checks
from .datasets import SPLIT_NAMES, Batch, write_dataset
from .errors import LczError
from .grid import Grid, make_grid, write_grid
from .labels import RasterLabels, VectorLabels
from .lcz import CODES
from .progress import Progress, SubProgress
from .rasters import Bounds, EmbeddingSource

SPLIT_METHODS = ("random", "blocks", "stripes", "checkerboard", "polygons")
EXCLUDED, UNUSED = -1, -2


@dataclass
class SplitConfig:
    """How cells are split: method, train/val/test fractions, seed, block size, buffer."""

    method: str = "blocks"
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    block_cells: int = 4
    buffer_m: float | None = 0.0
    polygons: str | None = None
    split_field: str = "split"

    def check(self) -> None:
        """Refuse settings that cannot work, naming the parameter."""
        if self.method not in SPLIT_METHODS:
            raise LczError(
                "split_method", f"unknown method {self.method!r}; use {', '.join(SPLIT_METHODS)}"
            )
        if (
            len(self.fractions) != 3
            or min(self.fractions) < 0
            or not math.isclose(sum(self.fractions), 1)
        ):
            raise LczError(
                "fractions",
                f"{self.fractions} must be three shares (train, val, test) summing to 1",
            )
        if self.block_cells < 1:
            raise LczError("block_cells", "blocks must be at least one cell wide")
        if self.method == "polygons" and not self.polygons:
            raise LczError("split_polygons", "the polygons method needs a layer with a split field")


def _allocate(n: int, fractions: Sequence[float]) -> np.ndarray:
    """n split codes in the given fractions (largest remainder), each wanted split at least once."""
    wanted = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(wanted).astype(int)
    for i in np.argsort(-(wanted - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in np.flatnonzero((np.asarray(fractions) > 0) & (counts == 0)):
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return np.repeat(np.arange(3, dtype=np.int8), counts)


def assign_splits(grid: Grid, used: np.ndarray, config: SplitConfig, stream: int = 0) -> np.ndarray:
    """int8 (rows, cols) split per cell: 0/1/2, -1 excluded (buffer, outside pattern), -2 unused.

    `stream` separates the random draws of several cities sharing one seed."""
    config.check()
    rng = np.random.default_rng([config.seed, stream])
    rows, cols = np.mgrid[0 : grid.rows, 0 : grid.cols]
    k = config.block_cells
    splits = np.full(used.shape, UNUSED, dtype=np.int8)
    if config.method == "random":
        idx = np.flatnonzero(used.ravel())
        splits.ravel()[idx[rng.permutation(idx.size)]] = _allocate(idx.size, config.fractions)
    elif config.method == "blocks":
        block = (rows // k) * (-(-grid.cols // k)) + cols // k
        blocks = np.unique(block[used])
        chosen = dict(
            zip(
                blocks[rng.permutation(blocks.size)],
                _allocate(blocks.size, config.fractions),
                strict=True,
            )
        )
        splits[used] = [chosen[b] for b in block[used]]
    elif config.method == "stripes":
        cycle = _allocate(20, config.fractions)
        phase = int(rng.integers(cycle.size))
        splits[used] = cycle[(rows[used] // k + phase) % cycle.size]
    elif config.method == "checkerboard":
        bi, bj = rows // k + int(rng.integers(2)), cols // k
        pattern = np.where((bi + bj) % 2 == 0, 0, np.where(bi % 2 == 0, 1, 2)).astype(np.int8)
        splits[used] = pattern[used]
    else:
        splits[used] = _split_polygons(grid, config)[used]
    if config.buffer_m is not None:
        splits = buffer_exclude(splits, grid, config.buffer_m)
    return splits


def _split_polygons(grid: Grid, config: SplitConfig) -> np.ndarray:
    """Split codes of the cells whose centres fall in the user's train/val/test polygons."""
    import geopandas as gpd
    from rasterio.features import rasterize

    frame = gpd.read_file(config.polygons)
    if config.split_field not in frame.columns:
        raise LczError("split_field", f"{config.polygons} has no field {config.split_field!r}")
    names = frame[config.split_field].astype(str).str.strip().str.lower()
    unknown = sorted(set(names) - set(SPLIT_NAMES.values()))
    if unknown:
        raise LczError("split_field", f"values {', '.join(unknown)} are not train, val or test")
    if frame.crs is None:
        raise LczError("split_polygons", f"{config.polygons} has no CRS")
    frame = frame.to_crs(grid.crs.to_wkt())
    codes = {v: k + 1 for k, v in SPLIT_NAMES.items()}
    burned = rasterize(
        zip(frame.geometry, names.map(codes), strict=True),
        out_shape=(grid.rows, grid.cols),
        transform=grid.cell_transform,
        fill=0,
        dtype="int16",
    )
    return (burned - 1).astype(np.int8)


def buffer_exclude(splits: np.ndarray, grid: Grid, buffer_m: float) -> np.ndarray:
    """Exclude val/test cells within `buffer_m` of a train cell (edge-to-edge; touching counts)."""
    train = splits == 0
    near = np.zeros_like(train)
    reach = int(math.floor(buffer_m / grid.cell_size)) + 1
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            gap = math.hypot(max(0, abs(dr) - 1), max(0, abs(dc) - 1)) * grid.cell_size
            if gap <= buffer_m:
                near |= _shift(train, dr, dc)
    out = splits.copy()
    out[near & (splits > 0)] = EXCLUDED
    return out


def _shift(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """mask moved by (dr, dc) cells, zeros shifted in."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)] = mask[
        max(-dr, 0) : h + min(-dr, 0), max(-dc, 0) : w + min(-dc, 0)
    ]
    return out


@dataclass
class CityInput:
    """One city to sample: embeddings, labels, and an extent in the embeddings' CRS (None = all)."""

    name: str
    source: EmbeddingSource
    labels: VectorLabels | RasterLabels
    extent: Bounds | None = None


@dataclass
class Candidates:
    """Samples of one city before splitting: source windows (col, row), labels, cells, centres."""

    col: np.ndarray
    row: np.ndarray
    y: np.ndarray
    cell_row: np.ndarray
    cell_col: np.ndarray
    centre_x: np.ndarray
    centre_y: np.ndarray
    split: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    def take(self, keep: np.ndarray) -> Candidates:
        """The samples selected by a boolean mask or index array."""
        return Candidates(*(getattr(self, n)[keep] for n in self.__dataclass_fields__))


def find_candidates(
    city: CityInput, grid: Grid, kind: str, min_share: float, progress: Progress
) -> Candidates:
    """Samples from area labels (cells, block by block) or point labels (snapped centres)."""
    labels = city.labels
    if isinstance(labels, VectorLabels) and labels.is_points:
        if kind == "tiles":
            raise LczError("labels", f"{labels.name} holds points; tiles need polygons or a raster")
        return _point_candidates(labels.to_crs(grid.crs, progress), grid, city.source)
    size = grid.cell_px
    step = max(1, 512 // size)  # cells per block side: blocks of about 512 x 512 pixels
    parts: list[Candidates] = []
    blocks = [(r, c) for r in range(0, grid.rows, step) for c in range(0, grid.cols, step)]
    for i, (r0, c0) in enumerate(blocks):
        progress.report(100.0 * i / len(blocks), f"labels of {city.name}")
        nr, nc = min(step, grid.rows - r0), min(step, grid.cols - c0)
        window = Window(c0 * size, r0 * size, nc * size, nr * size)
        block = labels.rasterize(
            grid.crs, window_transform(window, grid.transform), (nr * size, nc * size)
        )
        cells = block.reshape(nr, size, nc, size).transpose(0, 2, 1, 3).reshape(nr, nc, -1)
        counts = np.stack([(cells == code).sum(axis=2) for code in CODES], axis=2)
        if kind == "patches":
            share = counts.max(axis=2) / size**2
            y_all = (counts.argmax(axis=2) + 1).astype(np.uint8)
        else:
            share = counts.sum(axis=2) / size**2
            y_all = cells.reshape(nr, nc, size, size)
        rr, cc = np.nonzero((share >= min_share) & (share > 0))
        if rr.size:
            parts.append(_cell_candidates(grid, city.source, r0 + rr, c0 + cc, y_all[rr, cc]))
    progress.report(100.0, f"labels of {city.name}")
    if not parts:
        raise LczError(
            "labels",
            f"{labels.name}: no {'patch' if kind == 'patches' else 'tile'} of {city.name} has "
            f"labels covering {min_share:.0%} of it inside the grid {_round(grid.bounds)} "
            f"({grid.crs.to_string()}); check the extent, the labels' position or min_share",
        )
    return Candidates(
        *(np.concatenate([getattr(p, n) for p in parts]) for n in Candidates.__dataclass_fields__)
    )


def _round(bounds: Bounds) -> tuple[float, ...]:
    return tuple(round(v, 1) for v in bounds)


def _cell_candidates(
    grid: Grid, source: EmbeddingSource, rows: np.ndarray, cols: np.ndarray, y: np.ndarray
) -> Candidates:
    origin = grid.pixel_window(0, 0, source)
    half = grid.cell_px / 2
    col = origin.col_off + cols * grid.cell_px
    row = origin.row_off + rows * grid.cell_px
    cx, cy = source.transform * (col + half, row + half)
    return Candidates(
        col,
        row,
        y,
        rows,
        cols,
        np.asarray(cx, float),
        np.asarray(cy, float),
        np.zeros(rows.size, np.int8),
    )


def _point_candidates(labels: VectorLabels, grid: Grid, source: EmbeddingSource) -> Candidates:
    """One patch per point, centred on it and snapped to the source's pixel grid."""
    size = grid.cell_px
    x = labels.frame.geometry.x.to_numpy()
    y = labels.frame.geometry.y.to_numpy()
    col = np.round((x - source.transform.c) / source.res - size / 2).astype(np.int64)
    row = np.round((source.transform.f - y) / source.res - size / 2).astype(np.int64)
    cx, cy = source.transform * (col + size / 2, row + size / 2)
    cx, cy = np.asarray(cx, float), np.asarray(cy, float)
    cell_row, cell_col = grid.cell_of(cx, cy)
    inside = (cell_row >= 0) & (cell_row < grid.rows) & (cell_col >= 0) & (cell_col < grid.cols)
    if not inside.any():
        raise LczError(
            "labels",
            f"{labels.name}: no point lies inside the grid {_round(grid.bounds)}; check the extent",
        )
    codes = labels.frame["lcz"].to_numpy(np.uint8)
    return Candidates(col, row, codes, cell_row, cell_col, cx, cy, np.zeros(x.size, np.int8)).take(
        inside
    )


def split_candidates(
    candidates: Candidates, grid: Grid, config: SplitConfig, stream: int
) -> tuple[Candidates, np.ndarray]:
    """Split the candidates by their cells; returns the kept ones and the cells' split array."""
    used = np.zeros((grid.rows, grid.cols), bool)
    used[candidates.cell_row, candidates.cell_col] = True
    splits = assign_splits(grid, used, config, stream)
    candidates.split = splits[candidates.cell_row, candidates.cell_col]
    return candidates.take(candidates.split >= 0), splits


def _batches(
    cities: Sequence[tuple[CityInput, Candidates]],
    kind: str,
    size: int,
    max_missing: float,
    batch_size: int,
    stats: dict[str, int],
    progress: Progress,
) -> Iterator[Batch]:
    """Read the windows of all kept samples and yield them in batches."""
    total = sum(len(c.y) for _, c in cities)
    done = 0
    for index, (city, cand) in enumerate(cities):
        for start in range(0, len(cand.y), batch_size):
            part = cand.take(slice(start, start + batch_size))
            x = np.stack(
                [
                    city.source.read(Window(int(c), int(r), size, size))
                    for c, r in zip(part.col, part.row, strict=True)
                ]
            )
            missing = np.isnan(x).all(axis=1).mean(axis=(1, 2))
            keep = missing <= max_missing
            stats["dropped_missing"] += int((~keep).sum())
            done += len(part.y)
            progress.report(100.0 * done / max(total, 1), f"reading {city.name}")
            if keep.any():
                yield Batch(
                    x=x[keep],
                    y=part.y[keep],
                    split=part.split[keep].astype(np.uint8),
                    city=np.full(int(keep.sum()), index, np.uint16),
                    centre_x=part.centre_x[keep],
                    centre_y=part.centre_y[keep],
                )


def make_dataset(
    cities: Sequence[CityInput],
    output: str | os.PathLike,
    kind: str = "patches",
    patch_size: int | None = None,
    split: SplitConfig | None = None,
    min_share: float | None = None,
    max_missing: float = 0.5,
    min_count: int = 10,
    grid_output: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Sample, split and write a patch or tile dataset (core/datasets.py) for one or many cities.

    patch_size defaults to 32 (patches) or 64 (tiles); min_share to 0.5 (share of a patch
    covered by its class) or 0.05 (share of a tile labelled).
    """
    progress = progress or Progress()
    split = split or SplitConfig()
    split.check()
    if kind not in ("patches", "tiles"):
        raise LczError("kind", f"unknown dataset kind {kind!r}; use patches or tiles")
    if not cities:
        raise LczError("embeddings", "give at least one city")
    size = patch_size or (32 if kind == "patches" else 64)
    checks.integer(size, "patch_size", "patch_size", 2, checks.MAX_PATCH_SIZE)
    min_share = (0.5 if kind == "patches" else 0.05) if min_share is None else min_share
    first = cities[0].source
    for city in cities[1:]:
        if city.source.feature_space != first.feature_space:
            raise LczError(
                "embeddings",
                f"{city.name} has {city.source.feature_space or 'unnamed'} embeddings, "
                f"{cities[0].name} {first.feature_space or 'unnamed'} ones; their feature spaces "
                "differ, so one model cannot learn both: use one source and version for all cities",
            )
        if city.source.count != first.count or city.source.band_names != first.band_names:
            raise LczError(
                "embeddings",
                f"{city.name} has bands {city.source.band_names[:3]}..., {cities[0].name} {first.band_names[:3]}...; use one embedding source for all cities",
            )
    what = f"reading batches of {batch_size} patches of {first.count} bands x {size} x {size} px"
    checks.check_memory(
        8 * batch_size * first.count * size**2, "patch_size", what, "give a smaller patch_size"
    )
    sampled, grids = [], []
    for index, city in enumerate(cities):
        sub = SubProgress(progress, 20.0 * index / len(cities), 20.0 * (index + 1) / len(cities))
        grid = make_grid(city.source, city.extent, size)
        if isinstance(city.labels, RasterLabels) and city.labels.crs != grid.crs:
            progress.log(
                f"labels {city.labels.name}: warped from {city.labels.crs.to_string()} to {grid.crs.to_string()}"
            )
        candidates = find_candidates(city, grid, kind, min_share, sub)
        kept, splits = split_candidates(candidates, grid, split, index)
        sampled.append((city, kept))
        grids.append((grid, splits))
    stats = {"dropped_missing": 0}
    manifest = {
        "kind": kind,
        "patch_size": size,
        "pixel_size": first.res,
        "band_names": first.band_names,
        "embedding_source": first.name,
        "feature_space": first.feature_space,
        "cities": [c.name for c in cities],
        "crs": first.crs.to_string(),
        "city_crs": [c.source.crs.to_string() for c in cities],
        "seed": split.seed,
        "split_method": split.method,
        "split_fractions": list(split.fractions),
        "buffer_m": split.buffer_m,
        "block_cells": split.block_cells,
        "min_share": min_share,
        "labels": [c.labels.name for c in cities],
    }
    expected = sum(len(c.y) for _, c in sampled)
    batches = _batches(
        sampled, kind, size, max_missing, batch_size, stats, SubProgress(progress, 20, 100)
    )
    written = write_dataset(output, batches, manifest, expected=expected)
    result: dict[str, Any] = {
        "output": str(output),
        "count": written["count"],
        "class_counts": written["class_counts"],
        "rare_classes": rare_classes(written["class_counts"], min_count),
        "excluded_cells": int(sum((s == EXCLUDED).sum() for _, s in grids)),
        "dropped_missing": stats["dropped_missing"],
        "masked_pixels": sum(c.source.masked_pixels for c in cities),
    }
    for name, codes in result["rare_classes"].items():
        if codes:
            progress.log(f"{name}: classes {', '.join(codes)} have fewer than {min_count} samples")
    if grid_output is not None:
        if len(grids) > 1:
            raise LczError(
                "grid_output", "a grid file holds one city; leave it out for several cities"
            )
        result["grid"] = str(
            write_grid(
                grids[0][0], grid_output, grids[0][1], only_used=True, parameter="grid_output"
            )
        )
    return result


def rare_classes(class_counts: dict[str, dict[str, int]], min_count: int) -> dict[str, list[str]]:
    """Per split, the classes present anywhere in the dataset with fewer than `min_count` samples."""
    present = sorted({c for counts in class_counts.values() for c in counts}, key=int)
    return {
        name: [c for c in present if counts.get(c, 0) < min_count]
        for name, counts in class_counts.items()
    }


def grid_with_splits(
    source: EmbeddingSource,
    output: str | os.PathLike,
    extent: Bounds | None = None,
    cell_px: int = 32,
    split: SplitConfig | None = None,
) -> dict[str, Any]:
    """Write the grid over an extent with every cell's split (all cells used) as a GeoPackage."""
    grid = make_grid(source, extent, cell_px)
    splits = assign_splits(grid, np.ones((grid.rows, grid.cols), bool), split or SplitConfig())
    write_grid(grid, Path(output), splits)
    return {
        "output": str(output),
        "cells": grid.rows * grid.cols,
        "rows": grid.rows,
        "cols": grid.cols,
        **{f"{name}_cells": int((splits == code).sum()) for code, name in SPLIT_NAMES.items()},
        "excluded_cells": int((splits == EXCLUDED).sum()),
    }
