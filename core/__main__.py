"""`python -m lcz_core ...`: the command line and the worker entry point of the QGIS plugin."""

import sys

from .cli import main

sys.exit(main())
