"""Command line of the core, made from the step specs; also the worker protocol of the QGIS plugin.

`python -m lcz_core <command> --option value ...` (or `lcz <command> ...`) runs one step with a
progress bar. With `--jsonl` it speaks JSON lines on stdout instead ({"type": "progress" | "log" |
"result" | "error" | "cancelled", ...}), which is how the QGIS plugin drives it: a step run from
QGIS can be rerun from a shell or on a cluster verbatim. SIGTERM and Ctrl-C cancel the run cleanly
(no partial output).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from typing import Any

from . import __version__
from .errors import LczError
from .progress import Cancelled, JsonLinesProgress, Progress, TqdmProgress
from .spec import Param, Step
from .steps import STEP_BY_NAME, STEPS

METAVARS = {
    "extent": "XMIN,YMIN,XMAX,YMAX",
    "point": "X,Y",
    "crs": "CRS",
    "int": "N",
    "float": "X",
    "band": "N",
    "field": "FIELD",
    "string": "TEXT",
}


def program_name(argv0: str | None = None) -> str:
    """'python -m lcz_core' when run as a module, else the script's name (e.g. 'lcz')."""
    name = os.path.basename(argv0 if argv0 is not None else sys.argv[0])
    return "python -m lcz_core" if name in ("__main__.py", "") else name


def help_text(param: Param) -> str:
    """A parameter's help line: label, help and default."""
    text = param.label + (f": {param.help}" if param.help else "")
    if param.default is not None:
        text += f" (default: {param.describe_default()})"
    return text.replace("%", "%%")


def add_step_parser(subparsers: Any, step: Step) -> None:
    """One sub-command with the step's parameters, grouped as the spec groups them."""
    sub = subparsers.add_parser(
        step.name,
        help=step.title,
        description=f"{step.title}. {step.help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups: dict[str, Any] = {}
    for param in step.params:
        title = param.group or "options"
        group = groups.get(title) or groups.setdefault(title, sub.add_argument_group(title))
        options: dict[str, Any] = {"dest": param.name, "default": None, "help": help_text(param)}
        if param.kind == "enum":
            options["choices"] = param.choices
        elif param.kind == "bool":
            options["choices"] = ("true", "false")
        else:
            options["metavar"] = METAVARS.get(param.kind, "PATH")
        if param.multiple:
            options["nargs"] = "+"
        if param.required:
            options["required"] = True
        group.add_argument(param.flag, **options)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser with one sub-command per step."""
    parser = argparse.ArgumentParser(
        prog=prog or program_name(), description=__doc__.split("\n")[0]
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--jsonl", action="store_true", help="speak JSON lines (worker mode)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for step in STEPS:
        add_step_parser(subparsers, step)
    return parser


def _raise_cancelled(signum: int, frame: object) -> None:
    raise Cancelled("cancelled by the user")


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit 0 on success, 1 on error, 130 when cancelled."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_cancelled)
    step = STEP_BY_NAME[args.command]
    values = {p.name: getattr(args, p.name) for p in step.params}
    given = {name: value for name, value in values.items() if value is not None}
    progress: Progress = JsonLinesProgress() if args.jsonl else TqdmProgress()
    try:
        result = step.function(progress=progress, **given)  # type: ignore[misc]
    except (Cancelled, KeyboardInterrupt):
        _finish(progress, "cancelled", message="cancelled by the user")
        return 130
    except LczError as error:
        _finish(progress, "error", step, message=error.message, parameter=error.parameter)
        return 1
    except OSError as error:
        message = f"cannot use {error.filename or 'a file'}: {error.strerror or error}"
        parameter = _parameter_of(step, given, error.filename)
        _finish(progress, "error", step, message=message, parameter=parameter)
        return 1
    except MemoryError:
        message = "not enough memory for this run: choose a smaller extent, batch or dataset"
        _finish(progress, "error", message=message)
        return 1
    except Exception as error:  # unexpected: keep the traceback for a bug report
        _finish(
            progress,
            "error",
            message=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(),
        )
        return 1
    _finish(progress, "result", outputs=result.as_dict())
    return 0


def _parameter_of(step: Step, values: dict[str, Any], filename: Any) -> str | None:
    """The parameter whose path a failing file operation concerned, where one matches."""
    if not filename:
        return None
    target = os.path.realpath(os.fsdecode(filename))
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if (
                isinstance(item, str)
                and item
                and (
                    os.path.realpath(item) == target
                    or target.startswith(os.path.realpath(item) + os.sep)
                )
            ):
                return name
    return None


def _finish(progress: Progress, kind: str, step: Step | None = None, **fields: Any) -> None:
    """The run's last word: JSON for the worker, else the result or one line on stderr."""
    if isinstance(progress, JsonLinesProgress):
        progress.send(kind, **fields)
        return
    if isinstance(progress, TqdmProgress):
        progress.close()
    if kind == "result":
        print(json.dumps(fields["outputs"], indent=2, default=str))
        return
    message, parameter = fields["message"], fields.get("parameter")
    if step is not None and parameter:
        known = [p.flag for p in step.params if p.name == parameter]
        message = f"{known[0] if known else parameter}: {message}"
    print(f"{kind}: {message}", file=sys.stderr)
    if "traceback" in fields:
        print(fields["traceback"], file=sys.stderr)
