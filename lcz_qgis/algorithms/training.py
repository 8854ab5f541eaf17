"""The two training algorithms share their parameters: run folder, dataset and training options."""

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import LczAlgorithm
from .parameters import DEVICES, is_set

CLASS_WEIGHTINGS = ["sqrt", "balanced", "none"]
INTEGER = QgsProcessingParameterNumber.Integer
# parameter id, description, kind, default (the core's default)
NUMBERS = [
    ("EPOCHS", "Maximum epochs", QgsProcessingParameterNumber.Integer, 30),
    ("BATCH_SIZE", "Batch size", QgsProcessingParameterNumber.Integer, 64),
    ("LEARNING_RATE", "AdamW peak learning rate", QgsProcessingParameterNumber.Double, 0.002),
    ("PATIENCE", "Early stopping patience (epochs)", QgsProcessingParameterNumber.Integer, 5),
    ("WIDTH", "Channels of the first stage", QgsProcessingParameterNumber.Integer, 16),
    ("SEED", "Random seed", QgsProcessingParameterNumber.Integer, 0),
]


class TrainingAlgorithm(LczAlgorithm):
    """Subclasses set `command` and the texts."""

    group_name = "Models"
    command = ""

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(
            QgsProcessingParameterFile(
                "DATASET",
                "Dataset folder (Sample labelled patches)",
                behavior=QgsProcessingParameterFile.Folder,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "EXPERIMENT", "Experiment file (TOML, optional; the options below override it)",
                optional=True, fileFilter="TOML files (*.toml)",
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterString(
                "ARCHITECTURE", "Architecture (empty: the default)", optional=True
            )
        )
        for name, description, kind, default in NUMBERS:
            self.addParameter(
                QgsProcessingParameterNumber(
                    name, description, type=kind, defaultValue=default, minValue=0
                )
            )
        self.addParameter(
            QgsProcessingParameterEnum(
                "CLASS_WEIGHTING", "Class weighting", CLASS_WEIGHTINGS, defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "AUGMENT", "Flip and rot90 augmentation", defaultValue=True
            )
        )
        self.addParameter(QgsProcessingParameterEnum("DEVICE", "Device", DEVICES, defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Run folder"))
        self.addOutput(QgsProcessingOutputFile("MODEL", "Model file"))
        self.addOutput(QgsProcessingOutputString("METRICS", "Validation and test metrics (JSON)"))
        self.addOutput(QgsProcessingOutputNumber("TEST_OA", "Test overall accuracy"))
        self.addOutput(QgsProcessingOutputNumber("BEST_EPOCH", "Best epoch"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        arguments = [
            "--dataset", self.parameterAsFile(parameters, "DATASET", context),
            "--output", self.parameterAsString(parameters, "OUTPUT", context),
        ]  # fmt: skip
        experiment = is_set(parameters, "EXPERIMENT")
        if experiment:
            arguments += ["--experiment", self.parameterAsFile(parameters, "EXPERIMENT", context)]
        if is_set(parameters, "ARCHITECTURE"):
            arguments += [
                "--architecture",
                self.parameterAsString(parameters, "ARCHITECTURE", context),
            ]
        options = [
            (
                name,
                (self.parameterAsInt if kind == INTEGER else self.parameterAsDouble)(
                    parameters, name, context
                ),
                default,
            )
            for name, _, kind, default in NUMBERS
        ] + [
            (
                "CLASS_WEIGHTING",
                CLASS_WEIGHTINGS[self.parameterAsEnum(parameters, "CLASS_WEIGHTING", context)],
                "sqrt",
            ),
            ("AUGMENT", str(self.parameterAsBool(parameters, "AUGMENT", context)).lower(), "true"),
            ("DEVICE", DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)], "auto"),
        ]
        for name, value, default in options:
            # with an experiment file only the options changed from their defaults override it
            if not experiment or value != default:
                arguments += ["--" + name.lower().replace("_", "-"), value]
        result = self.run_core(self.command, arguments, feedback)
        return {
            "OUTPUT": result["run_folder"],
            "MODEL": result["model"],
            "METRICS": self.as_json(result["metrics"]),
            "TEST_OA": result["metrics"].get("test", {}).get("oa"),
            "BEST_EPOCH": result["best_epoch"],
        }
