"""Standing probes: hostile and careless inputs for every step.

Each probe runs `python -m lcz_core <step> ...` (a few run `qgis_process`, where the QGIS layer
matters) in a subprocess whose address space is capped (a regression fails here instead of
taking the machine down) and asserts: the exit status (1, or 0 where a result is the right
answer), one line naming the parameter at fault (`error: --flag: ...`, in QGIS its label), no
traceback, every input file unchanged (sha256), and nothing new left anywhere on failure (no
hidden partial files, no statistics beside an input either). A failing probe says which of
these it broke, under the headings of the issue's table.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from qgis_runner import QGIS_PROCESS, qgis_environment

REPO = Path(__file__).resolve().parents[2]
# a run through torch reserves about 4 GiB of address space (threads, libraries): room above
ADDRESS_SPACE = 6 * 2**30
TIMEOUT_S = 60  # a guard against hangs; a probe takes a few seconds
LINUX = sys.platform.startswith("linux")

pytestmark = pytest.mark.skipif(not LINUX, reason="the probes cap memory with RLIMIT_AS")


@dataclass
class World:
    """Inputs shared by the probes (never written to: each probe checks they stay intact)."""

    root: Path
    city: object  # DemoCity
    model: Path
    model_width_4096: Path
    model_no_classes: Path
    dataset: Path
    nan_dataset: Path
    nan_embeddings: Path
    catalogue: Path


def _model_metadata(band_names: list[str]) -> dict:
    bands = len(band_names)
    return {
        "task": "patch",
        "architecture": "resnet10t",
        "width": 4,
        "stem": "1x1",
        "band_count": bands,
        "band_names": band_names,
        "embedding_source": "synthetic demo embeddings",
        "normalisation": {"mean": [0.0] * bands, "std": [1.0] * bands},
        "classes": [1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 14, 16, 17],
        "patch_size": 32,
        "pixel_size": 10.0,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """A small demo city, an untrained model (and two damaged ones) and two datasets."""
    import rasterio

    from lcz_core.datasets import write_dataset
    from lcz_core.demo import make_demo_city
    from lcz_core.labels import open_labels
    from lcz_core.models import create_model, save_model
    from lcz_core.rasters import open_source
    from lcz_core.sampling import CityInput, SplitConfig, make_dataset

    root = tmp_path_factory.mktemp("world")
    city = make_demo_city(root / "city", size=160)
    with open_source(city.embeddings_tif) as source:
        meta = _model_metadata(list(source.band_names))
        split = SplitConfig(method="random", buffer_m=None)
        sampled = CityInput("synthetica", source, open_labels(city.labels))
        make_dataset([sampled], root / "dataset", split=split, min_count=0, max_missing=1.0)
    network = create_model(meta)
    save_model(root / "model.safetensors", network, meta)
    save_model(root / "width_4096.safetensors", network, {**meta, "width": 4096})
    save_model(root / "no_classes.safetensors", network, {**meta, "classes": []})
    manifest = json.loads((root / "dataset" / "manifest.json").read_text())
    write_dataset(root / "nan_dataset", _nan_batches(manifest), manifest)
    with rasterio.open(city.embeddings_tif) as src:
        profile = {**src.profile, "width": 320, "height": 320}
    with rasterio.open(root / "nan.tif", "w", **profile) as dst:
        dst.write(np.full((profile["count"], 320, 320), np.nan, np.float32))
    catalogue = root / "cities.toml"
    catalogue.write_text(
        "[cities.synthetica]\n"
        f'[cities.synthetica.embeddings.demo]\npath = "{city.embeddings_tif.relative_to(root)}"\n'
        f'[cities.synthetica.labels.demo]\nkind = "raster"\npath = "{city.labels.relative_to(root)}"\n'
    )
    return World(
        root, city, root / "model.safetensors", root / "width_4096.safetensors",
        root / "no_classes.safetensors", root / "dataset", root / "nan_dataset", root / "nan.tif",
        catalogue,
    )  # fmt: skip


def _nan_batches(manifest: dict):
    from lcz_core.datasets import Batch

    n, size, bands = 12, manifest["patch_size"], len(manifest["band_names"])
    yield Batch(
        x=np.full((n, bands, size, size), np.nan, np.float32),
        y=np.array([2, 6, 14] * 4, np.uint8),
        split=np.arange(n) % 3,
        city=np.zeros(n),
        centre_x=np.arange(n) * 400.0,
        centre_y=np.zeros(n),
    )


class Ctx:
    """One probe's folders: `inp` for copies of inputs it may damage, `out` for outputs."""

    def __init__(self, world: World, tmp: Path, real_data: Path | None = None) -> None:
        self.w, self.city, self.real_data = world, world.city, real_data
        self.inp, self.out = tmp / "in", tmp / "out"
        self.inp.mkdir()
        self.out.mkdir()

    def copy(self, source: Path, name: str | None = None, sidecars: bool = True) -> Path:
        """A copy of a file or folder (with a raster's sidecars) in `inp`."""
        target = self.inp / (name or source.name)
        if source.is_dir():
            shutil.copytree(source, target)
            return target
        shutil.copy(source, target)
        pairs = ((source.with_suffix(".qml"), target.with_suffix(".qml")),
                 (Path(f"{source}.aux.xml"), Path(f"{target}.aux.xml")))  # fmt: skip
        for sidecar, copied in pairs if sidecars else ():
            if sidecar.exists():
                shutil.copy(sidecar, copied)
        return target

    def text(self, name: str, content: str | bytes) -> Path:
        """A file of the given content in `inp`."""
        path = self.inp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def link(self, name: str, target: Path) -> Path:
        """A symbolic link in `out` to `target`."""
        path = self.out / name
        path.symlink_to(target)
        return path

    def run_folder(self) -> Path:
        """An earlier run: a model, its log and the user's notes."""
        run = self.inp / "run"
        run.mkdir()
        shutil.copy(self.w.model, run / "model.safetensors")
        (run / "log.csv").write_text("epoch,loss\n1,0.5\n")
        (run / "notes.txt").write_text("the run of the paper")
        return run

    def earlier_dataset(self) -> Path:
        """An earlier dataset in `out`, with the user's notes beside its files."""
        folder = self.out / "ds"
        shutil.copytree(self.w.dataset, folder)
        (folder / "notes.txt").write_text("mine")
        return folder

    def dataset(self, **changes) -> Path:
        """A copy of the dataset, its manifest changed."""
        folder = self.copy(self.w.dataset, "dataset")
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**manifest, **changes}))
        return folder

    def truncated(self, source: Path, name: str) -> Path:
        """The first third of a file."""
        data = source.read_bytes()
        return self.text(name, data[: len(data) // 3])

    def centre(self) -> str:
        """The demo city's centre, 'x,y'."""
        import rasterio

        with rasterio.open(self.city.labels) as src:
            b = src.bounds
        return f"{(b.left + b.right) / 2},{(b.bottom + b.top) / 2}"

    def extent(self, kind: str = "whole") -> str:
        """The demo city's extent ('whole'), a line of it ('zero-area') or a tenth of a 100 m
        pixel ('sub-pixel')."""
        import rasterio

        with rasterio.open(self.city.labels) as src:
            b = src.bounds
        if kind == "zero-area":
            return f"{b.left},{b.bottom},{b.left},{b.top}"
        if kind == "sub-pixel":
            return f"{b.left + 50},{b.top - 50},{b.left + 60},{b.top - 40}"
        return f"{b.left},{b.bottom},{b.right},{b.top}"

    def qgis_extent(self, kind: str = "whole") -> str:
        """The same as QGIS writes an extent: 'xmin,xmax,ymin,ymax [CRS]'."""
        xmin, ymin, xmax, ymax = self.extent(kind).split(",")
        return f"{xmin},{xmax},{ymin},{ymax} [EPSG:32633]"


@dataclass(frozen=True)
class Probe:
    """A command line and what must come of it."""

    name: str
    args: Callable[[Ctx], list]
    flag: str | None  # the parameter the error names; None where the run must succeed
    message: str = ""  # a regular expression the error (or the output) must match
    replaces: tuple[str, ...] = ()  # files of an earlier output a successful run may replace


def catalogue(text: str) -> Callable[[Ctx], list]:
    return lambda c: [
        "sample-patches",
        "--cities",
        c.text("cities.toml", text),
        "--output",
        c.out / "ds",
    ]


def experiment(c: Ctx, train: str = "", output: str = "run") -> Path:
    return c.text("e.toml", f'dataset = "{c.w.dataset}"\noutput = "{output}"\n[train]\n{train}\n')


PREDICT = ["predict", "--model"]
KMZ = b"PK\x03\x04 not really a zip"

PROBES = [
    # ---- an output that is an input, directly, through a link or a sidecar
    Probe("predict output is the embeddings", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.copy(c.city.embeddings_tif, "e.tif"),
        "--output", c.inp / "e.tif"], "--output", "would overwrite Embeddings"),
    Probe("predict confidence is the embeddings", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.copy(c.city.embeddings_tif, "e.tif"),
        "--output", c.out / "lcz.tif", "--confidence", c.inp / "e.tif"], "--confidence"),
    Probe("predict output = confidence", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.city.embeddings_tif,
        "--output", c.out / "a.tif", "--confidence", c.out / "a.tif"], "--confidence", "same file"),
    Probe("predict default confidence is the embeddings", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.copy(c.city.embeddings_tif, "city_confidence.tif"),
        "--output", c.inp / "city.tif"], "--confidence", "would overwrite Embeddings"),
    Probe("predict output links to the embeddings", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.copy(c.city.embeddings_tif, "e.tif"),
        "--output", c.link("lcz.tif", c.inp / "e.tif")], "--output", "would overwrite"),
    Probe("predict output in a linked folder is the embeddings", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.copy(c.city.embeddings_tif, "e.tif"),
        "--output", c.link("folder", c.inp) / "e.tif"], "--output", "would overwrite"),
    Probe("predict output is the model", lambda c: [
        *PREDICT, c.copy(c.w.model), "--embeddings", c.city.embeddings_tif,
        "--output", c.inp / "model.safetensors"], "--output", "would overwrite Model file"),
    Probe("create-grid output is the embeddings", lambda c: [
        "create-grid", "--embeddings", c.copy(c.city.embeddings_tif, "e.tif"),
        "--output", c.inp / "e.tif"], "--output"),
    Probe("create-grid output inside the zarr store", lambda c: [
        "create-grid", "--embeddings", c.copy(c.city.embeddings_zarr, "e.zarr"),
        "--output", c.inp / "e.zarr" / "grid.gpkg"], "--output"),
    Probe("plot output is its input", lambda c: [
        "plot-lcz-map", "--input", c.copy(c.city.labels, "l.tif"), "--output", c.inp / "l.tif"],
        "--output"),
    Probe("compare output is its input", lambda c: [
        "compare-lcz-maps", "--input", c.copy(c.city.labels, "l.tif"),
        "--reference", c.city.reference, "--output", c.inp / "l.tif"], "--output"),
    Probe("compare reference output is the reference", lambda c: [
        "compare-lcz-maps", "--input", c.city.labels, "--reference", c.copy(c.city.reference, "r.tif"),
        "--output", c.out / "a.json", "--reference-output", c.inp / "r.tif"], "--reference-output"),
    Probe("compare report = confusion plot", lambda c: [
        "compare-lcz-maps", "--input", c.city.labels, "--reference", c.city.reference,
        "--output", c.out / "a.json", "--confusion-png", c.out / "a.json"], "--confusion-png"),
    Probe("rasterize output is the labels", lambda c: [
        "rasterize-labels", "--embeddings", c.city.embeddings_tif,
        "--labels", c.copy(c.city.labels, "l.tif"), "--output", c.inp / "l.tif"], "--output"),
    Probe("sample-patches grid output is the label polygons", lambda c: [
        "sample-patches", "--embeddings", c.city.embeddings_tif,
        "--labels", c.copy(c.city.polygons, "p.gpkg"), "--class-field", "lcz",
        "--output", c.out / "ds", "--grid-output", c.inp / "p.gpkg"], "--grid-output"),
    Probe("sample-patches output folder holds the embeddings", lambda c: [
        "sample-patches", "--embeddings", c.copy(c.city.embeddings_tif, "e.tif"),
        "--labels", c.city.labels, "--output", c.inp], "--output"),
    Probe("import output is its read-only input", lambda c: [
        "import-lcz-map", "--input", _read_only(c.copy(c.city.labels, "l.tif")),
        "--output", c.inp / "l.tif"], "--output"),
    Probe("import output's style sidecar is the input's style", lambda c: [
        "import-lcz-map", "--input", _styled(c.copy(c.city.labels, "l.tif")),
        "--output", c.inp / "l.tiff"], "--output", "l.qml"),
    Probe("import output is the input's .aux.xml", lambda c: [
        "import-lcz-map", "--input", c.copy(c.city.labels, "l.tif"),
        "--output", c.inp / "l.tif.aux.xml"], "--output", "l.tif.aux.xml"),
    Probe("embedding-rgb picture is the embeddings", lambda c: [
        "embedding-rgb", "--embeddings", c.copy(c.city.embeddings_tif, "e.tif"),
        "--output", c.out / "rgb.tif", "--png", c.inp / "e.tif"], "--png"),
    Probe("global-lcz-map output is its source", lambda c: [
        "global-lcz-map", "--source", c.copy(c.city.reference, "g.tif"), "--extent=0,0,1,1",
        "--output", c.inp / "g.tif"], "--output"),
    Probe("experiment file that is not TOML", lambda c: [
        "experiment", "--config", c.text("x.toml", "cities = ["), "--output", c.out / "x"],
        "--config"),
    Probe("check-embeddings mask is the embeddings", lambda c: [
        "check-embeddings", "--embeddings", c.copy(c.city.embeddings_tif, "e.tif"),
        "--output", c.out / "qa.json", "--mask", c.inp / "e.tif"], "--mask"),
    Probe("embedding-similarity output is the polygons", lambda c: [
        "embedding-similarity", "--embeddings", c.city.embeddings_tif,
        "--polygons", c.copy(c.city.polygons, "p.gpkg"), "--output", c.inp / "p.gpkg"], "--output"),
    Probe("pixoo64 output is the LCZ map", lambda c: [
        "pixoo64", "--lcz-map", c.copy(c.city.labels, "l.tif"), f"--center={c.centre()}",
        "--output", c.inp / "l.tif"], "--output"),
    Probe("evaluate report folder is the dataset", lambda c: [
        "evaluate-model", "--model", c.w.model, "--dataset", c.copy(c.w.dataset, "ds"),
        "--output", c.inp / "ds"], "--output"),
    Probe("train run folder is the dataset", lambda c: [
        "train-patch-classifier", "--dataset", c.copy(c.w.dataset, "ds"), "--output", c.inp / "ds"],
        "--output"),
    # ---- run folders and dataset folders that hold earlier work
    Probe("train into an earlier run", lambda c: [
        "train-patch-classifier", "--dataset", c.w.dataset, "--output", c.run_folder()],
        "--output", "holds a run"),
    Probe("train over an earlier run, then fail", lambda c: [
        "train-patch-classifier", "--dataset", c.w.nan_dataset, "--output", c.run_folder(),
        "--overwrite", "true", "--epochs", "1"], "--dataset", "no embedding value"),
    Probe("experiment output names an earlier run", lambda c: [
        "train-patch-classifier", "--experiment", experiment(c, output=str(c.run_folder()))],
        "--output", "holds a run"),
    Probe("sample-patches into a folder of other files", lambda c: [
        "sample-patches", "--embeddings", c.city.embeddings_tif, "--labels", c.city.labels,
        "--output", _with_notes(c.out / "ds")], "--output", "not a dataset"),
    Probe("sample-patches over an earlier dataset with notes", lambda c: [
        "sample-patches", "--embeddings", c.city.embeddings_tif, "--labels", c.city.labels,
        "--split-method", "random", "--min-count", "0", "--output", c.earlier_dataset()],
        None, '"count"', replaces=("out/ds/manifest.json", "out/ds/data.zarr/*")),
    Probe("sample-patches into a folder with a foreign manifest", lambda c: [
        "sample-patches", "--embeddings", c.city.embeddings_tif, "--labels", c.city.labels,
        "--output", _foreign_site(c.out / "site")], "--output", "not a dataset"),
    # ---- extents and CRSs
    Probe("import zero-area extent", lambda c: [
        "import-lcz-map", "--input", c.city.labels, f"--extent={c.extent('zero-area')}",
        "--output", c.out / "i.tif"], "--extent", "no area"),
    Probe("import sub-pixel extent", lambda c: [
        "import-lcz-map", "--input", c.city.reference, f"--extent={c.extent('sub-pixel')}",
        "--output", c.out / "i.tif"], "--extent", "less than one pixel"),
    Probe("predict extent outside the data", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.city.embeddings_tif, "--extent=0,0,1000,1000",
        "--output", c.out / "lcz.tif"], "--extent"),
    Probe("create-grid extent in an unknown CRS", lambda c: [
        "create-grid", "--embeddings", c.city.embeddings_tif, f"--extent={c.extent()}",
        "--extent-crs", "EPSG:99999", "--output", c.out / "g.gpkg"], "--extent-crs"),
    Probe("create-grid lon/lat extent without its CRS", lambda c: [
        "create-grid", "--embeddings", c.city.embeddings_tif, "--extent=13.3,52.4,13.5,52.6",
        "--output", c.out / "g.gpkg"], "--extent"),
    Probe("import to an unknown CRS", lambda c: [
        "import-lcz-map", "--input", c.city.labels, "--target-crs", "EPSG:99999",
        "--output", c.out / "i.tif"], "--target-crs"),
    Probe("import at resolution 0", lambda c: [
        "import-lcz-map", "--input", c.city.labels, "--resolution", "0",
        "--output", c.out / "i.tif"], "--resolution"),
    Probe("import at a micrometre resolution", lambda c: [
        "import-lcz-map", "--input", c.city.labels, "--resolution", "1e-6",
        "--output", c.out / "i.tif"], "--resolution"),
    Probe("catalogue extent of -1e308", catalogue(
        "[cities.x]\nextent = [-1e308, 0, 1, 1]\n"), "--cities", "extent"),
    # ---- unreadable and damaged files
    Probe("import a text file named .tif", lambda c: [
        "import-lcz-map", "--input", c.text("x.tif", "not a raster"), "--output", c.out / "i.tif"],
        "--input"),
    Probe("predict over a text file named .tif", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.text("x.tif", "not a raster"),
        "--output", c.out / "lcz.tif"], "--embeddings"),
    Probe("import a truncated GeoTIFF", lambda c: [
        "import-lcz-map", "--input", c.truncated(c.city.labels, "t.tif"), "--output", c.out / "i.tif"],
        "--input"),
    Probe("compare with a truncated reference", lambda c: [
        "compare-lcz-maps", "--input", c.city.labels, "--reference",
        c.truncated(c.city.reference, "t.tif"), "--output", c.out / "a.json"], "--reference"),
    Probe("predict over truncated embeddings", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.truncated(c.city.embeddings_tif, "t.tif"),
        "--output", c.out / "lcz.tif"], "--embeddings"),
    Probe("sample-patches with a broken KMZ", lambda c: [
        "sample-patches", "--embeddings", c.city.embeddings_tif, "--labels", c.text("a.kmz", KMZ),
        "--output", c.out / "ds"], "--labels", "KML/KMZ"),
    Probe("rasterize a broken KMZ", lambda c: [
        "rasterize-labels", "--embeddings", c.city.embeddings_tif, "--labels", c.text("a.kmz", KMZ),
        "--output", c.out / "l.tif"], "--labels", "KML/KMZ"),
    Probe("catalogue that is not TOML", catalogue("[cities.x\nyear = "), "--cities", "cannot read"),
    Probe("experiment that is not TOML", lambda c: [
        "train-patch-classifier", "--experiment", c.text("e.toml", "dataset = [")],
        "--experiment", "cannot read"),
    Probe("predict with a text file as the model", lambda c: [
        *PREDICT, c.text("m.safetensors", "not a model"), "--embeddings", c.city.embeddings_tif,
        "--output", c.out / "lcz.tif"], "--model", "not a model file"),
    Probe("predict with a model claiming width 4096", lambda c: [
        *PREDICT, c.w.model_width_4096, "--embeddings", c.city.embeddings_tif,
        "--output", c.out / "lcz.tif"], "--model", "width is 4096"),
    Probe("predict with a model of no classes", lambda c: [
        *PREDICT, c.w.model_no_classes, "--embeddings", c.city.embeddings_tif,
        "--output", c.out / "lcz.tif"], "--model", "classes is \\[\\]"),
    Probe("evaluate a manifest of patch_size 100000", lambda c: [
        "evaluate-model", "--model", c.w.model, "--dataset", c.dataset(patch_size=100_000),
        "--output", c.out / "ev"], "--dataset", "patch_size is 100000"),
    Probe("train on a manifest of patch_size 100000", lambda c: [
        "train-patch-classifier", "--dataset", c.dataset(patch_size=100_000),
        "--output", c.out / "run"], "--dataset", "patch_size is 100000"),
    Probe("train segmentation on patches", lambda c: [
        "train-segmentation", "--dataset", c.w.dataset, "--output", c.out / "run"],
        "--dataset", "holds patches"),
    Probe("import a folder named .tif", lambda c: [
        "import-lcz-map", "--input", _folder(c.inp / "x.tif"), "--output", c.out / "i.tif"],
        "--input"),
    Probe("import a missing file", lambda c: [
        "import-lcz-map", "--input", c.inp / "missing.tif", "--output", c.out / "i.tif"],
        "--input", "does not exist"),
    # ---- wrong types and ranges
    Probe("predict batch size -5", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.city.embeddings_tif, "--batch-size=-5",
        "--output", c.out / "lcz.tif"], "--batch-size"),
    Probe("train for 1e12 epochs", lambda c: [
        "train-patch-classifier", "--dataset", c.w.dataset, "--epochs", "1e12",
        "--output", c.out / "run"], "--epochs", "above the maximum"),
    Probe("experiment with augment = \"no\"", lambda c: [
        "train-patch-classifier", "--experiment", experiment(c, 'augment = "no"', str(c.out / "run"))],
        "--experiment", "augment"),
    Probe("train batch size 'many'", lambda c: [
        "train-patch-classifier", "--dataset", c.w.dataset, "--batch-size", "many",
        "--output", c.out / "run"], "--batch-size", "not a number"),
    Probe("evaluate -1 bootstrap draws", lambda c: [
        "evaluate-model", "--model", c.w.model, "--dataset", c.w.dataset,
        "--bootstrap-draws=-1", "--output", c.out / "ev"], "--bootstrap-draws"),
    Probe("predict stride 1000", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.city.embeddings_tif, "--stride", "1000",
        "--output", c.out / "lcz.tif"], "--stride"),
    Probe("create-grid cells larger than the raster", lambda c: [
        "create-grid", "--embeddings", c.city.embeddings_tif, "--cell-size", "100000",
        "--output", c.out / "g.gpkg"], "--cell-size"),
    Probe("sample-patches shares summing to 1.5", lambda c: [
        "sample-patches", "--embeddings", c.city.embeddings_tif, "--labels", c.city.labels,
        "--fractions", "0.5,0.5,0.5", "--output", c.out / "ds"], "--fractions"),
    Probe("embedding-rgb percentiles reversed", lambda c: [
        "embedding-rgb", "--embeddings", c.city.embeddings_tif, "--percentiles", "98,2",
        "--output", c.out / "rgb.tif"], "--percentiles"),
    Probe("demo city of an odd size", lambda c: [
        "demo", "--size", "333", "--output", c.out / "city"], "--size"),
    Probe("demo city of a small size", lambda c: [
        "demo", "--size", "160", "--output", c.out / "city"], None, "synthetic_polygons"),
    Probe("import band 5 of a one-band map", lambda c: [
        "import-lcz-map", "--input", c.city.labels, "--band", "5", "--output", c.out / "i.tif"],
        "--band"),
    # ---- inputs of the wrong content
    Probe("sample-patches for an unknown city", lambda c: [
        "sample-patches", "--cities", c.w.catalogue, "--city", "atlantis", "--output", c.out / "ds"],
        "--city", "atlantis"),
    Probe("compare a 64-band float raster", lambda c: [
        "compare-lcz-maps", "--input", c.city.embeddings_tif, "--reference", c.city.reference,
        "--output", c.out / "a.json"], "--input", "64 band"),
    Probe("plot a 64-band float raster", lambda c: [
        "plot-lcz-map", "--input", c.city.embeddings_tif, "--output", c.out / "p.png"],
        "--input", "band 1 \\(of 64\\) .* not LCZ codes"),
    Probe("import a 64-band float raster", lambda c: [
        "import-lcz-map", "--input", c.city.embeddings_tif, "--output", c.out / "i.tif"],
        "--band", "non-integer values"),
    Probe("predict over all-NaN embeddings", lambda c: [
        *PREDICT, c.w.model, "--embeddings", c.w.nan_embeddings, "--output", c.out / "lcz.tif"],
        "--embeddings", "no valid pixel"),
    Probe("sample-patches from all-NaN embeddings", lambda c: [
        "sample-patches", "--embeddings", c.w.nan_embeddings, "--labels", c.city.labels,
        "--output", c.out / "ds"], "--max-missing"),
    Probe("create-grid over all-NaN embeddings", lambda c: [  # cells only: values not read
        "create-grid", "--embeddings", c.w.nan_embeddings, "--output", c.out / "g.gpkg"],
        None, '"cells": 100'),
    Probe("embedding-rgb of all-NaN embeddings", lambda c: [
        "embedding-rgb", "--embeddings", c.w.nan_embeddings, "--output", c.out / "rgb.tif"],
        "--embeddings"),
    Probe("check all-NaN embeddings", lambda c: [
        "check-embeddings", "--embeddings", c.w.nan_embeddings, "--output", c.out / "qa.json"],
        None, "missing"),
    Probe("similarity to a point outside the data", lambda c: [
        "embedding-similarity", "--embeddings", c.city.embeddings_tif, "--point=0,0",
        "--output", c.out / "s.tif"], "--point"),
]  # fmt: skip


