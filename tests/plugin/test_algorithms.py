"""The Processing algorithms in a real QGIS: processing.run, a saved .model3 model, cancel, errors."""

import json

import numpy as np
import pytest

REAL_MAPS = {
    "zaragoza/lcz_zaragoza.tif": ("lcz17", "2,3,5,6,8,9,A,B,C,D,E,F,G"),
    "shanghai/Shanghai.tif": ("wudapt", "1,2,3,4,5,6,8,10,A,B,D,E,G"),
    "redon/redonWudapt.tif": ("lcz17", "3,6,8,9,A,B,D,F,G"),
}


def test_provider_lists_lowercase_algorithms(lcz_provider):
    ids = [a.id() for a in lcz_provider.algorithms()]
    assert {"lcz:importlczmap", "lcz:plotlczmap"} <= set(ids)
    assert all(i == i.lower() for i in ids)
    for algorithm in lcz_provider.algorithms():
        assert algorithm.shortHelpString() and algorithm.group()


@pytest.mark.parametrize("name", sorted(REAL_MAPS))
def test_import_real_map_loads_styled(lcz_provider, real_data, tmp_path, name):
    import processing
    from qgis.core import QgsRasterLayer

    result = processing.run(
        "lcz:importlczmap", {"INPUT": str(real_data / name), "OUTPUT": str(tmp_path / "lcz.tif")}
    )
    coding, classes = REAL_MAPS[name]
    assert result["CODING_USED"] == coding
    assert ",".join(json.loads(result["CLASS_COUNTS"])) == classes
    layer = QgsRasterLayer(result["OUTPUT"], "lcz")
    assert layer.isValid()
    renderer = layer.renderer()
    assert renderer.type() == "paletted"
    entries = {int(c.value): (c.label, c.color.name()) for c in renderer.classes()}
    from lcz_core.lcz import CLASS_BY_CODE, code_from_text

    expected = {code_from_text(s) for s in classes.split(",")}
    assert set(entries) == expected
    for code in expected:
        assert entries[code] == (CLASS_BY_CODE[code].label, CLASS_BY_CODE[code].color)


