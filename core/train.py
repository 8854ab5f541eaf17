"""Training: seeded, deterministic on a CPU, early-stopped, checkpointed, cancellable.

`train` fits a patch classifier (patch datasets) or a U-Net (tile datasets) and writes a run folder:
`experiment.toml` (everything the run needs; training from it again reproduces the run),
`log.csv` (one row per epoch), `curves.png` and `model.safetensors` (the best epoch). The run is
built in a hidden folder beside its destination and moves in only when complete: a cancelled or
failed run leaves nothing, and an earlier run in the folder stays until a new one replaces it
(which only `overwrite` allows).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import time
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import checks
from .datasets import SPLIT_CODES, PatchDataset, open_dataset
from .errors import LczError
from .lcz import CLASS_BY_CODE, CODES, NUM_CLASSES
from .metrics import confusion_matrix, lcz_metrics, summary
from .models import (
    DEFAULT_ARCHITECTURE,
    DEVICES,
    STEMS,
    LczModel,
    create_model,
    library_versions,
    pick_device,
    prepare_inputs,
    save_model,
    working_bytes,
)
from .outputs import atomic_folder, write_text_atomic
from .progress import Progress, SubProgress
from .steps.modelling import TRAINING_OPTIONS

TRAIN_COMMANDS = {"patch": "train-patch-classifier", "segmentation": "train-segmentation"}
CLASS_WEIGHTINGS = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}
# the defaults of the options a user sets live in the training steps' spec
OPTION_DEFAULTS = {p.name: p.default for p in TRAINING_OPTIONS}
EVALUATION_BATCH = 256
LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_oa", "val_macro_f1", "lr", "seconds")


@dataclass
class TrainConfig:
    """Everything that shapes a training run besides the data."""

    task: str = "patch"
    architecture: str = ""  # "" = the task's default (resnet10t, unet)
    width: int = OPTION_DEFAULTS["width"]
    stem: str = OPTION_DEFAULTS["stem"]
    epochs: int = OPTION_DEFAULTS["epochs"]
    batch_size: int = OPTION_DEFAULTS["batch_size"]
    learning_rate: float = OPTION_DEFAULTS["learning_rate"]
    weight_decay: float = OPTION_DEFAULTS["weight_decay"]
    warmup_epochs: float = 1.0
    patience: int = OPTION_DEFAULTS["patience"]
    class_weighting: str = OPTION_DEFAULTS["class_weighting"]
    augment: bool = OPTION_DEFAULTS["augment"]
    seed: int = OPTION_DEFAULTS["seed"]
    device: str = OPTION_DEFAULTS["device"]
    threads: int = OPTION_DEFAULTS["threads"]  # 0 = torch's default

    def __post_init__(self) -> None:
        architectures = tuple(DEFAULT_ARCHITECTURE)
        rules = {
            "task": (checks.text, {"choices": architectures}),
            "architecture": (checks.text, {}),
            "width": (checks.integer, {"low": 4, "high": checks.MAX_WIDTH}),
            "stem": (checks.text, {"choices": STEMS}),
            "epochs": (checks.integer, {"low": 1, "high": 100_000}),
            "batch_size": (checks.integer, {"low": 2}),
            "learning_rate": (checks.number, {"positive": True}),
            "weight_decay": (checks.number, {"low": 0}),
            "warmup_epochs": (checks.number, {"low": 0}),
            "patience": (checks.integer, {"low": 1}),
            "class_weighting": (checks.text, {"choices": tuple(CLASS_WEIGHTINGS)}),
            "augment": (checks.flag, {}),
            "seed": (checks.integer, {"low": 0, "high": 2**64 - 1}),
            "device": (checks.text, {"choices": DEVICES}),
            "threads": (checks.integer, {"low": 0, "high": 4096}),
        }
        # strict types: augment = "no" must not read as true
        for name, (check, limits) in rules.items():
            setattr(self, name, check(getattr(self, name), name, name, **limits))
        if not self.architecture:
            self.architecture = DEFAULT_ARCHITECTURE[self.task]


def read_experiment(path: str | os.PathLike) -> tuple[Path, Path, TrainConfig]:
    """Read an experiment file: top-level `dataset` and `output`, and a [train] table."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise LczError("experiment", f"cannot read {path}: {error}") from None
    known = {f.name for f in fields(TrainConfig)}
    checks.known_keys(
        data, "experiment", str(path), ("dataset", "output", "train"), ("dataset", "output")
    )
    for key in ("dataset", "output"):
        checks.text(data[key], "experiment", f"{path}: {key}")
    settings = checks.table(data.get("train", {}), "experiment", f"{path}: [train]")
    checks.known_keys(settings, "experiment", f"{path}: [train]", sorted(known))
    try:
        config = TrainConfig(**settings)
    except LczError as error:
        raise LczError("experiment", f"{path}: [train] {error.message}") from None
    base = path.resolve().parent  # relative paths are relative to the experiment file
    return base / data["dataset"], base / data["output"], config


