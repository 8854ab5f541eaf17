"""Every user-facing step: its spec (standard library only) and its public function."""

from __future__ import annotations

from ..spec import Step
from .demo import DEMO_CITY, write_demo_city
from .embeddings import (
    CHECK_EMBEDDINGS,
    EMBEDDING_RGB,
    EMBEDDING_SIMILARITY,
    PIXOO64,
    check_embeddings,
    embedding_rgb,
    embedding_similarity,
    pixoo64,
)
from .experiments import EXPERIMENT, run_experiment
from .lcz_maps import (
    COMPARE_LCZ_MAPS,
    GLOBAL_LCZ_MAP,
    IMPORT_LCZ_MAP,
    PLOT_LCZ_MAP,
    compare_lcz_maps,
    global_lcz_map,
    import_lcz_map,
    plot_lcz_map,
)
from .modelling import (
    EVALUATE_MODEL,
    PREDICT,
    TRAIN_PATCH_CLASSIFIER,
    TRAIN_SEGMENTATION,
    evaluate_model,
    predict_lcz_map,
    train_patch_classifier,
    train_segmentation,
)
from .training_data import (
    CREATE_GRID,
    RASTERIZE_LABELS,
    SAMPLE_PATCHES,
    create_grid,
    rasterize_labels,
    sample_patches,
)

# in workflow order: the CLI lists them so, and QGIS groups them so
STEPS: tuple[Step, ...] = (
    IMPORT_LCZ_MAP,
    GLOBAL_LCZ_MAP,
    PLOT_LCZ_MAP,
    COMPARE_LCZ_MAPS,
    CREATE_GRID,
    SAMPLE_PATCHES,
    RASTERIZE_LABELS,
    TRAIN_PATCH_CLASSIFIER,
    TRAIN_SEGMENTATION,
    EVALUATE_MODEL,
    PREDICT,
    CHECK_EMBEDDINGS,
    EMBEDDING_RGB,
    EMBEDDING_SIMILARITY,
    PIXOO64,
    EXPERIMENT,
    DEMO_CITY,
)
STEP_BY_NAME = {step.name: step for step in STEPS}

__all__ = [
    "STEPS",
    "STEP_BY_NAME",
    "check_embeddings",
    "compare_lcz_maps",
    "create_grid",
    "embedding_rgb",
    "embedding_similarity",
    "evaluate_model",
    "global_lcz_map",
    "import_lcz_map",
    "pixoo64",
    "plot_lcz_map",
    "predict_lcz_map",
    "rasterize_labels",
    "run_experiment",
    "sample_patches",
    "train_patch_classifier",
    "train_segmentation",
    "write_demo_city",
]
