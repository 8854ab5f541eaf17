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

from qgis.core import QgsProcessingException

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


def _python_in(venv):
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def default_worker_python():
    """The first worker interpreter that exists: the repo's .venv, then the user venv."""
    for candidate in (_python_in(PLUGIN_DIR.parent / ".venv"), _python_in(USER_VENV)):
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
            f"No worker Python found (tried {python or 'the defaults'}). Create a venv with the "
            f"plugin's dependencies at {USER_VENV} (see the README), or set "
            "Settings > Options > Processing > Providers > Local Climate Zones > Worker Python "
            f"interpreter, or the environment variable {WORKER_PYTHON_ENV}."
        )
    return python


def worker_environment():
    """The worker's environment: the plugin's core first on the path, no inherited PYTHONHOME."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CORE_PATH), env.get("PYTHONPATH")]))
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", MPLBACKEND="Agg")
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


def run_core(command, arguments, feedback, labels=None):
    """Run `python -m lcz_core <command> <arguments>` in the worker; return its outputs dict.

    `labels` maps parameter names to dialog labels: the worker's errors name the label.
    """
    argv = [worker_python(), "-m", "lcz_core", "--jsonl", command, *[str(a) for a in arguments]]
    feedback.pushCommandInfo("Worker: " + " ".join(shlex.quote(a) for a in argv))
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        env=worker_environment(),
        preexec_fn=_dies_with_parent(),
    )
    messages = queue.Queue()
    stderr_tail = deque(maxlen=40)
    threading.Thread(target=_pump, args=(process.stdout, messages.put), daemon=True).start()
    stderr_thread = threading.Thread(
        target=_pump, args=(process.stderr, stderr_tail.append), daemon=True
    )
    stderr_thread.start()
    result = None
    while True:
        if feedback.isCanceled():
            _stop(process)
            raise QgsProcessingException(CANCELLED)
        try:
            line = messages.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None and messages.empty():
                break
            continue
        message = _parse(line)
        if message is None:
            feedback.pushConsoleInfo(line.rstrip())
            continue
        kind = message.get("type")
        if kind == "progress":
            feedback.setProgress(message["percent"])
            if message.get("message"):
                feedback.setProgressText(message["message"])
        elif kind == "log":
            feedback.pushInfo(message["message"])
        elif kind == "result":
            result = message["outputs"]
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
    process.wait()
    stderr_thread.join(timeout=5)
    if result is None:
        raise QgsProcessingException(
            f"The worker ({argv[0]}) stopped with exit code {process.returncode} and no result:\n"
            + "".join(stderr_tail)
        )
    return result


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
