"""The base of every LCZ algorithm: ids, help and the hand-over of one step to the worker."""

import json

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException

from ..worker import run_core


class LczAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set `algorithm_id`, `display_name`, `group_name`, `help_text` and implement
    `initAlgorithm` and `processAlgorithm` (translate parameters, call `run_core`, return outputs)."""

    algorithm_id = ""
    display_name = ""
    group_name = ""
    help_text = ""

    def name(self):
        return self.algorithm_id

    def displayName(self):  # noqa: N802 (QGIS API)
        return self.display_name

    def group(self):
        return self.group_name

    def groupId(self):  # noqa: N802 (QGIS API)
        return self.group_name.lower().replace(" ", "")

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return self.help_text

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def run_core(self, command, arguments, feedback):
        """Run one core command in the worker and return its outputs."""
        return run_core(command, arguments, feedback)

    @staticmethod
    def as_json(value):
        """A structured worker result as a string output."""
        return json.dumps(value)

    def extent_arguments(self, parameters, name, context):
        """['--extent', 'xmin,ymin,xmax,ymax', '--extent-crs', crs] or [] when not set."""
        if parameters.get(name) in (None, ""):
            return []
        extent = self.parameterAsExtent(parameters, name, context)
        if extent.isNull() or extent.isEmpty():
            return []
        crs = self.parameterAsExtentCrs(parameters, name, context)
        values = ",".join(
            repr(v)
            for v in (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
        )
        # the '=' form keeps a negative first coordinate from reading as an option
        arguments = [f"--extent={values}"]
        if crs.isValid():
            arguments.append(f"--extent-crs={crs.authid() or crs.toWkt()}")
        return arguments

    def raster_source(self, parameters, name, context):
        """The file (or GDAL path) behind a raster layer parameter."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(
                f"{name}: not a raster layer GDAL can read; choose a raster file"
            )
        return layer.source()
