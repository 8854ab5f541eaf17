"""Steps on the embeddings themselves: a check of a download, false colour, similarity to a place,
the 64 x 64 screen."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..choices import STRETCHES
from ..errors import LczError
from ..spec import Output, Param, Step
from .common import CLUSTER, EMBEDDINGS, EXTENT, optional, source_options

GROUP = "Embeddings"
STRETCH = (
    Param(
        "stretch", "enum", "Stretch",
        "how the principal components become 0-255: percentiles, histogram equalisation or "
        "+-2.5 standard deviations",
        default="percentile", choices=STRETCHES,
    ),
    Param(
        "percentiles", "string", "Percentiles", "low,high: shown as black and full colour",
        default="2,98", advanced=True,
    ),
    Param(
        "seed", "int", "Random seed", "of the pixel sample the PCA is fitted on",
        default=0, minimum=0, advanced=True,
    ),
)  # fmt: skip
PNG = Param("png", "output_file", "Picture (PNG)", optional=True, file_filter="PNG files (*.png)")


def parse_percentiles(text: str) -> tuple[float, float]:
    """'low,high' -> two numbers."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise LczError("percentiles", f"{text!r} is not 'low,high', e.g. 2,98") from None
    return low, high


EMBEDDING_RGB = Step(
    "embedding-rgb",
    "Embeddings in false colour",
    GROUP,
    "Paints embeddings in false colour: the bands are standardised and projected on their first "
    "three principal components, fitted on a seeded sample of at most 100,000 valid pixels of "
    "the extent (one fit for the whole extent, so windows and tiles match; signs fixed so the "
    "picture never flips). An RGB GeoTIFF with an alpha band (missing pixels transparent) that "
    "opens as a colour layer, and optionally a PNG.",
    (
        *EMBEDDINGS,
        *EXTENT,
        *STRETCH,
        Param("output", "output_raster", "RGB picture", "bands R, G, B and alpha (0 = no data)"),
        PNG,
    ),
    (Output("explained_variance", "json", "Variance explained by the 3 components (JSON)"),),
)  # fmt: skip


@EMBEDDING_RGB.implementation
def embedding_rgb(*, percentiles: str, progress: Any, **values: Any) -> dict[str, Any]:
    from ..pictures import embedding_rgb as paint

    options = source_options(values)
    return paint(
        percentiles=parse_percentiles(percentiles),
        source_options=options,
        progress=progress,
        **values,
    )


EMBEDDING_SIMILARITY = Step(
    "embedding-similarity",
    "Embedding similarity map",
    GROUP,
    "Maps the cosine similarity of every pixel's embedding to the embedding under a point (or "
    "the mean embedding inside polygons): a quick way to find every place that looks like a "
    "known informal settlement, a water body or an industrial site. A float32 GeoTIFF (NaN = no "
    "data) with a colour ramp.",
    (
        *EMBEDDINGS,
        Param("point", "point", "Reference point", "the pixel looked for everywhere", optional=True),
        Param("point_crs", "crs", "Point CRS", "default: the embeddings' CRS", optional=True, parent="point"),
        Param(
            "polygons", "vector", "Reference polygons",
            "instead of a point: the mean embedding of the pixels inside", optional=True,
        ),
        *EXTENT,
        Param("output", "output_raster", "Similarity", "cosine similarity, -1 to 1"),
        PNG,
    ),
    (Output("reference_pixels", "number", "Pixels in the reference"),),
    requires=(("point",), ("polygons",)),
)  # fmt: skip


@EMBEDDING_SIMILARITY.implementation
def embedding_similarity(*, polygons: str | None, progress: Any, **values: Any) -> dict[str, Any]:
    from ..pictures import embedding_similarity as similarity
    from ..spec import split_layer

    path, layer = split_layer(polygons) if polygons else (None, None)
    options = source_options(values)
    return similarity(
        polygons=path, layer=layer, source_options=options, progress=progress, **values
    )


