"""Sampling patches and tiles from embeddings with labels, and splitting them leak-free.

Samples live on a grid of cells aligned to the embeddings (core/grid.py). Each cell gets a split
(0 train, 1 val, 2 test; -1 excluded, -2 unused) from a seeded method:

- random: single cells in random order (no spatial blocking, so it refuses a buffer above 0);
- blocks: square blocks of `block_cells` x `block_cells` cells in random order;
- stripes: horizontal stripes in a repeating train/val/test cycle, the held-out stripes about
  `block_cells` high;
- checkerboard: blocks alternately train and held out (held-out blocks alternately val, test),
  so always half train, a quarter val and a quarter test, whatever the fractions;
- polygons: a user layer whose `split_field` says train/val/test for the cells it covers.

Random, blocks and stripes deal their cells, blocks or rows out by the samples they hold, so each
split gets its fraction of the samples, not of the area; each stripe cycle holds the same number
of samples. `block_cells` 0 sizes blocks to the extent: the largest (up to MAX_BLOCK_M or five
times the buffer's reach) that give each held-out split MIN_UNITS blocks (stripes: MIN_CYCLES
cycles), and at least three times the buffer's reach.

The buffer holds between patch footprints (cell-sized squares around the sample centres),
whatever the label kind: of each training and val/test pair closer than `buffer_m` (at 0: only
overlapping ones), the southern one (on one row the eastern one) is dropped, so the buffer takes
from every split alike. The deal is repeated with adjusted shares until the samples that remain
meet the fractions. A split more than TOLERANCE off its share, or a held-out split empty or
under half its share, is refused, naming the parameter to change. Same inputs + seed give the
same split, byte for byte. Patches: one per grid cell whose majority class covers `min_share` of
it, or one per label point (So2Sat centres) snapped to the pixel grid. Tiles: one per cell with
at least `min_share` labelled pixels, labels rasterised (0 = unlabelled).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from . import checks
from .choices import SPLIT_METHODS
from .datasets import SPLIT_CODES, SPLIT_NAMES, Batch, write_dataset
from .errors import LczError
from .extents import Bounds
from .grid import Grid, make_grid, write_grid
from .labels import RasterLabels, VectorLabels
from .lcz import CODES, LCZ_CLASSES
from .progress import Progress, SubProgress
from .rasters import EmbeddingSource

EXCLUDED, UNUSED = -1, -2
CHECKERBOARD_SHARES = (0.5, 0.25, 0.25)
TOLERANCE = 0.05  # realised shares further than this from the asked ones are refused
GOOD = 0.02  # a deal this close to the asked shares is taken; otherwise smaller blocks are tried
MIN_UNITS = 4  # blocks each held-out split gets at least where block_cells is chosen (0)
MAX_BLOCK_M = 2000.0  # blocks chosen (0) are at most this wide or five times the buffer's reach
MIN_CYCLES = 2  # stripe cycles over the extent where block_cells is chosen (0)
TRIES = 4  # random layouts tried per block size
ROUNDS = 12  # deals with adjusted shares per layout, to meet the fractions after the buffer


@dataclass
class SplitConfig:
    """How cells are split: method, train/val/test fractions, seed, block size, buffer."""

    method: str = "blocks"
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    block_cells: int = 0
    buffer_m: float | None = 0.0
    polygons: str | None = None
    split_field: str = "split"
    polygons_layer: str | None = None

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
        if self.block_cells < 0:
            raise LczError(
                "block_cells", "give blocks of at least one cell, or 0 to size them to the extent"
            )
        if self.buffer_m is not None and not self.buffer_m >= 0:
            raise LczError("buffer", f"{self.buffer_m} m: give 0 m or more (none: no buffer)")
        if self.method == "random" and self.buffer_m:
            raise LczError(
                "buffer",
                "random deals out single cells, so with a buffer nearly every val/test cell lies "
                "near a training cell and most held-out cells would be dropped; use split_method "
                "'blocks' (random blocks of cells) for a buffer, or a buffer of 0",
            )
        if self.method == "polygons" and not self.polygons:
            raise LczError("split_polygons", "the polygons method needs a layer with a split field")

    @property
    def asked(self) -> tuple[float, float, float]:
        """The shares the method deals out: the fractions, or the checkerboard's fixed ones."""
        if self.method == "checkerboard":
            return CHECKERBOARD_SHARES
        return tuple(float(f) for f in self.fractions)  # type: ignore[return-value]


