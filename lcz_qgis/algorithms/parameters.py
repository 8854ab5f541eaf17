"""Spec parameters as QGIS parameter definitions, and dialog values as the worker's arguments.

One function per direction, each a table over the spec's kinds: the QGIS-only knowledge of the
plugin (which widget shows a kind, how a layer becomes a path the worker can read).
"""

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

# a second parameter for sources that are folders (zarr stores, tile folders, more datasets)
FOLDER_SUFFIX = "_FOLDER"
MORE_PREFIX = "MORE_"
BOOLEANS = ("true", "false")
RESULTS = {
    "number": QgsProcessingOutputNumber,
    "string": QgsProcessingOutputString,
    "json": QgsProcessingOutputString,
    "file": QgsProcessingOutputFile,
    "html": QgsProcessingOutputHtml,
    "folder": QgsProcessingOutputFolder,
    "raster": QgsProcessingOutputRasterLayer,
    "vector": QgsProcessingOutputVectorLayer,
}


class _PathWithoutLoading:
    """Accepts the path of an existing file without loading it as a layer.

    QGIS checks a layer parameter by loading the layer (qgis_process checks every parameter
    so), and GDAL then writes the layer's statistics as an .aux.xml beside the user's file. The
    worker reads the file itself and says what is wrong with it."""

    def checkValueIsAcceptable(self, value, context=None):  # noqa: N802 (QGIS API)
        if isinstance(value, str) and os.path.exists(value.split("|")[0]):
            return True
        return super().checkValueIsAcceptable(value, context)


class RasterLayerParameter(_PathWithoutLoading, QgsProcessingParameterRasterLayer):
    """A raster layer parameter that leaves a file's folder untouched."""


class VectorLayerParameter(_PathWithoutLoading, QgsProcessingParameterVectorLayer):
    """A vector layer parameter that leaves a file's folder untouched."""


class MapLayerParameter(_PathWithoutLoading, QgsProcessingParameterMapLayer):
    """A map layer parameter that leaves a file's folder untouched."""


def is_part(param, step):
    """Whether a parameter is filled from another one in QGIS (an extent's or a point's CRS)."""
    return (
        param.kind == "crs"
        and param.parent
        and step.param(param.parent).kind in ("extent", "point")
    )


def label(param):
    """The dialog label; options inherited from a settings file say so."""
    if param.inherit_from:
        default = param.describe_default() or "the task's default"
        return f"{param.label} (empty: from the {param.inherit_from} file, else {default})"
    return param.label