PIXOO64 = Step(
    "pixoo64",
    "64 x 64 screen",
    GROUP,
    "Renders embeddings (false colour as in Embeddings in false colour) or an LCZ map (its "
    "palette) on a 64 x 64 grid centred on a point, north up: 640 m x 640 m at 10 m per cell by "
    "default; larger areas take each cell's mean colour or most frequent class. Writes a PNG "
    "scaled up 8 times and, given its address, shows it on a Divoom Pixoo-64 on the local network "
    "(nothing is discovered on the network).",
    (
        *optional(EMBEDDINGS),
        Param("lcz_map", "raster", "LCZ map", "instead of embeddings: codes 1-17", optional=True),
        Param("center", "point", "Centre"),
        Param("center_crs", "crs", "Centre CRS", "default: the data's CRS", optional=True, parent="center"),
        Param(
            "size_m", "float", "Side (m)", "of the square shown",
            default=640.0, minimum=64.0, maximum=1_000_000.0,
        ),
        *(dataclasses.replace(p, advanced=True) for p in STRETCH),
        Param(
            "pixoo", "string", "Pixoo-64 address",
            "HOST or HOST:PORT of a Pixoo-64 on the local network (the Divoom app shows its IP)",
            optional=True,
        ),
        Param(
            "timeout", "float", "Device timeout (s)", default=5.0, minimum=0.1, maximum=120.0,
            advanced=True,
        ),
        Param("output", "output_file", "Screen picture (PNG)", file_filter="PNG files (*.png)"),
        Param(
            "dry_run", "output_file", "Payload instead (JSON)",
            "write the Draw/SendHttpGif command instead of sending it",
            optional=True, advanced=True, file_filter="JSON files (*.json)",
        ),
    ),
    (Output("cells_with_data", "number", "Cells with data"),),
    requires=(("embeddings",), ("lcz_map",)),
)  # fmt: skip


@PIXOO64.implementation
def pixoo64(*, percentiles: str, pixoo: str | None, progress: Any, **values: Any) -> dict[str, Any]:
    from ..pixoo import pixoo64 as screen

    return screen(
        percentiles=parse_percentiles(percentiles),
        device=pixoo,
        source_options=source_options(values),
        progress=progress,
        **values,
    )


CHECK_EMBEDDINGS = Step(
    "check-embeddings",
    "Check embeddings",
    GROUP,
    "Checks downloaded embeddings over an extent (and year): pixels, valid pixels, missing pixels "
    "(nodata, invalid TESSERA scales, all-zero vectors) and suspect pixels (norms far from 1 for "
    "AlphaEarth or robust outliers otherwise, runs of identical vectors along rows or columns, "
    "constant tiles), per file, tile or zone. Writes a JSON report, a styled mask raster (valid, "
    "missing, suspect) and an HTML report with a small map, block by block (on a Dask cluster's "
    "workers given a scheduler or workers: the same report and mask).",
    (
        *EMBEDDINGS,
        *EXTENT,
        Param(
            "norm_tolerance", "float", "AlphaEarth norm tolerance",
            "|norm - 1| above this is suspect (AlphaEarth vectors have unit length)",
            default=0.05, minimum=0.001, maximum=1.0, advanced=True,
        ),
        Param(
            "outlier_mads", "float", "Norm outlier distance (MADs)",
            "other sources: robust deviations of the norm from its median that make a pixel suspect",
            default=8.0, minimum=0.5, maximum=1000.0, advanced=True,
        ),
        Param(
            "stripe_px", "int", "Striping run (pixels)",
            "runs of identical vectors this long along a row or column are striping",
            default=16, minimum=2, maximum=100_000, advanced=True,
        ),
        *CLUSTER,
        Param("output", "output_file", "Report (JSON)", file_filter="JSON files (*.json)"),
        Param("mask", "output_raster", "Mask raster", "valid, missing, suspect", optional=True),
        Param(
            "report_html", "output_file", "Report (HTML)", optional=True,
            file_filter="HTML files (*.html)",
        ),
    ),
    (
        Output("pixels", "number", "Pixels"),
        Output("valid_pixels", "number", "Valid pixels"),
        Output("missing_pixels", "number", "Missing pixels"),
        Output("suspect_pixels", "number", "Suspect pixels"),
        Output("feature_space", "string", "Feature space"),
    ),
)  # fmt: skip


@CHECK_EMBEDDINGS.implementation
def check_embeddings(*, grid_crs: str | None, progress: Any, **values: Any) -> dict[str, Any]:
    from ..embedding_qa import check_embeddings as check

    return check(crs=grid_crs, progress=progress, **values)
