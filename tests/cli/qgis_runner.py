"""qgis_process with a fresh QGIS profile: shared by the command-line tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"


def qgis_environment(home: Path, plugin_path: Path) -> dict[str, str]:
    """The environment of a qgis_process whose profile lives in `home`, plugins in `plugin_path`."""
    # pytest-qgis points QGIS_CUSTOM_CONFIG_PATH at its own profile: each run here gets a fresh one
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "QGIS_"))}
    env.update(HOME=str(home), QGIS_PLUGINPATH=str(plugin_path), QT_QPA_PLATFORM="offscreen")
    return env
