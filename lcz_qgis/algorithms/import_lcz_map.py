"""lcz:importlczmap: any LCZ raster -> a styled 1-17 GeoTIFF."""

import json

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import LczAlgorithm
from .parameters import CODINGS


class ImportLczMap(LczAlgorithm):
    algorithm_id = "importlczmap"
    display_name = "Import LCZ map"
    group_name = "LCZ maps"
    help_text = (
        "Translates any LCZ raster (the global LCZ map, an LCZ Generator output, an older WUDAPT "
        "map with 101-107 for A-G, a European LCZ map with NaN nodata...) into a uint8 GeoTIFF "
        "with codes 1-17 (0 = nodata), the official LCZ colours and a legend of the classes present.\n"
        "Coding: 'auto' picks 1-17 or 1-10/101-107 from the values present and refuses values that "
        "neither explains; give a class mapping such as '0:17,255:0' for other codings "
        "(target 1-17 or A-G, 0 = nodata).\n"
        "Optionally clips to an extent and reprojects (nearest neighbour) to a CRS and pixel size."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "LCZ raster"))
        self.addParameter(
            QgsProcessingParameterBand(
                "BAND", "Band with the LCZ classes", 1, "INPUT", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("CODING", "Class coding", CODINGS, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterString("MAPPING", "Class mapping 'from:to,...'", optional=True)
        )
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Clip to extent", optional=True))
        self.addParameter(
            QgsProcessingParameterCrs("TARGET_CRS", "Reproject to CRS", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "RESOLUTION",
                "Pixel size in the target CRS units",
                type=QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "LCZ map"))
        self.addOutput(QgsProcessingOutputString("CODING_USED", "Coding used"))
        self.addOutput(QgsProcessingOutputString("CLASS_COUNTS", "Pixels per class (JSON)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        arguments = [
            "--input",
            self.raster_source(parameters, "INPUT", context),
            "--output",
            output,
            "--band",
            self.parameterAsInt(parameters, "BAND", context) or 1,
            "--coding",
            CODINGS[self.parameterAsEnum(parameters, "CODING", context)],
        ]
        mapping = self.parameterAsString(parameters, "MAPPING", context)
        if mapping:
            arguments += ["--mapping", mapping]
        arguments += self.extent_arguments(parameters, "EXTENT", context)
        crs = self.parameterAsCrs(parameters, "TARGET_CRS", context)
        if parameters.get("TARGET_CRS") not in (None, "") and crs.isValid():
            arguments += ["--target-crs", crs.authid() or crs.toWkt()]
        if parameters.get("RESOLUTION") not in (None, ""):
            arguments += ["--resolution", self.parameterAsDouble(parameters, "RESOLUTION", context)]
        result = self.run_core("import-lcz-map", arguments, feedback)
        return {
            "OUTPUT": result["output"],
            "CODING_USED": result["coding"],
            "CLASS_COUNTS": json.dumps(result["class_counts"]),
        }
