"""Agreement of an LCZ map with a reference LCZ map, by default the global LCZ map (its window).

The map is brought onto the reference grid window by window, then compared with the LCZ accuracy
measures, the area of each class in each map and, optionally, an agreement raster.

Where the map's pixels are within 1.5x the reference cell size, a cell takes the map's class at
its centre (nearest neighbour): on two grids of similar size a mode sees 2-3 pixels per cell and
breaks ties arbitrarily. Where the map is finer, a cell takes its area-weighted majority class:
the cell is split into f x f equal sub-cells, GDAL's nearest-neighbour warp gives each sub-cell
the map's class at its centre, and the class covering most sub-cells wins (a tie goes to the
class at the cell centre); a cell under half classified is not compared. f is twice the rounded
size ratio up to 8 (sub-cells of half a pixel), the ratio itself up to 16, and 16 beyond (a
256-point sample of the cell); being a multiple of the ratio, it counts aligned grids (10 m in
100 m) exactly. Sub-cells measure each pixel's share of a cell to within a sub-cell, across any
two CRSs, with the warp that nearest neighbour uses and a memory bounded per window; exact
overlap fractions would need every reprojected pixel outline intersected with the cells.

Class areas are true areas on the CRS's ellipsoid (not the CRS's nominal cell area), over the
compared cells: the reference's from its cells, the map's from its own sub-cells, so that a class
that is nowhere a majority still has its area.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LczError
from .lcz import BUILT_CODES, CLASS_BY_CODE, CODES, NUM_CLASSES
from .lczmap import global_lcz_map, import_lcz_map
from .metrics import confusion_matrix, lcz_metrics, plot_confusion
from .outputs import (
    atomic_path,
    category_names_aux_xml,
    check_writable,
    class_raster_profile,
    paletted_qml,
    write_text_atomic,
)
from .progress import Progress, SubProgress, track
from .rasters import ROWS_PER_BLOCK, open_raster

NEAREST_WITHIN = 1.5  # reference cell size over map pixel size below which nearest is used
MAX_SUBCELLS = 16  # sub-cells per side of a reference cell at most
BLOCK_SUBCELLS = 1 << 22  # sub-cells warped per window: bounds memory whatever the grid size
AREA_STEP = 16  # cells between evaluations of the CRS's area scale (it varies over 100s of km)

# Agreement raster values (0 = not compared), colours (colorbrewer RdYlBu-like) and names.
AGREEMENT_CLASSES: tuple[tuple[int, str, str], ...] = (
    (1, "#1a9641", "agree"),
    (2, "#fdae61", "disagree: two built types"),
    (3, "#abd9e9", "disagree: two natural types"),
    (4, "#d7191c", "built in the map, natural in the reference"),
    (5, "#2c7bb6", "natural in the map, built in the reference"),
)
_BUILT = np.isin(np.arange(NUM_CLASSES + 1), BUILT_CODES)


# the parameters of import_lcz_map, which reads the reference, as this step names them
REFERENCE_PARAMETERS = {"coding": "reference_coding", "output": "reference_output"}


def compare_lcz_maps(
    input: str | Path,
    output: str | Path,
    *,
    reference: str | Path | None = None,
    reference_coding: str = "auto",
    reference_output: str | Path | None = None,
    agreement_output: str | Path | None = None,
    confusion_png: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Compare LCZ map `input` (1-17) with `reference` (default: the global LCZ map, see
    `global_lcz_map_source`) on the reference grid; write a JSON report."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    progress = progress or Progress()
    output = check_writable(output)
    if agreement_output:
        agreement_output = check_writable(agreement_output, "agreement_output")
    with open_raster(input) as src:
        if src.count != 1 or np.dtype(src.dtypes[0]).kind not in "iu":
            raise LczError(
                "input",
                f"{input} has {src.count} band(s) of {src.dtypes[0]}; an LCZ map is one band of "
                "integer class codes: give an LCZ map (import other rasters with Import LCZ map)",
            )
        bounds, crs = src.bounds, src.crs
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        # the reference, clipped to the map and translated to 1-17, is itself a styled output
        clipped = Path(reference_output or Path(scratch) / "reference.tif")
        window = {"extent": tuple(bounds), "extent_crs": crs.to_wkt()}
        try:
            if reference is None:
                imported = global_lcz_map(
                    clipped, **window, progress=SubProgress(progress, 0, 30), parameter="reference"
                )
                reference = imported["source"]
            else:
                imported = import_lcz_map(
                    reference,
                    clipped,
                    coding=reference_coding,
                    **window,
                    progress=SubProgress(progress, 0, 30),
                    parameter="reference",
                )
        except LczError as error:  # about the reference: name this step's parameters
            parameter = REFERENCE_PARAMETERS.get(error.parameter, "reference")
            message = error.message
            if error.parameter == "extent":  # the extent was the map's
                message = f"the map {input} lies outside the reference: {message}"
            raise LczError(parameter, message) from None
        ref = stack.enter_context(open_raster(clipped, "reference"))
        src = stack.enter_context(open_raster(input))
        ratio = _size_ratio(src, ref)
        f = _subcells_per_side(ratio)
        subcells = stack.enter_context(
            WarpedVRT(
                src,
                crs=ref.crs,
                transform=ref.transform * ref.transform.scale(1 / f),
                width=ref.width * f,
                height=ref.height * f,
                resampling=Resampling.nearest,
                src_nodata=0,
                nodata=0,
            )
        )
        agreement = None
        if agreement_output:
            tmp = stack.enter_context(atomic_path(agreement_output, "agreement_output"))
            agreement = stack.enter_context(
                _open_class_raster(tmp, ref.crs, ref.transform, ref.width, ref.height)
            )
        cell_area = _cell_area_function(ref.crs, ref.transform)
        confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
        input_m2 = np.zeros(NUM_CLASSES + 1)
        reference_m2 = np.zeros(NUM_CLASSES + 1)
        agreement_m2 = np.zeros(len(AGREEMENT_CLASSES) + 1)
        blocks = _blocks(ref.width, ref.height, f)
        for block in track(blocks, SubProgress(progress, 30, 95), len(blocks), "comparing"):
            fine = subcells.read(
                1, window=Window(0, block.row_off * f, block.width * f, block.height * f)
            )
            if fine.max(initial=0) > NUM_CLASSES:
                raise LczError(
                    "input", "holds values above 17; import it with Import LCZ map first"
                )
            predicted, counts = _majority(fine, f)
            expected = ref.read(1, window=block)
            confusion += confusion_matrix(expected, predicted)
            both = (expected > 0) & (predicted > 0)
            area = np.where(both, cell_area(block), 0.0)
            reference_m2 += np.bincount(expected.ravel(), area.ravel(), NUM_CLASSES + 1)
            # the map's own area per class inside the compared cells, not only its majority
            input_m2 += np.einsum("rwc,rw->c", counts, area) / (f * f)
            category = _agreement(expected, predicted)
            agreement_m2 += np.bincount(category.ravel(), area.ravel(), len(agreement_m2))
            if agreement is not None:
                agreement.write(category, 1, window=block)
        if agreement is not None:
            agreement.write_colormap(1, _colormap(AGREEMENT_CLASSES))
            agreement.set_band_description(1, "agreement of the LCZ map with the reference")
        if confusion.sum() == 0:
            raise LczError(
                "reference", f"{reference} has no classified pixel where {input} has one"
            )
    if agreement_output:
        write_text_atomic(agreement_output.with_suffix(".qml"), paletted_qml(AGREEMENT_CLASSES))
        names = ["not compared"] + [name for _, _, name in AGREEMENT_CLASSES]
        write_text_atomic(Path(f"{agreement_output}.aux.xml"), category_names_aux_xml(names))
    metrics = lcz_metrics(confusion)
    class_areas = {
        CLASS_BY_CODE[code].short: {
            "name": CLASS_BY_CODE[code].label,
            "input_km2": round(input_m2[code] / 1e6, 6),
            "reference_km2": round(reference_m2[code] / 1e6, 6),
        }
        for code in CODES
        if input_m2[code] > 0 or reference_m2[code] > 0
    }
    aggregation = {
        "method": "nearest" if f == 1 else "area-weighted majority",
        "size_ratio": round(ratio, 4),
        "subcells_per_cell": f * f,
    }
    report = {
        "input": str(input),
        "reference": str(reference),
        "reference_coding": imported["coding"],
        "grid": {"crs": imported["crs"], "width": imported["width"], "height": imported["height"]},
        "aggregation": aggregation,
        "metrics": metrics,
        "confusion": confusion.tolist(),
        "compared_km2": round(reference_m2.sum() / 1e6, 6),
        "class_areas": class_areas,
        "agreement_km2": {
            name: round(agreement_m2[value] / 1e6, 6) for value, _, name in AGREEMENT_CLASSES
        },
    }
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
    if confusion_png:
        plot_confusion(confusion, confusion_png, title=f"{Path(input).stem} vs reference")
    progress.report(100, "done")
    progress.log(
        f"agreement with the reference on {metrics['n']} cells ({aggregation['method']}): "
        f"OA {metrics['oa']:.3f}, kappa {metrics['kappa']:.3f}, OA_w {metrics['oa_w']:.3f}"
    )
    return {
        "output": str(output),
        "reference_output": str(reference_output) if reference_output else None,
        "agreement_output": str(agreement_output) if agreement_output else None,
        "confusion_png": str(confusion_png) if confusion_png else None,
        **{k: metrics[k] for k in ("n", "oa", "kappa", "oa_u", "oa_bu", "oa_w", "macro_f1")},
        "aggregation": aggregation["method"],
        "class_areas": class_areas,
    }


def _size_ratio(src, ref) -> float:
    """Reference cell size over the map's pixel size, both measured in the reference CRS."""
    from rasterio.warp import calculate_default_transform

    transform, _, _ = calculate_default_transform(
        src.crs, ref.crs, src.width, src.height, *src.bounds
    )
    return math.sqrt(abs(ref.transform.determinant) / abs(transform.determinant))


