"""lcz:samplepatches: labelled embedding patches (or tiles) split leak-free into a dataset folder."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .base import LczAlgorithm
from .parameters import (
    add_embedding_parameters,
    add_label_parameters,
    add_split_parameters,
    embedding_arguments,
    is_set,
    label_arguments,
    split_arguments,
)

KINDS = ["patches", "tiles"]


class SamplePatches(LczAlgorithm):
    algorithm_id = "samplepatches"
    display_name = "Sample labelled patches"
    group_name = "Training data"
    help_text = (
        "Cuts embedding patches (32 x 32 px by default, the So2Sat LCZ42 patch) or segmentation "
        "tiles (64 x 64 px, labels rasterised, 0 = unlabelled) where labels exist, splits them into "
        "train/val/test without spatial leakage (see Create grid) and writes a dataset folder "
        "(zarr + manifest.json) that training reads without the original rasters.\n"
        "Labels: polygons or points with a class field (codings 1-17, 101-107, letters A-G), a "
        "WUDAPT training-area KMZ/KML (one folder per class), So2Sat LCZ42 locations (_geo.h5 "
        "beside the labelled .h5) or an LCZ raster. Several cities: give a city catalogue (TOML).\n"
        "Patches with more missing pixels than allowed are dropped; classes with fewer samples "
        "than the minimum count are named in the log."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        # optional: a city catalogue names the embeddings and labels instead
        add_embedding_parameters(self, optional=True)
        add_label_parameters(self, optional=True)
        self.addParameter(
            QgsProcessingParameterNumber(
                "EPSG", "So2Sat: EPSG code of the city", optional=True, minValue=1
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "CITIES", "City catalogue (TOML), instead of embeddings and labels", optional=True,
                fileFilter="TOML files (*.toml)",
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterString(
                "CITY", "Cities of the catalogue (comma-separated)", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterEnum("KIND", "Dataset kind", KINDS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterNumber(
                "PATCH_SIZE",
                "Patch size in pixels (0: 32 for patches, 64 for tiles)",
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_SHARE", "Share of a patch its class must cover",
                type=QgsProcessingParameterNumber.Double, optional=True, minValue=0.0, maxValue=1.0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "MAX_MISSING", "Largest share of missing pixels kept",
                type=QgsProcessingParameterNumber.Double, defaultValue=0.5, minValue=0.0, maxValue=1.0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_COUNT", "Name classes with fewer samples per split", defaultValue=10
            )
        )
        add_split_parameters(self)
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Dataset folder"))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "GRID_OUTPUT",
                "Sampled cells by split",
                type=QgsProcessing.TypeVectorPolygon,
                optional=True,
            )
        )
        self.addOutput(QgsProcessingOutputNumber("COUNT", "Samples written"))
        self.addOutput(
            QgsProcessingOutputString("CLASS_COUNTS", "Samples per split and class (JSON)")
        )
        self.addOutput(
            QgsProcessingOutputString("RARE_CLASSES", "Classes below the minimum count (JSON)")
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        if is_set(parameters, "CITIES"):
            arguments = ["--cities", self.parameterAsFile(parameters, "CITIES", context)]
            if is_set(parameters, "CITY"):
                arguments += ["--city", self.parameterAsString(parameters, "CITY", context)]
        else:
            arguments = [
                *embedding_arguments(self, parameters, context),
                *label_arguments(self, parameters, context),
            ]
            if is_set(parameters, "EPSG"):
                arguments += ["--epsg", self.parameterAsInt(parameters, "EPSG", context)]
        arguments += [
            "--kind", KINDS[self.parameterAsEnum(parameters, "KIND", context)],
            "--max-missing", self.parameterAsDouble(parameters, "MAX_MISSING", context),
            "--min-count", self.parameterAsInt(parameters, "MIN_COUNT", context),
            *split_arguments(self, parameters, context),
            "--output", self.parameterAsString(parameters, "OUTPUT", context),
        ]  # fmt: skip
        if self.parameterAsInt(parameters, "PATCH_SIZE", context):
            arguments += ["--patch-size", self.parameterAsInt(parameters, "PATCH_SIZE", context)]
        if is_set(parameters, "MIN_SHARE"):
            arguments += ["--min-share", self.parameterAsDouble(parameters, "MIN_SHARE", context)]
        grid = self.parameterAsOutputLayer(parameters, "GRID_OUTPUT", context)
        if grid:
            arguments += ["--grid-output", grid]
        result = self.run_core("sample-patches", arguments, feedback)
        return {
            "OUTPUT": result["output"],
            "GRID_OUTPUT": result.get("grid"),
            "COUNT": result["count"],
            "CLASS_COUNTS": self.as_json(result["class_counts"]),
            "RARE_CLASSES": self.as_json(result["rare_classes"]),
        }
