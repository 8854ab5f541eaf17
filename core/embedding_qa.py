"""Check downloaded embeddings before using them (`check_embeddings`): how many pixels are
missing or suspect over a city and year, where, and in which file, tile or zone.

- missing: nodata, an invalid TESSERA scale (water, not yet embedded, out of range), an
  all-zero vector;
- suspect (valid but doubtful): a vector norm far from the rest (AlphaEarth vectors have unit
  length: |norm - 1| > `norm_tolerance`; other sources: more than `outlier_mads` robust
  deviations from the median norm), runs of at least `stripe_px` identical vectors along a row
  or a column (striping), and the pixels of a file, tile or zone whose values are all the same.

Two passes, block by block (memory bounded by the block): the parts (files, tiles, zones)
for their own counts, whether they are constant and a sample of norms; then the city grid for
the mask raster (1 valid, 2 missing, 3 suspect; colour table, category names and a .qml). The
report is JSON (`output`) and HTML with a small map. Given `scheduler` or `workers`, the blocks
of both passes are read by a Dask cluster's workers (`cluster.map_blocks`), which open the
source again from the same arguments; this process gathers their results in the same order and
writes every output, so the report and the mask are those of a run without.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import io
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from .errors import LczError
from .outputs import (
    atomic_path,
    category_names_aux_xml,
    check_writable,
    paletted_qml,
    write_text_atomic,
)
from .progress import Progress, SubProgress
from .rasters import EmbeddingSource, clip_window, crop_to_extent, open_source

VALID, MISSING, SUSPECT = 1, 2, 3
MASK_CLASSES = {
    VALID: ("#2ca25f", "valid"),
    MISSING: ("#bdbdbd", "missing (nodata, invalid scale, all-zero vector)"),
    SUSPECT: ("#d7301f", "suspect (norm outlier, striping, constant tile)"),
}
NORM_SAMPLE = 200_000


def check_embeddings(
    embeddings: str | os.PathLike,
    output: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    report_html: str | os.PathLike | None = None,
    extent: tuple[float, float, float, float] | None = None,
    extent_crs: str | None = None,
    source_kind: str = "auto",
    array: str | None = None,
    dequantise: str = "quadratic",
    year: int | None = None,
    crs: str | None = None,
    variant: str = "auto",
    norm_tolerance: float = 0.05,
    outlier_mads: float = 8.0,
    stripe_px: int = 16,
    block: int = 512,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Count valid, missing and suspect pixels of embeddings over an extent (and year); write
    a JSON report (`output`), an HTML report and a styled mask GeoTIFF; the blocks read on a
    Dask cluster given `scheduler` or `workers`."""
    from .cluster import cluster_client, map_blocks

    progress = progress or Progress()
    output = check_writable(output, "output")
    mask_path = check_writable(mask or output.with_name(f"{output.stem}_mask.tif"), "mask")
    html_path = check_writable(report_html or output.with_suffix(".html"), "report_html")
    if stripe_px < 2:
        raise LczError("stripe_px", f"{stripe_px} must be at least 2 pixels")
    if not 0 < norm_tolerance < 1:
        raise LczError("norm_tolerance", f"{norm_tolerance} must lie between 0 and 1")
    if outlier_mads <= 0:
        raise LczError("outlier_mads", f"{outlier_mads} must be positive")
    reopen = functools.partial(
        open_checked,
        embeddings,
        extent,
        extent_crs,
        kind=source_kind,
        array=array,
        dequantise=dequantise,
        year=year,
        crs=crs,
        variant=variant,
    )
    with (
        reopen() as source,
        cluster_client(scheduler, workers) as client,
    ):
        each = functools.partial(map_blocks, source, reopen, client)
        parts = _check_parts(source, block, each, SubProgress(progress, 0, 40))
        # constant parts are suspect as a whole; their one norm would skew the statistics
        samples = [p.pop("norms") for p in parts]
        kept = [n for n, p in zip(samples, parts, strict=True) if not p["constant"]]
        norms = np.concatenate(kept) if kept else np.empty(0)
        rule = _norm_rule(source.feature_space, norms, norm_tolerance, outlier_mads)
        constant = [p["footprint"] for p in parts if p["constant"]]
        with atomic_path(mask_path, "mask") as tmp:
            totals, overview = _write_mask(
                source, tmp, rule, constant, stripe_px, block, each, SubProgress(progress, 40, 95)
            )
        report = {
            "embeddings": str(embeddings),
            "feature_space": source.feature_space,
            "bands": source.count,
            "band_names": source.band_names,
            "crs": source.crs.to_string(),
            "pixel_size": source.res,
            "width": source.width,
            "height": source.height,
            "bounds": list(source.bounds),
            "year": year,
            **totals,
            "norm_rule": rule["text"],
            "parts": [{k: v for k, v in p.items() if k != "footprint"} for p in parts],
            "mask": str(mask_path),
            "report_html": str(html_path),
            "settings": {
                "norm_tolerance": norm_tolerance,
                "outlier_mads": outlier_mads,
                "stripe_px": stripe_px,
            },
        }
    write_text_atomic(mask_path.with_suffix(".qml"), paletted_qml(_palette()))
    write_text_atomic(Path(f"{mask_path}.aux.xml"), category_names_aux_xml(_category_names()))
    write_text_atomic(html_path, _html(report, overview))
    write_text_atomic(output, json.dumps(report, indent=2) + "\n")
    progress.report(100, "done")
    return {**report, "output": str(output)}


