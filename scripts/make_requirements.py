"""Write lcz_qgis/requirements.txt from pyproject.toml's dependencies.

The plugin zip carries no pyproject.toml; its `Set up worker Python` algorithm installs these.
Run from anywhere: `python3 scripts/make_requirements.py`.
"""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS_FILE = REPO / "lcz_qgis" / "requirements.txt"


def requirements_text():
    """The requirements file's text for the current pyproject.toml."""
    with open(REPO / "pyproject.toml", "rb") as pyproject:
        dependencies = tomllib.load(pyproject)["project"]["dependencies"]
    header = "# The worker's dependencies, from pyproject.toml by scripts/make_requirements.py\n"
    return header + "".join(f"{dependency}\n" for dependency in dependencies)


if __name__ == "__main__":
    REQUIREMENTS_FILE.write_text(requirements_text(), encoding="utf-8")
    print(f"wrote {REQUIREMENTS_FILE}")
