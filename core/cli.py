"""Command line of the core, also the worker protocol of the QGIS plugin.

`python -m lcz_core <command> --option value ...` runs one core step with a progress bar.
With `--jsonl` it speaks JSON lines on stdout instead ({"type": "progress" | "log" | "result" |
"error" | "cancelled", ...}), which is how the QGIS plugin drives it: a step run from QGIS can be
rerun from a shell or on a cluster verbatim. SIGTERM cancels the run cleanly (no partial output).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import __version__
from .demo import DEMO_SIZE
from .errors import LczError
from .progress import Cancelled, JsonLinesProgress, Progress, TqdmProgress

Handler = Callable[[argparse.Namespace, Progress], dict[str, Any]]
COMMANDS: dict[str, tuple[str, list[tuple[tuple[str, ...], dict[str, Any]]], Handler]] = {}


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One argparse argument, declared beside its command."""
    return flags, kwargs


def command(name: str, help: str, *arguments: tuple[tuple[str, ...], dict[str, Any]]):
    """Register a command: `handler(args, progress) -> dict of outputs`."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help, list(arguments), handler)
        return handler

    return register


def parse_extent(text: str) -> tuple[float, float, float, float]:
    """'xmin,ymin,xmax,ymax' -> a tuple of floats."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"extent {text!r} is not 'xmin,ymin,xmax,ymax'") from None
    if len(values) != 4 or values[0] >= values[2] or values[1] >= values[3]:
        raise argparse.ArgumentTypeError(
            f"extent {text!r} must be 'xmin,ymin,xmax,ymax' with xmin < xmax and ymin < ymax"
        )
    return values  # type: ignore[return-value]


EXTENT_ARGS = (
    arg("--extent", type=parse_extent, help="xmin,ymin,xmax,ymax (default: the whole input)"),
    arg("--extent-crs", help="CRS of --extent, e.g. EPSG:4326 (default: the input's CRS)"),
)


