"""Agreement of an LCZ map with a reference LCZ map, by default the global LCZ map.

The map is aggregated onto the reference grid by class mode (e.g. a 10 m prediction onto the
100 m global map), window by window, and the two are compared with the LCZ accuracy measures.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LczError
from .lcz import NUM_CLASSES
from .lczmap import import_lcz_map, open_raster, row_blocks
from .metrics import confusion_matrix, lcz_metrics, plot_confusion
from .outputs import atomic_path, check_writable
from .progress import Progress, SubProgress, track

# Demuzere et al. (2022), ESSD 14:3835, doi:10.5194/essd-14-3835-2022: the Gaussian-filtered
# global map as a Cloud Optimized GeoTIFF; GDAL fetches only the blocks of the city's window.
GLOBAL_LCZ_MAP = "/vsicurl/https://lcz-generator.rub.de/cogs/lcz_filter_v3_cog.tif"


def compare_lcz_maps(
    input: str | Path,
    output: str | Path,
    *,
    reference: str | Path = GLOBAL_LCZ_MAP,
    reference_coding: str = "auto",
    reference_output: str | Path | None = None,
    confusion_png: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Compare LCZ map `input` (1-17) with `reference` on the reference grid; write a JSON report."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    progress = progress or Progress()
    output = check_writable(output)
    with open_raster(input) as src:
        if src.count != 1 or np.dtype(src.dtypes[0]).kind not in "iu":
            raise LczError(
                "input",
                f"{input} has {src.count} band(s) of {src.dtypes[0]}; an LCZ map is one band of "
                "integer class codes: give an LCZ map (import other rasters with Import LCZ map)",
            )
        bounds, crs = src.bounds, src.crs
    with tempfile.TemporaryDirectory() as scratch:
        # the reference, clipped to the map and translated to 1-17, is itself a styled output
        clipped = Path(reference_output or Path(scratch) / "reference.tif")
        imported = import_lcz_map(
            reference,
            clipped,
            coding=reference_coding,
            extent=tuple(bounds),
            extent_crs=crs.to_wkt(),
            progress=SubProgress(progress, 0, 30),
        )
        confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
        with open_raster(clipped, "reference") as ref, open_raster(input) as src:
            with WarpedVRT(
                src,
                crs=ref.crs,
                transform=ref.transform,
                width=ref.width,
                height=ref.height,
                resampling=Resampling.mode,
                src_nodata=0,
                nodata=0,
            ) as aggregated:
                blocks = row_blocks(aggregated.width, aggregated.height)
                for block in track(blocks, SubProgress(progress, 30, 95), len(blocks), "comparing"):
                    predicted = aggregated.read(1, window=block)
                    if predicted.max(initial=0) > NUM_CLASSES:
                        raise LczError(
                            "input", "holds values above 17; import it with Import LCZ map first"
                        )
                    confusion += confusion_matrix(ref.read(1, window=block), predicted)
    if confusion.sum() == 0:
        raise LczError("reference", f"{reference} has no classified pixel where {input} has one")
    metrics = lcz_metrics(confusion)
    report = {
        "input": str(input),
        "reference": str(reference),
        "reference_coding": imported["coding"],
        "grid": {"crs": imported["crs"], "width": imported["width"], "height": imported["height"]},
        "metrics": metrics,
        "confusion": confusion.tolist(),
    }
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
    if confusion_png:
        plot_confusion(confusion, confusion_png, title=f"{Path(input).stem} vs reference")
    progress.report(100, "done")
    progress.log(
        f"agreement with the reference on {metrics['n']} cells: OA {metrics['oa']:.3f}, "
        f"kappa {metrics['kappa']:.3f}, OA_w {metrics['oa_w']:.3f}"
    )
    return {
        "output": str(output),
        "reference_output": str(reference_output) if reference_output else None,
        "confusion_png": str(confusion_png) if confusion_png else None,
        **{k: metrics[k] for k in ("n", "oa", "kappa", "oa_u", "oa_bu", "oa_w", "macro_f1")},
    }
