"""Checks before anything is allocated: values read from files or given by the user, and memory.

Model files, dataset manifests, experiment files and city catalogues are data, not code: each
field is checked here for its type and range before a step sizes an array by it, and a step
estimates the memory it is about to ask for and refuses, with a fix, when the machine lacks it.
Standard library only, so that the step specifications can use the same limits.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import LczError

# Upper bounds of fields that size arrays; far above any real use, far below a memory bomb.
MAX_BANDS = 4096
MAX_PATCH_SIZE = 1024
MAX_WIDTH = 512


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(parameter: str, what: str, value: Any, expected: str) -> LczError:
    return LczError(parameter, f"{what} is {_show(value)}, expected {expected}")


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f" of at least {low:g}"
    return f" of at most {high:g}" if high is not None else ""


def integer(
    value: Any,
    parameter: str,
    what: str,
    low: int | None = None,
    high: int | None = None,
) -> int:
    """`value` as an int in [low, high]; booleans, floats and text are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _refuse(parameter, what, value, f"a whole number{_bounds(low, high)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _refuse(parameter, what, value, f"a whole number{_bounds(low, high)}")
    return value


def number(
    value: Any,
    parameter: str,
    what: str,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
) -> float:
    """`value` as a finite float in [low, high] (above 0 when `positive`); text is refused."""
    expected = f"a {'positive' if positive else 'finite'} number{_bounds(low, high)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _refuse(parameter, what, value, expected)
    value = float(value)
    if (
        not math.isfinite(value)
        or (positive and value <= 0)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        raise _refuse(parameter, what, value, expected)
    return value


def text(value: Any, parameter: str, what: str, choices: Sequence[str] | None = None) -> str:
    """`value` as a str (one of `choices` when given)."""
    if not isinstance(value, str) or (choices is not None and value not in choices):
        expected = f"one of {', '.join(choices)}" if choices is not None else "text"
        raise _refuse(parameter, what, value, expected)
    return value


def flag(value: Any, parameter: str, what: str) -> bool:
    """`value` as a bool: true or false only (not "no", not 0)."""
    if not isinstance(value, bool):
        raise _refuse(parameter, what, value, "true or false")
    return value


def items(value: Any, parameter: str, what: str, length: int | None = None) -> list:
    """`value` as a list (of `length` items when given); text and tables are refused."""
    if isinstance(value, str | bytes | dict) or not isinstance(value, Sequence):
        raise _refuse(parameter, what, value, "a list")
    if length is not None and len(value) != length:
        raise _refuse(parameter, what, value, f"a list of {length} items")
    return list(value)


def extent(value: Any, parameter: str, what: str) -> tuple[float, float, float, float]:
    """`value` as (xmin, ymin, xmax, ymax): four finite numbers with xmin < xmax, ymin < ymax."""
    values = [number(v, parameter, f"{what} item") for v in items(value, parameter, what, 4)]
    if values[0] >= values[2] or values[1] >= values[3]:
        raise _refuse(
            parameter, what, value, "[xmin, ymin, xmax, ymax] with xmin < xmax, ymin < ymax"
        )
    return tuple(values)  # type: ignore[return-value]


def table(value: Any, parameter: str, what: str) -> dict:
    """`value` as a dict (a TOML table, a JSON object)."""
    if not isinstance(value, dict):
        raise _refuse(parameter, what, value, "a table of keys and values")
    return value


def known_keys(
    value: dict, parameter: str, what: str, known: Sequence[str], required: Sequence[str] = ()
) -> dict:
    """Refuse keys outside `known` (a typo would be silently ignored) and missing `required` ones."""
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise LczError(
            parameter, f"{what}: unknown keys {', '.join(unknown)}; known: {', '.join(known)}"
        )
    missing = [k for k in required if k not in value]
    if missing:
        raise LczError(parameter, f"{what} lacks the keys {', '.join(missing)}")
    return value


def gib(size: float) -> str:
    """A byte count for people: '2.3 GiB', '512 MiB'."""
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    return f"{max(size, 0) / 2**20:.0f} MiB"


def _read_number(path: str, key: str = "") -> int | None:
    """A number from a /proc or /sys file: the line starting with `key` (kB) or the whole file."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if not key:
                    word = line.strip()
                    return int(word) if word.isdigit() else None
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory() -> int | None:
    """Bytes this process may still allocate (None where unknown): the least of the machine's
    available memory, the room left in its cgroup and under its address-space limit."""
    limits = []
    if sys.platform.startswith("linux"):
        limits.append(_read_number("/proc/meminfo", "MemAvailable:"))
        limit = _read_number("/sys/fs/cgroup/memory.max")
        used = _read_number("/sys/fs/cgroup/memory.current")
        if limit is not None and used is not None:
            limits.append(limit - used)
    elif hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        import resource
    except ImportError:  # Windows
        resource = None
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        size = _read_number("/proc/self/status", "VmSize:")
        if soft != resource.RLIM_INFINITY and size is not None:
            limits.append(soft - size)
    known = [v for v in limits if v is not None]
    return max(0, min(known)) if known else None


def check_memory(needed: float, parameter: str, what: str, fix: str) -> None:
    """Refuse, naming `parameter`, a step whose estimated need exceeds the available memory."""
    available = available_memory()
    if available is not None and needed > available:
        raise LczError(
            parameter,
            f"{what} needs about {gib(needed)} of memory and {gib(available)} is available; {fix}",
        )