@command(
    "import-lcz-map",
    "Normalise any LCZ raster to a styled 1-17 uint8 GeoTIFF",
    arg("--input", required=True, help="LCZ raster (any CRS, coding and nodata)"),
    arg("--output", required=True, help="output GeoTIFF"),
    arg("--coding", default="auto", help="auto, lcz17 or wudapt (1-10, 101-107)"),
    arg("--mapping", default="", help="explicit 'from:to,...' class mapping (to: 1-17 or A-G)"),
    arg("--band", type=int, default=1, help="band holding the LCZ classes"),
    *EXTENT_ARGS,
    arg("--target-crs", help="reproject (nearest) to this CRS"),
    arg("--resolution", type=float, help="output pixel size in target CRS units"),
)
def _import_lcz_map(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .lcz import parse_mapping
    from .lczmap import import_lcz_map

    mapping = parse_mapping(args.mapping) if args.mapping else None
    return import_lcz_map(
        args.input,
        args.output,
        coding=args.coding,
        mapping=mapping,
        band=args.band,
        extent=args.extent,
        extent_crs=args.extent_crs,
        target_crs=args.target_crs,
        resolution=args.resolution,
        progress=progress,
    )


@command(
    "plot-lcz-map",
    "Plot an LCZ GeoTIFF as a PNG with the LCZ palette and a legend of the classes present",
    arg("--input", required=True, help="LCZ raster with codes 1-17"),
    arg("--output", required=True, help="output PNG"),
    arg("--title", default=None, help="plot title (default: the file name)"),
)
def _plot_lcz_map(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .plot import plot_lcz_raster

    return plot_lcz_raster(args.input, args.output, title=args.title, progress=progress)


@command(
    "compare-lcz-maps",
    "Agreement of an LCZ map with a reference LCZ map (default: the global LCZ map)",
    arg("--input", required=True, help="LCZ map with codes 1-17 (e.g. a prediction)"),
    arg("--output", required=True, help="JSON report"),
    arg("--reference", default=None, help="reference LCZ raster (default: the global LCZ map)"),
    arg("--reference-coding", default="auto", help="auto, lcz17 or wudapt"),
    arg("--reference-output", default=None, help="write the clipped, styled reference here"),
    arg("--confusion-png", default=None, help="write the confusion matrix plot here"),
)
def _compare_lcz_maps(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .compare import GLOBAL_LCZ_MAP, compare_lcz_maps

    return compare_lcz_maps(
        args.input,
        args.output,
        reference=args.reference or GLOBAL_LCZ_MAP,
        reference_coding=args.reference_coding,
        reference_output=args.reference_output,
        confusion_png=args.confusion_png,
        progress=progress,
    )


@command(
    "demo",
    "Write the synthetic demo city (labels, embeddings as GeoTIFF and zarr, patches, polygons)",
    arg("--output", required=True, help="folder to write the demo city into"),
    arg("--seed", type=int, default=0, help="random seed"),
    arg("--size", type=int, default=DEMO_SIZE, help="pixels (10 m) a side, a multiple of 10"),
)
def _demo(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .demo import make_demo_city

    return make_demo_city(args.output, seed=args.seed, size=args.size, progress=progress).as_dict()


EMBEDDING_ARGS = (
    arg("--embeddings", help="embedding raster: GeoTIFF, VRT, folder of tiles or zarr"),
    arg("--source-kind", default="auto", help="auto, geotiff, zarr or aef (AlphaEarth int8)"),
    arg("--array", default=None, help="zarr: name of the array in the group"),
    arg(
        "--dequantise",
        default="quadratic",
        help="aef: quadratic (sign(v)*(v/127.5)^2) or linear (v/127)",
    ),
    *EXTENT_ARGS,
)
SPLIT_ARGS = (
    arg(
        "--split-method", default="blocks", help="random, blocks, stripes, checkerboard or polygons"
    ),
    arg(
        "--fractions",
        default="0.7,0.15,0.15",
        help="train,val,test shares (checkerboard: always half train, a quarter val, a quarter test)",
    ),
    arg("--seed", type=int, default=0, help="random seed (same inputs + seed = same split)"),
    arg("--block-cells", type=int, default=4, help="block/stripe size in cells"),
    arg(
        "--buffer",
        type=float,
        default=0.0,
        help="metres kept between train and val/test cells; -1: none",
    ),
    arg(
        "--split-polygons", default=None, help="polygons method: layer with train/val/test polygons"
    ),
    arg("--split-field", default="split", help="polygons method: field holding train, val or test"),
)


def _source_and_extent(args: argparse.Namespace):
    """The embedding source named by the arguments and the extent in its CRS (None = all)."""
    from .cities import reproject_extent
    from .rasters import open_source

    if not args.embeddings:
        raise LczError("embeddings", "give --embeddings (or --cities for a catalogue)")
    source = open_source(
        args.embeddings, args.source_kind, array=args.array, dequantise=args.dequantise
    )
    extent = args.extent
    if extent is not None and args.extent_crs:
        extent = reproject_extent(extent, args.extent_crs, source.crs)
    return source, extent


def _split_config(args: argparse.Namespace):
    """The split settings named by the arguments."""
    from .sampling import SplitConfig

    try:
        fractions = tuple(float(v) for v in args.fractions.split(","))
    except ValueError:
        raise LczError("fractions", f"{args.fractions!r} is not 'train,val,test'") from None
    return SplitConfig(
        method=args.split_method,
        fractions=fractions,  # type: ignore[arg-type]
        seed=args.seed,
        block_cells=args.block_cells,
        buffer_m=None if args.buffer < 0 else args.buffer,
        polygons=args.split_polygons,
        split_field=args.split_field,
    )


@command(
    "create-grid",
    "Write a grid of cells aligned to the embeddings, with each cell's split, as a GeoPackage",
    *EMBEDDING_ARGS,
    arg("--output", required=True, help="output GeoPackage (cell_id, row, col, split)"),
    arg("--cell-size", type=int, default=32, help="cell side in pixels (32 patches, 64 tiles)"),
    *SPLIT_ARGS,
)
def _create_grid(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .sampling import grid_with_splits

    source, extent = _source_and_extent(args)
    with source:
        return grid_with_splits(source, args.output, extent, args.cell_size, _split_config(args))


@command(
    "sample-patches",
    "Cut labelled patches (or tiles) from embeddings, split them leak-free, write a dataset",
    *EMBEDDING_ARGS,
    arg("--labels", help="labels: polygons, points, KMZ/KML, So2Sat .h5 or an LCZ raster"),
    arg("--label-kind", default="auto", help="auto, polygons, points, kml, so2sat or raster"),
    arg("--class-field", default=None, help="field holding the LCZ class (vector labels)"),
    arg("--coding", default="auto", help="auto, lcz17 or wudapt (1-10, 101-107)"),
    arg("--mapping", default="", help="explicit 'from:to,...' class mapping (to: 1-17 or A-G)"),
    arg("--epsg", type=int, default=None, help="So2Sat: the EPSG code of the city to take"),
    arg("--cities", default=None, help="city catalogue (TOML) instead of --embeddings/--labels"),
    arg("--city", default=None, help="comma-separated city names from --cities (default: all)"),
    arg("--output", required=True, help="output dataset folder"),
    arg("--kind", default="patches", help="patches (one class each) or tiles (label rasters)"),
    arg("--patch-size", type=int, default=None, help="pixels a side (default 32, tiles 64)"),
    arg("--min-share", type=float, default=None, help="share of a patch its class must cover"),
    arg("--max-missing", type=float, default=0.5, help="largest share of missing pixels kept"),
    arg("--min-count", type=int, default=10, help="name classes with fewer samples per split"),
    arg("--grid-output", default=None, help="optional GeoPackage of the used cells and splits"),
    *SPLIT_ARGS,
)
def _sample_patches(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from pathlib import Path

    from .labels import open_labels
    from .lcz import parse_mapping
    from .sampling import CityInput, make_dataset

    mapping = parse_mapping(args.mapping) if args.mapping else None
    if args.cities:
        from .cities import load_catalogue

        catalogue = load_catalogue(args.cities)
        names = args.city.split(",") if args.city else list(catalogue)
        cities = []
        for name in names:
            city = catalogue[name.strip()]
            source = city.open_embeddings()
            settings = city.label_settings()
            options = {k: v for k, v in settings.items() if k in ("class_field", "coding", "epsg")}
            labels = open_labels(
                settings["path"], settings.get("kind", "auto"), progress=progress, **options
            )
            cities.append(CityInput(city.name, source, labels, city.extent_in(source.crs)))
    else:
        source, extent = _source_and_extent(args)
        if not args.labels:
            raise LczError("labels", "give --labels (or --cities for a catalogue)")
        labels = open_labels(
            args.labels, args.label_kind, args.class_field, args.coding, mapping,
            epsg=args.epsg, progress=progress,
        )  # fmt: skip
        cities = [CityInput(Path(args.embeddings).stem, source, labels, extent)]
    return make_dataset(
        cities,
        args.output,
        kind=args.kind,
        patch_size=args.patch_size,
        split=_split_config(args),
        min_share=args.min_share,
        max_missing=args.max_missing,
        min_count=args.min_count,
        grid_output=args.grid_output,
        progress=progress,
    )


@command(
    "rasterize-labels",
    "Rasterise LCZ labels (polygons, KMZ, LCZ raster) onto the embeddings' pixel grid",
    *EMBEDDING_ARGS,
    arg("--labels", required=True, help="labels: polygons, KMZ/KML or an LCZ raster"),
    arg("--label-kind", default="auto", help="auto, polygons, kml or raster"),
    arg("--class-field", default=None, help="field holding the LCZ class (vector labels)"),
    arg("--coding", default="auto", help="auto, lcz17 or wudapt (1-10, 101-107)"),
    arg("--mapping", default="", help="explicit 'from:to,...' class mapping (to: 1-17 or A-G)"),
    arg("--output", required=True, help="output LCZ GeoTIFF (styled, 0 = unlabelled)"),
)
def _rasterize_labels(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .grid import make_grid
    from .labels import open_labels, rasterize_to_file
    from .lcz import parse_mapping

    source, extent = _source_and_extent(args)
    with source:
        grid = make_grid(source, extent, cell_px=1)
    mapping = parse_mapping(args.mapping) if args.mapping else None
    labels = open_labels(
        args.labels, args.label_kind, args.class_field, args.coding, mapping, progress=progress
    )
    return rasterize_to_file(
        labels, args.output, grid.crs, grid.transform, grid.cols, grid.rows, progress=progress
    )


# Training options; None = not given, so an --experiment file's value (or the default) stands.
TRAIN_ARGS = (
    arg("--dataset", help="dataset folder (sample-patches); required without --experiment"),
    arg("--output", help="run folder (config, log, curves, model); required without --experiment"),
    arg("--experiment", help="experiment TOML file; the options given here override its values"),
    arg("--architecture", help="timm ResNet name (patch classifier, default resnet10t) or unet"),
    arg("--width", type=int, help="channels of the first stage (default 16)"),
    arg("--stem", choices=("1x1", "3x3"), help="first convolution, stride 1 (default 1x1)"),
    arg("--epochs", type=int, help="maximum number of epochs (default 30)"),
    arg("--batch-size", type=int, help="samples per batch (default 64)"),
    arg("--learning-rate", type=float, help="AdamW peak learning rate (default 0.002)"),
    arg("--weight-decay", type=float, help="AdamW weight decay (default 0.01)"),
    arg("--patience", type=int, help="epochs without a better validation loss (default 5)"),
    arg("--class-weighting", choices=("none", "sqrt", "balanced"), help="default sqrt"),
    arg("--augment", choices=("true", "false"), help="flips and rotations (default true)"),
    arg("--seed", type=int, help="random seed (default 0)"),
    arg("--device", choices=("auto", "cpu", "cuda"), help="default auto (a GPU when present)"),
    arg("--threads", type=int, help="CPU threads for torch (default: torch's choice)"),
)


def _train(args: argparse.Namespace, progress: Progress, task: str) -> dict[str, Any]:
    from dataclasses import asdict, fields

    from .train import TrainConfig, read_experiment, train

    dataset = output = None
    config = TrainConfig(task=task)
    if args.experiment:
        dataset, output, config = read_experiment(args.experiment)
        if config.task != task:
            raise LczError("experiment", f"{args.experiment} is a {config.task} experiment")
    given = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    if args.augment is not None:
        given["augment"] = args.augment == "true"
    config = TrainConfig(**{**asdict(config), **{k: v for k, v in given.items() if v is not None}})
    dataset, output = args.dataset or dataset, args.output or output
    for name, value in (("dataset", dataset), ("output", output)):
        if value is None:
            raise LczError(name, f"give --{name} or an --experiment file that names it")
    return train(dataset, output, config, progress)


@command(
    "train-patch-classifier", "Train a ResNet patch classifier on a patch dataset", *TRAIN_ARGS
)
def _train_patch_classifier(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    return _train(args, progress, "patch")


@command("train-segmentation", "Train a U-Net on a tile dataset (label 0 ignored)", *TRAIN_ARGS)
def _train_segmentation(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    return _train(args, progress, "segmentation")


@command(
    "evaluate-model",
    "Metrics of a model on datasets (overall, per city), confusion plots and an HTML report",
    arg("--model", required=True, help="model file (.safetensors)"),
    arg("--dataset", required=True, nargs="+", help="one or more dataset folders"),
    arg("--output", required=True, help="folder for metrics.json, confusion PNGs, report.html"),
    arg("--split", default="test", help="train, val, test or all (all: e.g. an unseen city)"),
    arg("--cities", default="", help="comma-separated city names to keep (default: all)"),
    arg("--batch-size", type=int, default=256, help="samples per batch"),
    arg("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto"),
)
def _evaluate_model(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .evaluate import evaluate_model

    cities = [c.strip() for c in args.cities.split(",") if c.strip()] or None
    return evaluate_model(
        args.model,
        args.dataset,
        args.output,
        split=args.split,
        cities=cities,
        batch_size=args.batch_size,
        device=args.device,
        progress=progress,
    )


@command(
    "predict",
    "Map LCZ over an embedding raster with a model: styled LCZ GeoTIFF + confidence GeoTIFF",
    arg("--model", required=True, help="model file (.safetensors)"),
    arg("--embeddings", required=True, help="embedding GeoTIFF, VRT, folder of tiles or zarr"),
    *EMBEDDING_ARGS[1:],  # all but --embeddings, required here
    arg("--output", required=True, help="output LCZ GeoTIFF"),
    arg("--confidence", default=None, help="confidence GeoTIFF (default: <output>_confidence.tif)"),
    arg("--stride", type=int, default=None, help="patch models: output pixel in input pixels"),
    arg("--batch-size", type=int, default=256, help="patches per batch"),
    arg("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto"),
)
def _predict(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .predict import predict_raster

    return predict_raster(
        args.model,
        args.embeddings,
        args.output,
        args.confidence,
        stride=args.stride,
        extent=args.extent,
        extent_crs=args.extent_crs,
        source_kind=args.source_kind,
        array=args.array,
        dequantise=args.dequantise,
        batch_size=args.batch_size,
        device=args.device,
        progress=progress,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with one sub-command per registered core step."""
    parser = argparse.ArgumentParser(prog="python -m lcz_core", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--jsonl", action="store_true", help="speak JSON lines (worker mode)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, arguments, handler) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        for flags, kwargs in arguments:
            sub.add_argument(*flags, **kwargs)
        sub.set_defaults(handler=handler)
    return parser


def _raise_cancelled(signum: int, frame: object) -> None:
    raise Cancelled("cancelled by the user")


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit 0 on success, 1 on error, 130 when cancelled."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_cancelled)
    if args.jsonl:
        progress: Progress = JsonLinesProgress()
    else:
        progress = TqdmProgress()
    try:
        result = args.handler(args, progress)
    except Cancelled:
        _finish(progress, "cancelled", message="cancelled by the user")
        return 130
    except (LczError, ValueError, FileNotFoundError) as error:
        _finish(progress, "error", message=str(error), parameter=getattr(error, "parameter", None))
        return 1
    except Exception as error:  # unexpected: keep the traceback for a bug report
        _finish(
            progress,
            "error",
            message=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(),
        )
        return 1
    _finish(progress, "result", outputs=result)
    return 0


def _finish(progress: Progress, kind: str, **fields: Any) -> None:
    if isinstance(progress, JsonLinesProgress):
        progress.send(kind, **fields)
        return
    if isinstance(progress, TqdmProgress):
        progress.close()
    if kind == "result":
        print(json.dumps(fields["outputs"], indent=2, default=str))
    else:
        print(f"{kind}: {fields['message']}", file=sys.stderr)
        if "traceback" in fields:
            print(fields["traceback"], file=sys.stderr)
