"""The `lcz` provider registered once per session in a real QgsApplication (pytest-qgis)."""

import pytest


@pytest.fixture(scope="session")
def lcz_provider(qgis_app, qgis_processing):
    """The plugin's provider, registered in the Processing registry."""
    from qgis.core import QgsApplication

    from lcz_qgis.provider import LczProvider

    provider = LczProvider()
    assert QgsApplication.processingRegistry().addProvider(provider)
    yield provider
    QgsApplication.processingRegistry().removeProvider(provider)
