"""lcz:plotlczmap: an LCZ raster -> a PNG with the LCZ palette and a legend of the classes present."""

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import LczAlgorithm


class PlotLczMap(LczAlgorithm):
    algorithm_id = "plotlczmap"
    display_name = "Plot LCZ map"
    group_name = "LCZ maps"
    help_text = (
        "Draws an LCZ raster (codes 1-17, e.g. the output of Import LCZ map) as a PNG with the "
        "official LCZ colours, a legend of only the classes present, axes in metres and a scale bar "
        "(degrees for a geographic CRS). Large rasters are read decimated."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "LCZ raster (codes 1-17)"))
        self.addParameter(
            QgsProcessingParameterString("TITLE", "Title (default: file name)", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination("OUTPUT", "Plot", fileFilter="PNG files (*.png)")
        )
        self.addOutput(QgsProcessingOutputString("CLASSES", "Classes present"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        arguments = [
            "--input",
            self.raster_source(parameters, "INPUT", context),
            "--output",
            self.parameterAsFileOutput(parameters, "OUTPUT", context),
        ]
        title = self.parameterAsString(parameters, "TITLE", context)
        if title:
            arguments += ["--title", title]
        result = self.run_core("plot-lcz-map", arguments, feedback)
        return {"OUTPUT": result["output"], "CLASSES": ",".join(result["classes"])}
