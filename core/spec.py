"""One declarative spec per step; the CLI, the QGIS algorithms and the Python API are made from it.

A `Step` names a command, its texts and its parameters (`Param`) and outputs (`Output`). The
`Step.implementation` decorator turns the function that does the work into the public function:
defaults filled from the spec, values converted and checked (choices, ranges, required inputs,
outputs that would overwrite an input), the result returned as a small dataclass. Standard library
only, so that QGIS's own Python can read the specs without the ML stack.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LczError

# Kinds of parameters: inputs read by the step, plain values, and outputs the step writes.
INPUT_KINDS = ("raster", "vector", "embeddings", "labels", "file", "folder")
VALUE_KINDS = ("extent", "point", "crs", "enum", "int", "float", "bool", "string", "field", "band")
OUTPUT_KINDS = ("output_raster", "output_vector", "output_file", "output_folder")
# Kinds of results besides the written outputs.
RESULT_KINDS = ("number", "string", "json", "file", "html", "folder", "raster", "vector")
# Files written beside a raster or vector output.
SIDECAR_SUFFIXES = (".qml", ".aux.xml", ".ovr")
# Inputs read as layers: the style and GDAL metadata beside one are the user's too.
LAYER_KINDS = ("raster", "vector", "embeddings", "labels")
# the environment variable naming where the application running a step keeps the outputs it was
# not given a path for (QGIS sets it for its workers)
TEMPORARY_FOLDER_ENV = "LCZ_TEMPORARY_FOLDER"


@dataclass(frozen=True)
class Param:
    """One parameter of a step: python keyword, CLI flag and QGIS name are derived from `name`."""

    name: str
    kind: str
    label: str
    help: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    advanced: bool = False
    multiple: bool = False  # several values (CLI: one flag, several values)
    parent: str = ""  # field: the layer it belongs to; band: the raster; crs: the extent or point
    file_filter: str = ""  # QGIS file dialogs, e.g. "Models (*.safetensors)"
    group: str = ""  # CLI help section
    # when not given and this parameter (a settings file) is: the file's value, else the default
    inherit_from: str = ""

    def __post_init__(self) -> None:
        if self.kind not in (*INPUT_KINDS, *VALUE_KINDS, *OUTPUT_KINDS):
            raise ValueError(f"parameter {self.name}: unknown kind {self.kind!r}")
        if self.kind == "enum" and self.default is not None and self.default not in self.choices:
            raise ValueError(f"parameter {self.name}: default {self.default!r} not in choices")

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--" + self.name.replace("_", "-")

    @property
    def qgis_name(self) -> str:
        """The QGIS parameter name."""
        return self.name.upper()

    @property
    def is_output(self) -> bool:
        """Whether the step writes this path."""
        return self.kind in OUTPUT_KINDS

    @property
    def is_input_path(self) -> bool:
        """Whether the step reads this path."""
        return self.kind in INPUT_KINDS

    @property
    def required(self) -> bool:
        """Whether a value must be given (no default and not optional)."""
        return not self.optional and self.default is None

    def describe_default(self) -> str:
        """The default as the help texts show it."""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return "" if self.default is None else str(self.default)

    def convert(self, value: Any) -> Any:
        """A value given as text (CLI, worker) or as a Python object -> the checked Python value."""
        if value is None or value == "" or value == []:
            return None
        if self.multiple:
            values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
            return [self._convert_one(v) for v in values]
        return self._convert_one(value)

    def _convert_one(self, value: Any) -> Any:
        kind = self.kind
        if kind in ("int", "float", "band"):
            value = self._number(value, int if kind in ("int", "band") else float)
            if self.minimum is not None and value < self.minimum:
                raise LczError(self.name, f"{value} is below the minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise LczError(self.name, f"{value} is above the maximum {self.maximum:g}")
            return value
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("true", "false"):
                raise LczError(self.name, f"{value!r} is not true or false")
            return text == "true"
        if kind == "enum":
            text = str(value)
            if text not in self.choices:
                raise LczError(self.name, f"{text!r} is not one of {', '.join(self.choices)}")
            return text
        if kind in ("extent", "point"):
            return self._coordinates(value, 4 if kind == "extent" else 2)
        if kind in INPUT_KINDS or kind in OUTPUT_KINDS:
            return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        return str(value)

    def _number(self, value: Any, kind: type) -> int | float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise LczError(self.name, f"{value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise LczError(self.name, f"{value!r} is not a finite number")
        if kind is int:
            if not number.is_integer():
                raise LczError(self.name, f"{value!r} is not a whole number")
            return int(number)
        return number

    def _coordinates(self, value: Any, count: int) -> tuple[float, ...]:
        text = value if isinstance(value, str) else ",".join(str(v) for v in value)
        shape = "xmin,ymin,xmax,ymax" if count == 4 else "x,y"
        try:
            numbers = tuple(float(v) for v in text.replace(" ", "").split(","))
        except ValueError:
            raise LczError(self.name, f"{text!r} is not '{shape}'") from None
        if len(numbers) != count or not all(abs(v) < float("inf") for v in numbers):
            raise LczError(self.name, f"{text!r} is not '{shape}' ({count} finite numbers)")
        if count == 4 and (numbers[0] >= numbers[2] or numbers[1] >= numbers[3]):
            raise LczError(
                self.name, f"{text!r} has no area: give xmin < xmax and ymin < ymax ('{shape}')"
            )
        return numbers


@dataclass(frozen=True)
class Output:
    """One result of a step besides the written paths of its output parameters."""

    name: str
    kind: str
    label: str

    def __post_init__(self) -> None:
        if self.kind not in RESULT_KINDS:
            raise ValueError(f"output {self.name}: unknown kind {self.kind!r}")


@dataclass
class Step:
    """A user-facing step: the command, its texts, parameters and outputs, and its function."""

    name: str  # CLI command, e.g. "import-lcz-map"
    title: str
    group: str
    help: str
    params: tuple[Param, ...]
    outputs: tuple[Output, ...] = ()
    # alternatives of which one must be given entirely, e.g. (("embeddings", "labels"), ("cities",))
    requires: tuple[tuple[str, ...], ...] = ()
    qgis: bool = True  # offered as a QGIS algorithm
    qgis_id: str = ""  # the QGIS algorithm id when it is not the name without dashes
    function: Callable[..., Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.params] + [o.name for o in self.outputs]
        if len(names) != len(set(names)):
            raise ValueError(f"step {self.name}: a parameter or output name is used twice")

    @property
    def algorithm_id(self) -> str:
        """The QGIS algorithm id (lowercase, no separators)."""
        return self.qgis_id or self.name.replace("-", "")

    def param(self, name: str) -> Param:
        """The parameter called `name`."""
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    def label(self, name: str) -> str:
        """The dialog label of a parameter or output (the name itself when unknown)."""
        for item in (*self.params, *self.outputs):
            if item.name == name:
                return item.label
        return name

    @property
    def result_fields(self) -> tuple[str, ...]:
        """The names of the result: the output parameters' paths, then the other outputs."""
        return tuple(p.name for p in self.params if p.is_output) + tuple(
            o.name for o in self.outputs
        )

    def missing_requirements(self, given: Mapping[str, Any]) -> str | None:
        """What is missing of the required parameters and alternatives, as a sentence (or None)."""
        for param in self.params:
            if param.required and given.get(param.name) in (None, "", []):
                return f"{param.label} is required"
        if self.requires and not any(
            all(given.get(name) not in (None, "", []) for name in alternative)
            for alternative in self.requires
        ):
            return "give " + ", or ".join(
                " and ".join(self.label(name) for name in alternative)
                for alternative in self.requires
            )
        return None

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Converted and checked values of every parameter, defaults filled in."""
        unknown = sorted(set(values) - {p.name for p in self.params})
        if unknown:
            raise TypeError(f"{self.name}: unknown parameters {', '.join(unknown)}")
        resolved = {}
        for param in self.params:
            value = param.convert(values.get(param.name))
            if value is None and not (param.inherit_from and values.get(param.inherit_from)):
                value = param.default
            resolved[param.name] = value
        missing = self.missing_requirements(resolved)
        if missing:
            unset = [
                name
                for name in (
                    *(p.name for p in self.params if p.required),
                    *(n for alternative in self.requires for n in alternative),
                )
                if resolved[name] in (None, "", [])
            ]
            first = unset[0]
            raise LczError(first, missing)
        check_output_paths(self, resolved)
        return resolved

    def implementation(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate the function doing the work: the public, checked function of this step."""
        result_type = dataclasses.make_dataclass(
            _camel(self.name) + "Result",
            [(name, Any) for name in self.result_fields]
            + [("details", dict, field(default_factory=dict))],
            namespace={"as_dict": _as_dict, "__doc__": f"The result of {self.title}."},
        )

        @functools.wraps(function)
        def public(progress: Any = None, **values: Any) -> Any:
            resolved = self.resolve(values)
            result = function(**resolved, progress=progress)
            declared = {name: result.get(name) for name in self.result_fields}
            details = {k: v for k, v in result.items() if k not in declared}
            return result_type(**declared, details=details)

        public.__doc__ = self.docstring()
        public.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    p.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=inspect.Parameter.empty if p.required else p.default,
                )
                for p in self.params
            ]
            + [inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=None)],
            return_annotation=result_type,
        )
        public.result_type = result_type  # type: ignore[attr-defined]
        self.function = public
        return public

    def docstring(self) -> str:
        """The public function's documentation: title, help and one line per parameter."""
        lines = [f"{self.title}.", "", self.help, "", "Parameters:"]
        for p in self.params:
            default = f" (default {p.describe_default()})" if p.default is not None else ""
            choices = f" One of {', '.join(p.choices)}." if p.choices else ""
            lines.append(f"    {p.name}: {p.label}{default}. {p.help}{choices}".rstrip())
        lines += ["", "Returns a dataclass with: " + ", ".join(self.result_fields) + ", details."]
        return "\n".join(lines)


