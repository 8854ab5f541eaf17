"""Steps on LCZ maps: import any LCZ raster, clip the global LCZ map, plot one, compare one with a
reference map."""

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


GLOBAL_LCZ_MAP = Step(
    "global-lcz-map",
    "Global LCZ map",
    GROUP,
    "Clips the global LCZ map (Demuzere et al. 2022, v3: 100 m, nominal year 2018, "
    "Gaussian-filtered; CC BY 4.0) to an extent (drawn on the canvas or a layer's, in any CRS) "
    "and writes it as a styled LCZ GeoTIFF (codes 1-17, 0 = nodata, the LCZ colours and a legend "
    "of the classes present); optionally reprojects it (nearest neighbour) to a CRS and pixel "
    "size. The map is read over the network from its Cloud Optimized GeoTIFF "
    "(lcz-generator.rub.de), only the blocks the extent needs; a local copy (lcz_filter_v3.tif, "
    "Zenodo record 8419340) or another URL can be given as the source, or named once in the "
    "environment variable LCZ_GLOBAL_LCZ_MAP, which Compare with reference LCZ map also reads.",
    (
        Param(
            "extent", "extent", "Extent", "the area to clip, e.g. drawn on the canvas or a layer's",
            group="Extent",
        ),
        Param(
            "extent_crs", "crs", "Extent CRS", "CRS of the extent (default: the map's, EPSG:4326)",
            optional=True, parent="extent", group="Extent",
        ),
        Param(
            "source", "file", "Global LCZ map (path or URL)",
            "a copy of the filtered map or its URL (default: LCZ_GLOBAL_LCZ_MAP, else the COG online)",
            optional=True, advanced=True, file_filter="GeoTIFF files (*.tif *.tiff)",
        ),
        Param("target_crs", "crs", "Reproject to CRS", "nearest neighbour", optional=True),
        Param(
            "resolution", "float", "Pixel size in the target CRS units",
            "default: the map's pixel size (about 100 m)", optional=True, minimum=0.0,
        ),
        Param("output", "output_raster", "Global LCZ map", "uint8 GeoTIFF, codes 1-17, 0 = nodata"),
    ),
    (
        Output("class_counts", "json", "Pixels per class (JSON)"),
        Output("source_used", "string", "Global LCZ map read"),
    ),
)  # fmt: skip


@GLOBAL_LCZ_MAP.implementation
def global_lcz_map(*, progress: Any, **values: Any) -> dict[str, Any]:
    from ..lczmap import global_lcz_map as clip

    result = clip(progress=progress, **values)
    return {**result, "source_used": result.pop("source")}


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
    "Without a reference the global LCZ map (Demuzere et al. 2022, filtered, 100 m) is read as "
    "Global LCZ map reads it: over the network, only the map's window, or from the copy named by "
    "the environment variable LCZ_GLOBAL_LCZ_MAP. The clipped reference is written styled, so it "
    "opens beside the map.",
    (
        Param("input", "raster", "LCZ map (codes 1-17)"),
        Param(
            "reference", "raster", "Reference LCZ map", "default: the global LCZ map",
            optional=True,
        ),
        Param(
            "reference_coding", "enum", "Reference coding",
            "of a given reference (the global LCZ map is 1-17)", default="auto", choices=CODINGS,
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
def compare_lcz_maps(*, progress: Any, **values: Any) -> dict[str, Any]:
    from ..compare import compare_lcz_maps as compare

    return compare(progress=progress, **values)
