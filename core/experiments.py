"""Experiments: several embeddings, models and training sets compared on the same splits.

An experiment file (TOML, paths relative to it) names the cities (a city catalogue, inline or
as a path), the embedding sources to compare (names every city's catalogue entry has), the
models (their training options) and the plan: a model per city, one model of all cities, and
leave-one-city-out transfer. Every (city, embedding) is sampled with the same split settings on
the same grid, so the split of a city depends on its labels and grid only and every embedding of
a city sees the same train, val and test cells (checked cell by cell). Patches and the U-Net's
tiles share the grid (one cell size) and the split settings, but each kind's split is dealt by
its own samples (a tile needs any label, a patch a majority class), so the two kinds' cells may
fall in different splits. Each step is one of the public steps (sample_patches, the training
steps, evaluate_model, predict_lcz_map, compare_lcz_maps); the experiment folder holds

    experiment.toml            the experiment resolved: absolute paths, every setting spelled out
    catalogues/<embedding>.toml  the cities with that one embedding source (what sampling read)
    datasets/<city>/<embedding>/<kind>-<digest>/   sampled; the digest names the settings
    datasets/merged/<embedding>/<kind>-<cities>-<digest>/   several cities' datasets as one
    runs/<embedding>/<model>/<trained on>/   a training run folder (experiment.toml reruns it),
        evaluation_<city>/ on each city's test split, map_<city>.tif, agreement_<city>.json
    references/<city>_*.tif    the reference map of each city clipped to its maps
    report.html, report.csv, report.json, figures/

and runs resume: a dataset, a run whose experiment.toml equals the one it would write, an
evaluation, a map or a comparison already there is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import checks
from .cities import City, parse_catalogue, pick_cities
from .errors import LczError
from .progress import Progress, SubProgress
from .remote import is_url

PARAMETER = "config"
SECTIONS = ("experiment", "cities", "plan", "sampling", "models", "references")
EXPERIMENT_KEYS = (
    "title",
    "catalogue",
    "cities",
    "embeddings",
    "labels",
    "bootstrap_draws",
    "global_lcz_map",
)
PLANS = ("per_city", "multi_city", "leave_one_out")
# sample_patches' settings an experiment may give; the same for every city, embedding and model
SAMPLING_KEYS = (
    "patch_size",
    "split_method",
    "fractions",
    "seed",
    "block_cells",
    "buffer",
    "split_polygons",
    "split_field",
    "min_share",
    "max_missing",
    "min_count",
)
DEFAULT_PATCH_SIZE = 32  # cells of patches and tiles alike, so both kinds share one grid
TASKS = {"patch": "patches", "segmentation": "tiles"}  # model task -> dataset kind
ALL_CITIES, OTHER_CITIES = "all cities", "all other cities"
# the global LCZ map (Demuzere et al. 2022) when `global_lcz_map` is true
GLOBAL = "global"


@dataclass
class ModelSpec:
    """One model of the experiment: its name, task and training options (None: the default)."""

    name: str
    task: str
    options: dict[str, Any]

    @property
    def kind(self) -> str:
        """The dataset kind it trains on."""
        return TASKS[self.task]


@dataclass
class Experiment:
    """An experiment file, read and checked."""

    path: Path
    title: str
    cities: list[City]
    embeddings: list[str]
    labels: str | None
    models: list[ModelSpec]
    sampling: dict[str, Any]
    plan: dict[str, bool]
    references: dict[str, str]
    global_lcz_map: str | None
    bootstrap_draws: int
    slugs: dict[str, str] = field(default_factory=dict)  # city, embedding, model -> folder name

    @property
    def kinds(self) -> list[str]:
        """The dataset kinds the models need."""
        return sorted({m.kind for m in self.models})


def _refuse(message: str) -> LczError:
    return LczError(PARAMETER, message)


def _converted(step: Any, name: str, value: Any, where: str) -> Any:
    """A setting checked and converted as the step's parameter `name` would be."""
    try:
        return step.param(name).convert(value)
    except LczError as error:
        raise _refuse(f"{where}: {error.message}") from None


