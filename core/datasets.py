"""Patch and tile datasets on disk: what sampling writes and training reads.

A dataset is a folder holding `manifest.json` and `data.zarr`, a zarr v3 group with arrays

- `x` float16 (N, C, S, S), NaN = missing pixel; one chunk per sample, CHUNK_BYTES shards, no
  compression (float32 in datasets written before; both read alike),
- `y` uint8: (N,) codes 1-17 for kind "patches", (N, S, S) with 0 = unlabelled for kind "tiles"
  (one chunk per tile, sharded and uncompressed like x),
- `split` uint8 (N,): 0 = train, 1 = val, 2 = test (SPLIT_CODES),
- `city` uint16 (N,): index into manifest["cities"],
- `centre_x`, `centre_y` float64 (N,): patch centres in the manifest CRS.

manifest.json keys: format_version, kind, patch_size, pixel_size, band_count, band_names,
embedding_source, cities, crs, seed, split_method, split_fractions (asked: train, val, test),
buffer_m, count, split_counts and split_shares (realised: {"train": n, "val": n, "test": n}),
class_counts ({"train": {"1": n, ..., "A": n, ...}, "val": ..., "test": ...}, keyed by the LCZ
labels 1-10, A-G; pixels for tiles), class_shares ({"A": {"train": s, "val": s, "test": s}}),
created_with; sampling adds how the split was drawn and what it dropped, city_crs, block_cells
and city_grids ([left, top, cell side] of each city's grid).
The writer streams: samples arrive in batches and are appended, so a dataset never has to fit
in memory; training reads it back sample by sample in random order (`read`), so it never has to
fit either. Embeddings are kept as float16, not int8 with scales: half the size of float32, every
value of the int8 products (TESSERA, AlphaEarth) stays distinct (float16 keeps 11 significant bits,
an int8 code needs 8), NaN marks a missing value as before and a batch is read without
dequantising; int8 would halve the size again but re-quantise float sources, lossily. One chunk
per sample makes a random sample one read of its own bytes; shards keep the files few, and no
compression (the mantissas of embeddings are noise: zstd saves about 15%) keeps reading cheap. The dataset is written in a hidden folder beside its destination and moved in when
complete; writing into an existing dataset folder replaces its data.zarr and manifest.json only.
Reading checks every manifest field that sizes or names data before anything is allocated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, checks
from .choices import SPLITS
from .errors import LczError
from .lcz import CLASS_BY_CODE, CODES
from .outputs import atomic_folder
from .progress import Progress

FORMAT_VERSION = 1
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLITS)}
SPLIT_NAMES: dict[int, str] = {v: k for k, v in SPLIT_CODES.items()}
KINDS = ("patches", "tiles")
REQUIRED_KEYS = (
    "kind",
    "patch_size",
    "pixel_size",
    "band_names",
    "embedding_source",
    "cities",
    "crs",
    "seed",
    "split_method",
    "split_fractions",
    "buffer_m",
)
REBUILD = "rebuild the dataset (sample patches)"
ARRAYS = ("x", "y", "split", "city", "centre_x", "centre_y")
# About 4 MB of x per shard file: few files, each sample still read on its own (one chunk each).
CHUNK_BYTES = 4 * 2**20
STORED = np.dtype(np.float16)
READABLE = (np.dtype(np.float16), np.dtype(np.float32))


@dataclass
class Batch:
    """A batch of samples to append to a dataset (all arrays share the first axis)."""

    x: np.ndarray
    y: np.ndarray
    split: np.ndarray
    city: np.ndarray
    centre_x: np.ndarray
    centre_y: np.ndarray


class PatchDataset:
    """An opened dataset: `manifest` plus lazily read zarr arrays x, y, split, city, centres."""

    def __init__(self, folder: str | os.PathLike) -> None:
        import zarr

        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        try:
            group = zarr.open_group(str(self.folder / "data.zarr"), mode="r")
            arrays = {name: group[name] for name in ARRAYS}
        except Exception as error:  # zarr raises several types for a missing or broken store
            raise LczError(
                "dataset", f"cannot read {self.folder / 'data.zarr'} ({error}); {REBUILD}"
            ) from None
        self.x, self.y, self.split, self.city, self.centre_x, self.centre_y = arrays.values()
        size, bands, n = self.manifest["patch_size"], self.manifest["band_count"], self.y.shape[0]
        y_tail = () if self.kind == "patches" else (size, size)
        expected = {
            "x": (n, bands, size, size),
            "y": (n, *y_tail),
            **{name: (n,) for name in ARRAYS[2:]},
        }
        for name, shape in expected.items():
            if tuple(arrays[name].shape) != shape:
                raise LczError(
                    "dataset",
                    f"{self.folder}: array {name} has shape {tuple(arrays[name].shape)}, its "
                    f"manifest says {shape}; {REBUILD}",
                )
        if self.x.dtype not in READABLE:
            raise LczError("dataset", f"{self.folder}: array x holds {self.x.dtype}; {REBUILD}")
        self._labels: np.ndarray | None = None
        self._files = {name: ShardFiles.of(arrays[name]) for name in ("x", "y")}

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def block(self) -> int:
        """Samples per stored block of x (a shard or chunk): the step of sequential reads."""
        if isinstance(self.x, np.ndarray):
            return 1024
        return int((self.x.shards or self.x.chunks)[0])

    def load(self) -> PatchDataset:
        """Read every array into memory (repeated passes over a small dataset); return self."""
        for name in ARRAYS:
            setattr(self, name, np.asarray(getattr(self, name)[:]))
        return self

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples at ascending `indices`: x (N, C, S, S) as stored (float16; float32 in older
        datasets) and their labels y."""
        if self.kind == "patches" and self._labels is None:  # one byte a sample: kept
            self._labels = np.asarray(self.y[:])
        labels = self.y if self._labels is None else self._labels
        return _take(self.x, indices, self._files["x"]), _take(labels, indices, self._files["y"])

    @property
    def kind(self) -> str:
        """'patches' or 'tiles'."""
        return self.manifest["kind"]

    def indices(self, split_name: str) -> np.ndarray:
        """Indices (int64, ascending) of the samples in split 'train', 'val' or 'test'."""
        if split_name not in SPLIT_CODES:
            raise LczError("split", f"unknown split {split_name!r}; use train, val or test")
        return np.flatnonzero(self.split[:] == SPLIT_CODES[split_name]).astype(np.int64)


