"""The networks (a timm ResNet patch classifier, a small U-Net) and the model file.

A model file is a safetensors file: the weights plus one JSON metadata entry ("lcz_model") with
everything inference needs (architecture, bands, embedding source, normalisation, classes, patch
and pixel size, training cities, metrics, library versions). Loading it executes no pickled code.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import checks
from .choices import STEMS
from .errors import LczError
from .lcz import CODES, NUM_CLASSES
from .outputs import atomic_path

MODEL_FORMAT = "lcz_qgis model"
MODEL_FORMAT_VERSION = 1
METADATA_KEY = "lcz_model"
TASKS = ("patch", "segmentation")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_ARCHITECTURE = {"patch": "resnet10t", "segmentation": "unet"}
REQUIRED_METADATA = (
    "task",
    "architecture",
    "band_count",
    "band_names",
    "embedding_source",
    "normalisation",
    "classes",
    "patch_size",
    "pixel_size",
)
DAMAGED = "the model file is damaged or was not written by lcz_core: retrain the model"


def _stem(in_chans: int, out_chans: int, stem: str) -> nn.Conv2d:
    """The first convolution, stride 1 so that a 32 x 32 patch keeps its detail.

    '1x1' projects each embedding vector on its own (the bands already describe the pixel's
    neighbourhood) and is about twice as fast on a CPU as '3x3'.
    """
    if stem not in STEMS:
        raise LczError("stem", f"unknown stem {stem!r}; use one of {', '.join(STEMS)}")
    kernel = 1 if stem == "1x1" else 3
    return nn.Conv2d(in_chans, out_chans, kernel, stride=1, padding=kernel // 2, bias=False)


def create_patch_classifier(
    architecture: str, in_chans: int, width: int | None = 16, stem: str = "1x1"
) -> nn.Module:
    """A timm ResNet for C x 32 x 32 patches: stride-1 stem, no max-pool, 17 outputs.

    `width` sets the channels of the four stages (width, 2, 4 and 8 x width); None keeps timm's.
    """
    import timm

    if not timm.is_model(architecture) or (
        timm.models.model_entrypoint(architecture).__module__ != "timm.models.resnet"
    ):
        raise LczError(
            "architecture",
            f"{architecture!r} is not a timm ResNet; use e.g. resnet10t, resnet18 or resnet34",
        )
    kwargs: dict[str, Any] = {}
    if width is not None:
        kwargs = {"channels": tuple(width * m for m in (1, 2, 4, 8)), "stem_width": width}
    model = timm.create_model(
        architecture, pretrained=False, in_chans=in_chans, num_classes=NUM_CLASSES, **kwargs
    )
    model.conv1 = _stem(in_chans, model.bn1.num_features, stem)
    model.maxpool = nn.Identity()
    return model


def _double_conv(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net: per-pixel logits over the 17 LCZ classes; sides must divide 2**depth."""

    def __init__(self, in_chans: int, width: int = 16, depth: int = 3, stem: str = "1x1") -> None:
        super().__init__()
        self.depth = depth
        self.stem = nn.Sequential(_stem(in_chans, width, stem), nn.BatchNorm2d(width), nn.ReLU())
        widths = [width * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList(
            [_double_conv(width, width)]
            + [_double_conv(widths[i], widths[i + 1]) for i in range(depth)]
        )
        self.decoders = nn.ModuleList(
            [_double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth))]
        )
        self.head = nn.Conv2d(width, NUM_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 17, H, W) logits."""
        x = self.encoders[0](self.stem(x))
        skips = [x]
        for encoder in self.encoders[1:]:
            x = encoder(nn.functional.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for decoder in self.decoders:
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = decoder(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


def create_model(metadata: dict[str, Any]) -> nn.Module:
    """The untrained network a model's metadata describes (task, architecture, bands, width, stem)."""
    task, bands = metadata["task"], int(metadata["band_count"])
    if task == "patch":
        return create_patch_classifier(
            metadata["architecture"], bands, metadata.get("width"), metadata.get("stem", "1x1")
        )
    if task == "segmentation":
        if metadata["architecture"] != "unet":
            raise LczError(
                "architecture", f"segmentation uses 'unet', not {metadata['architecture']!r}"
            )
        return UNet(
            bands,
            metadata.get("width") or 16,
            metadata.get("depth", 3),
            metadata.get("stem", "1x1"),
        )
    raise LczError("task", f"unknown task {task!r}; use one of {', '.join(TASKS)}")