def folder_name(name: str) -> str:
    """A name as a file or folder name: letters, digits, '_', '.' and '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "x"


def read_config(path: str | os.PathLike) -> Experiment:
    """Read and check an experiment file; every key is checked before anything is opened."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise _refuse(f"cannot read {path}: {error}") from None
    base = path.resolve().parent

    def table(key: str) -> dict[str, Any]:
        return checks.table(data.get(key, {}), PARAMETER, f"{path}: [{key}]")

    checks.known_keys(data, PARAMETER, str(path), SECTIONS)
    settings = checks.known_keys(
        table("experiment"), PARAMETER, f"{path}: [experiment]", EXPERIMENT_KEYS
    )

    def setting(key: str, check: Any, default: Any, *limits: Any) -> Any:
        if key not in settings:
            return default
        return check(settings[key], PARAMETER, f"{path}: experiment.{key}", *limits)

    catalogue_path = setting("catalogue", checks.text, None)
    if (catalogue_path is None) == ("cities" not in data):
        raise _refuse(
            f"{path}: give the cities either as [cities.<name>] tables or as experiment.catalogue "
            "(a city catalogue file), one of the two"
        )
    try:
        if catalogue_path is not None:
            from .cities import load_catalogue

            catalogue = load_catalogue(_resolve(catalogue_path, base))
        else:
            catalogue = parse_catalogue(data["cities"], base, str(path))
        wanted = setting("cities", checks.items, None)
        cities = pick_cities(
            catalogue,
            [checks.text(c, PARAMETER, f"{path}: experiment.cities item") for c in wanted or []],
        )
    except LczError as error:
        raise _refuse(error.message) from None

    embeddings = setting("embeddings", checks.items, None) or list(cities[0].embeddings)
    for name in embeddings:
        checks.text(name, PARAMETER, f"{path}: experiment.embeddings item")
    if len(set(embeddings)) != len(embeddings):
        raise _refuse(f"{path}: experiment.embeddings names a source twice")
    labels = setting("labels", checks.text, None)
    for city in cities:
        missing = [e for e in embeddings if e not in city.embeddings]
        if missing:
            raise _refuse(
                f"city {city.name} has no embedding source {', '.join(missing)} (it has "
                f"{', '.join(city.embeddings) or 'none'}); every city needs every compared source"
            )
        if labels is None and len(city.labels) != 1:
            raise _refuse(
                f"city {city.name} names the label sources {', '.join(city.labels) or 'none'}; "
                "name the one to use in experiment.labels"
            )
        if labels is not None and labels not in city.labels:
            raise _refuse(f"city {city.name} has no label source {labels!r}")

    plan_table = checks.known_keys(table("plan"), PARAMETER, f"{path}: [plan]", PLANS)
    plan = {
        key: checks.flag(plan_table.get(key, key == "per_city"), PARAMETER, f"{path}: plan.{key}")
        for key in PLANS
    }
    if not any(plan.values()):
        raise _refuse(f"{path}: [plan] plans nothing; set per_city, multi_city or leave_one_out")
    for key in ("multi_city", "leave_one_out"):
        if plan[key] and len(cities) < 2:
            raise _refuse(f"{path}: plan.{key} needs at least two cities")

    sampling = _read_sampling(table("sampling"), path, base)
    models = _read_models(table("models"), path)
    if any(m.task == "segmentation" for m in models) and sampling["patch_size"] % 8:
        raise _refuse(
            f"{path}: sampling.patch_size {sampling['patch_size']}: the U-Net needs a multiple of 8"
        )

    references = {}
    for name, value in table("references").items():
        if name not in {c.name for c in cities}:
            raise _refuse(f"{path}: references.{name} names no city of the experiment")
        references[name] = _resolve(
            checks.text(value, PARAMETER, f"{path}: references.{name}"), base
        )
    global_map = settings.get("global_lcz_map", True)
    if isinstance(global_map, bool):
        global_map = GLOBAL if global_map else None
    else:
        global_map = _resolve(
            checks.text(global_map, PARAMETER, f"{path}: experiment.global_lcz_map"), base
        )

    experiment = Experiment(
        path=path,
        title=setting("title", checks.text, path.stem),
        cities=cities,
        embeddings=embeddings,
        labels=labels,
        models=models,
        sampling=sampling,
        plan=plan,
        references=references,
        global_lcz_map=global_map,
        bootstrap_draws=setting("bootstrap_draws", checks.integer, 1000, 0, 100_000),
    )
    for what, names in (
        ("cities", [c.name for c in cities]),
        ("embeddings", embeddings),
        ("models", [m.name for m in models]),
    ):
        slugs = {n: folder_name(n) for n in names}
        if len(set(slugs.values())) != len(slugs):
            raise _refuse(f"{path}: the {what} {', '.join(names)} give the same folder names")
        taken = [n for n in slugs.values() if n == "all-cities" or n.startswith("without-")]
        if what == "cities" and taken:
            raise _refuse(
                f"{path}: rename city {taken[0]}: the runs of several cities use that name"
            )
        experiment.slugs.update(slugs)
    return experiment