@dataclass
class Footprints:
    """Where samples lie: their cells and centres; each footprint is a cell-sized square."""

    cell_row: np.ndarray
    cell_col: np.ndarray
    centre_x: np.ndarray
    centre_y: np.ndarray


def cell_footprints(grid: Grid) -> Footprints:
    """One footprint per cell of the grid, the cell itself."""
    rows, cols = (a.ravel() for a in np.mgrid[0 : grid.rows, 0 : grid.cols])
    x, y = grid.cell_transform * (cols + 0.5, rows + 0.5)
    return Footprints(rows, cols, np.asarray(x, float), np.asarray(y, float))


@dataclass
class SplitPlan:
    """How the cells were dealt out and what the buffer dropped, per cell and per sample."""

    pattern: np.ndarray  # (rows, cols) split as dealt: 0/1/2, -1 outside the polygons, -2 unused
    splits: np.ndarray  # (rows, cols) after the buffer: cells whose samples all went are -1
    dealt: np.ndarray  # per sample: the split of its cell (-1 outside every split polygon)
    dropped: np.ndarray  # per sample: dropped by the buffer
    asked: tuple[float, float, float]
    block_cells: int | None  # block size, or held-out stripe height, used (None: random, polygons)
    block_shift: tuple[int, int] = (0, 0)  # rows, cols the blocks are shifted by

    def counts(self, after_buffer: bool = True) -> np.ndarray:
        """Samples per split (train, val, test), after the buffer or as dealt."""
        return _counts(self.dealt, self.dropped if after_buffer else None)


def assign_splits(
    grid: Grid, samples: Footprints, config: SplitConfig, stream: int = 0
) -> SplitPlan:
    """Deal the cells out to train/val/test by their samples, then apply the buffer.

    `stream` separates the random draws of several cities sharing one seed."""
    config.check()
    weights = np.zeros((grid.rows, grid.cols))
    np.add.at(weights, (samples.cell_row, samples.cell_col), 1)
    pairs = _close_pairs(samples, grid, config.buffer_m)
    used = weights > 0

    def plan(pattern: np.ndarray, asked: Sequence[float], size: int | None) -> SplitPlan:
        pattern = np.where(used, pattern, UNUSED).astype(np.int8)
        dealt = pattern[samples.cell_row, samples.cell_col]
        dropped = _conflicts(dealt, pairs)
        splits = pattern.copy()
        kept_cells = np.zeros(used.shape, bool)
        keep = (dealt >= 0) & ~dropped
        kept_cells[samples.cell_row[keep], samples.cell_col[keep]] = True
        splits[(pattern >= 0) & ~kept_cells] = EXCLUDED
        shares = tuple(float(a) for a in asked)
        return SplitPlan(pattern, splits, dealt, dropped, shares, size)  # type: ignore[arg-type]

    if config.method == "polygons":
        pattern = _split_polygons(grid, config)
        counts = _counts(np.where(used, pattern, UNUSED)[samples.cell_row, samples.cell_col])
        return plan(pattern, counts / max(counts.sum(), 1), None)
    asked = config.asked
    if config.method == "random":
        sizes = [1]
    elif config.block_cells:
        sizes = [config.block_cells]
    else:
        reach = math.ceil(config.buffer_m / grid.cell_size) if config.buffer_m else 0
        widest = max(1, round(MAX_BLOCK_M / grid.cell_size), 5 * reach)
        sizes = _auto_sizes(config.method, used, asked, reach, widest)
    best: tuple[float, SplitPlan] | None = None
    for k in sizes:
        rng = np.random.default_rng([config.seed, stream, k])
        size = None if config.method == "random" else k
        for _ in range(1 if config.method == "random" else TRIES):
            if config.method == "checkerboard":
                tried = plan(_checkerboard(grid, k, rng), asked, size)
            else:
                units = _units(grid, config.method, k, rng, used, asked)
                tried = _deal(units, weights, asked, lambda p, s=size: plan(p, asked, s))
                tried.block_shift = units.shift
            error = _error(tried.counts(), asked)
            if best is None or error < best[0]:
                best = (error, tried)
            if error <= GOOD:
                return tried
    assert best is not None
    return best[1]


def _held_out_min(asked: Sequence[float]) -> float | None:
    """The smallest held-out share asked for (None: all train)."""
    return min((a for a in asked[1:] if a > 0), default=None)


