"""lcz:predictlczmap: an LCZ map and a confidence raster from a model over embeddings."""

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .base import LczAlgorithm
from .parameters import DEVICES, add_embedding_parameters, embedding_arguments


class PredictLczMap(LczAlgorithm):
    algorithm_id = "predictlczmap"
    display_name = "Predict LCZ map"
    group_name = "Models"
    help_text = (
        "Maps LCZ over an embedding raster (or an extent of it, drawn on the canvas or taken from a "
        "layer) with a trained model, window by window (memory does not "
        "grow with the extent): a styled LCZ GeoTIFF (0 where the embeddings are missing) and a "
        "confidence GeoTIFF (the winning class probability). The model refuses embeddings whose "
        "band count does not match the one it was trained on. A patch classifier labels each "
        "output pixel from the patch around it; Stride sets the output pixel in input pixels "
        "(default: the patch size)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(
            QgsProcessingParameterFile("MODEL", "Model file", fileFilter="Models (*.safetensors)")
        )
        add_embedding_parameters(self)
        self.addParameter(
            QgsProcessingParameterNumber(
                "STRIDE", "Stride (pixels, 0: default)", defaultValue=0, minValue=0
            )
        )
        self.addParameter(QgsProcessingParameterEnum("DEVICE", "Device", DEVICES, defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "LCZ map"))
        self.addParameter(QgsProcessingParameterRasterDestination("CONFIDENCE", "Confidence"))
        self.addOutput(QgsProcessingOutputString("CLASS_COUNTS", "Pixels per class (JSON)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        arguments = [
            "--model", self.parameterAsFile(parameters, "MODEL", context),
            *embedding_arguments(self, parameters, context),
            "--device", DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            "--output", self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            "--confidence", self.parameterAsOutputLayer(parameters, "CONFIDENCE", context),
        ]  # fmt: skip
        stride = self.parameterAsInt(parameters, "STRIDE", context)
        if stride:
            arguments += ["--stride", stride]
        result = self.run_core("predict", arguments, feedback)
        return {
            "OUTPUT": result["output"],
            "CONFIDENCE": result["confidence"],
            "CLASS_COUNTS": self.as_json(result["class_counts"]),
        }
