"""`lcz:setupworker`: creates the worker venv and installs the plugin's dependencies with pip.

QGIS-only (the worker cannot install itself). pip's output goes to the dialog's log line by line,
its stages to the progress bar; a package index that cannot be reached gets a message saying what
to do instead (a proxy, a folder of wheels).
"""

import os
import shlex
import shutil
import sys
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from .icon import ICON_PATH, lcz_icon
from .worker import (
    USER_VENV,
    WORKER_PYTHON_ENV,
    WORKER_PYTHON_SETTING,
    stream_process,
    venv_python,
)

REQUIREMENTS_FILE = Path(__file__).resolve().parent / "requirements.txt"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# what pip prints when it cannot talk to an index (requests/urllib3 and pip's own wording)
UNREACHABLE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Connection refused",
    "NewConnectionError",
    "ConnectTimeoutError",
    "Max retries exceeded",
    "ProxyError",
    "SSLError",
    "Could not fetch URL",
    "connection broken by",
)
CANCELLED = (
    "Cancelled by the user: the venv at {venv} may be missing packages; run Set up worker "
    "Python again to complete it."
)


def requirements():
    """The plugin's dependencies (requirements.txt beside this file, made from pyproject.toml)."""
    lines = REQUIREMENTS_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def base_python():
    """A Python to create the venv with: one of QGIS's version (not the QGIS binary), else python3."""
    prefix = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (prefix / "bin" / version, prefix / "bin" / "python3", prefix / "python.exe"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("python3") or shutil.which("python")


def folder_size(folder):
    """Bytes in the files under `folder` (links not followed)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


class PipProgress:
    """Turns pip's output lines into log lines, a progress text and a rising progress bar."""

    def __init__(self, feedback, start, end):
        self.feedback, self.start, self.end = feedback, start, end
        self.lines = []
        self.collected = 0

    def __call__(self, line):
        text = line.rstrip()
        self.lines.append(text)
        self.feedback.pushConsoleInfo(text)
        if text.startswith("Collecting "):
            # the number of packages is unknown until pip has resolved them: approach 80% of the span
            self.collected += 1
            self.feedback.setProgress(
                self.start + 0.8 * (self.end - self.start) * (1 - 0.93**self.collected)
            )
            self.feedback.setProgressText(text)
        elif text.startswith("Installing collected packages"):
            self.feedback.setProgress(self.start + 0.9 * (self.end - self.start))
            self.feedback.setProgressText("Installing the packages")

    def unreachable(self):
        """Whether pip's output says that it could not reach a package index."""
        return any(marker in line for line in self.lines for marker in UNREACHABLE)


def pip_environment():
    """QGIS's environment without what would make the venv's Python read QGIS's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1")
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


class SetupWorker(QgsProcessingAlgorithm):
    """Creates the worker venv and installs the plugin's dependencies into it with pip."""

    def name(self):
        return "setupworker"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Set up worker Python"

    def group(self):
        return "Setup"

    def groupId(self):  # noqa: N802 (QGIS API)
        return "setup"

    def icon(self):
        return lcz_icon()

    def svgIconPath(self):  # noqa: N802 (QGIS API)
        return ICON_PATH

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return (
            "<p>Creates the Python environment (a venv) in which the plugin's algorithms run, and "
            "installs the plugin's dependencies into it with pip (numpy, rasterio, zarr, "
            "geopandas, torch, timm...). Run it once, when an algorithm says that no worker "
            "Python was found. The default torch from PyPI brings CUDA libraries (several GB); "
            f"tick <b>CPU-only torch</b> for the CPU build from {CPU_TORCH_INDEX} (gigabytes "
            "less on disk, less memory per worker). Without internet access, give a folder "
            "of wheels (made with <i>pip download</i> or <i>pip wheel</i> elsewhere): pip then "
            "installs only from it. pip reads its usual configuration (proxy, index) too. Running "
            "it again completes or updates an existing venv.</p>"
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        return SetupWorker()

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(
            QgsProcessingParameterFile(
                "VENV", "Venv folder", behavior=QgsProcessingParameterFile.Folder,
                defaultValue=str(USER_VENV), optional=True,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterBoolean(
                "CPU_TORCH", f"CPU-only torch (from {CPU_TORCH_INDEX})", defaultValue=False
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "WHEELS", "Folder of wheels (offline: install only from it, no package index)",
                behavior=QgsProcessingParameterFile.Folder, optional=True,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterBoolean(
                "USE_FOR_PLUGIN", "Make it the plugin's worker Python", defaultValue=True
            )
        )
        advanced = [
            QgsProcessingParameterString(
                "EXTRA_INDEX_URL", "Extra package index URL", optional=True
            ),
            QgsProcessingParameterFile(
                "PYTHON", "Python to create the venv with (default: QGIS's Python version)",
                optional=True,
            ),
            QgsProcessingParameterString(
                "REQUIREMENTS",
                "Requirements to install (separated by ';'; default: the plugin's dependencies)",
                optional=True,
            ),
        ]  # fmt: skip
        for definition in advanced:
            definition.setFlags(definition.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(definition)
        self.addOutput(QgsProcessingOutputFolder("VENV", "Venv folder"))
        self.addOutput(QgsProcessingOutputString("PYTHON", "Worker Python"))
        self.addOutput(QgsProcessingOutputNumber("SIZE_MB", "Venv size (MB)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        venv = Path(self.parameterAsFile(parameters, "VENV", context) or USER_VENV).expanduser()
        python = venv_python(venv)
        if not python.exists():
            self._create_venv(venv, self.parameterAsFile(parameters, "PYTHON", context), feedback)
        else:
            feedback.pushInfo(f"Completing the existing venv {venv}")
        wanted = self.parameterAsString(parameters, "REQUIREMENTS", context)
        packages = [r.strip() for r in wanted.split(";") if r.strip()] or requirements()
        argv = [str(python), "-m", "pip", "install", *self._index_options(parameters, context)]
        feedback.setProgress(10)
        feedback.pushInfo(f"Installing {len(packages)} requirements: {' '.join(packages)}")
        self._pip([*argv, *packages], venv, feedback)
        size_mb = folder_size(venv) / 1e6
        feedback.pushInfo(f"The worker venv {venv} takes {size_mb:,.0f} MB on disk")
        if self.parameterAsBool(parameters, "USE_FOR_PLUGIN", context):
            self._use_for_plugin(str(python), feedback)
        feedback.setProgress(100)
        return {"VENV": str(venv), "PYTHON": str(python), "SIZE_MB": round(size_mb, 1)}

    def _create_venv(self, venv, base, feedback):
        base = base or base_python()
        if not base:
            raise QgsProcessingException(
                "No Python found to create the venv with: give one (Python 3.11 or newer) in "
                "'Python to create the venv with'"
            )
        if venv.exists() and any(venv.iterdir()):
            raise QgsProcessingException(
                f"Venv folder: {venv} holds files but no venv; choose an empty or new folder"
            )
        feedback.setProgressText(f"Creating the venv {venv}")
        argv = [base, "-m", "venv", str(venv)]
        feedback.pushCommandInfo(" ".join(shlex.quote(a) for a in argv))
        code, tail = stream_process(
            argv, pip_environment(), feedback, feedback.pushConsoleInfo, merge_stderr=True
        )
        if code is None:
            raise QgsProcessingException(CANCELLED.format(venv=venv))
        if code != 0:
            raise QgsProcessingException(
                f"{base} could not create a venv at {venv} (exit code {code}); on Debian or "
                "Ubuntu install python3-venv:\n" + "".join(tail)
            )

    def _index_options(self, parameters, context):
        wheels = self.parameterAsFile(parameters, "WHEELS", context)
        if wheels:
            return ["--no-index", "--find-links", wheels]
        options = []
        if self.parameterAsBool(parameters, "CPU_TORCH", context):
            options += ["--extra-index-url", CPU_TORCH_INDEX]
        extra = self.parameterAsString(parameters, "EXTRA_INDEX_URL", context)
        if extra:
            options += ["--extra-index-url", extra]
        return options

    def _pip(self, argv, venv, feedback):
        feedback.pushCommandInfo(" ".join(shlex.quote(a) for a in argv))
        progress = PipProgress(feedback, 10, 95)
        code, tail = stream_process(argv, pip_environment(), feedback, progress, merge_stderr=True)
        if code is None:
            raise QgsProcessingException(CANCELLED.format(venv=venv))
        if code == 0:
            return
        if progress.unreachable():
            raise QgsProcessingException(
                "pip could not reach the package index: check the internet connection and the "
                "proxy (pip reads HTTPS_PROXY and its pip.conf), or give a 'Folder of wheels' "
                "made with 'pip download' on a machine that has access. pip said:\n"
                + "".join(tail[-8:])
            )
        raise QgsProcessingException(
            f"pip stopped with exit code {code}; the venv {venv} may be incomplete. pip said:\n"
            + "".join(tail[-15:])
        )

    def _use_for_plugin(self, python, feedback):
        from processing.core.ProcessingConfig import ProcessingConfig

        ProcessingConfig.setSettingValue(WORKER_PYTHON_SETTING, python)
        feedback.pushInfo(f"The plugin's algorithms now run in {python}")
        if os.environ.get(WORKER_PYTHON_ENV):
            feedback.reportError(
                f"The environment variable {WORKER_PYTHON_ENV} names "
                f"{os.environ[WORKER_PYTHON_ENV]}: it comes first, unset it to use this venv"
            )
