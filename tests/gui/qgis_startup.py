"""Run inside the QGIS desktop (`qgis --code qgis_startup.py`): a Toolbox-style session.

Reads its job from the JSON file named by LCZ_GUI_JOB, runs the algorithms with
`processing.runAndLoadResults` (what the Toolbox dialog does), writes what it finds about the loaded
layers to the job's `findings` JSON, saves a screenshot of the main window and quits QGIS.
"""

import json
import os
import traceback

from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface

with open(os.environ["LCZ_GUI_JOB"], encoding="utf-8") as job_file:
    JOB = json.load(job_file)
FINDINGS = {"error": None}
RENDER_WAIT_MS = 200
RENDER_TRIES = 100


def describe(layer):
    """What a test needs to know about a loaded layer's style."""
    found = {"name": layer.name(), "source": layer.source().split("|")[0]}
    if isinstance(layer, QgsRasterLayer):
        renderer = layer.renderer()
        found["renderer"] = renderer.type()
        if isinstance(renderer, QgsPalettedRasterRenderer):
            found["classes"] = [[c.value, c.label] for c in renderer.classes()]
        found["legend_rows"] = len(renderer.legendSymbologyItems())
    elif isinstance(layer, QgsVectorLayer):
        renderer = layer.renderer()
        found["renderer"] = renderer.type()
        if isinstance(renderer, QgsCategorizedSymbolRenderer):
            found["attribute"] = renderer.classAttribute()
            found["categories"] = [c.value() for c in renderer.categories()]
    return found


def run_algorithms():
    """Run the job's algorithms as the Toolbox does and describe the layers they loaded."""
    import processing

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("lcz")
    FINDINGS["lcz_algorithms"] = sorted(a.id() for a in provider.algorithms()) if provider else []
    FINDINGS["results"] = {}
    FINDINGS["existing"] = {}
    for algorithm, parameters in JOB["runs"]:
        results = processing.runAndLoadResults(algorithm, parameters)
        FINDINGS["results"][algorithm] = {k: str(v) for k, v in results.items()}
        # temporary outputs vanish when QGIS quits: note here which results are files or folders
        FINDINGS["existing"][algorithm] = sorted(
            k for k, v in results.items() if isinstance(v, str) and os.path.exists(v)
        )
    FINDINGS["layers"] = [describe(layer) for layer in QgsProject.instance().mapLayers().values()]


def arrange_view():
    """The window filling the screen, the Layers panel alone beside the canvas, the job's `shown`
    layers drawn (the first one zoomed to) and its `legends` expanded; the others hidden, folded."""
    window = iface.mainWindow()
    window.setGeometry(window.screen().availableGeometry())  # Xvfb has no window manager
    for dock in window.findChildren(QDockWidget):
        if dock.objectName() != "Layers":
            dock.hide()
    focus = None
    for node in QgsProject.instance().layerTreeRoot().findLayers():
        source = node.layer().source().split("|")[0]
        node.setItemVisibilityChecked(source in JOB["shown"])
        if JOB["shown"] and source == JOB["shown"][0]:
            focus = node.layer()
    fold_legends()
    canvas = iface.mapCanvas()
    if focus is not None:
        iface.setActiveLayer(focus)
        canvas.setExtent(focus.extent())
    canvas.refresh()


def fold_legends():
    """Expand the legends the job names, fold the others."""
    for node in QgsProject.instance().layerTreeRoot().findLayers():
        expanded = node.layer().source().split("|")[0] in JOB["legends"]
        # the panel can expand a legend without telling the node: flip it so the panel follows
        node.setExpanded(not expanded)
        node.setExpanded(expanded)


def finish(tries=0):
    """Once the canvas has drawn: screenshot, findings, quit."""
    if iface.mapCanvas().isDrawing() and tries < RENDER_TRIES:
        QTimer.singleShot(RENDER_WAIT_MS, lambda: finish(tries + 1))
        return
    fold_legends()  # once more, in case the panel expanded a legend when it first drew it
    QgsApplication.processEvents()
    try:
        FINDINGS["screenshot_saved"] = iface.mainWindow().grab().save(JOB["screenshot"])
    except Exception:  # noqa: BLE001 (reported to the test, which fails on it)
        FINDINGS["error"] = traceback.format_exc()
    FINDINGS["expanded"] = {
        n.layer().source(): n.isExpanded()
        for n in QgsProject.instance().layerTreeRoot().findLayers()
    }
    write_findings()
    quit_qgis()


def quit_qgis():
    """Leave as File > Exit does, with an empty project (no question to save it)."""
    QgsProject.instance().clear()
    QgsApplication.processEvents()
    iface.actionExit().trigger()


def write_findings():
    with open(JOB["findings"], "w", encoding="utf-8") as out:
        json.dump(FINDINGS, out, indent=1)


def main():
    try:
        run_algorithms()
        arrange_view()
    except Exception:  # noqa: BLE001 (reported to the test, which fails on it)
        FINDINGS["error"] = traceback.format_exc()
        write_findings()
        quit_qgis()
        return
    QTimer.singleShot(1000, finish)


# let the main window finish showing before the work starts
QTimer.singleShot(1000, main)