def _read_sampling(table: dict[str, Any], path: Path, base: Path) -> dict[str, Any]:
    """The [sampling] settings, checked as sample_patches checks them, defaults spelled out."""
    from .steps.training_data import SAMPLE_PATCHES

    checks.known_keys(table, PARAMETER, f"{path}: [sampling]", SAMPLING_KEYS)
    sampling: dict[str, Any] = {k: SAMPLE_PATCHES.param(k).default for k in SAMPLING_KEYS}
    sampling["patch_size"] = DEFAULT_PATCH_SIZE
    for key, value in table.items():
        if key == "fractions" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if key == "split_polygons":
            value = _resolve(checks.text(value, PARAMETER, f"{path}: sampling.{key}"), base)
        sampling[key] = _converted(SAMPLE_PATCHES, key, value, f"{path}: sampling.{key}")
    return sampling


def _read_models(table: dict[str, Any], path: Path) -> list[ModelSpec]:
    """The [models.<name>] tables: a task and training options, checked as the training steps
    check them, defaults spelled out."""
    from .steps.modelling import TRAINING_OPTIONS

    if not table:
        raise _refuse(f"{path}: name at least one model in a [models.<name>] table")
    models = []
    for name, entry in table.items():
        where = f"{path}: models.{name}"
        known = ("task", *(p.name for p in TRAINING_OPTIONS))
        entry = checks.table(entry, PARAMETER, where)
        checks.known_keys(entry, PARAMETER, where, known, ("task",))
        task = checks.text(entry["task"], PARAMETER, f"{where}.task", tuple(TASKS))
        options = {}
        for p in TRAINING_OPTIONS:
            value = _converted(_training_step(task), p.name, entry.get(p.name), f"{where}.{p.name}")
            options[p.name] = p.default if value is None else value
        models.append(ModelSpec(name, task, options))
    return models


def _resolve(value: str, base: Path) -> str:
    """A path relative to the experiment file made absolute (URLs and GDAL paths stay)."""
    return value if is_url(value) or value.startswith("/vsi") else str(base / value)


def _training_step(task: str) -> Any:
    from .steps.modelling import TRAIN_PATCH_CLASSIFIER, TRAIN_SEGMENTATION

    return TRAIN_PATCH_CLASSIFIER if task == "patch" else TRAIN_SEGMENTATION


