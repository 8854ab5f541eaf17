"""QGIS plugin: Local Climate Zone mapping from geospatial embeddings (Processing provider `lcz`)."""


def classFactory(iface):  # noqa: N802 (QGIS plugin entry point)
    """QGIS plugin entry point (qgis_process calls it with iface=None)."""
    from .plugin import LczPlugin

    return LczPlugin(iface)