def _subcells_per_side(ratio: float) -> int:
    """Sub-cells per side of a reference cell: 1 (nearest) within NEAREST_WITHIN, else a multiple
    of the rounded size ratio so that aligned grids (10 m in 100 m) are counted exactly."""
    if ratio < NEAREST_WITHIN:
        return 1
    n = round(ratio)
    return 2 * n if 2 * n <= MAX_SUBCELLS else min(n, MAX_SUBCELLS)


def _blocks(width: int, height: int, f: int) -> list:
    """Windows of full rows of the reference grid, each at most BLOCK_SUBCELLS sub-cells."""
    from rasterio.windows import Window

    rows = max(1, min(ROWS_PER_BLOCK, BLOCK_SUBCELLS // (width * f * f)))
    return [Window(0, row, width, min(rows, height - row)) for row in range(0, height, rows)]


def _majority(fine: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority class of each cell of f x f sub-cells (0 if under half classified), and the
    sub-cell count of each code 0-17 per cell (cells x 18)."""
    rows, cols = fine.shape[0] // f, fine.shape[1] // f
    counts = np.zeros((rows, cols, NUM_CLASSES + 1), dtype=np.uint16)
    for code in np.flatnonzero(np.bincount(fine.ravel(), minlength=NUM_CLASSES + 1)):
        # sum the f sub-rows first (contiguous adds), then the f sub-columns: 4x a 4-D reduce
        hits = (fine == code).view(np.uint8).reshape(rows, f, cols * f).sum(axis=1, dtype=np.uint8)
        counts[..., code] = hits.reshape(rows, cols, f).sum(axis=2, dtype=np.uint16)
    centre = fine[f // 2 :: f, f // 2 :: f]
    score = 2 * counts[..., 1:] + (centre[..., None] == np.arange(1, NUM_CLASSES + 1))
    majority = (np.argmax(score, axis=-1) + 1).astype(np.uint8)
    majority[2 * counts[..., 0] > f * f] = 0
    return majority, counts


def _agreement(expected: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Agreement raster values (AGREEMENT_CLASSES) of a block; 0 where either map is nodata."""
    ref_built, map_built = _BUILT[expected], _BUILT[predicted]
    category = np.select(
        [expected == predicted, ref_built & map_built, ~ref_built & ~map_built, map_built],
        [1, 2, 3, 4],
        5,
    )
    return np.where((expected > 0) & (predicted > 0), category, 0).astype(np.uint8)


def _cell_area_function(crs, transform) -> Callable[[Any], np.ndarray]:
    """A function giving the true (ellipsoidal) area in m2 of each cell of a window of the grid.

    The CRS's area per cell varies slowly (latitude, projection scale), so it is evaluated every
    AREA_STEP cells and held constant in between.
    """
    import pyproj

    crs = pyproj.CRS.from_wkt(crs.to_wkt())
    unit = crs.axis_info[0].unit_conversion_factor  # metres, or radians for a geographic CRS
    nominal = abs(transform.determinant) * unit * unit
    geod = crs.get_geod() or pyproj.Geod(ellps="WGS84")
    if not crs.is_geographic:
        to_lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        projection = pyproj.Proj(crs)

    def area(window) -> np.ndarray:
        x, y = transform * np.meshgrid(
            _group_centres(window.col_off, window.width),
            _group_centres(window.row_off, window.height),
        )
        if crs.is_geographic:
            # the ellipsoid's area element M N cos(phi) per radian squared
            sin2 = np.sin(y * unit) ** 2
            scale = geod.a**2 * (1 - geod.es) * np.cos(y * unit) / (1 - geod.es * sin2) ** 2
        else:
            factors = projection.get_factors(*to_lonlat.transform(x, y))
            scale = 1 / np.nan_to_num(np.asarray(factors.areal_scale), nan=1.0)
        expanded = np.repeat(np.repeat(scale, AREA_STEP, axis=0), AREA_STEP, axis=1)
        return nominal * expanded[: window.height, : window.width]

    return area


def _group_centres(start: int, length: int) -> np.ndarray:
    """Centres (in cells) of the runs of AREA_STEP cells that cover start..start + length."""
    starts = np.arange(start, start + length, AREA_STEP)
    return (starts + np.minimum(starts + AREA_STEP, start + length)) / 2


def _open_class_raster(path: Path, crs, transform, width: int, height: int):
    """A one-band uint8 class GeoTIFF opened for writing."""
    import rasterio

    profile = class_raster_profile(crs=crs, transform=transform, width=width, height=height)
    return rasterio.open(path, "w", **profile)


def _colormap(palette) -> dict[int, tuple[int, int, int, int]]:
    """GeoTIFF colour table of (value, '#rrggbb', label) entries, 0 transparent."""
    table = {0: (0, 0, 0, 0)}
    table.update({v: (*(int(c[i : i + 2], 16) for i in (1, 3, 5)), 255) for v, c, _ in palette})
    return table
