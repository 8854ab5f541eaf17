"""The Local Climate Zone class table (Stewart & Oke 2012) and readers for the codings met in the wild.

Internally classes are 1-17; 0 is nodata. Other codings are translated here, at the edge, and a
value that no declared coding explains is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

NODATA = 0


@dataclass(frozen=True)
class LczClass:
    """One LCZ class: internal code, short code (1-10, A-G), name and official colour."""

    code: int
    short: str
    name: str
    color: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as an (r, g, b) tuple of 0-255 ints."""
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]

    @property
    def label(self) -> str:
        """Legend label, e.g. 'LCZ A: Dense trees'."""
        return f"LCZ {self.short}: {self.name}"


LCZ_CLASSES: tuple[LczClass, ...] = (
    LczClass(1, "1", "Compact high-rise", "#8c0000"),
    LczClass(2, "2", "Compact mid-rise", "#d10000"),
    LczClass(3, "3", "Compact low-rise", "#ff0000"),
    LczClass(4, "4", "Open high-rise", "#bf4d00"),
    LczClass(5, "5", "Open mid-rise", "#ff6600"),
    LczClass(6, "6", "Open low-rise", "#ff9955"),
    LczClass(7, "7", "Lightweight low-rise", "#faee05"),
    LczClass(8, "8", "Large low-rise", "#bcbcbc"),
    LczClass(9, "9", "Sparsely built", "#ffccaa"),
    LczClass(10, "10", "Heavy industry", "#555555"),
    LczClass(11, "A", "Dense trees", "#006a00"),
    LczClass(12, "B", "Scattered trees", "#00aa00"),
    LczClass(13, "C", "Bush, scrub", "#648525"),
    LczClass(14, "D", "Low plants", "#b9db79"),
    LczClass(15, "E", "Bare rock or paved", "#000000"),
    LczClass(16, "F", "Bare soil or sand", "#fbf7ae"),
    LczClass(17, "G", "Water", "#6a6aff"),
)
CLASS_BY_CODE: dict[int, LczClass] = {c.code: c for c in LCZ_CLASSES}
CODES: tuple[int, ...] = tuple(CLASS_BY_CODE)
NUM_CLASSES = len(LCZ_CLASSES)
BUILT_CODES: tuple[int, ...] = tuple(range(1, 11))

# Codings of the integer values found in LCZ rasters and attribute tables (LCZ.md).
CODINGS: dict[str, dict[int, int]] = {
    "lcz17": {c: c for c in CODES},
    "wudapt": {**{c: c for c in BUILT_CODES}, **{100 + i: 10 + i for i in range(1, 8)}},
}
CODING_HELP = {
    "auto": "1-17, or 1-10 with 101-107 for A-G, chosen from the values present",
    "lcz17": "1-17 (global LCZ map, LCZ Generator, European LCZ map)",
    "wudapt": "1-10 and 101-107 for A-G (older WUDAPT maps, GeoClimate LCZ_PRIMARY)",
}


class LczCodingError(ValueError):
    """Values that the chosen LCZ coding does not explain."""


def parse_mapping(text: str) -> dict[int, int]:
    """Parse an explicit user mapping 'from:to,from:to' (targets 1-17 or A-G, 0 = nodata)."""
    mapping: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        source, sep, target = item.partition(":")
        if not sep:
            raise ValueError(f"class mapping item {item!r} is not 'from:to' (e.g. '0:17,1:2')")
        try:
            value = int(float(source))
        except ValueError:
            raise ValueError(f"class mapping item {item!r}: {source!r} is not a number") from None
        mapping[value] = NODATA if target.strip() in ("0", "nodata") else code_from_text(target)
    if not mapping:
        raise ValueError("class mapping is empty; write it as 'from:to,from:to' (e.g. '0:17,1:2')")
    return mapping