def working_bytes(metadata: dict[str, Any], batch: int, side: int, training: bool = False) -> int:
    """Rough peak memory of the network over `batch` inputs of side x side pixels: the inputs,
    their normalised copy and the activations (kept for the backward pass when `training`).

    The activations per pixel and unit of width were measured on a CPU (resnet10t: 4 in
    inference, 25 in training; the U-Net: 10 and 35)."""
    per_width = {"patch": (4, 25), "segmentation": (10, 35)}[metadata["task"]][training]
    floats = 2 * int(metadata["band_count"]) + per_width * (metadata.get("width") or 64)
    return 4 * batch * side * side * floats


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the block on `threads` CPU threads (0: torch's choice); yield the count in use."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def pick_device(name: str) -> torch.device:
    """'auto' (a GPU when present, else the CPU), 'cpu' or 'cuda'."""
    if name not in DEVICES:
        raise LczError("device", f"unknown device {name!r}; use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise LczError("device", "cuda was asked for but no GPU is available; use auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare_inputs(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalise (N, C, H, W) embeddings per band, then set missing (NaN) values to 0 (the mean)."""
    shape = (1, -1, 1, 1)
    out = (np.asarray(x, dtype=np.float32) - mean.reshape(shape)) / std.reshape(shape)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on, for its metadata."""
    import timm

    from . import __version__

    return {
        "lcz_core": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
    }


@dataclass
class LczModel:
    """A loaded model: the network (eval mode, CPU) and its metadata."""

    network: nn.Module
    metadata: dict[str, Any]

    @property
    def mean(self) -> np.ndarray:
        """Per-band means of the training split."""
        return np.asarray(self.metadata["normalisation"]["mean"], dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        """Per-band standard deviations of the training split."""
        return np.asarray(self.metadata["normalisation"]["std"], dtype=np.float32)

    @property
    def class_mask(self) -> torch.Tensor:
        """Boolean (17,) mask of the classes the model was trained on."""
        return torch.tensor([c in self.metadata["classes"] for c in CODES])

    def probabilities(self, x: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """Class probabilities (N, 17[, H, W]) of raw embeddings (N, C, H, W), on the CPU."""
        inputs = torch.from_numpy(prepare_inputs(x, self.mean, self.std)).to(device)
        with torch.no_grad():
            logits = self.network(inputs.contiguous(memory_format=torch.channels_last))
        return self.softmax(logits.cpu())

    def softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from logits (N, 17[, H, W]); classes absent from training get 0."""
        shape = (1, -1) + (1,) * (logits.ndim - 2)
        logits = logits.masked_fill(~self.class_mask.reshape(shape), float("-inf"))
        return torch.softmax(logits, dim=1)

    def predict(
        self, x: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu"
    ) -> tuple[np.ndarray, np.ndarray]:
        """LCZ codes (uint8) and confidence (float32, the top probability) of raw embeddings."""
        checks.integer(batch_size, "batch_size", "batch_size", 1)
        codes, confidence = [], []
        for start in range(0, len(x), batch_size):
            top, index = self.probabilities(x[start : start + batch_size], device).max(dim=1)
            codes.append((index + 1).to(torch.uint8).numpy())
            confidence.append(top.numpy())
        if not codes:
            tail = x.shape[2:] if self.metadata["task"] == "segmentation" else ()
            return np.zeros((0, *tail), np.uint8), np.zeros((0, *tail), np.float32)
        return np.concatenate(codes), np.concatenate(confidence)


def save_model(path: str | os.PathLike, network: nn.Module, metadata: dict[str, Any]) -> Path:
    """Write weights + metadata to a safetensors model file (through a temporary name)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    header = {
        METADATA_KEY: json.dumps(
            {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, **metadata}
        )
    }
    with atomic_path(path, "model") as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return Path(path)


def read_model_metadata(path: str | os.PathLike, parameter: str = "model") -> dict[str, Any]:
    """The metadata of a model file, without loading the weights."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        raise LczError(parameter, f"{path} is a folder; give the model file (.safetensors) in it")
    if not path.exists():
        raise LczError(parameter, f"model file {path} does not exist")
    if not os.access(path, os.R_OK):
        raise LczError(parameter, f"cannot read {path}: permission denied")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise LczError(parameter, f"{path} is not a model file (safetensors): {error}") from None
    if METADATA_KEY not in header:
        raise LczError(parameter, f"{path} is a safetensors file but not an LCZ model")
    try:
        metadata = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise LczError(
            parameter, f"{path}: its metadata is not valid JSON ({error}); {DAMAGED}"
        ) from None
    if not isinstance(metadata, dict):
        raise LczError(parameter, f"{path}: its metadata is not a JSON object; {DAMAGED}")
    if metadata.get("format_version") != MODEL_FORMAT_VERSION:
        raise LczError(
            parameter,
            f"{path} has model format version {metadata.get('format_version')}; this lcz_core "
            f"reads version {MODEL_FORMAT_VERSION}: retrain the model",
        )
    return check_metadata(metadata, str(path), parameter)


def check_metadata(
    metadata: dict[str, Any], where: str, parameter: str = "model"
) -> dict[str, Any]:
    """Refuse model metadata with a field missing, of the wrong type or out of range."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise LczError(parameter, f"{where}: its metadata lacks {', '.join(missing)}; {DAMAGED}")

    def field(key: str) -> str:
        return f"{where}: metadata {key}"

    try:
        checks.text(metadata["task"], parameter, field("task"), TASKS)
        checks.text(metadata["architecture"], parameter, field("architecture"))
        checks.text(metadata.get("stem", "1x1"), parameter, field("stem"), STEMS)
        if metadata.get("width") is not None:
            checks.integer(metadata["width"], parameter, field("width"), 1, checks.MAX_WIDTH)
        checks.integer(metadata.get("depth", 3), parameter, field("depth"), 1, 6)
        bands = checks.integer(
            metadata["band_count"], parameter, field("band_count"), 1, checks.MAX_BANDS
        )
        for name in checks.items(metadata["band_names"], parameter, field("band_names"), bands):
            checks.text(name, parameter, f"{field('band_names')} item")
        for key in ("embedding_source", "feature_space"):
            checks.text(metadata.get(key, ""), parameter, field(key))
        normalisation = checks.table(metadata["normalisation"], parameter, field("normalisation"))
        for key in ("mean", "std"):
            values = normalisation.get(key)
            for value in checks.items(values, parameter, field(f"normalisation {key}"), bands):
                checks.number(
                    value, parameter, field(f"normalisation {key} item"), positive=key == "std"
                )
        classes = checks.items(metadata["classes"], parameter, field("classes"))
        for code in classes:
            checks.integer(code, parameter, field("classes item"), 1, NUM_CLASSES)
        if not classes or len(set(classes)) != len(classes):
            raise LczError(
                parameter, f"{field('classes')} is {classes}, expected distinct LCZ codes 1-17"
            )
        checks.integer(
            metadata["patch_size"], parameter, field("patch_size"), 1, checks.MAX_PATCH_SIZE
        )
        checks.number(metadata["pixel_size"], parameter, field("pixel_size"), positive=True)
    except LczError as error:
        raise LczError(parameter, f"{error.message}; {DAMAGED}") from None
    return metadata


def load_model(path: str | os.PathLike, parameter: str = "model") -> LczModel:
    """Load a model file (weights and metadata) for inference on the CPU.

    The network its metadata describes is first built without memory (on torch's meta device)
    and its shapes compared with the stored weights, so a metadata field cannot make it huge."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    metadata = read_model_metadata(path, parameter)
    try:
        with torch.device("meta"):
            network = create_model(metadata)
    except LczError as error:  # e.g. an architecture this timm lacks
        raise LczError(parameter, f"{path}: {error.message}") from None
    described = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    with safe_open(str(path), framework="pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    differ = sorted(
        k for k in described.keys() | stored.keys() if stored.get(k) != described.get(k)
    )
    if differ:
        raise LczError(
            parameter,
            f"{path}: {len(differ)} stored tensors do not match the network its metadata "
            f"describes (e.g. {differ[0]}: stored {stored.get(differ[0], 'none')}, described "
            f"{described.get(differ[0], 'none')}); {DAMAGED}",
        )
    checks.check_memory(
        2 * Path(path).stat().st_size,
        parameter,
        f"loading {path}",
        "close other programs or use a smaller model",
    )
    network = create_model(metadata)
    network.load_state_dict(load_file(str(path)))
    network.eval()
    network.to(memory_format=torch.channels_last)
    return LczModel(network, metadata)
