"""lcz:creategrid: a grid of cells aligned to the embeddings, each with its split."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
)

from .base import LczAlgorithm
from .parameters import (
    add_embedding_parameters,
    add_split_parameters,
    embedding_arguments,
    split_arguments,
)

COUNTS = ("cells", "train_cells", "val_cells", "test_cells", "excluded_cells")


class CreateGrid(LczAlgorithm):
    algorithm_id = "creategrid"
    display_name = "Create grid"
    group_name = "Training data"
    help_text = (
        "Lays a grid of square cells over an extent of the embeddings, aligned to their pixels "
        "(default 32 px = 320 m at 10 m, the So2Sat LCZ42 patch; 64 px tiles for segmentation), and "
        "assigns each cell to train, val or test: random, spatial blocks, stripes, a checkerboard, or "
        "a polygon layer with a split field. A buffer keeps val/test cells away from train cells. "
        "The same inputs and seed give the same split."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        add_embedding_parameters(self)
        self.addParameter(
            QgsProcessingParameterNumber(
                "CELL_SIZE", "Cell size (pixels)", defaultValue=32, minValue=1
            )
        )
        add_split_parameters(self)
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT", "Grid", type=QgsProcessing.TypeVectorPolygon
            )
        )
        for name in COUNTS:
            self.addOutput(QgsProcessingOutputNumber(name.upper(), name.replace("_", " ")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        arguments = [
            *embedding_arguments(self, parameters, context),
            "--cell-size", self.parameterAsInt(parameters, "CELL_SIZE", context),
            *split_arguments(self, parameters, context),
            "--output", output,
        ]  # fmt: skip
        result = self.run_core("create-grid", arguments, feedback)
        return {"OUTPUT": result["output"], **{name.upper(): result[name] for name in COUNTS}}
