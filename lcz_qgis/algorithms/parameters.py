"""Parameter groups shared by several algorithms, and their translation to worker arguments."""

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
)

SOURCE_KINDS = ["auto", "geotiff", "zarr", "aef"]
DEQUANTISATIONS = ["quadratic", "linear"]
SPLIT_METHODS = ["blocks", "random", "stripes", "checkerboard", "polygons"]
LABEL_KINDS = ["auto", "polygons", "points", "kml", "so2sat", "raster"]
CODINGS = ["auto", "lcz17", "wudapt"]
DEVICES = ["auto", "cpu", "cuda"]
# the scalar LCZ accuracy measures the worker reports, each a numeric output
METRICS = ("oa", "kappa", "oa_u", "oa_bu", "oa_w", "macro_f1")


def is_set(parameters, name):
    """Whether an optional parameter was given a value."""
    return parameters.get(name) not in (None, "")


def add_embedding_parameters(algorithm, optional=False):
    """EMBEDDINGS, SOURCE_KIND, ARRAY, DEQUANTISE and EXTENT."""
    algorithm.addParameter(
        QgsProcessingParameterFile(
            "EMBEDDINGS",
            "Embeddings (GeoTIFF, VRT, zarr store or folder of tiles)",
            behavior=QgsProcessingParameterFile.File,
            fileFilter="Embedding rasters (*.tif *.tiff *.vrt *.zarr);;All files (*)",
            optional=optional,
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterEnum(
            "SOURCE_KIND", "Embedding source kind", SOURCE_KINDS, defaultValue=0
        )
    )
    algorithm.addParameter(QgsProcessingParameterString("ARRAY", "zarr array name", optional=True))
    algorithm.addParameter(
        QgsProcessingParameterEnum(
            "DEQUANTISE", "AlphaEarth int8 dequantisation", DEQUANTISATIONS, defaultValue=0
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterExtent("EXTENT", "Extent (default: the whole raster)", optional=True)
    )


def embedding_arguments(algorithm, parameters, context):
    """Worker arguments of the embedding parameter group."""
    arguments = [
        f"--embeddings={algorithm.parameterAsFile(parameters, 'EMBEDDINGS', context)}",
        "--source-kind", SOURCE_KINDS[algorithm.parameterAsEnum(parameters, "SOURCE_KIND", context)],
        "--dequantise", DEQUANTISATIONS[algorithm.parameterAsEnum(parameters, "DEQUANTISE", context)],
    ]  # fmt: skip
    if is_set(parameters, "ARRAY"):
        arguments += ["--array", algorithm.parameterAsString(parameters, "ARRAY", context)]
    return arguments + algorithm.extent_arguments(parameters, "EXTENT", context)


def add_label_parameters(algorithm, kinds=LABEL_KINDS, optional=False):
    """LABELS, LABEL_KIND, CLASS_FIELD, CODING and MAPPING."""
    algorithm.addParameter(
        QgsProcessingParameterFile(
            "LABELS",
            "LCZ labels (polygons, points, KMZ/KML, So2Sat _geo.h5 or LCZ raster)",
            behavior=QgsProcessingParameterFile.File,
            optional=optional,
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterEnum("LABEL_KIND", "Label kind", kinds, defaultValue=0)
    )
    algorithm.addParameter(
        QgsProcessingParameterString(
            "CLASS_FIELD", "Field holding the LCZ class (vector labels)", optional=True
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterEnum("CODING", "Class coding", CODINGS, defaultValue=0)
    )
    algorithm.addParameter(
        QgsProcessingParameterString("MAPPING", "Class mapping 'from:to,...'", optional=True)
    )


def label_arguments(algorithm, parameters, context, kinds=LABEL_KINDS):
    """Worker arguments of the label parameter group."""
    arguments = [
        f"--labels={algorithm.parameterAsFile(parameters, 'LABELS', context)}",
        "--label-kind", kinds[algorithm.parameterAsEnum(parameters, "LABEL_KIND", context)],
        "--coding", CODINGS[algorithm.parameterAsEnum(parameters, "CODING", context)],
    ]  # fmt: skip
    if is_set(parameters, "CLASS_FIELD"):
        arguments += [
            "--class-field",
            algorithm.parameterAsString(parameters, "CLASS_FIELD", context),
        ]
    if is_set(parameters, "MAPPING"):
        arguments += ["--mapping", algorithm.parameterAsString(parameters, "MAPPING", context)]
    return arguments


def add_split_parameters(algorithm):
    """SPLIT_METHOD, FRACTIONS, SEED, BLOCK_CELLS, BUFFER, SPLIT_POLYGONS and SPLIT_FIELD."""
    algorithm.addParameter(
        QgsProcessingParameterEnum("SPLIT_METHOD", "Split method", SPLIT_METHODS, defaultValue=0)
    )
    algorithm.addParameter(
        QgsProcessingParameterString(
            "FRACTIONS",
            "Train, val, test shares (checkerboard: always 0.5, 0.25, 0.25)",
            defaultValue="0.7,0.15,0.15",
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterNumber("SEED", "Random seed", defaultValue=0, minValue=0)
    )
    algorithm.addParameter(
        QgsProcessingParameterNumber(
            "BLOCK_CELLS", "Block or stripe size (cells)", defaultValue=4, minValue=1
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterNumber(
            "BUFFER",
            "Buffer kept between train and val/test cells (m)",
            type=QgsProcessingParameterNumber.Double,
            defaultValue=0.0,
            minValue=0.0,
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterVectorLayer(
            "SPLIT_POLYGONS", "Split polygons (method 'polygons')", optional=True
        )
    )
    algorithm.addParameter(
        QgsProcessingParameterField(
            "SPLIT_FIELD",
            "Field with train/val/test (method 'polygons')",
            defaultValue="split",
            parentLayerParameterName="SPLIT_POLYGONS",
            optional=True,
        )
    )


def split_arguments(algorithm, parameters, context):
    """Worker arguments of the split parameter group."""
    arguments = [
        "--split-method", SPLIT_METHODS[algorithm.parameterAsEnum(parameters, "SPLIT_METHOD", context)],
        "--fractions", algorithm.parameterAsString(parameters, "FRACTIONS", context),
        "--seed", algorithm.parameterAsInt(parameters, "SEED", context),
        "--block-cells", algorithm.parameterAsInt(parameters, "BLOCK_CELLS", context),
        "--buffer", algorithm.parameterAsDouble(parameters, "BUFFER", context),
    ]  # fmt: skip
    if is_set(parameters, "SPLIT_POLYGONS"):
        layer = algorithm.parameterAsVectorLayer(parameters, "SPLIT_POLYGONS", context)
        arguments += ["--split-polygons", layer.source().split("|")[0]]
        field = algorithm.parameterAsString(parameters, "SPLIT_FIELD", context)
        arguments += ["--split-field", field or "split"]
    return arguments