def test_plot_writes_png(lcz_provider, real_data, tmp_path):
    import processing

    imported = processing.run(
        "lcz:importlczmap",
        {"INPUT": str(real_data / "redon/redonWudapt.tif"), "OUTPUT": "TEMPORARY_OUTPUT"},
    )
    result = processing.run(
        "lcz:plotlczmap",
        {"INPUT": imported["OUTPUT"], "TITLE": "Redon", "OUTPUT": str(tmp_path / "p.png")},
    )
    assert result["CLASSES"] == "3,6,8,9,A,B,D,F,G"
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_then_plot_as_a_saved_model(lcz_provider, real_data, tmp_path):
    from qgis.core import (
        QgsProcessingContext,
        QgsProcessingFeedback,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFileDestination,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("Import and plot", "LCZ")
    model.addModelParameter(
        QgsProcessingParameterRasterLayer("map", "LCZ map"), QgsProcessingModelParameter("map")
    )
    importer = QgsProcessingModelChildAlgorithm("lcz:importlczmap")
    importer.setChildId("import")
    importer.addParameterSources(
        "INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("map")]
    )
    plotter = QgsProcessingModelChildAlgorithm("lcz:plotlczmap")
    plotter.setChildId("plot")
    plotter.addParameterSources(
        "INPUT", [QgsProcessingModelChildParameterSource.fromChildOutput("import", "OUTPUT")]
    )
    output = QgsProcessingModelOutput("png", "plot")
    output.setChildOutputName("OUTPUT")
    plotter.setModelOutputs({"png": output})
    model.addChildAlgorithm(importer)
    model.addChildAlgorithm(plotter)
    model.addModelParameter(
        QgsProcessingParameterFileDestination("plot:png", "plot", "PNG files (*.png)"),
        QgsProcessingModelParameter("plot:png"),
    )
    path = tmp_path / "import_and_plot.model3"
    assert model.toFile(str(path))

    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    loaded.initAlgorithm({})
    png = tmp_path / "model.png"
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    results, ok = loaded.run(
        {"map": str(real_data / "shanghai/Shanghai.tif"), "plot:png": str(png)}, context, feedback
    )
    assert ok, feedback.textLog()
    assert png.is_file() and png.stat().st_size > 10_000


def test_cancel_terminates_the_worker_and_leaves_no_file(lcz_provider, tmp_path, write_raster):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    rng = np.random.default_rng(0)
    source = str(
        write_raster(tmp_path / "big.tif", rng.integers(1, 18, size=(6000, 3000), dtype=np.uint8))
    )

    class CancelOnFirstProgress(QgsProcessingFeedback):
        def setProgress(self, percent):  # noqa: N802 (QGIS API)
            super().setProgress(percent)
            self.cancel()

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run(
            "lcz:importlczmap",
            {"INPUT": source, "OUTPUT": str(out / "lcz.tif")},
            feedback=CancelOnFirstProgress(),
        )
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown_coding", r"^Class mapping: .*values 42, 250 are not LCZ classes"),
        ("extent_outside", r"^Extent: .*does not overlap"),
        ("unwritable", r"^LCZ map: folder .*does not exist"),
    ],
)
def test_bad_inputs_give_clear_messages(lcz_provider, tmp_path, case, message, write_raster):
    import processing
    from qgis.core import QgsProcessingException

    source = str(write_raster(tmp_path / "in.tif", np.array([[1, 2], [42, 250]], dtype=np.uint8)))
    parameters = {"INPUT": source, "OUTPUT": str(tmp_path / "o.tif"), "MAPPING": "42:A,250:0"}
    if case == "unknown_coding":
        del parameters["MAPPING"]
    elif case == "extent_outside":
        parameters["EXTENT"] = "0,1,0,1 [EPSG:4326]"
    else:
        parameters["OUTPUT"] = str(tmp_path / "no" / "such" / "o.tif")
    with pytest.raises(QgsProcessingException, match=message):
        processing.run("lcz:importlczmap", parameters)
    assert not (tmp_path / "o.tif").exists()


def test_not_a_raster_is_refused(lcz_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(QgsProcessingException, match="^LCZ raster: .*notes.txt"):
        processing.run("lcz:importlczmap", {"INPUT": str(text), "OUTPUT": str(tmp_path / "o.tif")})


def test_compare_with_reference_writes_report_and_styled_reference(
    lcz_provider, demo_city, tmp_path
):
    import processing
    from qgis.core import QgsRasterLayer

    result = processing.run(
        "lcz:comparelczmaps",
        {
            "INPUT": str(demo_city.labels),
            "REFERENCE": str(demo_city.reference),
            "REFERENCE_OUTPUT": str(tmp_path / "reference.tif"),
            "OUTPUT": str(tmp_path / "agreement.json"),
            "CONFUSION_PNG": str(tmp_path / "confusion.png"),
        },
    )
    report = json.loads((tmp_path / "agreement.json").read_text())
    assert result["OA"] == pytest.approx(report["metrics"]["oa"]) and 0.75 < result["OA"] < 0.9
    assert result["OA_W"] >= result["OA"]
    layer = QgsRasterLayer(result["REFERENCE_OUTPUT"], "reference")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    assert (tmp_path / "confusion.png").is_file()


def test_outputs_load_styled_and_named_as_processing_loads_them(
    lcz_provider, qgis_iface, qgis_new_project, real_data, tmp_path
):
    import processing
    from qgis.core import QgsProject

    processing.runAndLoadResults(
        "lcz:importlczmap",
        {"INPUT": str(real_data / "redon/redonWudapt.tif"), "OUTPUT": str(tmp_path / "r.tif")},
    )
    layers = QgsProject.instance().mapLayersByName("LCZ map")
    assert len(layers) == 1
    renderer = layers[0].renderer()
    # the post-processor applied the .qml: the classes present, not 256 palette rows
    assert renderer.type() == "paletted" and len(renderer.classes()) == 9