def experiment_toml(
    dataset: str | os.PathLike, output: str | os.PathLike, config: TrainConfig
) -> str:
    """The text of an experiment file for a run (absolute paths, all settings spelled out)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    lines = [
        f"# rerun: python -m lcz_core {TRAIN_COMMANDS[config.task]} --experiment <this file>",
        f"dataset = {value(str(Path(dataset).resolve()))}",
        f"output = {value(str(Path(output).resolve()))}",
        "",
        "[train]",
    ]
    lines += [f"{k} = {value(v)}" for k, v in asdict(config).items()]
    return "\n".join(lines) + "\n"


def train_experiment(
    path: str | os.PathLike, progress: Progress | None = None, *, overwrite: bool = False
) -> dict[str, Any]:
    """Run the experiment a TOML file describes."""
    dataset, output, config = read_experiment(path)
    return train(dataset, output, config, progress, overwrite=overwrite)


@contextlib.contextmanager
def _deterministic(config: TrainConfig) -> Iterator[TrainConfig]:
    """Seed torch and ask for deterministic kernels for the run; restore the settings after.

    Yields the config with the thread count torch uses (bit-exact reruns need the same)."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        yield replace(config, threads=torch.get_num_threads())
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


@dataclass
class Split:
    """One split in memory: x (N, H, W, C: channels last, raw then normalised), y, city indices."""

    x: np.ndarray
    y: np.ndarray
    city: np.ndarray


def load_splits(
    dataset: PatchDataset, progress: Progress
) -> tuple[dict[str, Split], dict, np.ndarray]:
    """Read train, val and test into memory block by block; per-band mean/std of train and the
    number of valid (finite) training values per band."""
    split = dataset.split[:]
    n = len(split)
    block = max(1, int(dataset.x.chunks[0]))
    splits: dict[str, Split] = {}
    for name, code in SPLIT_CODES.items():
        size = int((split == code).sum())
        if size:  # preallocated: the peak memory is the data itself
            splits[name] = Split(
                np.empty((size, *dataset.x.shape[2:], dataset.x.shape[1]), np.float32),
                np.empty((size, *dataset.y.shape[1:]), dataset.y.dtype),
                np.empty(size, dataset.city.dtype),
            )
    if "train" not in splits or "val" not in splits:
        raise LczError(
            "dataset",
            f"{dataset.folder} needs train and validation samples (splits present: "
            f"{', '.join(splits) or 'none'}); rebuild it with a validation fraction above 0",
        )
    filled = dict.fromkeys(splits, 0)
    bands = int(dataset.x.shape[1])
    total, squares, count = np.zeros(bands), np.zeros(bands), np.zeros(bands)
    for start in range(0, n, block):
        progress.report(100.0 * start / n, None if start else "reading the dataset")
        stop = min(n, start + block)
        x = np.asarray(dataset.x[start:stop], dtype=np.float32)
        y = np.asarray(dataset.y[start:stop])
        city = np.asarray(dataset.city[start:stop])
        for name, target in splits.items():
            chosen = split[start:stop] == SPLIT_CODES[name]
            k, at = int(chosen.sum()), filled[name]
            target.x[at : at + k] = x[chosen].transpose(0, 2, 3, 1)
            target.y[at : at + k] = y[chosen]
            target.city[at : at + k] = city[chosen]
            filled[name] += k
        train = x[split[start:stop] == SPLIT_CODES["train"]].astype(np.float64)
        total += np.nansum(train, axis=(0, 2, 3))
        squares += np.nansum(train**2, axis=(0, 2, 3))
        count += np.isfinite(train).sum(axis=(0, 2, 3))
    if not count.any():
        raise LczError(
            "dataset",
            f"{dataset.folder}: the training samples hold no embedding value (all NaN); "
            "rebuild the dataset from embeddings that hold data",
        )
    mean = total / np.maximum(count, 1)
    std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))
    std = np.where(std > 1e-8, std, 1.0)  # a constant band stays 0 after normalising
    normalisation = {
        "mean": mean.astype(np.float32).tolist(),
        "std": std.astype(np.float32).tolist(),
    }
    return splits, normalisation, count