def _read_only(path: Path) -> Path:
    path.chmod(0o444)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _styled(raster: Path) -> Path:
    raster.with_suffix(".qml").write_text("<qgis>the user's own style</qgis>")
    return raster


def _with_notes(folder: Path) -> Path:
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return folder


def _foreign_site(folder: Path) -> Path:
    folder.mkdir()
    (folder / "manifest.json").write_text('{"name": "a web app"}')
    (folder / "index.html").write_text("<p>keep me</p>")
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(*roots: Path) -> dict[str, str]:
    """Every entry under the roots, hidden ones included: a file's sha256, a link's target."""
    state = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(folder, name)
                if path.is_symlink():
                    state[str(path)] = "link to " + os.readlink(path)
                elif path.is_file():
                    state[str(path)] = sha256(path)
                else:
                    state[str(path)] = "folder"
    return state


def run_limited(argv: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run `argv` with its address space capped and a time limit."""
    process = subprocess.Popen(
        [str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=cwd, env=env,
    )  # fmt: skip
    with contextlib.suppress(ProcessLookupError):  # set from here: no preexec_fn in threads
        resource.prlimit(process.pid, resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        stderr += f"\n(killed after {TIMEOUT_S} s)"
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


CLI_ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO / "lcz_qgis" / "lib"),
    "OMP_NUM_THREADS": "1",
    "COLUMNS": "200",
}


def problems(probe: Probe, done, before: dict, after: dict, tmp: Path, errors: list) -> list:
    """What went wrong, each under one of the headings of the probe table; `errors` are the
    lines of the output naming a parameter, the first one `error: --flag: ...` (command line)
    or `Label: ...` (qgis_process)."""
    text = done.stdout + done.stderr
    found = []
    replaced = [str(tmp / pattern) for pattern in probe.replaces] if done.returncode == 0 else []
    changed = sorted(
        p
        for p in before
        if after.get(p) != before[p] and not any(fnmatch.fnmatch(p, r) for r in replaced)
    )
    if changed:
        found.append(f"data destroyed: {changed}")
    if "(killed after" in done.stderr:
        found.append(f"hang: {done.stderr[-300:]}")
    elif done.returncode < 0 or "MemoryError" in text or "not enough memory" in text:
        found.append(f"OOM: exit {done.returncode}")
    if "Traceback" in text:
        found.append("traceback: " + text[-1500:])
    new = sorted(set(after) - set(before))
    if probe.flag is None:
        if done.returncode != 0:
            found.append(f"refused: {errors or done.stderr[-500:]}")
        elif not re.search(probe.message, done.stdout):
            found.append(f"unclear message: {probe.message!r} not in the result")
        left = [p for p in new if ".partial-" in p or not p.startswith(str(tmp / "out"))]
        if left:
            found.append(f"partial files left (or files beside the inputs): {left}")
        return found
    if done.returncode == 0:
        found.append(f"silently wrong: exit 0, {done.stdout[-300:]}")
    elif len(errors) != 1 or not re.search(probe.message, errors[0]):
        found.append(f"unclear message: {errors or done.stderr[-500:]}")
    if new:
        found.append(f"partial files left: {new}")
    return found


def cli_errors(probe: Probe, done) -> list:
    """The `error: ...` lines of a command-line run."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    if probe.flag and errors and not errors[0].startswith(f"error: {probe.flag}: "):
        errors.append(f"(expected error: {probe.flag}: ...)")
    return errors


def qgis_errors(probe: Probe, done) -> list:
    """The lines of a qgis_process run naming the parameter by its label: 'ERROR:<tab>Label:
    ...' or, from the parameter checks, '<tab>Label: ...' (repeated lines count once)."""
    lines = [line.removeprefix("ERROR:").strip() for line in done.stderr.splitlines()]
    return list(dict.fromkeys(x for x in lines if probe.flag and x.startswith(f"{probe.flag}: ")))


def run_probe(probe: Probe, qgis: bool, world: World, tmp: Path, env: dict, real_data) -> list:
    """Run one probe in its own folder; what went wrong."""
    ctx = Ctx(world, tmp, real_data)
    args = probe.args(ctx)
    before = snapshot(tmp, world.root)
    if qgis:
        done = run_limited([QGIS_PROCESS, "run", args[0], "--", *args[1:]], tmp, env)
    else:
        done = run_limited([sys.executable, "-m", "lcz_core", *args], tmp, CLI_ENV)
    after = snapshot(tmp, world.root)
    errors = (qgis_errors if qgis else cli_errors)(probe, done)
    return problems(probe, done, before, after, tmp, errors)


@pytest.fixture(scope="module")
def outcomes(world, tmp_path_factory, request):
    """The selected probes of this module, run two at a time (each one process, most of them
    single-threaded): {test id: future list of problems}."""
    items = [
        item
        for item in request.session.items
        if item.module is request.module
        and "probe" in getattr(getattr(item, "callspec", None), "params", {})
    ]
    try:
        real_data = request.getfixturevalue("real_data")
    except pytest.skip.Exception:
        real_data = None
    qgis = any(item.originalname == "test_qgis_process_probe" for item in items)
    env = qgis_env(tmp_path_factory) if qgis and Path(QGIS_PROCESS).exists() else {}
    pool = ThreadPoolExecutor(2)
    futures = {
        item.nodeid: pool.submit(
            run_probe,
            item.callspec.params["probe"],
            item.originalname == "test_qgis_process_probe",
            world,
            tmp_path_factory.mktemp("probe"),
            env,
            real_data,
        )
        for item in items
    }
    yield futures
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_cli_probe(probe, outcomes, request):
    found = outcomes[request.node.nodeid].result()
    assert not found, "\n".join(found)


# ---- through qgis_process, where the QGIS layer matters: its checks, its layers, its labels


def qgis_env(tmp_path_factory) -> dict:
    """A fresh QGIS profile with the plugin enabled from the repo checkout."""
    env = qgis_environment(tmp_path_factory.mktemp("home"), REPO)
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "lcz_qgis"], env=env, check=True,
                   capture_output=True, timeout=TIMEOUT_S)  # fmt: skip
    return env