def _palette() -> list[tuple[int, str, str]]:
    return [(value, color, label) for value, (color, label) in MASK_CLASSES.items()]


def _category_names() -> list[str]:
    return [""] + [label for _, label in MASK_CLASSES.values()]


@contextlib.contextmanager
def open_checked(
    embeddings: str | os.PathLike,
    extent: tuple[float, float, float, float] | None,
    extent_crs: str | None,
    kind: str = "auto",
    **options: Any,
) -> Iterator[EmbeddingSource]:
    """The embeddings as `check_embeddings` reads them: opened, and cut to `extent` if given."""
    from .extents import reproject_extent

    with open_source(
        embeddings, kind, "embeddings", extent=extent, extent_crs=extent_crs, **options
    ) as opened:
        if extent is None:
            yield opened
            return
        box = reproject_extent(
            extent, extent_crs or opened.default_extent_crs or opened.crs, opened.crs
        )
        yield crop_to_extent(opened, box)


# (per-block function, items, progress, what) -> its results in order, here or on a cluster
MapBlocks = Callable[[Callable[[EmbeddingSource, Any], Any], list, Progress, str], Iterator[Any]]


def _blocks(width: int, height: int, block: int) -> list[Window]:
    return [
        Window(c, r, min(block, width - c), min(block, height - r))
        for r in range(0, height, block)
        for c in range(0, width, block)
    ]