def class_weights(y: np.ndarray, weighting: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-class counts (17) of labels 1-17 and loss weights (N / (K n_c))^p; 0 for absent classes."""
    counts = np.bincount(y.ravel(), minlength=NUM_CLASSES + 1)[1 : NUM_CLASSES + 1]
    present = counts > 0
    weights = np.zeros(NUM_CLASSES)
    share = counts[present].sum() / (present.sum() * counts[present])
    weights[present] = share ** CLASS_WEIGHTINGS[weighting]
    return counts, weights


def training_batch(
    x: np.ndarray, y: np.ndarray, chosen: np.ndarray, ops: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples `chosen` of x (N, H, W, C) and y, each turned by its op, as training tensors.

    Op 0-7 per sample: rotate by 90 degrees op % 4 times, then flip left-right when op >= 4 (the 8
    symmetries of the square); per-pixel labels move with their pixels. Returns x as a
    channels-last (N, C, H, W) float tensor and targets 0-16 (-1 = unlabelled).
    """
    out = np.empty((len(chosen), *x.shape[1:]), np.float32)
    targets = np.empty((len(chosen), *y.shape[1:]), np.int64)
    pixel_labels = y.ndim == 3
    for op in np.unique(ops):
        at = np.flatnonzero(ops == op)
        xs, ys = np.rot90(x[chosen[at]], op % 4, axes=(1, 2)), y[chosen[at]]
        ys = np.rot90(ys, op % 4, axes=(1, 2)) if pixel_labels else ys
        if op >= 4:
            xs, ys = xs[:, :, ::-1], ys[:, :, ::-1] if pixel_labels else ys
        out[at], targets[at] = xs, ys
    return torch.from_numpy(out).permute(0, 3, 1, 2), torch.from_numpy(targets - 1)


@dataclass
class _Fit:
    """What a run trains with: the model, its loss, optimiser and schedule, and the device."""

    model: LczModel
    loss_fn: nn.CrossEntropyLoss
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    device: torch.device
    steps_per_epoch: int


def _evaluate(fit: _Fit, data: Split) -> tuple[float, dict[str, Any]]:
    """Loss and LCZ metrics of the model on normalised in-memory samples.

    The loss is the class-weighted cross-entropy of training over every labelled sample (pixel),
    whatever the batches: the sum of weighted losses over the sum of their weights (classes absent
    from training weigh 0); NaN where nothing weighs."""
    model, weights = fit.model, fit.loss_fn.weight
    model.network.eval()
    loss_sum, weight_sum, predictions = 0.0, 0.0, []
    with torch.no_grad():
        for start in range(0, len(data.x), EVALUATION_BATCH):
            x = data.x[start : start + EVALUATION_BATCH]
            y = torch.from_numpy(data.y[start : start + EVALUATION_BATCH].astype(np.int64) - 1)
            y = y.to(fit.device)
            inputs = torch.from_numpy(x).permute(0, 3, 1, 2).to(fit.device)  # channels last
            logits = model.network(inputs)
            loss_sum += nn.functional.cross_entropy(
                logits, y, weight=weights, ignore_index=-1, reduction="sum"
            ).item()
            weight_sum += weights[y[y >= 0]].sum().item()
            codes = model.softmax(logits.cpu()).argmax(dim=1) + 1
            predictions.append(codes.to(torch.uint8).numpy())
    loss = loss_sum / weight_sum if weight_sum else math.nan
    return loss, lcz_metrics(confusion_matrix(data.y, np.concatenate(predictions)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def plot_curves(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """PNG of the training curves: losses and validation accuracy per epoch."""
    from .plot import new_figure, save_png

    epochs = [r["epoch"] for r in rows]
    fig = new_figure(10, 4)
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    left.plot(epochs, [r["val_loss"] for r in rows], "o-", label="validation")
    left.set(xlabel="epoch", ylabel="loss (class-weighted cross-entropy)", title="Loss")
    left.legend()
    right.plot(epochs, [r["val_oa"] for r in rows], "o-", label="OA")
    right.plot(epochs, [r["val_macro_f1"] for r in rows], "o-", label="macro F1")
    right.set(xlabel="epoch", ylabel="validation", ylim=(0, 1), title="Validation accuracy")
    right.legend()
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


RUN_FILES = {
    "experiment": "experiment.toml",
    "log": "log.csv",
    "curves": "curves.png",
    "model": "model.safetensors",
}


def _check_run_folder(run: Path, overwrite: bool) -> Path:
    """Refuse a run folder that is a file, or that holds files unless `overwrite` is set."""
    checks.flag(overwrite, "overwrite", "overwrite")
    if run.exists() and not run.is_dir():
        raise LczError("output", f"{run} is a file; give a folder for the run")
    if run.is_dir() and any(run.iterdir()) and not overwrite:
        held = [name for name in RUN_FILES.values() if (run / name).exists()]
        raise LczError(
            "output",
            f"{run} already holds {'a run (' + ', '.join(held) + ')' if held else 'files'}; "
            "choose a new folder, or set overwrite to replace "
            f"{', '.join(RUN_FILES.values())} there once the new run completes (other files stay)",
        )
    return run


def _check_data(data: PatchDataset, splits: dict[str, Split]) -> None:
    """Refuse labels outside 1-17 (0 = unlabelled in tiles), city indices past the manifest's, and
    validation samples without a class of the training samples (the validation loss needs one)."""
    lowest = 1 if data.kind == "patches" else 0
    cities = len(data.manifest["cities"])
    for name, part in splits.items():
        if part.y.min() < lowest or part.y.max() > NUM_CLASSES:
            raise LczError(
                "dataset",
                f"{data.folder}: {name} labels span {part.y.min()}-{part.y.max()}, "
                f"expected {lowest}-{NUM_CLASSES}; rebuild the dataset (sample patches)",
            )
        if part.city.max() >= cities:
            raise LczError(
                "dataset",
                f"{data.folder}: {name} samples name city {part.city.max()} of {cities}; "
                "rebuild the dataset (sample patches)",
            )
    validation = set(np.unique(splits["val"].y).tolist()) - {0}
    if not validation:
        raise LczError(
            "dataset",
            f"{data.folder}: the validation tiles hold no labelled pixel, so the validation loss "
            "has nothing to measure; rebuild the dataset with a larger validation fraction or "
            "another split seed",
        )
    if not validation & set(np.unique(splits["train"].y).tolist()):
        classes = ", ".join(
            f"{CLASS_BY_CODE[c].short} ({CLASS_BY_CODE[c].name})" for c in sorted(validation)
        )
        raise LczError(
            "dataset",
            f"{data.folder}: the validation samples hold only LCZ {classes}, which no training "
            "sample has: the model cannot learn them and the validation loss has nothing to "
            "measure; rebuild the dataset with a split that puts these classes in training too "
            "(another split seed, smaller blocks or more cities)",
        )


def _check_training_memory(data: PatchDataset, config: TrainConfig) -> None:
    """Refuse a run whose in-memory dataset and batches would not fit in memory."""
    n, bands, size = len(data), int(data.x.shape[1]), int(data.x.shape[2])
    label_bytes = 1 if data.kind == "patches" else size * size
    network = {"task": config.task, "band_count": bands, "width": config.width}
    needed = n * (4 * bands * size * size + label_bytes + 2) + max(
        working_bytes(network, config.batch_size, size, training=True),
        working_bytes(network, EVALUATION_BATCH, size),
    )
    checks.check_memory(
        needed,
        "dataset",
        f"training holds the dataset in memory ({n} samples of {bands} bands x {size} x {size} "
        f"px) and runs batches of {config.batch_size}",
        "sample a smaller dataset (a smaller extent or fewer cities), or lower batch_size or width",
    )


def _open_training_data(dataset: str | os.PathLike, config: TrainConfig) -> PatchDataset:
    """Open a dataset of the kind the task trains on, if it fits in memory."""
    data = open_dataset(dataset)
    expected_kind = "patches" if config.task == "patch" else "tiles"
    if data.kind != expected_kind:
        raise LczError(
            "dataset",
            f"{data.folder} holds {data.kind}; the {config.task} task trains on {expected_kind}",
        )
    size = int(data.manifest["patch_size"])
    if config.task == "segmentation" and size % 8:
        raise LczError("dataset", f"tiles of {size} px; the U-Net needs a multiple of 8")
    _check_training_memory(data, config)
    return data


def _prepare_splits(
    data: PatchDataset, progress: Progress
) -> tuple[dict[str, Split], dict, list[str]]:
    """The splits in memory, checked and normalised in place; their normalisation and warnings."""
    splits, normalisation, valid = load_splits(data, progress)
    _check_data(data, splits)
    warnings = []
    if not valid.all():
        empty = [n for n, v in zip(data.manifest["band_names"], valid, strict=True) if not v]
        warnings.append(
            f"bands {', '.join(empty)} hold no value in the training samples: the model "
            "ignores them; check the embeddings"
        )
    mean, std = (np.asarray(normalisation[k], np.float32) for k in ("mean", "std"))
    for part in splits.values():  # normalised once, block by block, in place
        for start in range(0, len(part.x), 1024):
            block = part.x[start : start + 1024]
            normalised = prepare_inputs(block.transpose(0, 3, 1, 2), mean, std)
            block[:] = normalised.transpose(0, 2, 3, 1)
    return splits, normalisation, warnings


def _model_metadata(
    data: PatchDataset,
    config: TrainConfig,
    train_split: Split,
    normalisation: dict,
    counts: np.ndarray,
) -> dict[str, Any]:
    """The metadata a model file carries: network, inputs, classes, provenance."""
    manifest = data.manifest
    train_cities = sorted({manifest["cities"][int(c)] for c in np.unique(train_split.city)})
    return {
        "task": config.task,
        "architecture": config.architecture,
        "width": config.width,
        "stem": config.stem,
        "band_count": int(manifest["band_count"]),
        "band_names": manifest["band_names"],
        "embedding_source": manifest["embedding_source"],
        "feature_space": manifest.get("feature_space", ""),
        "normalisation": normalisation,
        "classes": [c for c, n in zip(CODES, counts, strict=True) if n > 0],
        "class_counts": {
            CLASS_BY_CODE[c].short: int(n) for c, n in zip(CODES, counts, strict=True) if n
        },
        "patch_size": int(manifest["patch_size"]),
        "pixel_size": manifest["pixel_size"],
        "crs": manifest.get("crs"),
        "training_cities": train_cities,
        "dataset": str(data.folder.resolve()),
        "config": asdict(config),
        "library_versions": library_versions(),
    }


def _build_fit(metadata: dict[str, Any], weights: np.ndarray, config: TrainConfig, n: int) -> _Fit:
    """The network, the class-weighted loss, AdamW and its warm-up then cosine schedule."""
    device = pick_device(config.device)
    network = create_model(metadata).to(device).to(memory_format=torch.channels_last)
    loss_fn = nn.CrossEntropyLoss(
        weight=torch.tensor(weights, dtype=torch.float32, device=device), ignore_index=-1
    )
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, n // config.batch_size + (n % config.batch_size >= 2))
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_epochs * steps_per_epoch))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    return _Fit(LczModel(network, metadata), loss_fn, optimiser, scheduler, device, steps_per_epoch)


def _train_epoch(
    fit: _Fit,
    data: Split,
    order: np.ndarray,
    ops: np.ndarray,
    batch_size: int,
    progress: Progress,
) -> float:
    """One pass over the training samples in `order`; the mean training loss of the epoch."""
    network = fit.model.network
    network.train()
    seen, loss_sum = 0, 0.0
    for step in range(fit.steps_per_epoch):
        chosen = np.sort(order[step * batch_size : (step + 1) * batch_size])
        x, y = training_batch(data.x, data.y, chosen, ops[chosen])
        if (y >= 0).any():  # tiles without a labelled pixel teach nothing
            loss = fit.loss_fn(network(x.to(fit.device)), y.to(fit.device))
            fit.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            fit.optimiser.step()
            fit.scheduler.step()
            seen += len(chosen)
            loss_sum += loss.item() * len(chosen)
        progress.report(100.0 * (step + 1) / fit.steps_per_epoch)  # the bar only: no log line
    return loss_sum / max(seen, 1)


def _epochs(
    fit: _Fit, splits: dict[str, Split], config: TrainConfig, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train epoch by epoch until `epochs`, or `patience` epochs without a better validation
    loss; the log rows and the best epoch (its loss, number, weights and validation metrics)."""
    network, n = fit.model.network, len(splits["train"].x)
    rng = np.random.default_rng(config.seed)
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] = {"loss": math.inf, "epoch": 0, "state": None, "metrics": None}
    span = 100.0 / config.epochs
    progress.report(0, "training")
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(n)
        ops = rng.integers(0, 8, size=n) if config.augment else np.zeros(n, dtype=np.int64)
        epoch_progress = SubProgress(progress, (epoch - 1) * span, epoch * span)
        train_loss = _train_epoch(
            fit, splits["train"], order, ops, config.batch_size, epoch_progress
        )
        val_loss, val_metrics = _evaluate(fit, splits["val"])
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "val_loss": round(val_loss, 6),
            "val_oa": _round(val_metrics["oa"]),
            "val_macro_f1": _round(val_metrics["macro_f1"]),
            "lr": float(f"{fit.scheduler.get_last_lr()[0]:.6g}"),
            "seconds": round(time.perf_counter() - started, 2),
        }
        rows.append(row)
        progress.log(
            f"epoch {epoch}/{config.epochs}: train loss {row['train_loss']}, val loss "
            f"{row['val_loss']}, val OA {row['val_oa']}, val macro F1 {row['val_macro_f1']}, "
            f"{row['seconds']} s"
        )
        if val_loss < best["loss"]:
            best = {
                "loss": val_loss,
                "epoch": epoch,
                "state": {k: v.detach().clone() for k, v in network.state_dict().items()},
                "metrics": {"val": summary(val_metrics)},
            }
        elif epoch - best["epoch"] >= config.patience:
            progress.log(f"early stop: no better validation loss since epoch {best['epoch']}")
            break
    return rows, best


def _finish(
    fit: _Fit,
    best: dict[str, Any],
    splits: dict[str, Split],
    rows: list[dict[str, Any]],
    paths: dict[str, Path],
    progress: Progress,
) -> dict[str, Any]:
    """Keep the best epoch's weights, measure them on the test split and write the model, the log
    and the curves; the metrics."""
    if best["state"] is None:  # the labels were checked: only a diverging run gets here
        raise LczError(
            "learning_rate",
            "the validation loss was never finite: the training diverged; lower learning_rate",
        )
    network, metadata = fit.model.network, fit.model.metadata
    network.load_state_dict(best["state"])
    metrics = dict(best["metrics"])
    if "test" in splits:
        progress.report(96, "test split")
        metrics["test"] = summary(_evaluate(fit, splits["test"])[1])
    metadata.update(epoch=best["epoch"], metrics=metrics)
    save_model(paths["model"], network, metadata)
    _write_log(paths["log"], rows)
    plot_curves(rows, paths["curves"])
    return metrics


def train(
    dataset: str | os.PathLike,
    output: str | os.PathLike,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a model on a dataset folder; write the run folder `output`; return its outputs."""
    config = config or TrainConfig()
    progress = progress or Progress()
    run = _check_run_folder(Path(output), overwrite)
    data = _open_training_data(dataset, config)
    with atomic_folder(run, tuple(RUN_FILES.values())) as tmp, _deterministic(config) as config:
        paths = {key: tmp / name for key, name in RUN_FILES.items()}
        write_text_atomic(paths["experiment"], experiment_toml(data.folder, run, config))
        splits, normalisation, warnings = _prepare_splits(data, SubProgress(progress, 0, 5))
        counts, weights = class_weights(splits["train"].y, config.class_weighting)
        metadata = _model_metadata(data, config, splits["train"], normalisation, counts)
        fit = _build_fit(metadata, weights, config, len(splits["train"].x))
        rows, best = _epochs(fit, splits, config, SubProgress(progress, 5, 95))
        metrics = _finish(fit, best, splits, rows, paths, progress)
        for warning in warnings:
            progress.log(f"warning: {warning}")
        progress.report(100, "done")
    return {
        **{key: str(run / name) for key, name in RUN_FILES.items()},
        "run_folder": str(run),
        "epochs_run": len(rows),
        "best_epoch": best["epoch"],
        "device": str(fit.device),
        "metrics": metrics,
        "warnings": warnings,
    }
