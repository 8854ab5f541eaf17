"""The plugin's LCZ icon, shown for the provider, its algorithms and its models."""

from pathlib import Path

from qgis.PyQt.QtGui import QIcon

ICON_PATH = str(Path(__file__).resolve().parent / "icon.svg")


def lcz_icon():
    """The LCZ icon."""
    return QIcon(ICON_PATH)