def zaragoza(c: Ctx) -> Path:
    """A copy of a real int32 LCZ map (no colour table): QGIS would compute its statistics."""
    if c.real_data is None:
        pytest.skip("the real data is absent")
    return c.copy(c.real_data / "zaragoza" / "lcz_zaragoza.tif", "z.tif", sidecars=False)


QGIS_PROBES = [
    Probe("predict output is the embeddings", lambda c: [
        "lcz:predictlczmap", f"MODEL={c.w.model}",
        f"EMBEDDINGS={c.copy(c.city.embeddings_tif, 'e.tif')}", f"OUTPUT={c.inp / 'e.tif'}"],
        "Predicted LCZ map", "would overwrite Embeddings"),
    Probe("predict confidence = output", lambda c: [
        "lcz:predictlczmap", f"MODEL={c.w.model}", f"EMBEDDINGS={c.city.embeddings_tif}",
        f"OUTPUT={c.out / 'a.tif'}", f"CONFIDENCE={c.out / 'a.tif'}"], "Prediction confidence", "same file"),
    Probe("import zero-area extent", lambda c: [
        "lcz:importlczmap", f"INPUT={c.city.labels}",
        f"EXTENT={c.qgis_extent('zero-area')}", f"OUTPUT={c.out / 'i.tif'}"],
        "Extent", "no area"),
    Probe("import extent in an unknown CRS", lambda c: [
        "lcz:importlczmap", f"INPUT={c.city.labels}",
        f"EXTENT={c.qgis_extent().replace('32633', '99999')}",
        f"OUTPUT={c.out / 'i.tif'}"], "Extent", "no valid CRS"),
    Probe("train for 1e12 epochs", lambda c: [
        "lcz:trainpatchclassifier", f"DATASET={c.w.dataset}", "EPOCHS=1e12",
        f"OUTPUT={c.out / 'run'}"], "Maximum epochs (empty: from the experiment file, else 30)",
        "outside 1 to 10000"),
    Probe("import a real map: nothing beside it", lambda c: [
        "lcz:importlczmap", f"INPUT={zaragoza(c)}", f"OUTPUT={c.out / 'i.tif'}"],
        None, "CODING_USED"),
    Probe("grid over embeddings: nothing beside them", lambda c: [
        "lcz:creategrid", f"EMBEDDINGS={c.copy(c.city.embeddings_tif, 'e.tif', sidecars=False)}",
        f"OUTPUT={c.out / 'g.gpkg'}"], None, "CELLS"),
]  # fmt: skip