class ShardFiles:
    """The samples of a zarr array laid out as `write_dataset` lays out x (and tile labels), read
    straight from its shard files: local, one raw little-endian chunk per sample, each shard file
    ending with its index of (offset, nbytes) pairs and their CRC-32C, not checked here (zarr
    v3's sharding codec). zarr's own reading of a sample costs about 0.7 ms of CPU, a quarter of
    training the default classifier on it on two cores; this costs 0.04 ms. `of` gives None for
    any other layout, which zarr then reads."""

    def __init__(self, array: Any) -> None:
        self.root = Path(array.store.root) / array.path
        self.encoding = array.metadata.chunk_key_encoding
        self.shard, self.shape = int(array.shards[0]), tuple(array.shape[1:])
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.fill = array.fill_value

    @classmethod
    def of(cls, array: Any) -> ShardFiles | None:
        """The reader of `array`, or None where its layout is another."""
        from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
        from zarr.codecs.bytes import Endian
        from zarr.codecs.sharding import ShardingCodecIndexLocation
        from zarr.storage import LocalStore

        if isinstance(array, np.ndarray) or not isinstance(array.store, LocalStore):
            return None
        codecs = getattr(array.metadata, "codecs", ())  # zarr v2 metadata has none
        if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
            return None

        def raw(codec: Any) -> bool:  # the bytes as they are, little-endian
            return isinstance(codec, BytesCodec) and codec.endian in (Endian.little, None)

        sharding = codecs[0]
        laid_out = (
            sharding.chunk_shape == (1, *array.shape[1:])
            and sharding.index_location == ShardingCodecIndexLocation.end
            and len(sharding.codecs) == 1
            and raw(sharding.codecs[0])
            and len(sharding.index_codecs) == 2
            and raw(sharding.index_codecs[0])
            and isinstance(sharding.index_codecs[1], Crc32cCodec)
        )
        return cls(array) if laid_out else None

    def read(self, indices: np.ndarray, out: np.ndarray) -> None:
        """Fill `out` with the samples at ascending `indices`."""
        shards = indices // self.shard
        starts = np.flatnonzero(np.r_[True, shards[1:] != shards[:-1]])
        for first, stop in zip(starts, np.r_[starts[1:], len(indices)], strict=True):
            key = self.encoding.encode_chunk_key((int(shards[first]), *[0] * len(self.shape)))
            if not (self.root / key).is_file():  # a shard never written holds the fill value
                out[first:stop] = self.fill
                continue
            with open(self.root / key, "rb") as file:
                file.seek(-(16 * self.shard + 4), os.SEEK_END)
                table = np.frombuffer(file.read(16 * self.shard), "<u8").reshape(-1, 2)
                for k in range(first, stop):
                    offset, nbytes = (int(v) for v in table[indices[k] % self.shard])
                    if offset == 2**64 - 1:  # a chunk never written
                        out[k] = self.fill
                        continue
                    file.seek(offset)
                    out[k] = np.frombuffer(file.read(nbytes), self.dtype).reshape(self.shape)


