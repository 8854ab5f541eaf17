"""The `lcz` Processing provider and its settings."""

from qgis.core import QgsApplication, QgsProcessingProvider

from .algorithms import algorithms
from .icon import ICON_PATH, lcz_icon
from .models import shipped_models
from .setup_worker import SetupWorker
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
        return lcz_icon()

    def svgIconPath(self):  # noqa: N802 (QGIS API)
        return ICON_PATH

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
        # a model finds its steps in the registry: load the models once this provider is there
        QgsApplication.processingRegistry().providerAdded.connect(self._registered)
        self.refreshAlgorithms()
        return True

    def _registered(self, provider_id):
        if provider_id == self.id():
            QgsApplication.processingRegistry().providerAdded.disconnect(self._registered)
            self.refreshAlgorithms()

    def unload(self):
        if ProcessingConfig is not None:
            ProcessingConfig.removeSetting(WORKER_PYTHON_SETTING)

    def loadAlgorithms(self):  # noqa: N802 (QGIS API)
        for algorithm in algorithms():
            self.addAlgorithm(algorithm())
        self.addAlgorithm(SetupWorker())
        if QgsApplication.processingRegistry().providerById(self.id()) is not None:
            for model in shipped_models():
                self.addAlgorithm(model)

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (QGIS API)
        return ["tif"]
