"""The models shipped with the plugin (`*.model3` here), offered as algorithms of the provider."""

from pathlib import Path

from qgis.core import QgsProcessingModelAlgorithm

from ..icon import ICON_PATH, lcz_icon

MODELS_DIR = Path(__file__).resolve().parent


class ShippedModel(QgsProcessingModelAlgorithm):
    """A model read from a `.model3` file; its id is the file name without underscores."""

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)
        if not self.fromFile(str(self.path)):
            raise ValueError(f"{self.path} is not a valid QGIS model")
        self._order_parameters()

    def _order_parameters(self):
        # a .model3 file lists the inputs by name: show them as drawn, left to right, outputs last
        def position(definition):
            if definition.isDestination():
                child_id, output = definition.name().split(":", 1)
                point = self.childAlgorithm(child_id).modelOutput(output).position()
            else:
                point = self.parameterComponent(definition.name()).position()
            return definition.isDestination(), point.x(), point.y()

        ordered = [d.clone() for d in sorted(self.parameterDefinitions(), key=position)]
        for definition in ordered:
            self.removeParameter(definition.name())
        for definition in ordered:
            self.addParameter(definition)

    def name(self):
        return self.path.stem.replace("_", "")

    def icon(self):
        return lcz_icon()

    def svgIconPath(self):  # noqa: N802 (QGIS API)
        return ICON_PATH

    def createInstance(self):  # noqa: N802 (QGIS API)
        return ShippedModel(self.path)


def shipped_models():
    """One algorithm per `.model3` file shipped in this folder."""
    return [ShippedModel(path) for path in sorted(MODELS_DIR.glob("*.model3"))]
