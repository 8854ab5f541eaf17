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
    "demo",
    "Write the synthetic demo city (labels, embeddings as GeoTIFF and zarr, patches, polygons)",
    arg("--output", required=True, help="folder to write the demo city into"),
    arg("--seed", type=int, default=0, help="random seed"),
)
def _demo(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from .demo import make_demo_city

    return make_demo_city(args.output, seed=args.seed, progress=progress).as_dict()


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
