"""The `lcz` Processing provider and its settings."""

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import algorithms
from .worker import WORKER_PYTHON_SETTING, default_worker_python

try:  # the Processing plugin is there in the desktop and in qgis_process
    from processing.core.ProcessingConfig import ProcessingConfig, Setting
except ImportError:  # pragma: no cover - bare QgsApplication without Processing
    ProcessingConfig = None


class LczProvider(QgsProcessingProvider):
    """Local Climate Zone algorithms; the heavy work runs in a worker Python."""

    def id(self):
        return "lcz"

    def name(self):
        return "Local Climate Zones"

    def icon(self):
        return QIcon(str(Path(__file__).parent / "icon.svg"))

    def longName(self):  # noqa: N802 (QGIS API)
        return "Local Climate Zones (LCZ) from embeddings"

    def load(self):
        if ProcessingConfig is not None:
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(
                Setting(
                    self.name(),
                    WORKER_PYTHON_SETTING,
                    "Worker Python interpreter (a venv with numpy, rasterio, zarr, geopandas, torch, timm)",
                    default_worker_python() or "",
                    valuetype=Setting.FILE,
                )
            )
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self):
        if ProcessingConfig is not None:
            ProcessingConfig.removeSetting(WORKER_PYTHON_SETTING)

    def loadAlgorithms(self):  # noqa: N802 (QGIS API)
        for algorithm in algorithms():
            self.addAlgorithm(algorithm())

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (QGIS API)
        return ["tif"]
