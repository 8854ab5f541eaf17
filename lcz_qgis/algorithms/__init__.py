"""One module per algorithm; ALGORITHMS lists what the provider offers."""

from .compare_lcz_maps import CompareLczMaps
from .create_grid import CreateGrid
from .evaluate_model import EvaluateModel
from .import_lcz_map import ImportLczMap
from .plot_lcz_map import PlotLczMap
from .predict_lcz_map import PredictLczMap
from .rasterize_labels import RasterizeLabels
from .sample_patches import SamplePatches
from .train_patch_classifier import TrainPatchClassifier
from .train_segmentation import TrainSegmentation

ALGORITHMS = [
    ImportLczMap,
    PlotLczMap,
    CompareLczMaps,
    CreateGrid,
    SamplePatches,
    RasterizeLabels,
    TrainPatchClassifier,
    TrainSegmentation,
    EvaluateModel,
    PredictLczMap,
]
