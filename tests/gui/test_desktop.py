"""The QGIS desktop under Xvfb with the plugin installed from its zip into a fresh profile.

QGIS runs tests/gui/qgis_startup.py: the algorithms run as the Toolbox runs them
(`processing.runAndLoadResults`), then it reports the style of every loaded layer and saves a
screenshot of the main window. Set LCZ_GUI_SCREENSHOT to a path to keep the screenshot.
"""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

REPO = Path(__file__).resolve().parents[2]
XVFB_RUN = shutil.which("xvfb-run")
QGIS = shutil.which("qgis") or "/usr/bin/qgis"
QGIS_TIMEOUT_S = 120

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(XVFB_RUN is None, reason="xvfb-run is not installed (apt-get install xvfb)"),
    pytest.mark.skipif(not Path(QGIS).exists(), reason="the QGIS desktop (qgis) is not installed"),
]


@pytest.fixture(scope="module")
def trained_model(demo_city, tmp_path_factory):
    """A patch classifier trained for two epochs on the demo city."""
    from lcz_core import sample_patches, train_patch_classifier

    folder = tmp_path_factory.mktemp("gui_model")
    dataset = sample_patches(
        embeddings=demo_city.embeddings_tif, labels=demo_city.labels, output=folder / "dataset"
    )
    return train_patch_classifier(dataset=dataset.output, epochs=2, output=folder / "run").model


def _plugin_zip():
    done = subprocess.run(
        ["make", "package"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return max((REPO / "dist").glob("lcz_qgis-*.zip"), key=lambda p: p.stat().st_mtime)


def _fresh_profile(home):
    """A fresh QGIS profile under `home` with the plugin installed from the zip and enabled."""
    profile = home / ".local/share/QGIS/QGIS3/profiles/default"
    subprocess.run(
        ["python3", REPO / "scripts/install_plugin.py", _plugin_zip(), profile,
         REPO / ".venv/bin/python"],
        check=True, env={**os.environ, "HOME": str(home)}, capture_output=True,
    )  # fmt: skip
    settings = profile / "QGIS" / "QGIS3.ini"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("[PythonPlugins]\nlcz_qgis=true\nprocessing=true\n")


def _desktop_session(tmp_path, runs, shown=(), legends=(), timeout_s=QGIS_TIMEOUT_S):
    """Run the desktop on a job in a fresh profile; return the findings and the screenshot path."""
    home = tmp_path / "home"
    _fresh_profile(home)
    job = {
        "runs": runs,
        "shown": list(shown),
        "legends": list(legends),
        "findings": str(tmp_path / "findings.json"),
        "screenshot": str(tmp_path / "qgis_desktop.png"),
    }
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "QGIS_", "QT_")) and k != "PYTHONPATH"
    }
    env.update(HOME=str(home), LCZ_GUI_JOB=str(job_file))
    argv = [
        XVFB_RUN, "-a", "-s", "-screen 0 1280x800x24",
        QGIS, "--nologo", "--noversioncheck", "--code", str(REPO / "tests/gui/qgis_startup.py"),
    ]  # fmt: skip
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # xvfb-run, Xvfb and QGIS: the session we started
        output, _ = process.communicate()
    findings_file = Path(job["findings"])
    assert findings_file.is_file(), "QGIS wrote no findings:\n" + output[-3000:]
    findings = json.loads(findings_file.read_text())
    assert findings["error"] is None, findings["error"]
    assert findings["screenshot_saved"] and Path(job["screenshot"]).stat().st_size > 10_000
    return findings, job["screenshot"]


def _assert_lcz_legend(layer, path):
    """The LCZ palette with a row per class present (not 256), each named by its label."""
    from lcz_core.lcz import CLASS_BY_CODE

    with rasterio.open(path) as src:
        present = sorted(set(np.unique(src.read(1)).tolist()) - {0})
    assert layer["renderer"] == "paletted"
    assert layer["classes"] == [[code, CLASS_BY_CODE[code].label] for code in present]
    assert layer["legend_rows"] == len(present) < 18


def _assert_cells_by_split(layer):
    assert layer["renderer"] == "categorizedSymbol" and layer["attribute"] == "split"
    assert {"train", "val", "test"} <= set(layer["categories"])


def test_toolbox_runs_load_styled_layers(demo_city, trained_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    paths = {
        name: str(out / name)
        for name in ("reference_lcz.tif", "grid.gpkg", "predicted_lcz.tif", "confidence.tif")
    }
    runs = [
        ["lcz:creategrid", {"EMBEDDINGS": str(demo_city.embeddings_tif),
                            "OUTPUT": paths["grid.gpkg"]}],
        ["lcz:importlczmap", {"INPUT": str(demo_city.reference),
                              "OUTPUT": paths["reference_lcz.tif"]}],
        ["lcz:predictlczmap", {"MODEL": trained_model,
                               "EMBEDDINGS": str(demo_city.embeddings_tif),
                               "OUTPUT": paths["predicted_lcz.tif"],
                               "CONFIDENCE": paths["confidence.tif"]}],
    ]  # fmt: skip
    # the prediction drawn, its legend and the grid's expanded; the other layers hidden, folded
    findings, screenshot = _desktop_session(
        tmp_path,
        runs,
        shown=[paths["predicted_lcz.tif"]],
        legends=[paths["predicted_lcz.tif"], paths["grid.gpkg"]],
    )
    assert {"lcz:lczpipeline", "lcz:predictlczmap", "lcz:setupworker"} <= set(
        findings["lcz_algorithms"]
    )
    layers = {layer["source"]: layer for layer in findings["layers"]}
    assert set(paths.values()) <= set(layers)
    for name in ("reference_lcz.tif", "predicted_lcz.tif"):
        _assert_lcz_legend(layers[paths[name]], paths[name])
    assert layers[paths["confidence.tif"]]["renderer"] != "paletted"
    _assert_cells_by_split(layers[paths["grid.gpkg"]])
    if os.environ.get("LCZ_GUI_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["LCZ_GUI_SCREENSHOT"])


def test_pipeline_model_runs_from_the_toolbox(demo_city, tmp_path):
    # the maps and cells saved to files, the other outputs temporary ones as the dialog leaves them
    saved = {
        "sample:cells": str(tmp_path / "cells.gpkg"),
        "predict:lcz_map": str(tmp_path / "lcz.tif"),
        "compare:reference": str(tmp_path / "reference.tif"),
    }
    temporary = (
        "sample:dataset", "train:run", "predict:confidence", "compare:report",
        "compare:confusion_png",
    )  # fmt: skip
    parameters = {
        "embeddings": str(demo_city.embeddings_tif),
        "labels": str(demo_city.labels),
        "reference": str(demo_city.reference),
        "epochs": 1,
        **saved,
        **{name: "TEMPORARY_OUTPUT" for name in temporary},
    }
    findings, _ = _desktop_session(tmp_path, [["lcz:lczpipeline", parameters]], timeout_s=240)
    results = findings["results"]["lcz:lczpipeline"]
    assert {name: results[name] for name in saved} == saved
    assert {*saved, *temporary} <= set(findings["existing"]["lcz:lczpipeline"])
    layers = {layer["source"]: layer for layer in findings["layers"]}
    for name in ("predict:lcz_map", "compare:reference"):
        _assert_lcz_legend(layers[saved[name]], saved[name])
    _assert_cells_by_split(layers[saved["sample:cells"]])