def definitions(param, step):
    """The QGIS parameter definitions of one spec parameter (none, one or two)."""
    if is_part(param, step):
        return []
    name, text = param.qgis_name, label(param)
    optional = param.optional or param.default is not None or bool(param.inherit_from)
    default = None if param.inherit_from else param.default
    kind = param.kind
    if kind == "embeddings":
        made = [
            RasterLayerParameter(name, text, optional=True),
            QgsProcessingParameterFile(
                name + FOLDER_SUFFIX,
                f"{text}: zarr store or folder of tiles (instead of a raster)",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            ),
        ]
    elif kind == "raster":
        made = [RasterLayerParameter(name, text, optional=optional)]
    elif kind == "vector":
        made = [VectorLayerParameter(name, text, optional=optional)]
    elif kind == "labels":
        made = [MapLayerParameter(name, text, optional=optional)]
    elif kind in ("file", "folder"):
        behavior = (
            QgsProcessingParameterFile.Folder
            if kind == "folder"
            else QgsProcessingParameterFile.File
        )
        made = [
            QgsProcessingParameterFile(
                name, text, behavior=behavior, fileFilter=param.file_filter or "All files (*)",
                optional=optional,
            )
        ]  # fmt: skip
        if param.multiple:
            made.append(
                QgsProcessingParameterString(
                    MORE_PREFIX + name, f"More: {text} (separated by ';')", optional=True
                )
            )
    elif kind == "extent":
        made = [QgsProcessingParameterExtent(name, text, optional=optional)]
    elif kind == "point":
        made = [QgsProcessingParameterPoint(name, text, optional=optional)]
    elif kind == "crs":
        made = [QgsProcessingParameterCrs(name, text, defaultValue=default, optional=optional)]
    elif kind == "enum":
        index = param.choices.index(default) if default is not None else None
        made = [
            QgsProcessingParameterEnum(
                name, text, list(param.choices), defaultValue=index, optional=optional
            )
        ]
    elif kind in ("int", "float"):
        number = QgsProcessingParameterNumber(
            name,
            text,
            type=QgsProcessingParameterNumber.Integer
            if kind == "int"
            else QgsProcessingParameterNumber.Double,
            defaultValue=default,
            optional=optional,
        )
        if param.minimum is not None:
            number.setMinimum(param.minimum)
        if param.maximum is not None:
            number.setMaximum(param.maximum)
        made = [number]
    elif kind == "bool" and param.inherit_from:  # a check box cannot say "not set"
        made = [QgsProcessingParameterEnum(name, text, list(BOOLEANS), optional=True)]
    elif kind == "bool":
        made = [QgsProcessingParameterBoolean(name, text, defaultValue=default, optional=optional)]
    elif kind == "string":
        made = [QgsProcessingParameterString(name, text, defaultValue=default, optional=optional)]
    elif kind == "field":
        made = [
            QgsProcessingParameterField(
                name, text, defaultValue=default,
                parentLayerParameterName=param.parent.upper(), optional=True,
            )
        ]  # fmt: skip
    elif kind == "band":
        made = [
            QgsProcessingParameterBand(name, text, default, param.parent.upper(), optional=optional)
        ]
    elif kind == "output_raster":
        made = [QgsProcessingParameterRasterDestination(name, text, optional=param.optional)]
    elif kind == "output_vector":
        made = [
            QgsProcessingParameterVectorDestination(
                name, text, type=QgsProcessing.TypeVectorPolygon, optional=param.optional
            )
        ]
    elif kind == "output_file":
        made = [
            QgsProcessingParameterFileDestination(
                name, text, fileFilter=param.file_filter, optional=param.optional
            )
        ]
    elif kind == "output_folder":
        made = [QgsProcessingParameterFolderDestination(name, text, optional=param.optional)]
    else:  # pragma: no cover - the spec refuses unknown kinds
        raise ValueError(kind)
    if param.is_output:
        # an optional output is written by default, unless it is an advanced one
        made[0].setCreateByDefault(not (param.optional and param.advanced))
    for definition in made:
        if param.help:
            definition.setHelp(param.help)
        if param.advanced:
            definition.setFlags(definition.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return made


def result_definition(output):
    """The QGIS output definition of a spec output."""
    return RESULTS[output.kind](output.name.upper(), output.label)


def is_set(parameters, name):
    """Whether the dialog gave a parameter a value."""
    return parameters.get(name) not in (None, "", [])


def given(param, parameters):
    """Whether a spec parameter has a value in the dialog (through any of its QGIS parameters)."""
    name = param.qgis_name
    return is_set(parameters, name) or (
        param.kind == "embeddings" and is_set(parameters, name + FOLDER_SUFFIX)
    )


def layer_path(algorithm, param, parameters, context):
    """The file (GDAL/OGR source) behind a layer parameter, as the worker can read it."""
    name = param.qgis_name
    value = parameters.get(name)
    if isinstance(value, str) and os.path.exists(value.split("|")[0]):
        return value  # a path typed or chained from another algorithm
    read = {
        "raster": algorithm.parameterAsRasterLayer,
        "embeddings": algorithm.parameterAsRasterLayer,
        "vector": algorithm.parameterAsVectorLayer,
        "labels": algorithm.parameterAsLayer,
    }[param.kind]
    layer = read(parameters, name, context)
    if layer is None:
        return str(value)  # a URL or a path the worker will judge
    provider = layer.providerType()
    if provider not in ("gdal", "ogr"):
        raise QgsProcessingException(
            f"{label(param)}: layer '{layer.name()}' is a {provider} layer; save it to a file "
            "(GeoTIFF, GeoPackage) and choose that"
        )
    source = layer.source()
    if "|subset=" in source:
        raise QgsProcessingException(
            f"{label(param)}: layer '{layer.name()}' has a filter; save the filtered features to "
            "a file and choose that"
        )
    return source


def _crs_text(crs):
    """A CRS as the core reads it: its authority id, else its WKT."""
    return crs.authid() or crs.toWkt()


def _companion_crs(param, crs):
    """The --<name>-crs argument that goes with an extent or a point (none for an invalid CRS)."""
    return [f"--{param.name.replace('_', '-')}-crs={_crs_text(crs)}"] if crs.isValid() else []


def worker_values(algorithm, param, parameters, context):
    """The worker's arguments for one spec parameter ([] when not given)."""
    name, kind, flag = param.qgis_name, param.kind, param.flag
    if kind == "embeddings" and is_set(parameters, name + FOLDER_SUFFIX):
        folder = algorithm.parameterAsFile(parameters, name + FOLDER_SUFFIX, context)
        if is_set(parameters, name):
            raise QgsProcessingException(f"{label(param)}: choose a raster or a folder, not both")
        return [f"{flag}={folder}"]
    if not is_set(parameters, name):
        return []
    if kind in ("raster", "vector", "labels", "embeddings"):
        return [f"{flag}={layer_path(algorithm, param, parameters, context)}"]
    if kind in ("file", "folder"):
        values = [algorithm.parameterAsFile(parameters, name, context)]
        if param.multiple and is_set(parameters, MORE_PREFIX + name):
            more = algorithm.parameterAsString(parameters, MORE_PREFIX + name, context)
            values += [v.strip() for v in more.split(";") if v.strip()]
        return [flag, *values]
    if kind == "extent":
        extent = algorithm.parameterAsExtent(parameters, name, context)
        crs = algorithm.parameterAsExtentCrs(parameters, name, context)
        values = ",".join(
            repr(v)
            for v in (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
        )
        # the '=' form keeps a negative first coordinate from reading as an option
        return [f"{flag}={values}", *_companion_crs(param, crs)]
    if kind == "point":
        point = algorithm.parameterAsPoint(parameters, name, context)
        crs = algorithm.parameterAsPointCrs(parameters, name, context)
        return [f"{flag}={point.x()!r},{point.y()!r}", *_companion_crs(param, crs)]
    if kind == "crs":
        crs = algorithm.parameterAsCrs(parameters, name, context)
        return [f"{flag}={_crs_text(crs)}"] if crs.isValid() else []
    if kind == "enum":
        return [flag, param.choices[algorithm.parameterAsEnum(parameters, name, context)]]
    if kind == "int":
        number = algorithm.parameterAsDouble(parameters, name, context)
        return [flag, str(int(number)) if float(number).is_integer() else repr(number)]
    if kind == "float":
        return [flag, repr(algorithm.parameterAsDouble(parameters, name, context))]
    if kind == "bool" and param.inherit_from:
        return [flag, BOOLEANS[algorithm.parameterAsEnum(parameters, name, context)]]
    if kind == "bool":
        return [flag, "true" if algorithm.parameterAsBool(parameters, name, context) else "false"]
    if kind == "band":
        return [flag, str(algorithm.parameterAsInt(parameters, name, context))]
    if kind in ("string", "field"):
        return [f"{flag}={algorithm.parameterAsString(parameters, name, context)}"]
    if kind in ("output_raster", "output_vector"):
        return [f"{flag}={algorithm.parameterAsOutputLayer(parameters, name, context)}"]
    if kind in ("output_file", "output_folder"):
        return [f"{flag}={algorithm.parameterAsFileOutput(parameters, name, context)}"]
    raise ValueError(kind)  # pragma: no cover - the spec refuses unknown kinds
