"""The core must import without QGIS: no module below core/ may import qgis, osgeo or PyQt."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
IMPORT_ALL_CORE_MODULES = """
import importlib, pkgutil, lcz_core
names = [m.name for m in pkgutil.iter_modules(lcz_core.__path__, "lcz_core.")]
for name in names:
    if not name.endswith("__main__"):
        importlib.import_module(name)
assert len(names) >= 5, names
"""
FORBIDDEN = {"qgis", "osgeo", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip", "scipy"}


def test_no_forbidden_imports_in_core_sources():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in FORBIDDEN
            ]
    assert offenders == []
    assert len(list(CORE.rglob("*.py"))) >= 5


def test_core_cli_runs_in_a_python_without_qgis(tmp_path):
    # a `qgis` package that fails on import, first on the path, proves no core module imports it
    poison = tmp_path / "qgis"
    poison.mkdir()
    (poison / "__init__.py").write_text("raise ImportError('the core must not import qgis')\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL_CORE_MODULES],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