# ---------------------------------------------------------------------------------------------
# TOML written back: the resolved experiment and the per-embedding catalogues


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def _toml_key(key: Any) -> str:
    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_text(tables: dict[str, Any], header: str = "") -> str:
    """TOML of nested tables of plain values; None values are left out, and a dict is a table
    except under INLINE_KEYS (written as an inline table)."""
    lines = [header] if header else []

    def is_table(key: str, value: Any) -> bool:
        return isinstance(value, dict) and key not in INLINE_KEYS

    def write(prefix: list[str], table: dict[str, Any]) -> None:
        plain = {k: v for k, v in table.items() if v is not None and not is_table(k, v)}
        if prefix and (plain or not any(is_table(k, v) for k, v in table.items())):
            lines.append(f"\n[{'.'.join(_toml_key(p) for p in prefix)}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in plain.items())
        for key, value in table.items():
            if is_table(key, value):
                write([*prefix, key], value)

    write([], tables)
    return "\n".join(lines).lstrip("\n") + "\n"


INLINE_KEYS = ("mapping",)  # a label mapping {"42" = "G"} is one value


def _city_entry(city: City, embeddings: list[str], labels: str | None) -> dict[str, Any]:
    """A catalogue entry of the city with only the given embedding sources and its label source."""
    label_name = labels or next(iter(city.labels))
    return {
        "year": city.year,
        "extent": list(city.extent) if city.extent is not None else None,
        "extent_crs": city.extent_crs,
        "boundary": str(city.boundary) if city.boundary is not None else None,
        "embeddings": {e: city.embeddings[e] for e in embeddings},
        "labels": {label_name: city.labels[label_name]},
    }


def resolved_toml(exp: Experiment) -> str:
    """The experiment spelled out: absolute paths, every setting, the cities inline."""
    tables = {
        "experiment": {
            "title": exp.title,
            "embeddings": exp.embeddings,
            "labels": exp.labels,
            "bootstrap_draws": exp.bootstrap_draws,
            "global_lcz_map": {None: False, GLOBAL: True}.get(
                exp.global_lcz_map, exp.global_lcz_map
            ),
        },
        "plan": exp.plan,
        "sampling": exp.sampling,
        "models": {m.name: {"task": m.task, **m.options} for m in exp.models},
        "references": exp.references or None,
        "cities": {c.name: _city_entry(c, exp.embeddings, exp.labels) for c in exp.cities},
    }
    return toml_text(
        {k: v for k, v in tables.items() if v is not None},
        "# rerun: python -m lcz_core experiment --config <this file> --output <a folder>",
    )


# ---------------------------------------------------------------------------------------------
# the same split for every embedding of a city


def cell_splits(folder: str | os.PathLike) -> tuple[tuple, dict[tuple[int, int], int]]:
    """The grid of a one-city dataset (CRS, upper-left corner, cell side) and the split of each
    cell holding a sample."""
    from .datasets import open_dataset

    ds = open_dataset(folder)
    left, top, side = ds.manifest["city_grids"][0]
    rows = np.floor((top - ds.centre_y[:]) / side).astype(np.int64)
    cols = np.floor((ds.centre_x[:] - left) / side).astype(np.int64)
    splits = {(int(r), int(c)): int(s) for r, c, s in zip(rows, cols, ds.split[:], strict=True)}
    grid = (ds.manifest["crs"], round(left, 6), round(top, 6), round(side, 6))
    return grid, splits


def check_same_splits(city: str, datasets: dict[str, Path]) -> dict[str, Any]:
    """Check that the datasets of one city (embedding name -> folder) on the same grid put every
    cell in the same split (refused otherwise); the result names the groups of datasets that
    share a grid and counts the cells compared."""
    found = {name: cell_splits(folder) for name, folder in datasets.items()}
    groups: dict[tuple, list[str]] = {}
    for name, (grid, _) in found.items():
        groups.setdefault(grid, []).append(name)
    compared = 0
    for names in groups.values():
        first = found[names[0]][1]
        for other in names[1:]:
            cells = found[other][1]
            common = first.keys() & cells.keys()
            differ = [cell for cell in common if first[cell] != cells[cell]]
            if differ:
                raise _refuse(
                    f"city {city}: {names[0]} and {other} lie on one grid but put {len(differ)} of "
                    f"{len(common)} cells in different splits; their labels or extents differ"
                )
            compared += len(common)
    return {
        "same_grid": len(groups) == 1,
        "grids": [names for names in groups.values()],
        "cells_compared": compared,
    }


# ---------------------------------------------------------------------------------------------
# running


@dataclass
class Run:
    """One training run: a model of an embedding trained on some cities, tested on some."""

    embedding: str
    model: ModelSpec
    trained_on: str  # a city's name, ALL_CITIES or OTHER_CITIES
    training_cities: list[str]
    tested_on: list[str]
    folder: Path
    dataset: Path | None = None
    skipped: bool = False
    best_epoch: int | None = None

    @property
    def label(self) -> str:
        """What the run trains on, for people."""
        if self.trained_on == OTHER_CITIES:
            return f"all but {self.tested_on[0]}"
        return self.trained_on


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]


