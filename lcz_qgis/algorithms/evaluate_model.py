"""lcz:evaluatemodel: a model's LCZ accuracy on datasets, with an HTML report."""

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterString,
)

from .base import LczAlgorithm
from .parameters import METRICS, is_set

SPLITS = ["test", "val", "train", "all"]


class EvaluateModel(LczAlgorithm):
    algorithm_id = "evaluatemodel"
    display_name = "Evaluate model"
    group_name = "Models"
    help_text = (
        "Measures a model on one or more datasets: OA, kappa, OA_u, OA_bu, OA_w, macro F1, per-class "
        "producer's and user's accuracy and F1, confusion matrices (counts and normalised), overall "
        "and per city, beside the majority-class baseline. Split 'all' evaluates every sample, e.g. "
        "of a city the model never saw (cross-city transfer). Writes metrics.json, confusion PNGs "
        "and report.html into the output folder."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(
            QgsProcessingParameterFile("MODEL", "Model file", fileFilter="Models (*.safetensors)")
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "DATASET", "Dataset folder", behavior=QgsProcessingParameterFile.Folder
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                "MORE_DATASETS", "More dataset folders (separated by ';')", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterEnum("SPLIT", "Split", SPLITS, defaultValue=0))
        self.addParameter(
            QgsProcessingParameterString(
                "CITIES", "Only these cities (comma-separated)", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Report folder"))
        self.addOutput(QgsProcessingOutputFile("REPORT", "HTML report"))
        self.addOutput(QgsProcessingOutputFile("METRICS_JSON", "Metrics (JSON)"))
        self.addOutput(
            QgsProcessingOutputNumber("MAJORITY_BASELINE_OA", "Majority-class baseline OA")
        )
        for metric in METRICS:
            self.addOutput(QgsProcessingOutputNumber(metric.upper(), metric))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        datasets = [self.parameterAsFile(parameters, "DATASET", context)]
        more = self.parameterAsString(parameters, "MORE_DATASETS", context)
        datasets += [d.strip() for d in more.split(";") if d.strip()]
        arguments = [
            "--model", self.parameterAsFile(parameters, "MODEL", context),
            "--dataset", *datasets,
            "--split", SPLITS[self.parameterAsEnum(parameters, "SPLIT", context)],
            "--output", self.parameterAsString(parameters, "OUTPUT", context),
        ]  # fmt: skip
        if is_set(parameters, "CITIES"):
            arguments += ["--cities", self.parameterAsString(parameters, "CITIES", context)]
        result = self.run_core("evaluate-model", arguments, feedback)
        return {
            "OUTPUT": self.parameterAsString(parameters, "OUTPUT", context),
            "REPORT": result["report"],
            "METRICS_JSON": result["metrics_json"],
            "MAJORITY_BASELINE_OA": result["majority_baseline_oa"],
            **{metric.upper(): result["metrics"][metric] for metric in METRICS},
        }
