"""lcz:predictlczmap: an LCZ map and a confidence raster from a model over embeddings."""

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .base import LczAlgorithm
from .parameters import SOURCE_KINDS

DEVICES = ["auto", "cpu", "cuda"]


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
        self.addParameter(
            QgsProcessingParameterFile(
                "EMBEDDINGS", "Embeddings (GeoTIFF, VRT, zarr store or folder of tiles)",
                behavior=QgsProcessingParameterFile.File,
                fileFilter="Embedding rasters (*.tif *.tiff *.vrt *.zarr);;All files (*)",
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterEnum(
                "SOURCE_KIND", "Embedding source kind", SOURCE_KINDS, defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(
                "EXTENT", "Extent (default: the whole raster)", optional=True
            )
        )
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
            f"--embeddings={self.parameterAsFile(parameters, 'EMBEDDINGS', context)}",
            "--source-kind", SOURCE_KINDS[self.parameterAsEnum(parameters, "SOURCE_KIND", context)],
            "--device", DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)],
            "--output", self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            "--confidence", self.parameterAsOutputLayer(parameters, "CONFIDENCE", context),
        ]  # fmt: skip
        arguments += self.extent_arguments(parameters, "EXTENT", context)
        stride = self.parameterAsInt(parameters, "STRIDE", context)
        if stride:
            arguments += ["--stride", stride]
        result = self.run_core("predict", arguments, feedback)
        return {
            "OUTPUT": result["output"],
            "CONFIDENCE": result["confidence"],
            "CLASS_COUNTS": self.as_json(result["class_counts"]),
        }
