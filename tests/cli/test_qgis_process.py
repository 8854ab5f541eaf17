"""The algorithms from the qgis_process command line, from the repo and from the plugin zip."""

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis_runner import QGIS_PROCESS, qgis_environment

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not Path(QGIS_PROCESS).exists(), reason="qgis_process is not installed"
)


def _qgis_process(env, *args, check=True):
    done = subprocess.run(
        [QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def repo_env(tmp_path_factory):
    """A fresh QGIS profile (HOME) with the plugin enabled from the repo checkout."""
    env = qgis_environment(tmp_path_factory.mktemp("home"), REPO)
    _qgis_process(env, "plugins", "enable", "lcz_qgis")
    return env


def _run_json(env, algorithm, **parameters):
    args = ["run", algorithm, "--json", "--", *[f"{k}={v}" for k, v in parameters.items()]]
    done = _qgis_process(env, *args, check=False)
    start = done.stdout.find("{")
    return done, (json.loads(done.stdout[start:]) if start >= 0 and done.returncode == 0 else None)


REAL_MAPS = {
    # file: coding, {raw value: LCZ code} of every class present
    "zaragoza/lcz_zaragoza.tif": (
        "lcz17",
        {c: c for c in (2, 3, 5, 6, 8, 9, 11, 12, 13, 14, 15, 16, 17)},
    ),
    "shanghai/Shanghai.tif": (
        "wudapt",
        {**{c: c for c in (1, 2, 3, 4, 5, 6, 8, 10)}, 101: 11, 102: 12, 104: 14, 105: 15, 107: 17},
    ),
    "redon/redonWudapt.tif": ("lcz17", {c: c for c in (3, 6, 8, 9, 11, 12, 14, 16, 17)}),
}


@pytest.mark.parametrize("name", sorted(REAL_MAPS))
def test_import_real_maps_from_the_command_line(repo_env, real_data, tmp_path, name):
    from lcz_core.lcz import CLASS_BY_CODE

    out = tmp_path / "lcz.tif"
    done, report = _run_json(repo_env, "lcz:importlczmap", INPUT=real_data / name, OUTPUT=out)
    assert done.returncode == 0, done.stderr[-2000:]
    results = report["results"]
    coding, translation = REAL_MAPS[name]
    assert results["OUTPUT"] == str(out) and results["CODING_USED"] == coding
    with rasterio.open(real_data / name) as src:
        raw = src.read(1)
    with rasterio.open(out) as src:
        codes = src.read(1)
        colormap = src.colormap(1)
    expected = {
        CLASS_BY_CODE[code].short: int((raw == value).sum()) for value, code in translation.items()
    }
    assert json.loads(results["CLASS_COUNTS"]) == expected
    for value, code in translation.items():
        assert np.array_equal(codes == code, raw == value)
        assert colormap[code][:3] == CLASS_BY_CODE[code].rgb
    qml = out.with_suffix(".qml").read_text()
    assert all(f'label="{CLASS_BY_CODE[c].label}"' in qml for c in translation.values())


def test_clip_reproject_and_plot_from_the_command_line(repo_env, real_data, tmp_path):
    out = tmp_path / "zaragoza_utm.tif"
    done, report = _run_json(
        repo_env,
        "lcz:importlczmap",
        INPUT=real_data / "zaragoza/lcz_zaragoza.tif",
        EXTENT="-0.95,-0.8,41.6,41.7 [EPSG:4326]",
        TARGET_CRS="EPSG:25830",
        RESOLUTION=100,
        OUTPUT=out,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 25830 and src.res == (100.0, 100.0)
        assert 120 <= src.width <= 150
    png = tmp_path / "z.png"
    done, report = _run_json(repo_env, "lcz:plotlczmap", INPUT=out, OUTPUT=png)
    assert done.returncode == 0 and png.is_file() and "D" in report["results"]["CLASSES"].split(",")


def test_bad_input_gives_a_message_not_a_traceback(repo_env, tmp_path):
    done, _ = _run_json(
        repo_env, "lcz:importlczmap", INPUT=tmp_path / "missing.tif", OUTPUT=tmp_path / "o.tif"
    )
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert "LCZ raster: " in text and "missing.tif does not exist" in text
    assert "Traceback" not in text


def test_plugin_zip_installs_into_a_profile(tmp_path):
    done = subprocess.run(
        ["make", "package"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    version = next(
        line.split("=", 1)[1]
        for line in (REPO / "metadata.txt").read_text().splitlines()
        if line.startswith("version=")
    )
    archive = REPO / "dist" / f"lcz_qgis-{version}.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert "lcz_qgis/metadata.txt" in names and "lcz_qgis/lib/lcz_core/lczmap.py" in names
    home = tmp_path / "home"
    profile = home / ".local/share/QGIS/QGIS3/profiles/default"
    subprocess.run(
        [
            "python3",
            REPO / "scripts/install_plugin.py",
            archive,
            profile,
            REPO / ".venv/bin/python",
        ],
        check=True,
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
    )
    env = qgis_environment(home, tmp_path / "no_plugins_here")
    _qgis_process(env, "plugins", "enable", "lcz_qgis")
    listing = _qgis_process(env, "list").stdout
    assert "lcz:importlczmap" in listing and "lcz:plotlczmap" in listing
    # the installed copy runs its vendored core in the worker found through the user venv link
    source = tmp_path / "small.tif"
    profile_tif = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "width": 17,
        "height": 3,
        "crs": "EPSG:32633",
        "transform": rasterio.Affine(100, 0, 4e5, 0, -100, 5.8e6),
    }
    with rasterio.open(source, "w", **profile_tif) as dst:
        wudapt_codes = [*range(1, 11), *range(101, 108)]
        dst.write(np.tile(np.array(wudapt_codes, dtype=np.uint8), (3, 1)), 1)
    done, report = _run_json(env, "lcz:importlczmap", INPUT=source, OUTPUT=tmp_path / "o.tif")
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads(report["results"]["CLASS_COUNTS"])) == 17
    assert any(".local/share/lcz_qgis/venv" in line for line in report["log"]["info"])


def test_segmentation_chain_from_the_command_line(repo_env, demo_city, tmp_path):
    grid = tmp_path / "grid.gpkg"
    done, report = _run_json(
        repo_env, "lcz:creategrid", EMBEDDINGS=demo_city.embeddings_zarr, CELL_SIZE=64, OUTPUT=grid
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert report["results"]["CELLS"] == 64 and grid.with_suffix(".qml").is_file()
    done, report = _run_json(
        repo_env,
        "lcz:rasterizelabels",
        EMBEDDINGS=demo_city.embeddings_tif,
        LABELS=demo_city.polygons,
        CLASS_FIELD="lcz",
        OUTPUT=tmp_path / "labels.tif",
    )
    assert done.returncode == 0 and report["results"]["LABELLED_PIXELS"] > 1000
    done, report = _run_json(
        repo_env,
        "lcz:samplepatches",
        EMBEDDINGS=demo_city.embeddings_zarr,
        LABELS=demo_city.labels,
        DATASET_KIND=1,
        SPLIT_METHOD=3,
        OUTPUT=tmp_path / "tiles",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "tiles" / "manifest.json").read_text())["kind"] == "tiles"
    done, report = _run_json(
        repo_env,
        "lcz:trainsegmentation",
        DATASET=tmp_path / "tiles",
        EPOCHS=2,
        OUTPUT=tmp_path / "run",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    model = report["results"]["MODEL"]
    done, report = _run_json(
        repo_env,
        "lcz:predictlczmap",
        MODEL=model,
        EMBEDDINGS=demo_city.embeddings_tif,
        OUTPUT=tmp_path / "lcz.tif",
        CONFIDENCE=tmp_path / "confidence.tif",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with rasterio.open(tmp_path / "lcz.tif") as src:
        assert src.res == (10.0, 10.0) and src.read(1).max() > 0


@pytest.mark.parametrize("step_name", ["predict", "sample-patches", "train-patch-classifier"])
def test_qgis_process_help_matches_the_command_line_help(repo_env, step_name):
    import html

    from lcz_core.steps import STEP_BY_NAME

    step = STEP_BY_NAME[step_name]
    shown = html.unescape(_qgis_process(repo_env, "help", "lcz:" + step.algorithm_id).stdout)
    cli = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-m", "lcz_core", step.name, "--help"],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "10000"}, check=True,
    ).stdout  # fmt: skip
    assert step.help in shown and step.help in cli
    for param in step.params:
        if param.default is not None and not param.inherit_from:
            assert f"Default: {param.describe_default()}." in shown
            assert f"(default: {param.describe_default()})" in cli


@pytest.mark.slow
def test_shipped_pipeline_model_runs_from_the_command_line(repo_env, demo_city, tmp_path):
    import xml.etree.ElementTree as ET

    from lcz_core.lcz import CLASS_BY_CODE

    outputs = {
        "sample:dataset": tmp_path / "dataset",
        "sample:cells": tmp_path / "cells.gpkg",
        "train:run": tmp_path / "run",
        "predict:lcz_map": tmp_path / "lcz.tif",
        "predict:confidence": tmp_path / "confidence.tif",
        "compare:report": tmp_path / "agreement.json",
        "compare:reference": tmp_path / "reference.tif",
        "compare:confusion_png": tmp_path / "confusion.png",
    }
    done, report = _run_json(
        repo_env,
        "lcz:lczpipeline",
        embeddings=demo_city.embeddings_tif,
        labels=demo_city.labels,
        reference=demo_city.reference,
        epochs=2,
        **outputs,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert report["results"] == {name: str(path) for name, path in outputs.items()}
    assert all(path.exists() for path in outputs.values())
    # each step read what the step before it wrote
    commands = [line for line in report["log"]["info"] if line.startswith("Worker: ")]
    assert [c.split(" --jsonl ")[1].split()[0] for c in commands] == [
        "sample-patches", "train-patch-classifier", "predict", "compare-lcz-maps",
    ]  # fmt: skip
    assert f"--dataset {outputs['sample:dataset']} " in commands[1]
    assert f"--model {outputs['train:run'] / 'model.safetensors'} " in commands[2]
    assert f"--input={outputs['predict:lcz_map']} " in commands[3]
    assert f"--reference={demo_city.reference} " in commands[3]
    assert json.loads(outputs["compare:report"].read_text())["metrics"]["n"] > 0
    # the maps and the cells are styled: a legend of the classes present, the cells by split
    for name in ("predict:lcz_map", "compare:reference"):
        with rasterio.open(outputs[name]) as src:
            present = sorted(set(np.unique(src.read(1)).tolist()) - {0})
        entries = ET.parse(outputs[name].with_suffix(".qml")).iter("paletteEntry")
        assert [(int(e.get("value")), e.get("label")) for e in entries] == [
            (code, CLASS_BY_CODE[code].label) for code in present
        ]
    cells_style = ET.parse(outputs["sample:cells"].with_suffix(".qml")).getroot()
    assert cells_style.find("renderer-v2").get("attr") == "split"


def _children(pid):
    """Pids of the live processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            if int(parent) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_killing_qgis_process_stops_its_worker_at_once(repo_env, demo_city, tmp_path):
    import time

    from lcz_core.labels import open_labels
    from lcz_core.rasters import open_source
    from lcz_core.sampling import CityInput, SplitConfig, make_dataset

    city = CityInput("demo", open_source(demo_city.embeddings_tif), open_labels(demo_city.labels))
    make_dataset([city], tmp_path / "ds", split=SplitConfig(method="random", buffer_m=None))
    work = tmp_path / "runs"
    work.mkdir()
    args = ["run", "lcz:trainpatchclassifier", "--", f"DATASET={tmp_path / 'ds'}",
            "EPOCHS=10000", "PATIENCE=10000", "WIDTH=4", f"OUTPUT={work / 'run'}"]  # fmt: skip
    qgis = subprocess.Popen(
        [QGIS_PROCESS, *args], env=repo_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 240
        while not any(".partial-" in p.name for p in work.iterdir()):  # the run is being built
            assert qgis.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        (worker,) = _children(qgis.pid)
    finally:
        qgis.kill()
        qgis.wait()
    killed = time.monotonic()
    while _alive(worker) and time.monotonic() < killed + 10:
        time.sleep(0.05)
    assert not _alive(worker)
    assert time.monotonic() - killed < 2.5
    assert list(work.iterdir()) == []  # the partial run folder went with the worker