class _Stages:
    """Hands out consecutive shares of the whole experiment's progress."""

    def __init__(self, progress: Progress, total: float) -> None:
        self.progress, self.total, self.done = progress, max(total, 1e-9), 0.0

    def next(self, weight: float, message: str) -> SubProgress:
        """The progress of the next job, `weight` of the total; logs what it is."""
        self.progress.check()
        self.progress.log(message)
        start = 100.0 * self.done / self.total
        self.done += weight
        return SubProgress(self.progress, start, 100.0 * self.done / self.total)


WEIGHTS = {"sample": 1.0, "merge": 0.3, "train": 4.0, "evaluate": 0.4, "map": 1.0, "report": 1.0}


def plan_runs(exp: Experiment, out: Path) -> list[Run]:
    """Every training run the plan asks for, in order."""
    names = [c.name for c in exp.cities]
    runs = []
    for embedding in exp.embeddings:
        for model in exp.models:
            folder = out / "runs" / exp.slugs[embedding] / exp.slugs[model.name]
            if exp.plan["per_city"]:
                runs += [Run(embedding, model, n, [n], names, folder / exp.slugs[n]) for n in names]
            if exp.plan["multi_city"]:
                runs.append(Run(embedding, model, ALL_CITIES, names, names, folder / "all-cities"))
            if exp.plan["leave_one_out"]:
                runs += [
                    Run(
                        embedding,
                        model,
                        OTHER_CITIES,
                        [o for o in names if o != n],
                        [n],
                        folder / f"without-{exp.slugs[n]}",
                    )
                    for n in names
                ]
    return runs


def map_run(exp: Experiment, runs: list[Run], city: str, embedding: str, model: str) -> Run:
    """The run whose map of `city` the report shows: the city's own model, else the model of all
    cities, else the one that left the city out."""
    order = {city: 0, ALL_CITIES: 1, OTHER_CITIES: 2}
    chosen = [
        r
        for r in runs
        if r.embedding == embedding
        and r.model.name == model
        and city in r.tested_on
        and r.trained_on in order
    ]
    return min(chosen, key=lambda r: order[r.trained_on])


def run_experiment(
    config: str | os.PathLike, output: str | os.PathLike, progress: Progress | None = None
) -> dict[str, Any]:
    """Run (or resume) the experiment a TOML file describes; write its report into `output`."""
    from .outputs import write_text_atomic

    progress = progress or Progress()
    exp = read_config(config)
    out = Path(output).absolute()  # the report's record names files wherever it is read
    if not out.parent.is_dir():
        raise LczError("output", f"folder {out.parent} does not exist; create it first")
    if out.exists() and not out.is_dir():
        raise LczError("output", f"{out} is a file; give a folder for the experiment")
    out.mkdir(exist_ok=True)
    write_text_atomic(out / "experiment.toml", resolved_toml(exp))
    catalogues = _write_catalogues(exp, out)
    runs = plan_runs(exp, out)
    merges = sum(len(r.training_cities) > 1 for r in runs)
    maps = len(exp.cities) * len(exp.embeddings) * len(exp.models)
    stages = _Stages(
        progress,
        WEIGHTS["sample"] * len(exp.cities) * len(exp.embeddings) * len(exp.kinds)
        + WEIGHTS["merge"] * merges
        + sum(WEIGHTS["train"] + WEIGHTS["evaluate"] * len(r.tested_on) for r in runs)
        + WEIGHTS["map"] * maps
        + WEIGHTS["report"],
    )
    warnings: list[str] = []
    datasets, splits = _sample_all(exp, out, catalogues, stages, warnings)
    evaluations = []
    for run in runs:
        _train(exp, run, datasets, out, stages)
        for city in run.tested_on:
            evaluations.append(_evaluate(exp, run, city, datasets, stages))
    maps_found = _maps(exp, runs, out, stages, warnings)
    from .experiment_report import write_report

    record = {
        "title": exp.title,
        "config": str(exp.path.resolve()),
        "experiment": str(out / "experiment.toml"),
        "cities": [c.name for c in exp.cities],
        "embeddings": exp.embeddings,
        "models": {m.name: {"task": m.task, **m.options} for m in exp.models},
        "plan": exp.plan,
        "sampling": exp.sampling,
        "bootstrap_draws": exp.bootstrap_draws,
        "runs": [
            {
                "embedding": r.embedding,
                "model": r.model.name,
                "task": r.model.task,
                "trained_on": r.trained_on,
                "training_cities": r.training_cities,
                "tested_on": r.tested_on,
                "folder": str(r.folder),
                "best_epoch": r.best_epoch,
                "skipped": r.skipped,
            }
            for r in runs
        ],
        "results": evaluations,
        "splits": splits,
        "maps": maps_found,
        "warnings": warnings,
    }
    paths = write_report(out, record, stages.next(WEIGHTS["report"], "writing the report"))
    for warning in warnings:
        progress.log(f"warning: {warning}")
    progress.report(100, "done")
    return {
        "output": str(out),
        **paths,
        "runs": len(runs),
        "runs_skipped": sum(r.skipped for r in runs),
        "warnings": warnings,
    }