def _take(array, indices: np.ndarray, files: ShardFiles | None = None) -> np.ndarray:
    """array[indices] for ascending indices: from memory, from the shard files, else read by zarr
    a run of consecutive indices at a time (its fancy indexing is many times slower)."""
    if isinstance(array, np.ndarray):
        return array[indices]
    out = np.empty((len(indices), *array.shape[1:]), array.dtype)
    if not len(indices):
        return out
    if files is not None:
        files.read(indices, out)
        return out
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(indices)], strict=True):
        out[start:stop] = array[int(indices[start]) : int(indices[stop - 1]) + 1]
    return out


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a dataset folder, every field that sizes or names data checked."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise LczError("dataset", f"{folder} has no manifest.json; give a dataset folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise LczError("dataset", f"cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise LczError("dataset", f"{path} is not valid JSON ({error}); {REBUILD}") from None
    if not isinstance(manifest, dict):
        raise LczError("dataset", f"{path} is not a dataset manifest (a JSON object); {REBUILD}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise LczError(
            "dataset",
            f"{folder} has format_version {manifest.get('format_version')}, "
            f"this version of lcz_core reads {FORMAT_VERSION}; rebuild the dataset",
        )
    missing = [k for k in (*REQUIRED_KEYS, "band_count") if k not in manifest]
    if missing:
        raise LczError("dataset", f"{path} lacks {', '.join(missing)}; {REBUILD}")

    def field(key: str) -> str:
        return f"{path}: {key}"

    try:
        checks.text(manifest["kind"], "dataset", field("kind"), KINDS)
        for key, high in (("patch_size", checks.MAX_PATCH_SIZE), ("band_count", checks.MAX_BANDS)):
            checks.integer(manifest[key], "dataset", field(key), 1, high)
        checks.number(manifest["pixel_size"], "dataset", field("pixel_size"), positive=True)
        names = checks.items(
            manifest["band_names"], "dataset", field("band_names"), manifest["band_count"]
        )
        cities = checks.items(manifest["cities"], "dataset", field("cities"))
        for key, values in (("band_names", names), ("cities", cities)):
            for value in values:
                checks.text(value, "dataset", f"{field(key)} item")
        for key in ("embedding_source", "crs", "feature_space"):
            checks.text(manifest.get(key, ""), "dataset", field(key))
        if not cities:
            raise LczError("dataset", f"{field('cities')} is empty")
    except LczError as error:
        raise LczError("dataset", f"{error.message}; {REBUILD}") from None
    return manifest


def open_dataset(folder: str | os.PathLike) -> PatchDataset:
    """Open a dataset folder written by `write_dataset`."""
    return PatchDataset(folder)


def write_dataset(
    folder: str | os.PathLike,
    batches: Iterable[Batch],
    manifest: dict[str, Any],
    progress: Progress | None = None,
    expected: int | None = None,
) -> dict[str, Any]:
    """Stream `batches` into a new dataset at `folder`; return the completed manifest.

    `manifest` holds the keys of REQUIRED_KEYS; format_version, band_count, class_counts and
    created_with are filled in here. `expected` (number of samples, if known) drives progress.
    """
    import zarr

    progress = progress or Progress()
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ValueError(f"dataset manifest lacks {', '.join(missing)}")
    kind, size = manifest["kind"], int(manifest["patch_size"])
    if kind not in KINDS:
        raise ValueError(f"dataset kind must be one of {KINDS}, got {kind!r}")
    bands = len(manifest["band_names"])
    folder = _check_destination(Path(folder))
    with atomic_folder(folder, ("data.zarr", "manifest.json")) as tmp:
        group = zarr.open_group(str(tmp / "data.zarr"), mode="w")
        shard = max(1, CHUNK_BYTES // (bands * size * size * STORED.itemsize))
        sample = (bands, size, size)
        arrays = {
            "x": group.create_array(
                "x",
                shape=(0, *sample),
                chunks=(1, *sample),
                shards=(shard, *sample),
                dtype=STORED,
                fill_value=float("nan"),
                compressors=None,
            ),
            "y": _vector(group, "y", "uint8")
            if kind == "patches"
            else group.create_array(
                "y",
                shape=(0, size, size),
                chunks=(1, size, size),
                shards=(shard, size, size),
                dtype="uint8",
                compressors=None,
            ),
            "split": _vector(group, "split", "uint8"),
            "city": _vector(group, "city", "uint16"),
            "centre_x": _vector(group, "centre_x", "float64"),
            "centre_y": _vector(group, "centre_y", "float64"),
        }
        counts = np.zeros((len(SPLIT_CODES), max(CODES) + 1), dtype=np.int64)
        samples = np.zeros(len(SPLIT_CODES), dtype=np.int64)
        written = 0
        for batch in batches:
            n = _check_batch(batch, bands, size, kind)
            for name, array in arrays.items():
                array.append(_stored(name, getattr(batch, name), array.dtype), axis=0)
            samples += np.bincount(np.asarray(batch.split), minlength=len(SPLIT_CODES))
            for code in SPLIT_NAMES:
                chosen = np.asarray(batch.y)[np.asarray(batch.split) == code]
                counts[code] += np.bincount(chosen.ravel(), minlength=counts.shape[1])
            written += n
            if expected:
                progress.report(100.0 * written / expected, f"wrote {written} samples")
            else:
                progress.check()
        if not written:
            raise LczError(
                "embeddings",
                "no sample was kept: every patch lacked embedding values (NaN, nodata or all-zero "
                "vectors); check that the embeddings hold data where the labels are",
            )
        complete = {
            "format_version": FORMAT_VERSION,
            **manifest,
            "band_count": bands,
            "count": written,
            **_split_summary(samples, counts),
            "created_with": f"lcz_core {__version__}",
        }
        (tmp / "manifest.json").write_text(json.dumps(complete, indent=2), encoding="utf-8")
    return complete


def _split_summary(samples: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """Realised samples and shares per split, and class counts and shares keyed by LCZ label."""
    total = max(int(samples.sum()), 1)
    per_class = counts.sum(axis=0)
    return {
        "split_counts": {name: int(samples[code]) for code, name in SPLIT_NAMES.items()},
        "split_shares": {
            name: round(float(samples[code] / total), 4) for code, name in SPLIT_NAMES.items()
        },
        "class_counts": {
            name: {CLASS_BY_CODE[c].short: int(counts[code, c]) for c in CODES if counts[code, c]}
            for code, name in SPLIT_NAMES.items()
        },
        "class_shares": {
            CLASS_BY_CODE[c].short: {
                name: round(float(counts[code, c] / per_class[c]), 4)
                for code, name in SPLIT_NAMES.items()
            }
            for c in CODES
            if per_class[c]
        },
    }


def _stored(name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values cast to their array's type; embeddings beyond float16's range are refused."""
    if name != "x":
        return np.asarray(values, dtype=dtype)
    with np.errstate(over="ignore"):
        stored = np.asarray(values, dtype=dtype)
    if (np.isinf(stored) & ~np.isinf(values)).any():
        raise LczError(
            "embeddings",
            f"embedding values reach {np.nanmax(np.abs(values)):g}; a dataset stores them as "
            f"float16 (up to {float(np.finfo(dtype).max):g}): rescale the embeddings (e.g. "
            "reflectances as fractions of 1)",
        )
    return stored


def _vector(group, name: str, dtype: str):
    return group.create_array(name, shape=(0,), chunks=(65536,), dtype=dtype)


def _check_batch(batch: Batch, bands: int, size: int, kind: str) -> int:
    n = len(batch.x)
    if batch.x.shape[1:] != (bands, size, size):
        raise ValueError(
            f"batch x has shape {batch.x.shape}, expected (N, {bands}, {size}, {size})"
        )
    y_tail = () if kind == "patches" else (size, size)
    if np.shape(batch.y) != (n, *y_tail):
        raise ValueError(f"batch y has shape {np.shape(batch.y)}, expected {(n, *y_tail)}")
    for name in ("split", "city", "centre_x", "centre_y"):
        if len(getattr(batch, name)) != n:
            raise ValueError(f"batch {name} has {len(getattr(batch, name))} items, expected {n}")
    return n


def _check_destination(folder: Path) -> Path:
    """Refuse a destination that is a file or a non-empty folder other than a dataset."""
    parameter = "output"
    if not folder.parent.is_dir():
        raise LczError(parameter, f"folder {folder.parent} does not exist; create it first")
    if folder.is_file():
        raise LczError(parameter, f"{folder} is a file; give a folder name for the dataset")
    if folder.is_dir() and any(folder.iterdir()):
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
        if not isinstance(manifest, dict) or not {"format_version", "kind"} <= set(manifest):
            raise LczError(
                parameter, f"{folder} is a non-empty folder that is not a dataset; choose another"
            )
    return folder


# manifest lists with one item per city: a merged dataset concatenates them
PER_CITY_KEYS = ("cities", "city_crs", "city_grids", "block_cells_used", "block_shifts", "labels")
# manifest fields every dataset of a merge must share
SHARED_KEYS = (
    "kind",
    "patch_size",
    "pixel_size",
    "band_names",
    "embedding_source",
    "feature_space",
)


def merge_datasets(
    folders: list[str | os.PathLike],
    output: str | os.PathLike,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write one dataset holding the samples of several, each keeping its cities, grids and split.

    The datasets must share kind, patch and pixel size, bands and feature space; a city may not
    appear twice."""
    progress = progress or Progress()
    opened = [open_dataset(f) for f in folders]
    if not opened:
        raise LczError("dataset", "give at least one dataset folder to merge")
    first = opened[0].manifest
    for ds in opened[1:]:
        differ = [k for k in SHARED_KEYS if ds.manifest.get(k) != first.get(k)]
        if differ:
            raise LczError(
                "dataset",
                f"{ds.folder} and {opened[0].folder} differ in {', '.join(differ)}; merge "
                "datasets sampled from one embedding source with the same settings",
            )
    names = [c for ds in opened for c in ds.manifest["cities"]]
    if len(set(names)) != len(names):
        raise LczError("dataset", f"a city appears twice among {', '.join(names)}")
    manifest = {k: v for k, v in first.items() if k in (*REQUIRED_KEYS, *SHARED_KEYS)}
    for key in PER_CITY_KEYS:
        if all(key in ds.manifest for ds in opened):
            manifest[key] = [item for ds in opened for item in ds.manifest[key]]
    manifest["merged_from"] = [str(ds.folder) for ds in opened]

    def batches() -> Iterable[Batch]:
        offset = 0
        for ds in opened:
            block = max(1, int(ds.x.chunks[0]))
            for start in range(0, len(ds), block):
                stop = min(len(ds), start + block)
                yield Batch(
                    x=np.asarray(ds.x[start:stop]),
                    y=np.asarray(ds.y[start:stop]),
                    split=np.asarray(ds.split[start:stop]),
                    city=np.asarray(ds.city[start:stop]).astype(np.uint16) + offset,
                    centre_x=np.asarray(ds.centre_x[start:stop]),
                    centre_y=np.asarray(ds.centre_y[start:stop]),
                )
            offset += len(ds.manifest["cities"])

    total = sum(len(ds) for ds in opened)
    return write_dataset(output, batches(), manifest, progress, expected=total)
