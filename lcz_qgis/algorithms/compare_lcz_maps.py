"""lcz:comparelczmaps: agreement of an LCZ map with a reference map (default: the global LCZ map)."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .base import LczAlgorithm
from .parameters import CODINGS, METRICS


class CompareLczMaps(LczAlgorithm):
    algorithm_id = "comparelczmaps"
    display_name = "Compare with reference LCZ map"
    group_name = "LCZ maps"
    help_text = (
        "Reports the agreement of an LCZ map (codes 1-17, e.g. a prediction) with a reference LCZ "
        "map on the reference's grid: the map is aggregated by class mode onto the reference pixels "
        "(e.g. 10 m onto 100 m). Measures: OA, kappa, OA_u (built classes), OA_bu (built vs "
        "natural), OA_w (similarity-weighted), macro F1 and per-class accuracies, with a confusion "
        "matrix plot.\n"
        "Without a reference layer the global LCZ map (Demuzere et al. 2022, filtered, 100 m) is "
        "read over the network, only the map's window. The clipped reference is written styled, "
        "so it opens beside the map."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "LCZ map (codes 1-17)"))
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                "REFERENCE", "Reference LCZ map (default: global LCZ map)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "REFERENCE_CODING", "Reference coding", CODINGS, defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "REFERENCE_OUTPUT", "Reference LCZ map (clipped)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", "Agreement report", fileFilter="JSON files (*.json)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "CONFUSION", "Confusion matrix plot", fileFilter="PNG files (*.png)"
            )
        )
        for metric in METRICS:
            self.addOutput(QgsProcessingOutputNumber(metric.upper(), metric))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        arguments = [
            "--input", self.raster_source(parameters, "INPUT", context),
            "--output", self.parameterAsFileOutput(parameters, "OUTPUT", context),
            "--reference-coding",
            CODINGS[self.parameterAsEnum(parameters, "REFERENCE_CODING", context)],
            "--reference-output", self.parameterAsOutputLayer(parameters, "REFERENCE_OUTPUT", context),
            "--confusion-png", self.parameterAsFileOutput(parameters, "CONFUSION", context),
        ]  # fmt: skip
        if parameters.get("REFERENCE") not in (None, ""):
            arguments += ["--reference", self.raster_source(parameters, "REFERENCE", context)]
        result = self.run_core("compare-lcz-maps", arguments, feedback)
        return {
            "OUTPUT": result["output"],
            "REFERENCE_OUTPUT": result["reference_output"],
            "CONFUSION": result["confusion_png"],
            **{metric.upper(): result[metric] for metric in METRICS},
        }
