"""lcz:trainsegmentation: a small U-Net on tiles with rasterised labels."""

from .training import TrainingAlgorithm


class TrainSegmentation(TrainingAlgorithm):
    algorithm_id = "trainsegmentation"
    display_name = "Train segmentation model (U-Net)"
    command = "train-segmentation"
    help_text = (
        "Trains a small U-Net on a tile dataset (Sample labelled patches with kind 'tiles'): "
        "per-pixel classes, unlabelled pixels (0) ignored. Options, run folder and model file as in "
        "Train patch classifier."
    )