def code_from_text(text: str) -> int:
    """Translate one class given as text ('1'-'10', 'A'-'G', 'LCZ A', '101'-'107') to 1-17."""
    cleaned = str(text).strip().upper().removeprefix("LCZ").strip().removeprefix("_").strip()
    for c in LCZ_CLASSES:
        if cleaned == c.short:
            return c.code
    try:
        number = float(cleaned)
    except ValueError:
        raise LczCodingError(f"{text!r} is not an LCZ class (1-10, A-G, 101-107)") from None
    if number.is_integer() and int(number) in CODINGS["wudapt"]:
        return CODINGS["wudapt"][int(number)]
    if number.is_integer() and int(number) in CODES:
        return int(number)
    raise LczCodingError(f"{text!r} is not an LCZ class (1-10, A-G, 101-107)")


def detect_coding(values: Iterable[int]) -> str:
    """Name the coding that explains all the (non-nodata) values: 'lcz17' or 'wudapt'."""
    present = {int(v) for v in values}
    if present <= set(CODINGS["lcz17"]):
        return "lcz17"
    if present <= set(CODINGS["wudapt"]):
        return "wudapt"
    unknown = sorted(present - set(CODINGS["lcz17"]) - set(CODINGS["wudapt"]))
    raise LczCodingError(
        f"values {_list(unknown)} are not LCZ classes in any known coding "
        f"({CODING_HELP['lcz17']}; {CODING_HELP['wudapt']}); give an explicit class mapping such as "
        f"'{unknown[0]}:17' or declare them nodata"
    )


def resolve_lookup(
    coding: str, present: Iterable[int], mapping: Mapping[int, int] | None = None
) -> tuple[str, dict[int, int]]:
    """The coding's name and value -> 1-17 table ('auto' resolved), explicit overrides applied."""
    mapping = dict(mapping or {})
    rest = {int(v) for v in present} - set(mapping)
    if coding == "auto":
        coding = detect_coding(rest)
    if coding not in CODINGS:
        raise ValueError(f"unknown LCZ coding {coding!r}; choose one of {', '.join(CODING_HELP)}")
    table = {**CODINGS[coding], **mapping}
    unknown = sorted(rest - set(table))
    if unknown:
        raise LczCodingError(
            f"values {_list(unknown)} are not LCZ classes in the '{coding}' coding "
            f"({CODING_HELP[coding]}); give an explicit class mapping or another coding"
        )
    return coding, table


def apply_lookup(values: np.ndarray, table: Mapping[int, int], valid: np.ndarray) -> np.ndarray:
    """Map integer `values` through `table` to uint8 1-17; pixels not `valid` become 0."""
    lut_keys = np.array(sorted(table), dtype=np.int64)
    lut_vals = np.array([table[k] for k in lut_keys], dtype=np.uint8)
    out = np.zeros(values.shape, dtype=np.uint8)
    ints = values[valid].astype(np.int64)
    idx = np.clip(np.searchsorted(lut_keys, ints), 0, len(lut_keys) - 1)
    if not np.all(lut_keys[idx] == ints):
        unknown = np.unique(ints[lut_keys[idx] != ints])
        raise LczCodingError(f"values {_list(unknown.tolist())} have no LCZ class in the mapping")
    out[valid] = lut_vals[idx]
    return out


def decode_one_hot(labels: np.ndarray) -> np.ndarray:
    """So2Sat LCZ42 one-hot label vectors (N x 17, index 0 = LCZ 1) -> codes 1-17."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != NUM_CLASSES:
        raise LczCodingError(f"one-hot labels must be N x {NUM_CLASSES}, got {labels.shape}")
    if not np.allclose(labels.sum(axis=1), 1):
        raise LczCodingError("one-hot label rows must each sum to 1")
    return (labels.argmax(axis=1) + 1).astype(np.uint8)


def classes_present(codes: np.ndarray) -> list[LczClass]:
    """The LCZ classes that occur in an array of 1-17 codes, in code order."""
    present = np.unique(np.asarray(codes))
    return [CLASS_BY_CODE[int(c)] for c in present if int(c) in CLASS_BY_CODE]


def _list(values: Iterable[int | float]) -> str:
    items = [str(int(v)) if float(v).is_integer() else str(v) for v in values]
    return ", ".join(items[:10]) + (f" (and {len(items) - 10} more)" if len(items) > 10 else "")
