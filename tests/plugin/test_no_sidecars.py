"""The plugin's algorithms leave no file beside their inputs (QGIS statistics, styles)."""

import gc
import shutil

import pytest

# QGIS loads a layer parameter to check it (qgis_process checks every parameter so); GDAL then
# writes the layer's statistics as an .aux.xml beside the file when QGIS lets the layer go
CASES = {
    "lcz:creategrid": ("EMBEDDINGS", "embeddings_tif", {}),
    "lcz:importlczmap": ("INPUT", "zaragoza", {}),
    "lcz:rasterizelabels": ("LABELS", "zaragoza", {"EMBEDDINGS": "embeddings_tif"}),
}


@pytest.mark.parametrize("algorithm", sorted(CASES))
def test_checking_a_path_writes_nothing_beside_it(
    lcz_provider, demo_city, real_data, tmp_path, algorithm
):
    from qgis.core import QgsApplication, QgsProcessingContext

    name, source, more = CASES[algorithm]
    sources = {
        "embeddings_tif": demo_city.embeddings_tif,
        "zaragoza": real_data / "zaragoza/lcz_zaragoza.tif",  # int32: QGIS computes statistics
    }
    folder = tmp_path / "inputs"
    folder.mkdir()
    parameters = {"OUTPUT": str(tmp_path / "out.tif")}
    for key, value in {name: source, **more}.items():
        copy = folder / f"{key.lower()}.tif"
        shutil.copy(sources[value], copy)
        parameters[key] = str(copy)
    definitions = (
        QgsApplication.processingRegistry().algorithmById(algorithm).parameterDefinitions()
    )
    context = QgsProcessingContext()
    for definition in definitions:
        if definition.name() in parameters:
            assert definition.checkValueIsAcceptable(parameters[definition.name()], context)
    del context
    gc.collect()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{key.lower()}.tif" for key in (name, *more)
    )
