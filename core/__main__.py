"""`python -m lcz_core ...`: the command line and the worker entry point of the QGIS plugin."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a spawned process (a Dask or DataLoader worker) imports it
    sys.exit(main())
