"""Puts the plugin's copy of the core (lib/lcz_core) first on QGIS's path.

QGIS's Python reads only the step specs from it (standard library only); the heavy work runs in
the worker Python, which gets the same folder on its PYTHONPATH.
"""

import sys
from pathlib import Path

CORE_PATH = Path(__file__).resolve().parent / "lib"
if str(CORE_PATH) not in sys.path:
    sys.path.insert(0, str(CORE_PATH))