def _check_parts(
    source: EmbeddingSource, block: int, each: MapBlocks, progress: Progress
) -> list[dict]:
    """Per file, tile or zone: pixels, valid, missing, all-zero, constant, a norm sample; the
    blocks of each read by `each` and gathered in order."""
    from rasterio.warp import transform_bounds

    records: dict[int, dict[str, Any]] = {}
    ranges: dict[int, tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = {}
    items = []
    left, bottom, right, top = source.bounds
    members = source.parts()
    for i, part in enumerate(members):
        box = transform_bounds(source.crs, part.crs, left, bottom, right, top, densify_pts=21)
        window = clip_window(part.window_for(box), part.width, part.height)
        if window is None:
            continue
        records[i] = {"name": part.name, "crs": part.crs.to_string()}
        records[i].update(pixels=0, valid_pixels=0, missing_pixels=0, zero_vector_pixels=0)
        ranges[i] = (
            np.full(part.count, np.inf, np.float32),
            np.full(part.count, -np.inf, np.float32),
            [],
        )
        stride = max(1, math.ceil(window.width * window.height / NORM_SAMPLE * len(members)))
        for w in _blocks(window.width, window.height, block):
            w = Window(window.col_off + w.col_off, window.row_off + w.row_off, w.width, w.height)
            items.append((i, w, stride))
    for i, counts, low, high, norms in each(_part_block, items, progress, "part blocks read:"):
        for name, n in counts.items():
            records[i][name] += n
        if norms is not None:
            np.minimum(ranges[i][0], low, out=ranges[i][0])
            np.maximum(ranges[i][1], high, out=ranges[i][1])
            ranges[i][2].append(norms)
    for i, record in records.items():
        low, high, norms = ranges[i]
        part = members[i]
        record["constant"] = bool(record["valid_pixels"] > 1 and np.all(low == high))
        record["norms"] = np.concatenate(norms) if norms else np.empty(0, np.float32)
        footprint = transform_bounds(part.crs, source.crs, *part.bounds, densify_pts=21)
        record["footprint"] = source.window_for(footprint)
    return list(records.values())


def _part_block(
    source: EmbeddingSource, item: tuple[int, Window, int]
) -> tuple[int, dict[str, int], np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """One block of a part (its index in `source.parts()`, the window in its pixels, the norm
    sample's stride): (index, counts, per-band min and max and norm sample of its valid
    vectors, or None for these where none is valid)."""
    index, window, stride = item
    part = source.parts()[index]
    zero_before = part.zero_pixels
    data = part.read(window)
    valid = ~np.isnan(data).any(axis=0)
    counts = {
        "pixels": valid.size,
        "valid_pixels": int(valid.sum()),
        "missing_pixels": int(valid.size - valid.sum()),
        "zero_vector_pixels": part.zero_pixels - zero_before,
    }
    if not valid.any():
        return index, counts, None, None, None
    vectors = data[:, valid]
    norms = np.linalg.norm(vectors[:, ::stride], axis=0)
    return index, counts, vectors.min(axis=1), vectors.max(axis=1), norms


def _norm_rule(
    feature_space: str, norms: np.ndarray, tolerance: float, mads: float
) -> dict[str, Any]:
    """The range of vector norms taken as plausible (outside it: suspect)."""
    if feature_space.startswith("alphaearth (quadratic"):
        return {
            "low": 1 - tolerance,
            "high": 1 + tolerance,
            "text": f"|norm - 1| <= {tolerance:g} (unit vectors)",
        }
    if norms.size == 0:
        return {"low": -np.inf, "high": np.inf, "text": "no valid pixel"}
    median = float(np.median(norms))
    spread = 1.4826 * float(np.median(np.abs(norms - median)))
    spread = spread or 1e-6 * max(median, 1.0)
    low, high = median - mads * spread, median + mads * spread
    return {
        "low": low,
        "high": high,
        "text": f"norm within {low:.4g} to {high:.4g} (median {median:.4g} +- {mads:g} robust deviations)",
    }


def _long_runs(equal: np.ndarray, n: int) -> np.ndarray:
    """(rows, cols + 1) bool: pixels in runs of >= n identical vectors along each row, given
    `equal` (rows, cols): pixel j equals pixel j + 1."""
    rows, pairs = equal.shape
    padded = np.zeros((rows, pairs + 2), np.int8)
    padded[:, 1:-1] = equal
    step = np.diff(padded, axis=1)
    start_r, start_c = np.nonzero(step == 1)
    end_r, end_c = np.nonzero(step == -1)
    keep = end_c - start_c + 1 >= n  # a run of k equal pairs holds k + 1 pixels
    marks = np.zeros((rows, pairs + 2), np.int32)
    np.add.at(marks, (start_r[keep], start_c[keep]), 1)
    np.add.at(marks, (end_r[keep], end_c[keep] + 1), -1)
    return np.cumsum(marks, axis=1)[:, : pairs + 1] > 0


def stripes(data: np.ndarray, n: int) -> np.ndarray:
    """(rows, cols) bool: valid pixels in runs of >= n identical vectors along a row or column."""
    valid = ~np.isnan(data).any(axis=0)
    along_rows = valid[:, :-1] & valid[:, 1:] & (data[:, :, :-1] == data[:, :, 1:]).all(axis=0)
    along_cols = valid[:-1] & valid[1:] & (data[:, :-1] == data[:, 1:]).all(axis=0)
    return _long_runs(along_rows, n) | _long_runs(along_cols.T, n).T


def _write_mask(
    source: EmbeddingSource,
    path: Path,
    rule: dict[str, Any],
    constant: list[Window],
    stripe_px: int,
    block: int,
    each: MapBlocks,
    progress: Progress,
) -> tuple[dict[str, Any], np.ndarray]:
    """Classify every pixel block by block into the mask GeoTIFF; totals and an overview."""
    import rasterio

    from .outputs import LCZ_PROFILE

    profile = {**LCZ_PROFILE, "nodata": None, "crs": source.crs, "transform": source.transform}
    profile.update(width=source.width, height=source.height)
    if source.width < 256 or source.height < 256:
        profile.update(tiled=False)
        profile = {k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize")}
    step = max(1, math.ceil(max(source.width, source.height) / 400))
    overview = np.zeros((math.ceil(source.height / step), math.ceil(source.width / step)), np.uint8)
    totals = dict(pixels=0, valid_pixels=0, missing_pixels=0, suspect_pixels=0)
    reasons = dict(norm_outliers=0, stripes=0, constant_parts=0)
    blocks = _blocks(source.width, source.height, block)
    classify = functools.partial(_classify_block, rule=rule, constant=constant, stripe_px=stripe_px)
    with rasterio.open(path, "w", **profile) as dataset:
        results = each(classify, blocks, progress, "mask blocks done:")
        for w, (classes, found) in zip(blocks, results, strict=True):
            dataset.write(classes, 1, window=w)
            totals["pixels"] += classes.size
            totals["valid_pixels"] += int((classes == VALID).sum())
            totals["missing_pixels"] += int((classes == MISSING).sum())
            totals["suspect_pixels"] += int((classes == SUSPECT).sum())
            for name, n in found.items():
                reasons[name] += n
            r0, c0 = (
                -(-w.row_off // step) * step - w.row_off,
                -(-w.col_off // step) * step - w.col_off,
            )
            sample = classes[r0::step, c0::step]
            overview[(w.row_off + r0) // step :][: sample.shape[0], (w.col_off + c0) // step :][
                :, : sample.shape[1]
            ] = sample
        dataset.write_colormap(
            1,
            {
                v: tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) + (255,)
                for v, (c, _) in MASK_CLASSES.items()
            },
        )
        dataset.set_band_description(1, "embedding check: 1 valid, 2 missing, 3 suspect")
        dataset.update_tags(**{k.upper(): v for k, v in {**totals, **reasons}.items()})
    return {**totals, "suspect": reasons}, overview


def _classify_block(
    source: EmbeddingSource,
    w: Window,
    *,
    rule: dict[str, Any],
    constant: list[Window],
    stripe_px: int,
) -> tuple[np.ndarray, dict[str, int]]:
    """The mask classes (uint8) of block `w`, read with a halo of `stripe_px` so that stripes
    across its edges are seen, and its suspect pixels by reason."""
    halo = stripe_px
    data = source.read(
        Window(w.col_off - halo, w.row_off - halo, w.width + 2 * halo, w.height + 2 * halo)
    )
    inner = (slice(halo, halo + w.height), slice(halo, halo + w.width))
    striped = stripes(data, stripe_px)[inner]
    data = data[:, inner[0], inner[1]]
    valid = ~np.isnan(data).any(axis=0)
    norms = np.linalg.norm(np.where(valid, data, 0), axis=0)
    odd = valid & ((norms < rule["low"]) | (norms > rule["high"]))
    flat = np.zeros_like(valid)
    for part in constant:
        spot = clip_window(
            Window(part.col_off - w.col_off, part.row_off - w.row_off, part.width, part.height),
            w.width,
            w.height,
        )
        if spot is not None:
            flat[
                spot.row_off : spot.row_off + spot.height,
                spot.col_off : spot.col_off + spot.width,
            ] = True
    flat &= valid
    striped &= valid
    suspect = odd | striped | flat
    classes = np.where(valid, np.where(suspect, SUSPECT, VALID), MISSING).astype(np.uint8)
    found = {
        "norm_outliers": int(odd.sum()),
        "stripes": int(striped.sum()),
        "constant_parts": int(flat.sum()),
    }
    return classes, found


def _html(report: dict[str, Any], overview: np.ndarray) -> str:
    """A one-page HTML report: summary, map of the mask, per-part table."""
    picture = _png(overview)
    total = max(report["pixels"], 1)
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{report[key]:,}</td><td>{100 * report[key] / total:.2f} %</td></tr>"
        for key, label in (
            ("pixels", "pixels"),
            ("valid_pixels", "valid"),
            ("missing_pixels", "missing"),
            ("suspect_pixels", "suspect"),
        )
    )
    reasons = "".join(
        f"<li>{html.escape(k.replace('_', ' '))}: {v:,}</li>" for k, v in report["suspect"].items()
    )
    parts = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(p[k]))}</td>"
            for k in (
                "name",
                "crs",
                "pixels",
                "valid_pixels",
                "missing_pixels",
                "zero_vector_pixels",
                "constant",
            )
        )
        + "</tr>"
        for p in report["parts"]
    )
    legend = "".join(
        f'<span style="background:{c};padding:0 0.8em;margin:0 0.3em"></span>{html.escape(label)} '
        for c, label in MASK_CLASSES.values()
    )
    title = html.escape(report["embeddings"])
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Embedding check: {title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:0.2em 0.6em;text-align:right}}</style></head><body>
<h1>Embedding check</h1>
<p>{title}<br>feature space: {html.escape(report["feature_space"] or "unnamed")}; {report["bands"]} bands;
{html.escape(report["crs"])}, {report["pixel_size"]:g} m pixels, {report["width"]} x {report["height"]} px;
year {report["year"] if report["year"] is not None else "as stored"}</p>
<table>{rows}</table>
<p>suspect pixels by reason:</p><ul>{reasons}</ul><p>norm rule: {html.escape(report["norm_rule"])}</p>
<p><img alt="mask" src="data:image/png;base64,{picture}" style="image-rendering:pixelated;max-width:100%"><br>{legend}</p>
<h2>Files, tiles and zones</h2>
<table><tr><th>name</th><th>crs</th><th>pixels</th><th>valid</th><th>missing</th><th>all-zero</th><th>constant</th></tr>{parts}</table>
<p>mask raster: {html.escape(report["mask"])}</p>
</body></html>
"""


def _png(classes: np.ndarray) -> str:
    """Base64 PNG of a class overview in the mask's colours."""
    from matplotlib.image import imsave

    colours = np.zeros((4, 3), np.uint8)
    for value, (c, _) in MASK_CLASSES.items():
        colours[value] = [int(c[i : i + 2], 16) for i in (1, 3, 5)]
    buffer = io.BytesIO()
    scale = max(1, 400 // max(classes.shape))
    imsave(buffer, np.kron(colours[classes], np.ones((scale, scale, 1), np.uint8)), format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
