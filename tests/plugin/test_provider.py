"""The provider's shipped model and icons, in a real QgsApplication."""

import importlib.util
from pathlib import Path
from xml.etree.ElementTree import canonicalize

REPO = Path(__file__).resolve().parents[2]


def _pipeline():
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().createAlgorithmById("lcz:lczpipeline")


def test_pipeline_model_is_offered_with_its_inputs_in_order(lcz_provider):
    model = _pipeline()
    assert model is not None and model.displayName() == "LCZ pipeline"
    assert model.validate() == (True, [])
    assert [d.name() for d in model.parameterDefinitions()] == [
        "embeddings", "labels", "class_field", "reference", "epochs",
        "sample:dataset", "sample:cells", "train:run", "predict:lcz_map", "predict:confidence",
        "compare:report", "compare:reference", "compare:confusion_png",
    ]  # fmt: skip
    assert (
        model.parameterDefinition("reference").flags()
        & model.parameterDefinition("reference").FlagOptional
    )
    assert {o.name() for o in model.outputDefinitions()} >= {"predict:lcz_map", "train:run"}
    assert "global LCZ map" in model.shortHelpString()


def test_pipeline_wires_each_step_into_the_next(lcz_provider):
    model = _pipeline()

    def source(child_id, parameter):
        (wired,) = model.childAlgorithm(child_id).parameterSources()[parameter]
        return wired.outputChildId(), wired.outputName()

    assert source("train", "DATASET") == ("sample", "OUTPUT")
    assert source("predict", "MODEL") == ("train", "MODEL")
    assert source("compare", "INPUT") == ("predict", "OUTPUT")
    assert [model.childAlgorithm(c).algorithmId() for c in ("sample", "train", "predict", "compare")] == [
        "lcz:samplepatches", "lcz:trainpatchclassifier", "lcz:predictlczmap", "lcz:comparelczmaps",
    ]  # fmt: skip


def test_shipped_model_file_is_what_the_script_writes(lcz_provider, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_pipeline_model", REPO / "scripts/make_pipeline_model.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    written = tmp_path / "pipeline.model3"
    assert script.build_model().toFile(str(written))
    # Qt writes the attributes in any order: compare the canonical XML
    assert canonicalize(written.read_text()) == canonicalize(script.MODEL_FILE.read_text())


def test_every_algorithm_shows_the_lcz_icon(lcz_provider):
    from lcz_qgis.icon import ICON_PATH

    assert Path(ICON_PATH).is_file()
    assert lcz_provider.svgIconPath() == ICON_PATH
    for algorithm in lcz_provider.algorithms():
        assert algorithm.svgIconPath() == ICON_PATH and not algorithm.icon().isNull()
