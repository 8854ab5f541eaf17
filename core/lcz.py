"""The Local Climate Zone class table (Stewart & Oke 2012) and readers for the codings met in the wild.

Internally classes are 1-17; 0 is nodata. Other codings are translated here, at the edge, and a
value that no declared coding explains is refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import LczError

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
    "auto": "1-17, or 1-10 with 101-107 for A-G, told apart by the natural classes present",
    "lcz17": "1-17 (global LCZ map, LCZ Generator, European LCZ map)",
    "wudapt": "1-10 and 101-107 for A-G (older WUDAPT maps, GeoClimate LCZ_PRIMARY)",
}


class LczCodingError(ValueError):
    """Values that the chosen LCZ coding does not explain; `parameter` names the step parameter to fix."""

    def __init__(self, message: str, parameter: str = "coding") -> None:
        super().__init__(message)
        self.parameter = parameter


def parse_mapping(text: str | Mapping[Any, Any]) -> dict[int, int]:
    """Parse a user mapping 'from:to,from:to' or a {from: to} table (to: 1-17, A-G, 0 or nodata)."""
    if isinstance(text, Mapping):
        text = ",".join(f"{source}:{target}" for source, target in text.items())
    mapping: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        source, sep, target = item.partition(":")
        if not sep:
            raise LczError("mapping", f"item {item!r} is not 'from:to' (e.g. '1:2,101:A,0:nodata')")
        try:
            value = int(float(source))
        except ValueError:
            raise LczError("mapping", f"item {item!r}: {source!r} is not a number") from None
        try:
            mapping[value] = (
                NODATA if target.strip().lower() in ("0", "nodata") else code_from_text(target)
            )
        except LczCodingError as error:
            raise LczError("mapping", f"item {item!r}: {error}") from None
    if not mapping:
        raise LczError("mapping", "it is empty; write it as 'from:to,from:to' (e.g. '1:2,101:A')")
    return mapping


def as_mapping(mapping: str | Mapping[Any, Any] | None) -> dict[int, int] | None:
    """A user mapping given as text, as a table or not at all, checked (None when empty)."""
    if mapping is None or (isinstance(mapping, str) and not mapping.strip()):
        return None
    return parse_mapping(mapping)


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


def detect_coding(
    values: Iterable[int], assume: str | None = None, raster: bool = True, prefix: str = ""
) -> str:
    """Name the coding the (non-nodata) values prove: 'lcz17' or 'wudapt'.

    Built classes alone (1-10) prove nothing: they are taken as `assume` (a coding the source
    itself declares) or refused.
    """
    present = {int(v) for v in values}
    natural = present & set(range(11, 18))
    natural_wudapt = present & set(range(101, 108))
    if natural and natural_wudapt:
        raise LczCodingError(
            f"values {_list(sorted(natural | natural_wudapt))} write A-G both as 11-17 and as "
            "101-107; give a mapping of every value present to its class",
            "mapping",
        )
    if natural and present <= set(CODINGS["lcz17"]):
        return "lcz17"
    if natural_wudapt and present <= set(CODINGS["wudapt"]):
        return "wudapt"
    if present and present <= set(BUILT_CODES):
        if assume is not None:
            return assume
        raise LczCodingError(
            f"values {_list(sorted(present))} are all 1-10 and no natural class (A-G as 11-17 or "
            "101-107) occurs, so nothing shows that they are LCZ classes; give coding 'lcz17' if "
            "this is an LCZ map of built classes only, or a mapping of every value to its class",
            "coding",
        )
    unknown = sorted(present - set(CODINGS["lcz17"]) - set(CODINGS["wudapt"]))
    raise _unknown_values(unknown, present, "any known coding", raster, prefix)


def _unknown_values(
    unknown: list[int], present: set[int], where: str, raster: bool, prefix: str
) -> LczCodingError:
    """The refusal of values a coding does not explain, naming the parameter that fixes it."""
    above = [v for v in present if v > NUM_CLASSES]
    if raster and len(above) >= 10 and min(present) >= 0 and max(present) <= 100:
        return LczCodingError(
            f"its {len(present)} distinct values from {min(present)} to {max(present)} look like "
            "probabilities (0-100), not LCZ classes; choose the band that holds the classes, or "
            "give the coding or a mapping if these are classes",
            f"{prefix}band",
        )
    codings = f"{CODING_HELP['lcz17']}; {CODING_HELP['wudapt']}"
    if raster and unknown == [NODATA]:
        return LczCodingError(
            f"value 0 is not an LCZ class in {where} ({codings}); it usually marks pixels without "
            f"data that the file does not declare: give {prefix}nodata 0",
            f"{prefix}nodata",
        )
    example = next((v for v in unknown if v != NODATA), unknown[0])
    if not raster:
        fix = ", or choose the field that holds the LCZ classes"
    elif NODATA in unknown:
        fix = f"; 0 usually marks pixels without data: give {prefix}nodata 0"
    else:
        fix = ""
    return LczCodingError(
        f"values {_list(unknown)} are not LCZ classes in {where} ({codings}); give a mapping of "
        f"every value present to its class, e.g. '{example}:<1-10 or A-G>' or "
        f"'{example}:nodata'{fix}",
        "mapping" if raster else "class_field",
    )


def resolve_lookup(
    coding: str,
    present: Iterable[int],
    mapping: Mapping[int, int] | None = None,
    assume: str | None = None,
    raster: bool = True,
    prefix: str = "",
) -> tuple[str, dict[int, int]]:
    """The coding used ('auto' resolved; 'mapping' for a mapping) and its value -> 1-17 table.

    A mapping must name every value present; `assume` is the coding the source declares, used
    where the values alone cannot tell (built classes only). `raster` False (attribute values)
    leaves out the fixes only rasters have (band, nodata); `prefix` goes before their names.
    """
    present = {int(v) for v in present}
    if mapping:
        if coding != "auto":
            raise LczCodingError(
                f"a mapping translates every value itself: leave coding at 'auto' (not {coding!r}) "
                "or drop the mapping",
                "mapping",
            )
        left = sorted(present - set(mapping))
        if left:
            raise LczCodingError(
                f"values {_list(left)} are present but not in the mapping; add each of them, "
                f"e.g. '{left[0]}:<1-10 or A-G>' or '{left[0]}:nodata'",
                "mapping",
            )
        return "mapping", {int(k): int(v) for k, v in mapping.items()}
    if coding == "auto":
        coding = detect_coding(present, assume, raster, prefix)
    if coding not in CODINGS:
        raise LczCodingError(
            f"unknown LCZ coding {coding!r}; choose one of {', '.join(CODING_HELP)}", "coding"
        )
    unknown = sorted(present - set(CODINGS[coding]))
    if unknown:
        raise _unknown_values(unknown, present, f"the '{coding}' coding", raster, prefix)
    return coding, dict(CODINGS[coding])


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
