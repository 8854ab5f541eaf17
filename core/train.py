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
from collections.abc import Iterator, Sequence
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
    save_model,
    torch_threads,
    working_bytes,
)
from .outputs import atomic_folder, temporary_folder_holding, write_text_atomic
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
    loader_workers: int = OPTION_DEFAULTS["loader_workers"]  # 0 = read in the training process

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
            "loader_workers": (checks.integer, {"low": 0, "high": 64}),
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
    dataset: str | os.PathLike,
    output: str | os.PathLike,
    config: TrainConfig,
    warnings: Sequence[str] = (),
) -> str:
    """The text of an experiment file for a run (absolute paths, all settings spelled out),
    `warnings` about rerunning it as comments."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    lines = [
        f"# rerun: python -m lcz_core {TRAIN_COMMANDS[config.task]} --experiment <this file>",
        *(f"# warning: {warning}" for warning in warnings),
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
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch_threads(config.threads) as threads:
            yield replace(config, threads=threads)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


@dataclass
class Split:
    """One split: its samples' indices in the dataset (ascending), their city indices and the
    counts of their label values 0-255 (pixels for tiles); the embeddings stay on disk."""

    indices: np.ndarray
    city: np.ndarray
    labels: np.ndarray


# x read at a time by the pass that measures the training split: about 16 MB as stored
SCAN_BYTES = 16 * 2**20


def load_splits(
    dataset: PatchDataset, progress: Progress
) -> tuple[dict[str, Split], dict, np.ndarray]:
    """The splits, per-band mean/std of train and the number of valid (finite) training values per
    band, from one pass over the dataset that holds a few blocks of it at a time."""
    split, city = np.asarray(dataset.split[:]), np.asarray(dataset.city[:])
    splits = {
        name: Split(np.flatnonzero(split == code), city[split == code], np.zeros(256, np.int64))
        for name, code in SPLIT_CODES.items()
        if (split == code).any()
    }
    if "train" not in splits or "val" not in splits:
        raise LczError(
            "dataset",
            f"{dataset.folder} needs train and validation samples (splits present: "
            f"{', '.join(splits) or 'none'}); rebuild it with a validation fraction above 0",
        )
    n, bands = len(split), int(dataset.x.shape[1])
    per_sample = int(np.prod(dataset.x.shape[1:])) * dataset.x.dtype.itemsize
    step = dataset.block * max(1, SCAN_BYTES // (per_sample * dataset.block))
    total, squares, count = np.zeros(bands), np.zeros(bands), np.zeros(bands)
    for start in range(0, n, step):
        progress.report(100.0 * start / n, None if start else "reading the dataset")
        codes = split[start : start + step]
        y = np.asarray(dataset.y[start : start + step])
        for name, part in splits.items():
            part.labels += np.bincount(y[codes == SPLIT_CODES[name]].ravel(), minlength=256)
        train = codes == SPLIT_CODES["train"]
        if not train.any():
            continue
        x = np.asarray(dataset.x[start : start + step])[train].astype(np.float32)
        finite = np.isfinite(x)
        x[~finite] = 0
        total += x.sum(axis=(0, 2, 3), dtype=np.float64)
        squares += np.square(x).sum(axis=(0, 2, 3), dtype=np.float64)
        count += finite.sum(axis=(0, 2, 3))
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


def class_weights(counts: np.ndarray, weighting: str) -> np.ndarray:
    """Loss weights (N / (K n_c))^p of the classes 1-17 from their counts; 0 for absent classes."""
    present = counts > 0
    weights = np.zeros(NUM_CLASSES)
    share = counts[present].sum() / (present.sum() * counts[present])
    weights[present] = share ** CLASS_WEIGHTINGS[weighting]
    return weights


def training_batch(
    x: np.ndarray, y: np.ndarray, ops: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples x (N, C, H, W, float16 or float32 as stored) and their labels y, each turned by
    its op and normalised per band, as training tensors.

    Op 0-7 per sample: rotate by 90 degrees op % 4 times, then flip left-right when op >= 4 (the 8
    symmetries of the square); per-pixel labels move with their pixels. x becomes (x - mean) / std
    with missing values 0, as `prepare_inputs` does for prediction (the same float32 arithmetic),
    in torch's threads and in place. Returns x as a channels-last (N, C, H, W) float tensor and
    targets 0-16 (-1 = unlabelled).
    """
    stored = torch.from_numpy(x).permute(0, 2, 3, 1)  # N, H, W, C: a view
    out = torch.empty(stored.shape, dtype=torch.float32)
    targets = np.empty(y.shape, np.int64)
    pixel_labels = y.ndim == 3
    for n, op in enumerate(ops.tolist()):  # sample by sample: no gathered copies
        xs = torch.rot90(stored[n], op % 4, dims=(0, 1))
        ys = np.rot90(y[n], op % 4) if pixel_labels else y[n]
        if op >= 4:
            xs, ys = xs.flip(1), ys[:, ::-1] if pixel_labels else ys
        out[n].copy_(xs)
        targets[n] = ys
    out.sub_(torch.from_numpy(np.asarray(mean, np.float32)))
    out.div_(torch.from_numpy(np.asarray(std, np.float32)))
    torch.nan_to_num_(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out.permute(0, 3, 1, 2), torch.from_numpy(targets - 1)


class BatchReader(torch.utils.data.Dataset):
    """Reads batches of a dataset for a DataLoader: key (indices, ops) -> normalised, turned x and
    targets. A batch depends on its key only, so a run does not depend on the loader's workers."""

    def __init__(self, data: PatchDataset, mean: np.ndarray, std: np.ndarray) -> None:
        self.data, self.mean, self.std = data, mean, std

    def __getitem__(self, key: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, ...]:
        indices, ops = key
        x, y = self.data.read(indices)
        return training_batch(x, y, ops, self.mean, self.std)


class BatchLoader:
    """The batches of a run in the order of the keys given for each pass, read ahead by up to
    config.loader_workers processes: as many as there are CPU cores the training leaves free
    (on a CPU its threads take theirs; a worker beside them slows them more than it helps), else
    by the training process itself. The workers start once for the run, not for each pass: a
    start shares the training process's memory again, to be copied as it writes to it. They stop
    when the block ends."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.keys: list[tuple[np.ndarray, np.ndarray]] = []
        self.loader: torch.utils.data.DataLoader | None = None

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.loader = None  # its last reference: the workers stop

    def start(self, reader: BatchReader, device: torch.device) -> None:
        """Read batches with `reader` for `device` (self is the loader's sampler: it walks the
        current keys)."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        training = torch.get_num_threads() if device.type == "cpu" else 1
        workers = min(self.config.loader_workers, max(0, (cores or 1) - training))
        self.loader = torch.utils.data.DataLoader(
            reader,
            sampler=self,
            batch_size=None,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
        )

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __call__(self, keys: list[tuple[np.ndarray, np.ndarray]]) -> Iterator:
        """The batches of `keys`, in order."""
        self.keys = keys
        return iter(self.loader)


def _in_order(part: Split, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Keys reading a split in order, unturned."""
    chunks = [part.indices[s : s + batch_size] for s in range(0, len(part.indices), batch_size)]
    return [(chunk, np.zeros(len(chunk), np.int64)) for chunk in chunks]


@dataclass
class _Fit:
    """What a run trains with: the model, its loss, optimiser and schedule, the device, and the
    loader of its batches."""

    model: LczModel
    loss_fn: nn.CrossEntropyLoss
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    device: torch.device
    steps_per_epoch: int
    batches: BatchLoader


def _evaluate(fit: _Fit, data: Split) -> tuple[float, dict[str, Any]]:
    """Loss and LCZ metrics of the model on a split, read in order.

    The loss is the class-weighted cross-entropy of training over every labelled sample (pixel),
    whatever the batches: the sum of weighted losses over the sum of their weights (classes absent
    from training weigh 0); NaN where nothing weighs."""
    model, weights = fit.model, fit.loss_fn.weight
    model.network.eval()
    loss_sum, weight_sum, confusion = 0.0, 0.0, 0
    with torch.no_grad():
        for x, y in fit.batches(_in_order(data, EVALUATION_BATCH)):
            y = y.to(fit.device)
            logits = model.network(x.to(fit.device))
            loss_sum += nn.functional.cross_entropy(
                logits, y, weight=weights, ignore_index=-1, reduction="sum"
            ).item()
            weight_sum += weights[y[y >= 0]].sum().item()
            codes = model.softmax(logits.cpu()).argmax(dim=1) + 1
            confusion = confusion + confusion_matrix(y.cpu().numpy() + 1, codes.numpy())
    loss = loss_sum / weight_sum if weight_sum else math.nan
    return loss, lcz_metrics(confusion)


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
        present = np.flatnonzero(part.labels)
        if present[0] < lowest or present[-1] > NUM_CLASSES:
            raise LczError(
                "dataset",
                f"{data.folder}: {name} labels span {present[0]}-{present[-1]}, "
                f"expected {lowest}-{NUM_CLASSES}; rebuild the dataset (sample patches)",
            )
        if part.city.max() >= cities:
            raise LczError(
                "dataset",
                f"{data.folder}: {name} samples name city {part.city.max()} of {cities}; "
                "rebuild the dataset (sample patches)",
            )
    validation = set(np.flatnonzero(splits["val"].labels).tolist()) - {0}
    if not validation:
        raise LczError(
            "dataset",
            f"{data.folder}: the validation tiles hold no labelled pixel, so the validation loss "
            "has nothing to measure; rebuild the dataset with a larger validation fraction or "
            "another split seed",
        )
    if not validation & set(np.flatnonzero(splits["train"].labels).tolist()):
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
    """Refuse a run whose batches (those in training and those the loader reads ahead) and
    per-sample indices would not fit in memory; the embeddings stay on disk."""
    n, bands, size = len(data), int(data.x.shape[1]), int(data.x.shape[2])
    network = {"task": config.task, "band_count": bands, "width": config.width}
    batch = max(config.batch_size, EVALUATION_BATCH)
    ahead = (2 * config.loader_workers + 1) * batch * size * size * (4 * bands + 9)
    needed = (
        n * 16
        + ahead
        + max(
            working_bytes(network, config.batch_size, size, training=True),
            working_bytes(network, EVALUATION_BATCH, size),
        )
    )
    checks.check_memory(
        needed,
        "batch_size",
        f"training reads batches of {config.batch_size} samples of {bands} bands x {size} x "
        f"{size} px ({config.loader_workers} loader workers reading ahead)",
        "lower batch_size, width or loader_workers",
    )


def _open_training_data(
    dataset: str | os.PathLike | PatchDataset, config: TrainConfig
) -> PatchDataset:
    """Open a dataset of the kind the task trains on, if its batches fit in memory."""
    data = dataset if isinstance(dataset, PatchDataset) else open_dataset(dataset)
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


def _rerun_warnings(data: PatchDataset) -> list[str]:
    """What could keep the run's experiment file from rerunning: a dataset in a temporary folder."""
    temporary = temporary_folder_holding(data.folder)
    if temporary is None:
        return []
    return [
        f"the dataset {data.folder} lies in {temporary}, a temporary folder deleted when QGIS "
        "(or qgis_process) closes: experiment.toml reruns only while it exists; to keep it, give "
        "the dataset output of Sample patches a folder of your own"
    ]


def _prepare_splits(
    data: PatchDataset, progress: Progress
) -> tuple[dict[str, Split], dict, list[str]]:
    """The splits, checked; their normalisation and warnings."""
    splits, normalisation, valid = load_splits(data, progress)
    _check_data(data, splits)
    warnings = []
    if not valid.all():
        empty = [n for n, v in zip(data.manifest["band_names"], valid, strict=True) if not v]
        warnings.append(
            f"bands {', '.join(empty)} hold no value in the training samples: the model "
            "ignores them; check the embeddings"
        )
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


def _build_fit(
    metadata: dict[str, Any],
    weights: np.ndarray,
    config: TrainConfig,
    n: int,
    batches: BatchLoader,
) -> _Fit:
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
    return _Fit(
        LczModel(network, metadata), loss_fn, optimiser, scheduler, device, steps_per_epoch, batches
    )


def _train_epoch(fit: _Fit, keys: list[tuple[np.ndarray, np.ndarray]], progress: Progress) -> float:
    """One pass over the training batches of `keys`; the mean training loss of the epoch."""
    network = fit.model.network
    network.train()
    seen, loss_sum = 0, 0.0
    for step, (x, y) in enumerate(fit.batches(keys)):
        if (y >= 0).any():  # tiles without a labelled pixel teach nothing
            loss = fit.loss_fn(network(x.to(fit.device, non_blocking=True)), y.to(fit.device))
            fit.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            fit.optimiser.step()
            fit.scheduler.step()
            seen += len(x)
            loss_sum += loss.item() * len(x)
        progress.report(100.0 * (step + 1) / len(keys))  # the bar only: no log line
    return loss_sum / max(seen, 1)


def _epochs(
    fit: _Fit, splits: dict[str, Split], config: TrainConfig, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train epoch by epoch until `epochs`, or `patience` epochs without a better validation
    loss; the log rows and the best epoch (its loss, number, weights and validation metrics)."""
    network, train_split = fit.model.network, splits["train"]
    n = len(train_split.indices)
    rng = np.random.default_rng(config.seed)
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] = {"loss": math.inf, "epoch": 0, "state": None, "metrics": None}
    span = 100.0 / config.epochs
    progress.report(0, "training")
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(n)
        ops = rng.integers(0, 8, size=n) if config.augment else np.zeros(n, dtype=np.int64)
        keys = []
        for step in range(fit.steps_per_epoch):
            chosen = np.sort(order[step * config.batch_size : (step + 1) * config.batch_size])
            keys.append((train_split.indices[chosen], ops[chosen]))
        epoch_progress = SubProgress(progress, (epoch - 1) * span, epoch * span)
        train_loss = _train_epoch(fit, keys, epoch_progress)
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
    dataset: str | os.PathLike | PatchDataset,
    output: str | os.PathLike,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a model on a dataset (a folder, or one opened, e.g. held in memory by its `load`);
    write the run folder `output`; return its outputs."""
    config = config or TrainConfig()
    progress = progress or Progress()
    run = _check_run_folder(Path(output), overwrite)
    data = _open_training_data(dataset, config)
    with (
        atomic_folder(run, tuple(RUN_FILES.values())) as tmp,
        _deterministic(config) as config,
        BatchLoader(config) as batches,
    ):
        paths = {key: tmp / name for key, name in RUN_FILES.items()}
        rerun_warnings = _rerun_warnings(data)
        write_text_atomic(
            paths["experiment"], experiment_toml(data.folder, run, config, rerun_warnings)
        )
        splits, normalisation, warnings = _prepare_splits(data, SubProgress(progress, 0, 5))
        warnings = rerun_warnings + warnings
        counts = splits["train"].labels[1 : NUM_CLASSES + 1]
        metadata = _model_metadata(data, config, splits["train"], normalisation, counts)
        fit = _build_fit(
            metadata,
            class_weights(counts, config.class_weighting),
            config,
            len(splits["train"].indices),
            batches,
        )
        mean, std = (np.asarray(normalisation[k], np.float32) for k in ("mean", "std"))
        batches.start(BatchReader(data, mean, std), fit.device)
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
