"""Steps on LCZ maps: import any LCZ raster, plot one, compare one with a reference map."""

from __future__ import annotations

from typing import Any

from ..choices import CODINGS, METRICS
from ..spec import Output, Param, Step
from .common import EXTENT

GROUP = "LCZ maps"

IMPORT_LCZ_MAP = Step(
    "import-lcz-map",
    "Import LCZ map",
    GROUP,
    "Translates any LCZ raster (the global LCZ map, an LCZ Generator output, an older WUDAPT map "
    "with 101-107 for A-G, a European LCZ map with NaN nodata...) into a uint8 GeoTIFF with codes "
    "1-17 (0 = nodata), the official LCZ colours and a legend of the classes present. Coding "
    "'auto' picks 1-17 or 1-10/101-107 from the values present and refuses values that neither "
    "explains; a map with built classes only needs its coding, an undeclared 0 needs nodata 0, and other codings a complete class mapping such as '42:A,255:0' (0 = nodata). Optionally clips to "
    "an extent and reprojects (nearest neighbour) to a CRS and pixel size.",
    (
        Param("input", "raster", "LCZ raster", "any CRS, coding and nodata"),
        Param(
            "band", "band", "Band with the LCZ classes",
            "default: the filtered band of an LCZ Generator file, else band 1",
            optional=True, minimum=1, parent="input",
        ),
        Param(
            "nodata", "float", "Nodata value",
            "a value read as nodata besides the file's own (e.g. 0 where it is undeclared)",
            optional=True,
        ),
        Param(
            "coding", "enum", "Class coding", "auto: 1-17 or 1-10 with 101-107, from the values",
            default="auto", choices=CODINGS,
        ),
        Param(
            "mapping", "string", "Class mapping", "explicit 'from:to,...' (to: 1-17 or A-G, 0 = nodata)",
            optional=True,
        ),
        *EXTENT,
        Param("target_crs", "crs", "Reproject to CRS", "nearest neighbour", optional=True),
        Param(
            "resolution", "float", "Pixel size in the target CRS units",
            "default: the input's pixel size", optional=True, minimum=0.0,
        ),
        Param("output", "output_raster", "LCZ map", "uint8 GeoTIFF, codes 1-17, 0 = nodata"),
    ),
    (
        Output("coding_used", "string", "Coding used"),
        Output("class_counts", "json", "Pixels per class (JSON)"),
        Output("band_used", "number", "Band used"),
    ),
)  # fmt: skip


@IMPORT_LCZ_MAP.implementation
def import_lcz_map(*, progress: Any, **values: Any) -> dict[str, Any]:
    from ..lczmap import import_lcz_map as import_raster

    result = import_raster(progress=progress, **values)
    return {**result, "coding_used": result.pop("coding")}


PLOT_LCZ_MAP = Step(
    "plot-lcz-map",
    "Plot LCZ map",
    GROUP,
    "Draws an LCZ raster (codes 1-17) as a PNG with the LCZ palette, a legend of only the classes "
    "present, axes in metres and a scale bar.",
    (
        Param("input", "raster", "LCZ map (codes 1-17)"),
        Param("title", "string", "Title", "default: the file name", optional=True),
        Param("output", "output_file", "Plot (PNG)", file_filter="PNG files (*.png)"),
    ),
    (Output("classes", "string", "Classes present"),),
)


@PLOT_LCZ_MAP.implementation
def plot_lcz_map(*, progress: Any, **values: Any) -> dict[str, Any]:
    from ..plot import plot_lcz_raster

    result = plot_lcz_raster(progress=progress, **values)
    return {**result, "classes": ",".join(result["classes"])}


COMPARE_LCZ_MAPS = Step(
    "compare-lcz-maps",
    "Compare with reference LCZ map",
    GROUP,
    "Reports the agreement of an LCZ map (codes 1-17, e.g. a prediction) with a reference LCZ map "
    "on the reference's grid: where the pixel sizes are within 1.5x each reference cell takes the "
    "map's class at its centre, a finer map (e.g. 10 m onto 100 m) gives each cell the class "
    "covering most of its area. Measures: OA, kappa, OA_u (built classes), OA_bu (built vs natural), OA_w "
    "(similarity-weighted), macro F1 and per-class accuracies, with a confusion matrix plot, the area of each class in both maps and an agreement raster. "
    "Without a reference the global LCZ map (Demuzere et al. 2022, filtered, 100 m) is read over "
    "the network, only the map's window. The clipped reference is written styled, so it opens "
    "beside the map.",
    (
        Param("input", "raster", "LCZ map (codes 1-17)"),
        Param(
            "reference", "raster", "Reference LCZ map", "default: the global LCZ map",
            optional=True,
        ),
        Param(
            "reference_coding", "enum", "Reference coding", default="auto", choices=CODINGS,
            advanced=True,
        ),
        Param("output", "output_file", "Agreement report (JSON)", file_filter="JSON files (*.json)"),
        Param(
            "reference_output", "output_raster", "Reference LCZ map (clipped)", optional=True,
        ),
        Param(
            "agreement_output", "output_raster", "Agreement raster",
            "agree, built/built and natural/natural disagreement, built-vs-natural confusion",
            optional=True,
        ),
        Param(
            "confusion_png", "output_file", "Confusion matrix plot",
            optional=True, file_filter="PNG files (*.png)",
        ),
    ),
    (
        *(Output(name, "number", label) for name, label in METRICS.items()),
        Output("aggregation", "string", "How the map was brought onto the reference grid"),
        Output("class_areas", "json", "Area per class in each map, km2 (JSON)"),
    ),
)  # fmt: skip


@COMPARE_LCZ_MAPS.implementation
def compare_lcz_maps(*, reference: str | None, progress: Any, **values: Any) -> dict[str, Any]:
    from ..compare import GLOBAL_LCZ_MAP
    from ..compare import compare_lcz_maps as compare

    return compare(reference=reference or GLOBAL_LCZ_MAP, progress=progress, **values)
