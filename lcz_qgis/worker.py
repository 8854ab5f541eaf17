"""Runs a core step in the worker Python and bridges its JSON lines to QgsProcessingFeedback.

The worker is `<python> -m lcz_core <command> --jsonl ...`, the core's own command line, so QGIS's
Python never imports torch or a second GDAL, and a crash or out-of-memory in the worker cannot take
QGIS down. The core is found in `lib/` beside this file (a copy of core/ in the plugin zip).
"""

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

from qgis.core import QgsProcessingException, QgsProcessingUtils

from .core_path import CORE_PATH

PLUGIN_DIR = Path(__file__).resolve().parent
WORKER_PYTHON_SETTING = "LCZ_WORKER_PYTHON"
WORKER_PYTHON_ENV = "LCZ_QGIS_PYTHON"
USER_VENV = Path.home() / ".local" / "share" / "lcz_qgis" / "venv"
TERMINATE_GRACE_S = 10
CANCELLED = (
    "Cancelled by the user: no partial output was left, and earlier results in the output "
    "folders are untouched."
)


def venv_python(venv):
    """The Python interpreter of a venv."""
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def default_worker_python():
    """The first worker interpreter that exists: the repo's .venv, then the user venv."""
    for candidate in (venv_python(PLUGIN_DIR.parent / ".venv"), venv_python(USER_VENV)):
        if candidate.exists():
            return str(candidate)
    return None


def worker_python():
    """The interpreter to run: environment variable, provider setting, then the defaults."""
    configured = os.environ.get(WORKER_PYTHON_ENV)
    if not configured:
        try:
            from processing.core.ProcessingConfig import ProcessingConfig

            configured = ProcessingConfig.getSetting(WORKER_PYTHON_SETTING)
        except ImportError:
            configured = None
    python = configured or default_worker_python()
    if not python or not Path(python).exists():
        raise QgsProcessingException(
            f"No worker Python found (tried {python or 'the defaults'}). Run the algorithm "
            "Local Climate Zones > Setup > Set up worker Python (lcz:setupworker): it creates a "
            f"venv with the plugin's dependencies at {USER_VENV}. Or set "
            "Settings > Options > Processing > Providers > Local Climate Zones > Worker Python "
            f"interpreter, or the environment variable {WORKER_PYTHON_ENV}."
        )
    return python


def worker_environment():
    """The worker's environment: the plugin's core first on the path, no inherited PYTHONHOME,
    QGIS's temporary folder named."""
    from lcz_core.spec import TEMPORARY_FOLDER_ENV

    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CORE_PATH), env.get("PYTHONPATH")]))
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", MPLBACKEND="Agg")
    # outputs left temporary go there; the core warns where that matters (a rerun's dataset)
    env[TEMPORARY_FOLDER_ENV] = QgsProcessingUtils.tempFolder()
    return env


def _dies_with_parent():
    """On Linux, a function for Popen's preexec_fn: the worker gets SIGTERM (and removes its
    partial outputs) the moment QGIS dies, instead of running on until it next writes to the
    closed pipe. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    # resolved here, before the fork: the child only makes the call
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm():
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # QGIS died before the call: no signal will come
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _pump(stream, sink):
    for line in iter(stream.readline, ""):
        sink(line)
    stream.close()


def stream_process(argv, env, feedback, on_line, merge_stderr=False):
    """Run `argv`, handing each line of its output to `on_line`, until it ends or is cancelled.

    Returns the exit code (None when the user cancelled: the process was stopped) and the last
    lines of its standard error (of its output with `merge_stderr`).
    """
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        preexec_fn=_dies_with_parent(),
    )
    lines = queue.Queue()
    tail = deque(maxlen=40)
    threading.Thread(target=_pump, args=(process.stdout, lines.put), daemon=True).start()
    stderr_thread = None
    if not merge_stderr:
        stderr_thread = threading.Thread(
            target=_pump, args=(process.stderr, tail.append), daemon=True
        )
        stderr_thread.start()
    while True:
        if feedback.isCanceled():
            _stop(process)
            return None, list(tail)
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None and lines.empty():
                break
            continue
        if merge_stderr:
            tail.append(line)
        on_line(line)
    process.wait()
    if stderr_thread is not None:
        stderr_thread.join(timeout=5)
    return process.returncode, list(tail)


def run_core(command, arguments, feedback, labels=None):
    """Run `python -m lcz_core <command> <arguments>` in the worker; return its outputs dict.

    `labels` maps parameter names to dialog labels: the worker's errors name the label.
    """
    argv = [worker_python(), "-m", "lcz_core", "--jsonl", command, *[str(a) for a in arguments]]
    feedback.pushCommandInfo("Worker: " + " ".join(shlex.quote(a) for a in argv))
    outputs = {}

    def handle(line):
        message = _parse(line)
        if message is None:
            feedback.pushConsoleInfo(line.rstrip())
            return
        kind = message.get("type")
        if kind == "progress":
            feedback.setProgress(message["percent"])
            if message.get("message"):
                feedback.setProgressText(message["message"])
        elif kind == "log":
            feedback.pushInfo(message["message"])
        elif kind == "result":
            outputs["result"] = message["outputs"]
        elif kind == "error":
            if message.get("traceback"):
                feedback.pushDebugInfo(message["traceback"])
            parameter = message.get("parameter")
            text = message["message"]
            if parameter:
                text = f"{(labels or {}).get(parameter, parameter)}: {text}"
            raise QgsProcessingException(text)
        elif kind == "cancelled":
            raise QgsProcessingException(CANCELLED)

    returncode, stderr_tail = stream_process(argv, worker_environment(), feedback, handle)
    if returncode is None:
        raise QgsProcessingException(CANCELLED)
    if "result" not in outputs:
        raise QgsProcessingException(
            f"The worker ({argv[0]}) stopped with exit code {returncode} and no result:\n"
            + "".join(stderr_tail)
        )
    return outputs["result"]


def _parse(line):
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "type" in message else None


def _stop(process):
    """Terminate the worker (it removes its partial outputs on SIGTERM); kill if it hangs."""
    process.terminate()
    try:
        process.wait(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