def _write_catalogues(exp: Experiment, out: Path) -> dict[str, Path]:
    """One catalogue per embedding source: every city with that source only (sampling reads it)."""
    from .outputs import write_text_atomic

    folder = out / "catalogues"
    folder.mkdir(exist_ok=True)
    paths = {}
    for embedding in exp.embeddings:
        cities = {c.name: _city_entry(c, [embedding], exp.labels) for c in exp.cities}
        paths[embedding] = folder / f"{exp.slugs[embedding]}.toml"
        write_text_atomic(paths[embedding], toml_text({"cities": cities}))
    return paths


def _sample_all(
    exp: Experiment,
    out: Path,
    catalogues: dict[str, Path],
    stages: _Stages,
    warnings: list[str],
) -> tuple[dict[tuple[str, str, str], Path], dict[str, Any]]:
    """Sample every (city, embedding, kind) with the same settings; check the splits agree."""
    from .steps.training_data import sample_patches

    datasets: dict[tuple[str, str, str], Path] = {}
    splits: dict[str, Any] = {}
    for city in exp.cities:
        for kind in exp.kinds:
            for embedding in exp.embeddings:
                entry = _city_entry(city, [embedding], exp.labels)
                settings = {**exp.sampling, "dataset_kind": kind}
                folder = (
                    out
                    / "datasets"
                    / exp.slugs[city.name]
                    / exp.slugs[embedding]
                    / f"{kind}-{_digest([entry, settings])}"
                )
                sub = stages.next(
                    WEIGHTS["sample"], f"sampling {kind} of {city.name} from {embedding}"
                )
                if not (folder / "manifest.json").is_file():
                    folder.parent.mkdir(parents=True, exist_ok=True)
                    sample_patches(
                        cities=str(catalogues[embedding]),
                        city=city.name,
                        output=str(folder),
                        progress=sub,
                        **settings,
                    )
                datasets[(city.name, embedding, kind)] = folder
            found = check_same_splits(
                city.name, {e: datasets[(city.name, e, kind)] for e in exp.embeddings}
            )
            if not found["same_grid"]:
                warnings.append(
                    f"{city.name} ({kind}): the embeddings lie on different grids "
                    f"({'; '.join(', '.join(g) for g in found['grids'])}), so their splits are "
                    "dealt separately: part of their differences may come from the split"
                )
            splits.setdefault(city.name, {})[kind] = found
    return datasets, splits


