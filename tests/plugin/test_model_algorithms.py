"""Model algorithms in a real QGIS: sample, train, evaluate, predict and compare on the demo city."""

import json

import pytest
import rasterio


@pytest.fixture(scope="module")
def trained(lcz_provider, demo_city, tmp_path_factory):
    """A patch classifier trained for a few epochs through the Processing algorithms."""
    import processing

    folder = tmp_path_factory.mktemp("models")
    dataset = processing.run(
        "lcz:samplepatches",
        {
            "EMBEDDINGS": str(demo_city.embeddings_tif),
            "LABELS": str(demo_city.labels),
            "OUTPUT": str(folder / "dataset"),
        },
    )
    run = processing.run(
        "lcz:trainpatchclassifier",
        {"DATASET": dataset["OUTPUT"], "EPOCHS": 4, "SEED": 1, "OUTPUT": str(folder / "run")},
    )
    return folder, dataset, run


def test_training_writes_a_run_folder(trained):
    folder, dataset, run = trained
    assert run["MODEL"].endswith("model.safetensors")
    for name in ("experiment.toml", "log.csv", "curves.png", "model.safetensors"):
        assert (folder / "run" / name).is_file()
    metrics = json.loads(run["METRICS"])
    assert set(metrics) >= {"val", "test"} and run["TEST_OA"] == metrics["test"]["oa"]
    assert 1 <= run["BEST_EPOCH"] <= 4
    assert "warning" not in (folder / "run" / "experiment.toml").read_text()


def test_training_on_a_temporary_dataset_says_its_rerun_needs_it(lcz_provider, demo_city, tmp_path):
    """A dataset output left temporary (as in a model) lies in QGIS's temporary folder."""
    import processing
    from qgis.core import QgsProcessingFeedback, QgsProcessingUtils

    dataset = processing.run(
        "lcz:samplepatches",
        {
            "EMBEDDINGS": str(demo_city.embeddings_tif),
            "LABELS": str(demo_city.labels),
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )["OUTPUT"]
    assert dataset.startswith(QgsProcessingUtils.tempFolder())
    feedback = QgsProcessingFeedback()
    processing.run(
        "lcz:trainpatchclassifier",
        {"DATASET": dataset, "EPOCHS": 1, "OUTPUT": str(tmp_path / "run")},
        feedback=feedback,
    )
    text = (tmp_path / "run" / "experiment.toml").read_text()
    warning = f"{dataset} lies in {QgsProcessingUtils.tempFolder()}, a temporary folder deleted"
    assert f"# warning: the dataset {warning}" in text
    assert warning in feedback.textLog()


def test_evaluate_writes_report_with_baseline(trained):
    import processing

    folder, dataset, run = trained
    result = processing.run(
        "lcz:evaluatemodel",
        {
            "MODEL": run["MODEL"],
            "DATASET": dataset["OUTPUT"],
            "SPLIT": 3,
            "OUTPUT": str(folder / "eval"),
        },
    )
    record = json.loads((folder / "eval" / "metrics.json").read_text())
    assert result["OA"] == pytest.approx(record["metrics"]["oa"])
    assert result["OA"] > result["MAJORITY_BASELINE_OA"]
    assert "<table" in (folder / "eval" / "report.html").read_text()


def test_predict_then_compare_with_the_reference(trained, demo_city):
    import processing
    from qgis.core import QgsRasterLayer

    folder, _, run = trained
    predicted = processing.run(
        "lcz:predictlczmap",
        {
            "MODEL": run["MODEL"],
            "EMBEDDINGS": str(demo_city.embeddings_tif),
            "OUTPUT": str(folder / "lcz.tif"),
            "CONFIDENCE": str(folder / "confidence.tif"),
        },
    )
    layer = QgsRasterLayer(predicted["OUTPUT"], "prediction")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    with rasterio.open(predicted["CONFIDENCE"]) as src:
        confidence = src.read(1, masked=True)
    assert 0 < confidence.min() and confidence.max() <= 1
    compared = processing.run(
        "lcz:comparelczmaps",
        {
            "INPUT": predicted["OUTPUT"],
            "REFERENCE": str(demo_city.reference),
            "REFERENCE_OUTPUT": str(folder / "reference.tif"),
            "OUTPUT": str(folder / "agreement.json"),
            "CONFUSION_PNG": str(folder / "agreement.png"),
        },
    )
    assert compared["OA"] > 0.4


def test_predict_over_a_drawn_extent(trained, demo_city):
    import processing

    folder, _, run = trained
    # an extent as the canvas gives it, in another CRS (WGS84)
    result = processing.run(
        "lcz:predictlczmap",
        {
            "MODEL": run["MODEL"],
            "EMBEDDINGS": str(demo_city.embeddings_tif),
            "EXTENT": "13.25,13.265,52.53,52.54 [EPSG:4326]",
            "OUTPUT": str(folder / "part.tif"),
            "CONFIDENCE": str(folder / "part_confidence.tif"),
        },
    )
    with rasterio.open(result["OUTPUT"]) as src:
        assert src.res == (100.0, 100.0) and 9 <= src.width <= 13 and 10 <= src.height <= 14
        left, top = src.bounds.left, src.bounds.top
    # on the grid of a prediction over the whole raster
    assert (left - 380_000) % 100 == 0 and (5_825_000 - top) % 100 == 0


def test_predict_refuses_a_source_with_other_bands(trained, real_data, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    _, _, run = trained
    with pytest.raises(QgsProcessingException, match="64 band.*10|10 band.*64"):
        processing.run(
            "lcz:predictlczmap",
            {
                "MODEL": run["MODEL"],
                "EMBEDDINGS": str(real_data / "berlin/Berlin_S2_2024-10-24_sample.tif"),
                "OUTPUT": str(tmp_path / "lcz.tif"),
                "CONFIDENCE": str(tmp_path / "c.tif"),
            },
        )
    assert not list(tmp_path.glob("*.tif"))
