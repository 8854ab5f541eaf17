"""lcz:trainpatchclassifier: a timm ResNet on 32 x 32 embedding patches."""

from .training import TrainingAlgorithm


class TrainPatchClassifier(TrainingAlgorithm):
    algorithm_id = "trainpatchclassifier"
    display_name = "Train patch classifier"
    command = "train-patch-classifier"
    help_text = (
        "Trains a small timm ResNet (default resnet10t, stride-1 stem, no max-pool, for 32 x 32 "
        "patches) on a patch dataset: per-band normalisation from the training split, AdamW with "
        "warm-up and cosine decay, class weighting, flip/rot90 augmentation and early stopping on "
        "the validation loss. Seeded: the same dataset, options and seed give the same model.\n"
        "The run folder keeps experiment.toml (rerun it with the command it names), log.csv, "
        "curves.png and model.safetensors (weights plus the metadata inference checks: bands, "
        "source, normalisation, classes, patch and pixel size, cities, metrics, versions). Training "
        "runs in the worker process; Cancel keeps the last good checkpoint."
    )
