"""The plugin object: registers the Processing provider."""

from qgis.core import QgsApplication

from .provider import LczProvider


class LczPlugin:
    """Registers the `lcz` provider in initProcessing, so qgis_process finds it too."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API)
        """Add the provider to the Processing registry."""
        self.provider = LczProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API)
        """Called by the desktop: the provider is all the GUI there is."""
        self.initProcessing()

    def unload(self):
        """Remove the provider."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