def _auto_sizes(
    method: str, used: np.ndarray, asked: Sequence[float], reach: int, widest: int
) -> list[int]:
    """Block sizes to try, largest first: from the largest up to `widest` that gives each
    held-out split MIN_UNITS blocks (stripes: MIN_CYCLES cycles) down to three times the
    buffer's reach."""
    smallest = max(1, 3 * reach)
    share = _held_out_min(asked)
    if share is None:
        return [smallest]
    rows, cols = np.nonzero(used)

    def enough(k: int) -> bool:
        if method == "stripes":
            return _cycles(np.unique(rows).size, share, k) >= MIN_CYCLES
        return (
            np.unique((rows // k) * (cols.max(initial=0) // k + 1) + cols // k).size * share
            >= MIN_UNITS
        )

    largest = smallest
    while largest < min(widest, max(used.shape)) and enough(largest + 1):
        largest += 1
    return list(range(largest, smallest - 1, -1))


@dataclass
class _Units:
    """Cells grouped into units (cells, blocks, stripes) and the order they are dealt out in."""

    of_cell: np.ndarray  # (rows, cols) unit index of each cell
    order: np.ndarray  # unit indices in dealing order
    cycles: int  # times the train/val/test sequence repeats along the order
    phase: float  # where in its cycle the first unit starts (0-1)
    shift: tuple[int, int] = (0, 0)  # rows, cols blocks are shifted by


def _units(
    grid: Grid,
    method: str,
    k: int,
    rng: np.random.Generator,
    used: np.ndarray,
    asked: Sequence[float],
) -> _Units:
    """Random cells, blocks in random order (shifted by a random offset), or rows top down in
    as many cycles as held-out stripes about `k` rows high allow, from a random phase."""
    rows, cols = np.mgrid[0 : grid.rows, 0 : grid.cols]
    if method == "random":
        of_cell = rows * grid.cols + cols
        return _Units(of_cell, rng.permutation(of_cell.size), 1, 0.0)
    if method == "blocks":
        shift = rng.integers(k, size=2)
        width = (grid.cols - 1 + int(shift[1])) // k + 1
        of_cell = (rows + shift[0]) // k * width + (cols + shift[1]) // k
        order = rng.permutation(int(of_cell.max()) + 1)
        return _Units(of_cell, order, 1, 0.0, (int(shift[0]), int(shift[1])))
    share = _held_out_min(asked)
    cycles = max(1, _cycles(np.unique(rows[used]).size, share, k)) if share else 1
    return _Units(rows, np.arange(grid.rows), cycles, float(rng.random()))


def _cycles(used_rows: int, share: float, height: int) -> int:
    """Stripe cycles that fit in `used_rows` with held-out stripes `height` rows high."""
    return math.floor(used_rows * share / height)


def _deal(units: _Units, weights: np.ndarray, asked: Sequence[float], plan: Any) -> SplitPlan:
    """Deal the units out so that the samples left after the buffer meet the asked shares.

    Each cycle along the dealing order holds the same number of samples, cut train/val/test by
    target shares at the units' midpoints; the targets are adjusted for what the buffer drops
    and the best of ROUNDS deals is kept. `plan(pattern)` applies the buffer."""
    aim = np.asarray(asked, dtype=np.float64)
    unit_weight = np.bincount(units.of_cell.ravel(), weights.ravel())[units.order]
    mid = (np.cumsum(unit_weight) - unit_weight / 2) / max(unit_weight.sum(), 1e-12)
    position = (mid * units.cycles + units.phase) % 1.0
    target = aim.copy()
    best: tuple[float, SplitPlan] | None = None
    for _ in range(ROUNDS):
        codes = np.empty(unit_weight.size, np.int8)
        codes[units.order] = np.searchsorted(np.cumsum(target)[:2], position, side="right")
        tried = plan(codes[units.of_cell])
        counts = tried.counts()
        error = _error(counts, aim)
        if best is None or error < best[0]:
            best = (error, tried)
        if error < 0.005:
            break
        shares = counts / max(counts.sum(), 1e-12)
        target = np.where(aim > 0, target * np.clip(aim / np.maximum(shares, 1e-12), 0.25, 4), 0)
        target /= target.sum()
    assert best is not None
    return best[1]


def _checkerboard(grid: Grid, k: int, rng: np.random.Generator) -> np.ndarray:
    """Blocks alternately train and held out; held-out block rows alternately val and test."""
    rows, cols = np.mgrid[0 : grid.rows, 0 : grid.cols]
    shift = rng.integers(k, size=2)
    bi = (rows + shift[0]) // k + int(rng.integers(2))
    bj = (cols + shift[1]) // k
    return np.where((bi + bj) % 2 == 0, 0, np.where(bi % 2 == 0, 1, 2)).astype(np.int8)


def _counts(dealt: np.ndarray, dropped: np.ndarray | None = None) -> np.ndarray:
    """Samples per split (train, val, test) among those dealt to a split and not dropped."""
    keep = dealt >= 0 if dropped is None else (dealt >= 0) & ~dropped
    return np.bincount(dealt[keep], minlength=3)[:3]


def _error(counts: np.ndarray, asked: Sequence[float]) -> float:
    """The largest difference between a split's share and its asked share."""
    return float(np.abs(counts / max(counts.sum(), 1) - np.asarray(asked)).max())


def _too_close(dx: np.ndarray, dy: np.ndarray, side: float, buffer_m: float) -> np.ndarray:
    """Whether squares of `side` whose centres lie dx, dy apart are closer than the buffer
    (at 0: overlap); a millionth of the side absorbs rounding."""
    eps = side * 1e-6
    gap = np.hypot(np.maximum(dx - side, 0), np.maximum(dy - side, 0))
    return (gap < buffer_m - eps) | ((dx < side - eps) & (dy < side - eps))


def _close_pairs(
    samples: Footprints, grid: Grid, buffer_m: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (first, later) of samples in different cells whose footprints are closer than
    `buffer_m` (at 0: overlap); `later` is the southern one (on one line the eastern one)."""
    none = np.zeros(0, np.int64)
    if buffer_m is None or samples.cell_row.size == 0:
        return none, none
    side = grid.cell_size
    x, y = samples.centre_x, samples.centre_y
    reach = 1 + math.ceil(buffer_m / side)
    stride = grid.cols + 2 * reach + 1
    key = (samples.cell_row + reach) * stride + samples.cell_col + reach
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    firsts, laters = [none], [none]
    for dr in range(reach + 1):
        for dc in range(-reach, reach + 1):
            if dr == 0 and dc <= 0:
                continue  # each pair of cells once; samples of one cell share its split
            wanted = key + dr * stride + dc
            lo = np.searchsorted(sorted_keys, wanted, "left")
            n = np.searchsorted(sorted_keys, wanted, "right") - lo
            if not n.any():
                continue
            a = np.repeat(np.arange(key.size), n)
            b = order[np.repeat(lo, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)]
            close = _too_close(np.abs(x[a] - x[b]), np.abs(y[a] - y[b]), side, buffer_m)
            a, b = a[close], b[close]
            b_later = (y[b] < y[a]) | ((y[b] == y[a]) & (x[b] > x[a]))
            firsts.append(np.where(b_later, a, b))
            laters.append(np.where(b_later, b, a))
    return np.concatenate(firsts), np.concatenate(laters)


def _conflicts(dealt: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Mask of the samples the buffer drops: the later of each close train/held-out pair."""
    first, later = pairs
    a, b = dealt[first], dealt[later]
    dropped = np.zeros(dealt.size, bool)
    dropped[later[((a == 0) & (b > 0)) | ((a > 0) & (b == 0))]] = True
    return dropped


def _layer_source(text: str, layer: str | None) -> tuple[str, str | int | None]:
    """Path and layer of a vector source; honours QGIS's 'path|layername=name' (or layerid=n)."""
    path, *options = text.split("|")
    for option in options:
        key, _, value = option.partition("=")
        if key == "layername":
            layer = layer or value
        elif key == "layerid" and value.isdigit():
            layer = layer or int(value)
        else:
            raise LczError(
                "split_polygons", f"{text}: option {option!r} is not supported; give the layer only"
            )
    return path, layer


def _split_polygons(grid: Grid, config: SplitConfig) -> np.ndarray:
    """Split codes of the cells whose centres fall in the user's train/val/test polygons."""
    import geopandas as gpd
    import pyogrio
    from rasterio.features import rasterize

    path, layer = _layer_source(str(config.polygons), config.polygons_layer)
    if not Path(path).exists():
        raise LczError("split_polygons", f"{path} does not exist")
    layers = [name for name, _ in pyogrio.list_layers(path)]
    if isinstance(layer, str) and layer not in layers:
        raise LczError(
            "split_polygons_layer",
            f"{path} has no layer {layer!r}; its layers: {', '.join(layers)}",
        )
    if layer is None and len(layers) > 1:
        raise LczError(
            "split_polygons_layer",
            f"{path} holds the layers {', '.join(layers)}; name the one with the split polygons",
        )
    frame = gpd.read_file(path, layer=layer)
    name = f"{path} (layer {layer})" if layer is not None else path
    if config.split_field not in frame.columns:
        raise LczError("split_field", f"{name} has no field {config.split_field!r}")
    names = frame[config.split_field].astype(str).str.strip().str.lower()
    unknown = sorted(set(names) - set(SPLIT_NAMES.values()))
    if unknown:
        raise LczError("split_field", f"values {', '.join(unknown)} are not train, val or test")
    if frame.crs is None:
        raise LczError("split_polygons", f"{name} has no CRS")
    frame = frame.to_crs(grid.crs.to_wkt())
    burned = rasterize(
        zip(frame.geometry, names.map(SPLIT_CODES) + 1, strict=True),
        out_shape=(grid.rows, grid.cols),
        transform=grid.cell_transform,
        fill=0,
        dtype="int16",
    )
    return (burned - 1).astype(np.int8)


@dataclass
class CityInput:
    """One city to sample: embeddings, labels, and an extent in the embeddings' CRS (None = all);
    `reopen` opens the embeddings anew where another process reads them (a cluster's worker)."""

    name: str
    source: EmbeddingSource
    labels: VectorLabels | RasterLabels
    extent: Bounds | None = None
    reopen: Callable[[], EmbeddingSource] | None = None


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

    @property
    def footprints(self) -> Footprints:
        """Where the samples lie."""
        return Footprints(self.cell_row, self.cell_col, self.centre_x, self.centre_y)


def find_candidates(
    city: CityInput, grid: Grid, kind: str, min_share: float, progress: Progress
) -> tuple[Candidates, dict[str, int]]:
    """Samples from area labels (cells, block by block) or point labels (snapped centres), and
    the counts dropped: labelled cells under `min_share` ("min_share"), points off the grid."""
    labels = city.labels
    if isinstance(labels, VectorLabels) and labels.is_points:
        if kind == "tiles":
            raise LczError("labels", f"{labels.name} holds points; tiles need polygons or a raster")
        return _point_candidates(labels.to_crs(grid.crs, progress), grid, city.source)
    under_share = 0
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
        under_share += int(((share < min_share) & (share > 0)).sum())
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
    found = Candidates(
        *(np.concatenate([getattr(p, n) for p in parts]) for n in Candidates.__dataclass_fields__)
    )
    return found, {"min_share": under_share, "outside": 0}


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


def _point_candidates(
    labels: VectorLabels, grid: Grid, source: EmbeddingSource
) -> tuple[Candidates, dict[str, int]]:
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
    found = Candidates(col, row, codes, cell_row, cell_col, cx, cy, np.zeros(x.size, np.int8))
    return found.take(inside), {"min_share": 0, "outside": int((~inside).sum())}


def _share_off_source(candidates: Candidates, source: EmbeddingSource, size: int) -> np.ndarray:
    """Share of each sample's window lying outside the source raster (read as missing)."""
    inside = [
        np.clip(np.minimum(start + size, extent) - np.maximum(start, 0), 0, size)
        for start, extent in ((candidates.col, source.width), (candidates.row, source.height))
    ]
    return 1.0 - inside[0] * inside[1] / size**2


def split_candidates(
    candidates: Candidates, grid: Grid, config: SplitConfig, stream: int
) -> tuple[Candidates, SplitPlan]:
    """Split the candidates by their cells; returns the kept ones and the split's plan."""
    plan = assign_splits(grid, candidates.footprints, config, stream)
    candidates.split = plan.dealt
    return candidates.take((plan.dealt >= 0) & ~plan.dropped), plan


def check_shares(
    config: SplitConfig,
    asked: Sequence[float],
    dealt: np.ndarray,
    kept: np.ndarray,
    block_cells: Sequence[int | None],
) -> None:
    """Refuse a split that misses its asked share, naming the parameter to change.

    Missing is: a held-out split empty or under half its share; for the methods that deal by the
    fractions, any split more than TOLERANCE off. `dealt` counts the samples per split before
    the buffer, `kept` after: the buffer is to blame where the dealt ones did not miss."""
    dealt_by_fractions = config.method != "polygons"
    missed = _missed(asked, kept, dealt_by_fractions)
    if not missed:
        return
    code = missed[0]
    found = _found(code, kept, asked)
    if not _missed(asked, dealt, dealt_by_fractions):
        raise LczError(
            "buffer",
            f"{found}: the buffer of {config.buffer_m:g} m drops {int(dealt.sum() - kept.sum())} "
            "samples too close to another split's patches; use a smaller buffer"
            + (" or a larger extent" if dealt_by_fractions else ""),
        )
    if config.method == "polygons":
        raise LczError(
            "split_polygons", f"{found}; draw more {SPLIT_NAMES[code]} polygons over the labels"
        )
    largest = max((k or 0 for k in block_cells), default=0)
    if config.block_cells > 1:
        raise LczError(
            "block_cells",
            f"{found} with blocks of {largest} cells: too few blocks fit in the extent; give "
            "smaller blocks, or 0 to size them to the extent",
        )
    if config.buffer_m and largest > 1:
        raise LczError(
            "buffer",
            f"{found}: a buffer of {config.buffer_m:g} m needs blocks of {largest} cells (three "
            "times its reach), and too few of them fit in the extent; use a smaller buffer or a "
            "larger extent",
        )
    raise LczError(
        "fractions",
        f"{found}: the extent holds too few samples to deal these shares; ask a larger "
        f"{SPLIT_NAMES[code]} share or sample a larger extent",
    )


def _missed(asked: Sequence[float], counts: np.ndarray, strict: bool) -> list[int]:
    """Splits whose share misses: held out and empty or under half the asked share, or (strict)
    more than TOLERANCE off (and one sample, the least a few samples can be off)."""
    total = max(counts.sum(), 1)
    shares = counts / total
    return [
        c
        for c in range(3)
        if (c > 0 and asked[c] > 0 and (counts[c] == 0 or shares[c] < asked[c] / 2))
        or (strict and abs(shares[c] - asked[c]) > TOLERANCE + 1 / total)
    ]


def _found(code: int, counts: np.ndarray, asked: Sequence[float]) -> str:
    """'val keeps 3 of 700 samples (0.4%, asked 15%)'."""
    total = int(counts.sum())
    share = counts[code] / max(total, 1)
    return (
        f"{SPLIT_NAMES[code]} keeps {int(counts[code])} of {total} samples ({share:.1%}, "
        f"asked {asked[code]:.0%})"
    )


def read_city(
    source: EmbeddingSource,
    cand: Candidates,
    index: int,
    size: int,
    max_missing: float,
    batch_size: int,
) -> Iterator[tuple[int, Batch]]:
    """The windows of one city's samples in batches: (samples read, a batch of those with at most
    `max_missing` missing pixels, possibly empty)."""
    for start in range(0, len(cand.y), batch_size):
        part = cand.take(slice(start, start + batch_size))
        x = np.stack(
            [
                source.read(Window(int(c), int(r), size, size))
                for c, r in zip(part.col, part.row, strict=True)
            ]
        )
        keep = np.isnan(x).all(axis=1).mean(axis=(1, 2)) <= max_missing
        yield (
            len(part.y),
            Batch(
                x=x[keep],
                y=part.y[keep],
                split=part.split[keep].astype(np.uint8),
                city=np.full(int(keep.sum()), index, np.uint16),
                centre_x=part.centre_x[keep],
                centre_y=part.centre_y[keep],
            ),
        )


def _batches(
    cities: Sequence[tuple[CityInput, Candidates]],
    size: int,
    max_missing: float,
    batch_size: int,
    dropped: dict[str, int],
    progress: Progress,
    check: Any,
    client: Any = None,
    output: str | os.PathLike = "",
) -> Iterator[Batch]:
    """Read the windows of all kept samples and yield them in batches (read by the workers of a
    dask.distributed `client` into parts beside `output` when given); those with more than
    `max_missing` missing pixels are counted in dropped["missing"]. `check(kept)` runs on the
    samples per split at the end, before the dataset is complete."""
    total = sum(len(c.y) for _, c in cities)
    done = 0
    kept = np.zeros(3, np.int64)
    if client is None:
        batches = (
            (city.name, read, batch)
            for index, (city, cand) in enumerate(cities)
            for read, batch in read_city(city.source, cand, index, size, max_missing, batch_size)
        )
    else:
        from .cluster import read_cities_on_cluster

        sub = SubProgress(progress, 0, 80)
        batches = read_cities_on_cluster(client, cities, size, max_missing, batch_size, output, sub)
        progress = SubProgress(progress, 80, 100)
    for name, read, batch in batches:
        dropped["missing"] += read - len(batch.y)
        kept += np.bincount(batch.split, minlength=3)
        done += read
        progress.report(100.0 * done / max(total, 1), f"reading {name}")
        if len(batch.y):
            yield batch
    check(kept)


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
    client: Any = None,
) -> dict[str, Any]:
    """Sample, split and write a patch or tile dataset (core/datasets.py) for one or many cities;
    with a dask.distributed `client`, the cluster's workers read the windows (see `cluster`).

    patch_size defaults to 32 (patches) or 64 (tiles); min_share to 0.5 (share of a patch
    covered by its class) or 0.05 (share of a tile labelled). The result holds the asked and
    realised split shares and counts (overall and per class) and the samples dropped.
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
    dropped = dict.fromkeys(("min_share", "outside", "no_split", "buffer", "missing"), 0)
    sampled, grids, plans = [], [], []
    for index, city in enumerate(cities):
        sub = SubProgress(progress, 20.0 * index / len(cities), 20.0 * (index + 1) / len(cities))
        grid = make_grid(city.source, city.extent, size, "patch_size")
        if isinstance(city.labels, RasterLabels) and city.labels.crs != grid.crs:
            progress.log(
                f"labels {city.labels.name}: warped from {city.labels.crs.to_string()} to {grid.crs.to_string()}"
            )
        candidates, found = find_candidates(city, grid, kind, min_share, sub)
        # windows with max_missing of them past the raster's edge are (nearly all) dropped as
        # missing: drop them before the split, which then deals out the samples to be written
        off = _share_off_source(candidates, city.source, size)
        beyond = (off > 0) & (off >= max_missing)
        dropped["missing"] += int(beyond.sum())
        kept_candidates, plan = split_candidates(candidates.take(~beyond), grid, split, index)
        for key, n in found.items():
            dropped[key] += n
        dropped["no_split"] += int((plan.dealt < 0).sum())
        dropped["buffer"] += int(plan.dropped.sum())
        sampled.append((city, kept_candidates))
        grids.append((grid, plan.splits))
        plans.append(plan)
    dealt = np.sum([p.counts(after_buffer=False) for p in plans], axis=0)
    kept = np.sum([p.counts() for p in plans], axis=0)
    asked = split.asked if split.method != "polygons" else tuple(dealt / max(dealt.sum(), 1))
    block_cells = [p.block_cells for p in plans]
    _log_split(progress, split, block_cells, [g.cell_size for g, _ in grids])
    check_shares(split, asked, dealt, kept, block_cells)

    def after_reading(final: np.ndarray) -> None:
        for code in _missed(asked, final, strict=False)[:1]:
            raise LczError(
                "max_missing",
                f"{_found(code, final, asked)} after dropping {dropped['missing']} samples with "
                f"more than {max_missing:.0%} missing pixels; raise max_missing or choose an "
                "extent with fewer gaps",
            )

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
        "split_fractions": [round(float(a), 6) for a in asked],
        "buffer_m": split.buffer_m,
        "block_cells": split.block_cells,
        # per city: upper-left corner and cell side of its grid, to find a sample's cell again
        "city_grids": [[g.transform.c, g.transform.f, g.cell_size] for g, _ in grids],
        "block_cells_used": block_cells,
        # per city: rows, cols its split blocks are shifted by (evaluation resamples those blocks)
        "block_shifts": [list(p.block_shift) for p in plans],
        "min_share": min_share,
        "labels": [c.labels.name for c in cities],
        "dropped": dropped,  # the same dict: "missing" is counted while writing
    }
    expected = sum(len(c.y) for _, c in sampled)
    batches = _batches(
        sampled,
        size,
        max_missing,
        batch_size,
        dropped,
        SubProgress(progress, 20, 100),
        after_reading,
        client,
        output,
    )
    written = write_dataset(output, batches, manifest, expected=expected)
    result: dict[str, Any] = {
        "output": str(output),
        "count": written["count"],
        "split_fractions": dict(zip(SPLIT_CODES, manifest["split_fractions"], strict=True)),
        "split_counts": written["split_counts"],
        "split_shares": written["split_shares"],
        "class_counts": written["class_counts"],
        "class_shares": written["class_shares"],
        "rare_classes": rare_classes(written["class_counts"], min_count),
        "block_cells_used": block_cells,
        "excluded_cells": int(sum((s == EXCLUDED).sum() for _, s in grids)),
        **{f"dropped_{key}": n for key, n in dropped.items()},
        "masked_pixels": sum(c.source.masked_pixels for c in cities),
    }
    _log_result(progress, result, kind, min_share, max_missing, split.buffer_m, min_count)
    if grid_output is not None:
        if len(grids) > 1:
            raise LczError(
                "grid_output", "a grid file holds one city; leave it out for several cities"
            )
        result["grid_output"] = str(
            write_grid(
                grids[0][0], grid_output, grids[0][1], only_used=True, parameter="grid_output"
            )
        )
    return result


def _log_split(
    progress: Progress,
    config: SplitConfig,
    block_cells: Sequence[int | None],
    cell_sizes: Sequence[float],
) -> None:
    """Say how the split was drawn: the block size used and, for checkerboards, the shares."""
    if config.method == "checkerboard":
        progress.log(
            "checkerboard: always half train, a quarter val and a quarter test; "
            "the fractions are not used"
        )
    sizes = [(k, c) for k, c in zip(block_cells, cell_sizes, strict=True) if k]
    if sizes:
        what = "held-out stripes about" if config.method == "stripes" else "blocks of"
        how = "as given (block_cells)" if config.block_cells else "sized to the extent"
        used = ", ".join(f"{k} cells ({k * c:g} m)" for k, c in sizes)
        progress.log(f"{config.method}: {what} {used}, {how}")


def _log_result(
    progress: Progress,
    result: dict[str, Any],
    kind: str,
    min_share: float,
    max_missing: float,
    buffer_m: float | None,
    min_count: int,
) -> None:
    """Log the realised split shares (overall, per class), what was dropped and rare classes."""
    counts, shares = result["split_counts"], result["split_shares"]
    asked = result["split_fractions"]
    progress.log(
        "split: "
        + ", ".join(
            f"{name} {counts[name]} ({shares[name]:.1%}, asked {asked[name]:.0%})"
            for name in SPLIT_CODES
        )
    )
    for name in SPLIT_CODES:
        if abs(shares[name] - asked[name]) > TOLERANCE:
            progress.log(
                f"warning: {name} is {abs(shares[name] - asked[name]):.1%} off its asked share "
                "after the samples dropped below"
            )
    unit = " px" if kind == "tiles" else ""
    for short, by_split in result["class_shares"].items():
        numbers = ", ".join(
            f"{name} {result['class_counts'][name].get(short, 0)}{unit}" for name in SPLIT_CODES
        )
        percent = "/".join(f"{by_split[name]:.0%}" for name in SPLIT_CODES)
        progress.log(f"class {short}: {numbers} ({percent})")
    reasons = {
        "min_share": f"labels covering under {min_share:.0%} of their cell (min_share)",
        "outside": "points outside the grid",
        "no_split": "outside every split polygon",
        "buffer": f"within the buffer of {buffer_m:g} m" if buffer_m is not None else "",
        "missing": f"more than {max_missing:.0%} missing pixels (max_missing)",
    }
    gone = [
        f"{result[f'dropped_{key}']} {why}"
        for key, why in reasons.items()
        if result[f"dropped_{key}"]
    ]
    progress.log(f"dropped: {'; '.join(gone) if gone else 'none'}")
    for name, codes in result["rare_classes"].items():
        if codes:
            progress.log(f"{name}: classes {', '.join(codes)} have fewer than {min_count} samples")


def rare_classes(class_counts: dict[str, dict[str, int]], min_count: int) -> dict[str, list[str]]:
    """Per split, the classes present anywhere in the dataset with fewer than `min_count` samples."""
    found = {c for counts in class_counts.values() for c in counts}
    present = [c.short for c in LCZ_CLASSES if c.short in found]
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
    split = split or SplitConfig()
    grid = make_grid(source, extent, cell_px)
    plan = assign_splits(grid, cell_footprints(grid), split)
    kept = plan.counts()
    check_shares(split, plan.asked, plan.counts(after_buffer=False), kept, [plan.block_cells])
    write_grid(grid, Path(output), plan.splits)
    return {
        "output": str(output),
        "cells": grid.rows * grid.cols,
        "rows": grid.rows,
        "cols": grid.cols,
        **{f"{name}_cells": int(kept[code]) for code, name in SPLIT_NAMES.items()},
        "excluded_cells": int((plan.splits == EXCLUDED).sum()),
        "split_fractions": dict(zip(SPLIT_CODES, plan.asked, strict=True)),
        "split_shares": {
            name: round(float(n / max(kept.sum(), 1)), 4)
            for name, n in zip(SPLIT_CODES, kept, strict=True)
        },
        "block_cells_used": [plan.block_cells],
    }