def _as_dict(self: Any) -> dict[str, Any]:
    """The result as a JSON-ready dict: declared outputs first, then the details."""
    values = {
        f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "details"
    }
    return {**values, **self.details}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _written_paths(path: str, kind: str) -> list[Path]:
    """A written output and the sidecar files (style, statistics) written beside a layer."""
    resolved = Path(os.path.realpath(path))
    if kind not in ("output_raster", "output_vector"):
        return [resolved]
    sidecars = [resolved.with_name(resolved.name + s) for s in SIDECAR_SUFFIXES]
    return [resolved, *sidecars, resolved.with_suffix(".qml")]


def check_output_paths(step: Step, values: Mapping[str, Any]) -> None:
    """Refuse an output that would overwrite an input or another output of the same run."""
    reads = []
    for param in step.params:
        value = values.get(param.name)
        if param.is_input_path and value:
            for item in value if param.multiple else [value]:
                if "://" not in item and not item.startswith("/vsi"):
                    path = Path(os.path.realpath(item.split("|")[0]))
                    reads.append((param, item, path))
                    if param.kind in LAYER_KINDS:
                        for sidecar in (path.with_suffix(".qml"), Path(f"{path}.aux.xml")):
                            if sidecar.is_file():
                                reads.append((param, f"its sidecar {sidecar}", sidecar))
    written: list[tuple[Param, list[Path]]] = []
    for param in (p for p in step.params if p.is_output and values.get(p.name)):
        paths = _written_paths(values[param.name], param.kind)
        folder = param.kind == "output_folder"
        for other, text, path in reads:
            if any(_clash(mine, path, folder) for mine in paths):
                raise LczError(
                    param.name,
                    f"{param.label} ({values[param.name]}) would overwrite {other.label} "
                    f"({text}); choose another output path",
                )
        for other, other_paths in written:
            if any(_clash(mine, theirs, True) for mine in paths for theirs in other_paths):
                raise LczError(
                    param.name,
                    f"{param.label} and {other.label} would write the same file "
                    f"({values[param.name]}, {values[other.name]}); give each output its own path",
                )
        written.append((param, paths))


def _clash(written: Path, read: Path, written_is_folder: bool) -> bool:
    """Whether writing `written` replaces `read`: the same path, `read` inside a written folder,
    or `written` inside the folder `read` (a zarr store, a dataset)."""
    if written == read:
        return True
    if written_is_folder and read.is_relative_to(written):
        return True
    return written.is_relative_to(read) and read.is_dir()


def split_layer(source: str) -> tuple[str, str | None]:
    """'path|layername=name' (as QGIS names a layer of a multi-layer file) -> (path, name)."""
    path, _, options = source.partition("|")
    for option in options.split("|"):
        key, _, value = option.partition("=")
        if key == "layername" and value:
            return path, value
    return path, None