def _training_dataset(
    exp: Experiment,
    run: Run,
    datasets: dict[tuple[str, str, str], Path],
    out: Path,
    stages: _Stages,
) -> Path:
    """The dataset of a run: its city's, or the cities' datasets merged into one."""
    from .datasets import merge_datasets

    kind = run.model.kind
    members = [datasets[(c, run.embedding, kind)] for c in run.training_cities]
    if len(members) == 1:
        return members[0]
    name = "all" if run.trained_on == ALL_CITIES else f"without-{exp.slugs[run.tested_on[0]]}"
    folder = (
        out
        / "datasets"
        / "merged"
        / exp.slugs[run.embedding]
        / f"{kind}-{name}-{_digest([str(m) for m in members])}"
    )
    sub = stages.next(WEIGHTS["merge"], f"merging {kind} of {', '.join(run.training_cities)}")
    if not (folder / "manifest.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        merge_datasets(members, folder, sub)
    return folder


# what a run folder holds besides the training's own files; removed when the run is redone
DERIVED = re.compile(r"(evaluation|map|agreement)_.*")


def _train(
    exp: Experiment,
    run: Run,
    datasets: dict[tuple[str, str, str], Path],
    out: Path,
    stages: _Stages,
) -> None:
    """Train the run's model unless the run folder holds that very run already."""
    from .models import read_model_metadata
    from .steps.modelling import train_patch_classifier, train_segmentation
    from .train import TrainConfig, read_experiment

    run.dataset = _training_dataset(exp, run, datasets, out, stages)
    what = f"{run.model.name} on {run.embedding}, trained on {run.label}"
    sub = stages.next(WEIGHTS["train"], f"training {what}")
    options = {k: v for k, v in run.model.options.items() if v is not None}
    wanted = (
        run.dataset.resolve(),
        run.folder.resolve(),
        TrainConfig(task=run.model.task, **options),
    )
    model = run.folder / "model.safetensors"
    if model.is_file() and (run.folder / "experiment.toml").is_file():
        try:
            run.skipped = read_experiment(run.folder / "experiment.toml") == wanted
        except LczError:
            run.skipped = False
    if not run.skipped:
        if run.folder.is_dir():
            for entry in run.folder.iterdir():
                if DERIVED.fullmatch(entry.name):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        run.folder.parent.mkdir(parents=True, exist_ok=True)
        train = train_patch_classifier if run.model.task == "patch" else train_segmentation
        train(
            dataset=str(run.dataset),
            output=str(run.folder),
            overwrite=run.folder.is_dir() and any(run.folder.iterdir()),
            progress=sub,
            **run.model.options,
        )
    else:
        sub.log(f"{what}: done before, kept ({run.folder})")
    run.best_epoch = read_model_metadata(model).get("epoch")


def _evaluate(
    exp: Experiment,
    run: Run,
    city: str,
    datasets: dict[tuple[str, str, str], Path],
    stages: _Stages,
) -> dict[str, Any]:
    """The run's model on the test split of `city` (evaluated unless done before)."""
    from .metrics import MEASURES
    from .steps.modelling import evaluate_model

    folder = run.folder / f"evaluation_{exp.slugs[city]}"
    sub = stages.next(WEIGHTS["evaluate"], f"evaluating on {city}")
    metrics_json = folder / "metrics.json"
    if not metrics_json.is_file():
        evaluate_model(
            model=str(run.folder / "model.safetensors"),
            dataset=[str(datasets[(city, run.embedding, run.model.kind)])],
            split="test",
            bootstrap_draws=exp.bootstrap_draws,
            seed=exp.sampling["seed"],
            device=run.model.options["device"],
            output=str(folder),
            progress=sub,
        )
    record = json.loads(metrics_json.read_text(encoding="utf-8"))
    metrics, intervals = record["metrics"], record["intervals"] or {}
    return {
        "tested_on": city,
        "embedding": run.embedding,
        "model": run.model.name,
        "task": run.model.task,
        "trained_on": run.trained_on,
        "transfer": city not in run.training_cities,
        "n": metrics["n"],
        **{k: metrics[k] for k in MEASURES},
        "intervals": {k: intervals.get(k) for k in MEASURES},
        "per_class_f1": {
            str(code): c["f1"] for code, c in metrics["per_class"].items() if c["support"]
        },
        "majority_baseline_oa": record["majority_baseline_oa"],
        "evaluation": str(folder / "report.html"),
    }


def _maps(
    exp: Experiment, runs: list[Run], out: Path, stages: _Stages, warnings: list[str]
) -> dict[str, Any]:
    """Each city's map from each embedding and model, compared with its reference map."""
    found: dict[str, Any] = {}
    for city in exp.cities:
        reference, note = _reference_of(exp, city.name)
        entry: dict[str, Any] = {
            "reference": None,
            "reference_source": reference,
            # the city's own reference, else the global LCZ map (or a copy of it)
            "reference_title": "reference" if city.name in exp.references else "global LCZ map",
            "note": note,
            "maps": [],
        }
        found[city.name] = entry
        for embedding in exp.embeddings:
            for model in exp.models:
                run = map_run(exp, runs, city.name, embedding, model.name)
                sub = stages.next(
                    WEIGHTS["map"], f"mapping {city.name}: {model.name} on {embedding}"
                )
                entry["maps"].append(_map(exp, run, city, out, entry, sub))
        if entry["note"] and entry["note"] != note:
            warnings.append(f"{city.name}: {entry['note']}")
    return found


def _reference_of(exp: Experiment, city: str) -> tuple[str | None, str | None]:
    """The reference map a city's maps are compared with, and a note when there is none."""
    if city in exp.references:
        return exp.references[city], None
    if exp.global_lcz_map is None:
        return None, "no reference map given and the global LCZ map switched off (global_lcz_map)"
    if exp.global_lcz_map == GLOBAL:
        from .compare import GLOBAL_LCZ_MAP

        return GLOBAL_LCZ_MAP, None
    return exp.global_lcz_map, None


def _map(
    exp: Experiment, run: Run, city: City, out: Path, entry: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    """Predict the city with the run's model (unless done before) and compare with the reference."""
    from .steps.lcz_maps import compare_lcz_maps
    from .steps.modelling import predict_lcz_map

    slug = exp.slugs[city.name]
    path = run.folder / f"map_{slug}.tif"
    settings = city.embeddings[run.embedding]
    if city.extent is not None:
        extent, extent_crs = city.extent, city.extent_crs
    else:
        extent, extent_crs = city.extent_in("EPSG:4326"), "EPSG:4326"
    if not path.is_file():
        predict_lcz_map(
            model=str(run.folder / "model.safetensors"),
            embeddings=settings["path"],
            source_kind=settings.get("kind", "auto"),
            array=settings.get("array"),
            dequantise=settings.get("dequantise"),
            variant=settings.get("version"),
            year=city.year,
            extent=extent,
            extent_crs=extent_crs,
            device=run.model.options["device"],
            output=str(path),
            progress=SubProgress(progress, 0, 80),
        )
    found = {
        "embedding": run.embedding,
        "model": run.model.name,
        "trained_on": run.trained_on,
        "map": str(path),
        "agreement": None,
    }
    source = entry["reference_source"]
    if source is None:
        return found
    clipped = out / "references" / f"{slug}_reference.tif"
    agreement = run.folder / f"agreement_{slug}.json"
    if not agreement.is_file():
        clipped.parent.mkdir(exist_ok=True)
        first = not clipped.is_file()
        try:
            compare_lcz_maps(
                input=str(path),
                # the global map is read over the network once, its window kept for the rest
                reference=source if first or city.name in exp.references else str(clipped),
                reference_output=str(clipped) if first else None,
                output=str(agreement),
                progress=SubProgress(progress, 80, 100),
            )
        except (LczError, OSError) as error:
            if city.name in exp.references:
                raise
            entry["reference_source"] = None
            entry["note"] = f"the global LCZ map was not available ({error}); no comparison"
            return found
    report = json.loads(agreement.read_text(encoding="utf-8"))
    entry["reference"] = str(clipped) if clipped.is_file() else None
    found["agreement"] = {
        k: report["metrics"][k] for k in ("n", "oa", "kappa", "oa_u", "oa_bu", "oa_w", "macro_f1")
    }
    return found
