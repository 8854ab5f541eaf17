"""Steps on models: train a patch classifier or a U-Net, evaluate a model, predict an LCZ map."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..choices import CLASS_WEIGHTINGS, DEVICES, EVALUATION_SPLITS, METRICS, STEMS
from ..errors import LczError
from ..spec import Output, Param, Step, check_output_paths
from .common import CLUSTER, EMBEDDINGS, EXTENT

GROUP = "Models"
DEVICE = Param(
    "device", "enum", "Device", "auto: a GPU when present", default="auto", choices=DEVICES,
    advanced=True,
)  # fmt: skip
THREADS = Param(
    "threads", "int", "CPU threads", "0: torch's choice; 1 is faster beside a busy desktop",
    default=0, minimum=0, maximum=1024, advanced=True,
)  # fmt: skip
MODEL = Param("model", "file", "Model file", file_filter="Models (*.safetensors)")


def _option(name: str, kind: str, label: str, help: str, default: Any, **more: Any) -> Param:
    """A training option: given here, else from the experiment file, else the default."""
    return Param(
        name, kind, label, help, default=default, inherit_from="experiment", group="Training",
        **more,
    )  # fmt: skip


TRAINING_OPTIONS = (
    _option(
        "architecture", "string", "Architecture",
        "a timm ResNet name for the patch classifier (default resnet10t); unet for segmentation",
        None, optional=True, advanced=True,
    ),
    _option("width", "int", "Channels of the first stage", "", 16, minimum=4, maximum=512, advanced=True),
    _option("stem", "enum", "First convolution (stride 1)", "", "1x1", choices=STEMS, advanced=True),
    _option("epochs", "int", "Maximum epochs", "", 30, minimum=1, maximum=10_000),
    _option("batch_size", "int", "Batch size", "samples per batch", 64, minimum=2, maximum=65_536, advanced=True),
    _option("learning_rate", "float", "Peak learning rate", "AdamW, after warm-up", 0.002, minimum=1e-8, maximum=10.0, advanced=True),
    _option("weight_decay", "float", "Weight decay", "AdamW", 0.01, minimum=0.0, maximum=10.0, advanced=True),
    _option("patience", "int", "Early-stopping patience (epochs)", "epochs without a better validation loss", 5, minimum=1),
    _option(
        "class_weighting", "enum", "Class weighting",
        "sqrt: inverse square root of the class frequency; balanced: inverse frequency",
        "sqrt", choices=CLASS_WEIGHTINGS, advanced=True,
    ),
    _option("augment", "bool", "Flip and rot90 augmentation", "", True),
    _option("seed", "int", "Random seed", "same data and seed give the same model on a CPU", 0, minimum=0),
    _option("device", "enum", "Device", "auto: a GPU when present", "auto", choices=DEVICES, advanced=True),
    _option(
        "threads", "int", "CPU threads",
        "0: torch's choice (the run records the count used); 1 is faster beside a busy desktop",
        0, minimum=0, maximum=1024, advanced=True,
    ),
    _option(
        "loader_workers", "int", "Data loader processes (at most)",
        "processes reading batches from the dataset on disk ahead of training, on the CPU cores "
        "the training leaves free (a GPU run, or threads below the cores); 0: the training "
        "process reads them (the model does not depend on it)",
        2, minimum=0, maximum=64, advanced=True,
    ),
)  # fmt: skip


def training_step(name: str, title: str, help: str, dataset_label: str) -> Step:
    """The spec of a training step; both training steps share it."""
    return Step(
        name,
        title,
        GROUP,
        help,
        (
            Param(
                "dataset", "folder", dataset_label, "required without an experiment file",
                optional=True,
            ),
            Param(
                "experiment", "file", "Experiment file",
                "a run's experiment.toml; the options given here override its values",
                optional=True, file_filter="TOML files (*.toml)",
            ),
            *TRAINING_OPTIONS,
            Param(
                "overwrite", "bool", "Replace an existing run in the run folder",
                "without it a run folder that already holds files is refused; with it the new run "
                "replaces experiment.toml, log.csv, curves.png and model.safetensors once complete",
                default=False,
            ),
            Param(
                "output", "output_folder", "Run folder",
                "config, log, curves and model; required without an experiment file",
                optional=True,
            ),
        ),
        (
            Output("model", "file", "Model file"),
            Output("metrics", "json", "Validation and test metrics (JSON)"),
            Output("test_oa", "number", "Test overall accuracy"),
            Output("best_epoch", "number", "Best epoch"),
            Output("warnings", "json", "Warnings (JSON)"),
        ),
        requires=(("dataset", "output"), ("experiment",)),
    )  # fmt: skip


TRAIN_PATCH_CLASSIFIER = training_step(
    "train-patch-classifier",
    "Train patch classifier",
    "Trains a small timm ResNet (stride-1 stem, no max-pool) to classify 32 x 32 embedding "
    "patches into LCZ classes: AdamW with warm-up and cosine decay, class weighting, flip and "
    "rot90 augmentation, early stopping on the validation loss, seeded and deterministic on a "
    "CPU. Writes a run folder: experiment.toml (reruns the run), log.csv, curves.png and "
    "model.safetensors (weights plus metadata; loading it executes no code). The run is built "
    "aside and moves in when complete: a cancelled run leaves nothing and an earlier run stays "
    "unless Replace is ticked.",
    "Dataset folder (patches)",
)
TRAIN_SEGMENTATION = training_step(
    "train-segmentation",
    "Train segmentation model (U-Net)",
    "Trains a small U-Net on a tile dataset (Sample labelled patches with kind 'tiles'); "
    "unlabelled pixels (0) are ignored by the loss. Same options and run folder as Train patch "
    "classifier.",
    "Dataset folder (tiles)",
)


def _train(task: str, values: dict[str, Any], progress: Any) -> dict[str, Any]:
    from ..train import TrainConfig, read_experiment, train

    dataset, output = values["dataset"], values["output"]
    options = {p.name: values[p.name] for p in TRAINING_OPTIONS}
    settings = {p.name: p.default for p in TRAINING_OPTIONS}
    if values["experiment"]:
        file_dataset, file_output, config = read_experiment(values["experiment"])
        if config.task != task:
            raise LczError("experiment", f"{values['experiment']} is a {config.task} experiment")
        settings.update({p.name: getattr(config, p.name) for p in TRAINING_OPTIONS})
        dataset, output = dataset or file_dataset, output or file_output
    settings.update({k: v for k, v in options.items() if v is not None})
    config = TrainConfig(task=task, **{k: v for k, v in settings.items() if v is not None})
    result = train(dataset, output, config, progress, overwrite=values["overwrite"])
    return {
        **result,
        "output": result["run_folder"],
        "test_oa": result["metrics"].get("test", {}).get("oa"),
    }


@TRAIN_PATCH_CLASSIFIER.implementation
def train_patch_classifier(*, progress: Any, **values: Any) -> dict[str, Any]:
    return _train("patch", values, progress)


@TRAIN_SEGMENTATION.implementation
def train_segmentation(*, progress: Any, **values: Any) -> dict[str, Any]:
    return _train("segmentation", values, progress)


EVALUATE_MODEL = Step(
    "evaluate-model",
    "Evaluate model",
    GROUP,
    "Measures a model on one or more datasets: OA, kappa, OA_u, OA_bu, OA_w, macro F1, per-class "
    "producer's and user's accuracy and F1, confusion matrices (counts and normalised), overall "
    "and per city, beside the majority-class baseline, each measure with a 90% interval from a "
    "spatial block bootstrap (whole blocks of the split resampled) and its definition. Split 'all' evaluates every sample, e.g. "
    "of a city the model never saw (cross-city transfer). Writes metrics.json, confusion PNGs and "
    "report.html into the output folder.",
    (
        MODEL,
        Param("dataset", "folder", "Dataset folders", "one or more", multiple=True),
        Param(
            "split", "enum", "Split", "all: every sample (e.g. an unseen city)",
            default="test", choices=EVALUATION_SPLITS,
        ),
        Param(
            "city", "string", "Cities", "comma-separated names to keep (default: all)",
            optional=True,
        ),
        Param(
            "bootstrap_draws", "int", "Bootstrap draws",
            "draws of the spatial block bootstrap giving a 90% interval of every measure; 0: none",
            default=1000, minimum=0, maximum=100_000, advanced=True,
        ),
        Param(
            "seed", "int", "Random seed", "of the bootstrap draws (same seed, same intervals)",
            default=0, minimum=0, advanced=True,
        ),
        Param("batch_size", "int", "Batch size", default=256, minimum=1, maximum=65_536, advanced=True),
        DEVICE,
        THREADS,
        Param("output", "output_folder", "Report folder"),
    ),
    (
        Output("report", "html", "Report"),
        Output("metrics_json", "file", "Metrics (JSON)"),
        Output("bootstrap_png", "file", "Bootstrap box plots"),
        Output("intervals", "json", "90% intervals of the measures (JSON)"),
        Output("majority_baseline_oa", "number", "Majority-class baseline OA"),
        *(Output(name, "number", label) for name, label in METRICS.items()),
    ),
)  # fmt: skip


@EVALUATE_MODEL.implementation
def evaluate_model(
    *, dataset: list[str], city: str | None, progress: Any, **values: Any
) -> dict[str, Any]:
    from ..evaluate import evaluate_model as evaluate

    cities = [c.strip() for c in (city or "").split(",") if c.strip()] or None
    result = evaluate(datasets=dataset, cities=cities, progress=progress, **values)
    return {**result, **{name: result["metrics"][name] for name in METRICS}}


PREDICT = Step(
    "predict",
    "Predict LCZ map",
    GROUP,
    "Maps LCZ over embeddings (or an extent of them, drawn on the canvas or taken from a layer) "
    "with a trained model, window by window (memory does not grow with the extent): a styled LCZ "
    "GeoTIFF (0 where the embeddings are missing) and a confidence GeoTIFF (the winning class "
    "probability). The model refuses embeddings whose band count or feature space does not match "
    "the one it was trained on. A patch classifier labels each output pixel from the patch "
    "around it.",
    (
        MODEL,
        *EMBEDDINGS,
        *EXTENT,
        Param(
            "stride", "int", "Output pixel (input pixels)",
            "patch classifier: output pixel size in input pixels (default: about 100 m, the LCZ "
            "mapping scale: 10 at 10 m)",
            optional=True, minimum=1, advanced=True,
        ),
        Param("batch_size", "int", "Batch size", "patches per batch", default=256, minimum=1, maximum=65_536, advanced=True),
        DEVICE,
        THREADS,
        *CLUSTER,
        Param("output", "output_raster", "Predicted LCZ map"),
        Param(
            "confidence", "output_raster", "Prediction confidence",
            "default: <output>_confidence.tif", optional=True,
        ),
    ),
    (Output("class_counts", "json", "Pixels per class (JSON)"),),
    qgis_id="predictlczmap",
)  # fmt: skip


def default_confidence(output: str | os.PathLike) -> Path:
    """Where the confidence raster goes when not given: <output>_confidence.tif beside the map."""
    output = Path(output)
    return output.with_name(f"{output.stem}_confidence.tif")


@PREDICT.implementation
def predict_lcz_map(
    *,
    grid_crs: str | None,
    scheduler: str | None,
    workers: int | None,
    progress: Any,
    **values: Any,
) -> dict[str, Any]:
    from ..outputs import confidence_style_qml, write_text_atomic

    if values["confidence"] is None:  # the default must not replace an input either
        values["confidence"] = str(default_confidence(values["output"]))
        check_output_paths(PREDICT, values)
    if scheduler or workers:
        from ..cluster import predict_on_cluster

        result = predict_on_cluster(scheduler, workers, crs=grid_crs, progress=progress, **values)
    else:
        from ..predict import predict_raster

        result = predict_raster(crs=grid_crs, progress=progress, **values)
    write_text_atomic(Path(result["confidence"]).with_suffix(".qml"), confidence_style_qml())
    return result
