"""The provider's algorithms: one class per core step spec (only QGIS behaviour is written here)."""

from .. import core_path  # noqa: F401 (puts the core's specs on the path)
from .base import LczAlgorithm


def _algorithm_class(step):
    name = "".join(part.capitalize() for part in step.name.split("-"))
    return type(name, (LczAlgorithm,), {"step": step, "__doc__": step.title})


def algorithms():
    """A class per step offered in QGIS, in workflow order."""
    from lcz_core.steps import STEPS

    return [_algorithm_class(step) for step in STEPS if step.qgis]
