"""lcz_core: Local Climate Zone mapping from geospatial embeddings, without QGIS."""

from pathlib import Path


def _read_version() -> str:
    """The version written in the plugin's metadata.txt (repo or plugin zip), else the installed one."""
    here = Path(__file__).resolve().parent
    # the repo keeps metadata.txt beside core/, the plugin zip one level above lib/lcz_core/
    for folder in (here.parent, here.parent.parent):
        metadata = folder / "metadata.txt"
        if metadata.is_file():
            for line in metadata.read_text(encoding="utf-8").splitlines():
                if line.startswith("version="):
                    return line.split("=", 1)[1].strip()
    from importlib.metadata import version

    return version("lcz-qgis")


__version__ = _read_version()

# the public API: one function per step (heavy libraries are imported when a step runs)
from . import steps  # noqa: E402
from .steps import *  # noqa: E402, F403

__all__ = ["__version__", *(name for name in steps.__all__ if not name.isupper())]
