"""lcz:setupworker: a venv made and filled from a local folder of wheels, and pip's failures."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "lcz_tiny_dependency"


class Log:
    """A feedback that keeps what the dialog's log would show."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.lines = []
                self.progress = []
                self.progressChanged.connect(self.progress.append)

            def pushConsoleInfo(self, info):  # noqa: N802 (QGIS API)
                self.lines.append(info)

            def pushInfo(self, info):  # noqa: N802 (QGIS API)
                self.lines.append(info)

        return Feedback()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """A folder holding one wheel: a tiny pure-Python package built here with `pip wheel`."""
    source = tmp_path_factory.mktemp("tiny_source")
    (source / PACKAGE).mkdir()
    (source / PACKAGE / "__init__.py").write_text('VERSION = "0.3"\n')
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{PACKAGE}"\nversion = "0.3"\n'
        f'[tool.setuptools]\npackages = ["{PACKAGE}"]\n'
    )
    folder = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", folder, source],
        check=True, capture_output=True,
    )  # fmt: skip
    assert [p.name for p in folder.iterdir()] == [f"{PACKAGE}-0.3-py3-none-any.whl"]
    return folder


@pytest.fixture(scope="module")
def worker_venv(lcz_provider, wheels, tmp_path_factory):
    """A worker venv made by the algorithm, the tiny package installed from the wheel folder."""
    import processing

    venv = tmp_path_factory.mktemp("setup") / "venv"
    feedback = Log()
    result = processing.run(
        "lcz:setupworker",
        {"VENV": str(venv), "WHEELS": str(wheels), "REQUIREMENTS": f"{PACKAGE}==0.3",
         "USE_FOR_PLUGIN": False},
        feedback=feedback,
    )  # fmt: skip
    return venv, result, feedback


def test_venv_is_made_and_the_package_installed_from_the_wheels(worker_venv):
    venv, result, feedback = worker_venv
    python = venv / "bin" / "python"
    assert result["VENV"] == str(venv) and result["PYTHON"] == str(python)
    done = subprocess.run(
        [python, "-c", f"import {PACKAGE}; print({PACKAGE}.VERSION, {PACKAGE}.__file__)"],
        capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    version, location = done.stdout.split()
    assert version == "0.3" and location.startswith(str(venv))
    # pip's own lines reach the log; the size is the venv's files
    assert any(line.startswith(f"Successfully installed {PACKAGE}-0.3") for line in feedback.lines)
    measured = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    assert result["SIZE_MB"] == pytest.approx(measured / 1e6, abs=0.1) and result["SIZE_MB"] > 1
    assert any("takes" in line and "MB on disk" in line for line in feedback.lines)
    assert feedback.progress[-1] == 100


def test_unreachable_index_says_so(worker_venv, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException

    venv, _, _ = worker_venv
    for name in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(name)
    # port 9 (discard) on this machine: nothing listens, every connection is refused
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip names the connection error when it retries
    with pytest.raises(QgsProcessingException, match="could not reach the package index"):
        processing.run(
            "lcz:setupworker",
            {"VENV": str(venv), "REQUIREMENTS": f"{PACKAGE}==0.4", "USE_FOR_PLUGIN": False},
            feedback=Log(),
        )


def test_missing_wheel_is_not_called_a_network_problem(worker_venv, wheels):
    import processing
    from qgis.core import QgsProcessingException

    venv, _, _ = worker_venv
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(
            "lcz:setupworker",
            {"VENV": str(venv), "WHEELS": str(wheels), "REQUIREMENTS": f"{PACKAGE}==9.9",
             "USE_FOR_PLUGIN": False},
            feedback=Log(),
        )  # fmt: skip
    assert "pip stopped with exit code 1" in str(raised.value)
    assert f"{PACKAGE}==9.9" in str(raised.value)


def test_a_folder_with_other_files_is_not_made_a_venv(lcz_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(QgsProcessingException, match="holds files but no venv"):
        processing.run(
            "lcz:setupworker", {"VENV": str(tmp_path), "USE_FOR_PLUGIN": False}, feedback=Log()
        )
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_missing_worker_points_to_the_setup_algorithm(monkeypatch, tmp_path):
    from qgis.core import QgsProcessingException

    from lcz_qgis.worker import WORKER_PYTHON_ENV, worker_python

    monkeypatch.setenv(WORKER_PYTHON_ENV, str(tmp_path / "no_python_here"))
    with pytest.raises(QgsProcessingException, match=r"Set up worker Python \(lcz:setupworker\)"):
        worker_python()


def test_shipped_requirements_are_pyprojects():
    from lcz_qgis.setup_worker import REQUIREMENTS_FILE, requirements

    spec = importlib.util.spec_from_file_location(
        "make_requirements", REPO / "scripts/make_requirements.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert REQUIREMENTS_FILE.read_text() == script.requirements_text()
    assert "torch==2.14.1" in requirements() and not any(r.startswith("#") for r in requirements())