@pytest.mark.skipif(not Path(QGIS_PROCESS).exists(), reason="qgis_process is not installed")
@pytest.mark.parametrize("probe", QGIS_PROBES, ids=[p.name for p in QGIS_PROBES])
def test_qgis_process_probe(probe, outcomes, request):
    found = outcomes[request.node.nodeid].result()
    assert not found, "\n".join(found)


def test_probes_cover_every_step(world, tmp_path):
    from lcz_core.steps import STEPS

    probed = set()
    for i, probe in enumerate(PROBES):
        (tmp_path / str(i)).mkdir()
        probed.add(str(probe.args(Ctx(world, tmp_path / str(i)))[0]))
    assert probed == {step.name for step in STEPS}


def test_a_probe_cannot_take_more_than_its_address_space(tmp_path):
    code = (
        "import resource, time; time.sleep(0.5); print(resource.getrlimit(resource.RLIMIT_AS)[0])"
    )
    done = run_limited([sys.executable, "-c", code], tmp_path, CLI_ENV)
    assert int(done.stdout) == ADDRESS_SPACE
    done = run_limited([sys.executable, "-c", f"bytearray({ADDRESS_SPACE})"], tmp_path, CLI_ENV)
    assert done.returncode == 1 and "MemoryError" in done.stderr
