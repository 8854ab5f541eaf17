"""lcz:rasterizelabels: LCZ labels burnt onto the embeddings' pixel grid as a styled LCZ raster."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterRasterDestination,
)

from .base import LczAlgorithm
from .parameters import (
    add_embedding_parameters,
    add_label_parameters,
    embedding_arguments,
    label_arguments,
)

LABEL_KINDS = ["auto", "polygons", "kml", "raster"]


class RasterizeLabels(LczAlgorithm):
    algorithm_id = "rasterizelabels"
    display_name = "Rasterize labels"
    group_name = "Training data"
    help_text = (
        "Burns LCZ labels (polygons with a class field, a WUDAPT KMZ/KML, or an LCZ raster as weak "
        "labels) onto the pixel grid of the embeddings over an extent: the label raster that "
        "segmentation tiles are cut from. Unlabelled pixels are 0. The output is a styled LCZ "
        "GeoTIFF."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        add_embedding_parameters(self)
        add_label_parameters(self, LABEL_KINDS)
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Label raster"))
        self.addOutput(QgsProcessingOutputNumber("LABELLED_PIXELS", "Labelled pixels"))
        self.addOutput(QgsProcessingOutputString("CLASS_PIXELS", "Pixels per class (JSON)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        arguments = [
            *embedding_arguments(self, parameters, context),
            *label_arguments(self, parameters, context, LABEL_KINDS),
            "--output", self.parameterAsOutputLayer(parameters, "OUTPUT", context),
        ]  # fmt: skip
        result = self.run_core("rasterize-labels", arguments, feedback)
        return {
            "OUTPUT": result["output"],
            "LABELLED_PIXELS": result["labelled_pixels"],
            "CLASS_PIXELS": self.as_json(result["class_pixels"]),
        }
