"""The choice lists of the steps, defined once (standard library only: QGIS's Python reads them)."""

from __future__ import annotations

# embedding sources
SOURCE_KINDS = ("auto", "geotiff", "zarr", "aef", "tessera", "tessera-zarr", "aef-index")
# TESSERA versions and variants (free text is accepted too, e.g. a newer release)
TESSERA_VARIANTS = ("auto", "1.0", "1.1-dclimate", "1.1-cambridge", "2.0")
DEQUANTISATIONS = ("quadratic", "linear")
# labels and LCZ codings
LABEL_KINDS = ("auto", "polygons", "points", "kml", "so2sat", "raster")
CODINGS = ("auto", "lcz17", "wudapt")
# splits: the first three are the dataset's split codes 0, 1, 2
SPLITS = ("train", "val", "test")
SPLIT_METHODS = ("blocks", "random", "stripes", "checkerboard", "polygons")
EVALUATION_SPLITS = ("test", "val", "train", "all")
DATASET_KINDS = ("patches", "tiles")
# embedding pictures: how principal components become 0-255
STRETCHES = ("percentile", "equalize", "sigma")
# training
STEMS = ("1x1", "3x3")
CLASS_WEIGHTINGS = ("sqrt", "balanced", "none")
DEVICES = ("auto", "cpu", "cuda")
# the scalar LCZ accuracy measures every evaluation reports, with their labels
METRICS = {
    "oa": "Overall accuracy (OA)",
    "kappa": "Cohen's kappa",
    "oa_u": "OA of the built classes (OA_u)",
    "oa_bu": "OA built vs natural (OA_bu)",
    "oa_w": "Similarity-weighted OA (OA_w)",
    "macro_f1": "Macro F1",
}
