"""The one LCZ algorithm class: parameters, checks, help and the worker call, all from a step spec."""

import html
import json
import os

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterNumber,
)

from ..icon import ICON_PATH, lcz_icon
from ..worker import run_core
from .parameters import (
    definitions,
    given,
    is_part,
    label,
    result_definition,
    worker_values,
)


class LczAlgorithm(QgsProcessingAlgorithm):
    """An algorithm made from `step`, a core step spec (subclasses only set it)."""

    step = None

    def name(self):
        return self.step.algorithm_id

    def displayName(self):  # noqa: N802 (QGIS API)
        return self.step.title

    def group(self):
        return self.step.group

    def groupId(self):  # noqa: N802 (QGIS API)
        return self.step.group.lower().replace(" ", "")

    def icon(self):
        return lcz_icon()

    def svgIconPath(self):  # noqa: N802 (QGIS API)
        return ICON_PATH

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return help_html(self.step)

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        for param in self.step.params:
            for definition in definitions(param, self.step):
                self.addParameter(definition)
        for output in self.step.outputs:
            self.addOutput(result_definition(output))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        paths = {p.qgis_name for p in self.step.params if p.is_input_path}
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            if definition.name() in paths and is_existing_path(value):
                continue  # e.g. a zarr store or an .h5 file: the worker reads what QGIS cannot
            if not definition.checkValueIsAcceptable(value, context):
                return False, refusal(definition, value)
        # outputs always have a value in QGIS (a temporary file when left empty)
        present = {
            p.name: True if p.is_output or given(p, parameters) else None for p in self.step.params
        }
        missing = self.step.missing_requirements(present)
        if missing:
            return False, missing
        for param in self.step.params:
            if param.kind == "extent" and present.get(param.name):
                extent = self.parameterAsExtent(parameters, param.qgis_name, context)
                if extent.isEmpty() or extent.width() <= 0 or extent.height() <= 0:
                    return False, f"{label(param)}: the extent has no area; draw or choose one"
                crs = self.parameterAsExtentCrs(parameters, param.qgis_name, context)
                if not crs.isValid():
                    return False, f"{label(param)}: the extent has no valid CRS"
        return True, ""

    def worker_arguments(self, parameters, context):
        """The worker's command-line arguments for the dialog's values."""
        arguments = []
        for param in self.step.params:
            if not is_part(param, self.step):
                arguments += worker_values(self, param, parameters, context)
        return arguments

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        arguments = self.worker_arguments(parameters, context)
        labels = {p.name: label(p) for p in self.step.params}
        result = run_core(self.step.name, arguments, feedback, labels)
        outputs = {}
        for param in self.step.params:
            if param.is_output and result.get(param.name):
                outputs[param.qgis_name] = result[param.name]
                style_on_load(result[param.name], param.label, context)
        for output in self.step.outputs:
            value = result.get(output.name)
            outputs[output.name.upper()] = json.dumps(value) if output.kind == "json" else value
        return outputs


def is_existing_path(value):
    """Whether a parameter value is the path of an existing file or folder."""
    return isinstance(value, str) and os.path.exists(value.split("|")[0])


def refusal(definition, value):
    """Why the dialog refuses a value, naming the parameter by its label."""
    text = definition.description()
    if value in (None, ""):
        return f"{text} is required"
    if isinstance(definition, QgsProcessingParameterNumber):
        return f"{text}: {value} is outside {definition.minimum():g} to {definition.maximum():g}"
    if isinstance(value, str) and not is_existing_path(value):
        return f"{text}: {value} does not exist; choose an existing file or layer"
    return f"{text}: {value} cannot be read as this kind of input"


def help_html(step):
    """The help panel: the step's help, then each parameter's label, help and default."""
    rows = []
    for param in step.params:
        if is_part(param, step):
            continue
        default = (
            f" Default: {html.escape(param.describe_default())}."
            if param.default is not None
            else ""
        )
        choices = f" One of: {html.escape(', '.join(param.choices))}." if param.choices else ""
        text = html.escape(param.help.rstrip(".") + ".") if param.help else ""
        rows.append(f"<li><b>{html.escape(label(param))}</b>: {text}{choices}{default}</li>")
    return f"<p>{html.escape(step.help)}</p><ul>{''.join(rows)}</ul>"


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Applies the `.qml` style the worker wrote beside an output when Processing loads it."""

    def __init__(self, style):
        super().__init__()
        self.style = style

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        message, ok = layer.loadNamedStyle(self.style)
        if not ok:
            feedback.reportError(f"could not apply the style {self.style}: {message}")
        layer.triggerRepaint()


# Processing keeps a raw pointer to post-processors: hold the Python objects until QGIS is done
_POST_PROCESSORS = []


def style_on_load(path, name, context):
    """Name a loaded output layer and style it with its sidecar `.qml` (where the worker wrote one)."""
    if not context.willLoadLayerOnCompletion(path):
        return
    details = context.layerToLoadOnCompletionDetails(path)
    details.name = name
    style = os.path.splitext(path)[0] + ".qml"
    if os.path.exists(style):
        processor = StyleOnLoad(style)
        _POST_PROCESSORS.append(processor)
        details.setPostProcessor(processor)
