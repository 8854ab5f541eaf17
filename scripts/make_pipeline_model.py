"""Write the plugin's shipped model `LCZ pipeline` (lcz_qgis/models/lcz_pipeline.model3).

sample labelled patches -> train patch classifier -> predict LCZ map -> compare with a reference
(the global LCZ map when none is given), each step's output wired into the next. Run with a Python
that imports QGIS (Debian's python3 or the repo's .venv), from the repository root:

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_pipeline_model.py
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), "/usr/share/qgis/python/plugins"]
os.environ.setdefault(
    "QT_HASH_SEED", "0"
)  # Qt writes the XML attributes in the same order each run

from qgis.core import (  # noqa: E402 (after the path set-up)
    QgsApplication,
    QgsProcessing,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterField,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QPointF  # noqa: E402

MODEL_FILE = REPO / "lcz_qgis" / "models" / "lcz_pipeline.model3"
HELP = (
    "The whole job in one run: samples labelled 32 x 32 patches from the embeddings with a "
    "leak-free blocked split, trains a patch classifier on them, predicts the LCZ map over the "
    "embeddings and compares it with a reference LCZ map. Without a reference the global LCZ map "
    "(Demuzere et al. 2022) is read over the network, only the map's window. Every step's options "
    "keep their defaults; run the steps one by one to change them."
)


def _source(kind, value):
    make = {
        "model": QgsProcessingModelChildParameterSource.fromModelParameter,
        "child": lambda pair: QgsProcessingModelChildParameterSource.fromChildOutput(*pair),
        "static": QgsProcessingModelChildParameterSource.fromStaticValue,
    }[kind]
    return [make(value)]


def _child(model, child_id, algorithm, description, sources, outputs, x, depends=()):
    """Add a child algorithm: `sources` maps its parameters to (kind, value), `outputs` maps its
    outputs to the model outputs' (name, description)."""
    child = QgsProcessingModelChildAlgorithm(algorithm)
    child.setChildId(child_id)
    child.setDescription(description)
    child.setPosition(QPointF(x, 300))
    for name, (kind, value) in sources.items():
        child.addParameterSources(name, _source(kind, value))
    made = {}
    for output_name, (name, description) in outputs.items():
        output = QgsProcessingModelOutput(name, description)
        output.setChildId(child_id)
        output.setChildOutputName(output_name)
        output.setDefaultValue(QgsProcessing.TEMPORARY_OUTPUT)  # outputs not asked for: temporary
        output.setPosition(QPointF(x + 20, 420 + 40 * len(made)))
        made[name] = output
    child.setModelOutputs(made)
    child.setDependencies(list(depends))
    model.addChildAlgorithm(child)


def build_model():
    """The `LCZ pipeline` model."""
    from lcz_core.steps.modelling import TRAIN_PATCH_CLASSIFIER

    model = QgsProcessingModelAlgorithm("LCZ pipeline", "Pipelines", "pipelines")
    model.setHelpContent({"ALG_DESC": HELP})
    inputs = [
        QgsProcessingParameterRasterLayer("embeddings", "Embeddings (raster)"),
        QgsProcessingParameterMapLayer("labels", "LCZ labels (polygons, points or raster)"),
        QgsProcessingParameterField(
            "class_field", "Field holding the LCZ class (vector labels)",
            parentLayerParameterName="labels", optional=True,
        ),
        QgsProcessingParameterRasterLayer(
            "reference", "Reference LCZ map (empty: the global LCZ map)", optional=True
        ),
        QgsProcessingParameterNumber(
            "epochs", "Maximum epochs", type=QgsProcessingParameterNumber.Integer,
            defaultValue=TRAIN_PATCH_CLASSIFIER.param("epochs").default, minValue=1,
        ),
    ]  # fmt: skip
    for index, definition in enumerate(inputs):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120 + 220 * index, 100))
        model.addModelParameter(definition, component)
    _child(
        model, "sample", "lcz:samplepatches", "Sample labelled patches",
        {
            "EMBEDDINGS": ("model", "embeddings"),
            "LABELS": ("model", "labels"),
            "CLASS_FIELD": ("model", "class_field"),
        },
        {"OUTPUT": ("dataset", "Dataset folder"), "GRID_OUTPUT": ("cells", "Sampled cells by split")}, 120,
    )  # fmt: skip
    _child(
        model, "train", "lcz:trainpatchclassifier", "Train patch classifier",
        {"DATASET": ("child", ("sample", "OUTPUT")), "EPOCHS": ("model", "epochs")},
        {"OUTPUT": ("run", "Run folder")}, 340,
    )  # fmt: skip
    _child(
        model, "predict", "lcz:predictlczmap", "Predict LCZ map",
        {"MODEL": ("child", ("train", "MODEL")), "EMBEDDINGS": ("model", "embeddings")},
        {"OUTPUT": ("lcz_map", "Predicted LCZ map"), "CONFIDENCE": ("confidence", "Confidence")}, 560,
    )  # fmt: skip
    _child(
        model, "compare", "lcz:comparelczmaps", "Compare with reference LCZ map",
        {"INPUT": ("child", ("predict", "OUTPUT")), "REFERENCE": ("model", "reference")},
        {
            "OUTPUT": ("report", "Agreement report (JSON)"),
            "REFERENCE_OUTPUT": ("reference", "Reference LCZ map (clipped)"),
            "CONFUSION_PNG": ("confusion_png", "Confusion matrix plot"),
        },
        780,
    )  # fmt: skip
    model.updateDestinationParameters()
    return model


def main():
    """Build the model with the plugin's provider registered, check it and write it."""
    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    from lcz_qgis.provider import LczProvider

    Processing.initialize()
    provider = LczProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    model = build_model()
    ok, problems = model.validate()
    if not ok:
        raise SystemExit("the model is not valid:\n" + "\n".join(problems))
    if not model.toFile(str(MODEL_FILE)):
        raise SystemExit(f"could not write {MODEL_FILE}")
    print(f"wrote {MODEL_FILE}")
    for definition in model.parameterDefinitions():
        print(f"  {definition.name()!r}: {definition.description()}")


if __name__ == "__main__":
    main()
