"""Window-by-window prediction to styled LCZ and confidence GeoTIFFs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window

from lcz_core.demo import DEMO_ORIGIN
from lcz_core.errors import LczError
from lcz_core.labels import open_labels
from lcz_core.models import create_model, load_model, save_model
from lcz_core.predict import PATCH_WINDOW, predict_raster
from lcz_core.progress import Cancelled, Progress
from lcz_core.rasters import open_source
from lcz_core.sampling import CityInput, SplitConfig, make_dataset
from lcz_core.train import TrainConfig, train

pytestmark = pytest.mark.slow  # trains a model


@pytest.fixture(scope="module")
def patch_model(demo_city, tmp_path_factory):
    """A patch classifier trained briefly on the demo city."""
    folder = tmp_path_factory.mktemp("predict")
    city = CityInput(
        "synthetica", open_source(demo_city.embeddings_tif), open_labels(demo_city.labels)
    )
    split = SplitConfig(method="blocks", block_cells=3, seed=0, buffer_m=None)
    make_dataset([city], folder / "patches", kind="patches", patch_size=32, split=split)
    config = TrainConfig(epochs=12, batch_size=16)
    return train(folder / "patches", folder / "run", config)["model"]


@pytest.fixture
def random_model(model_metadata):
    """An untrained model file (for the mechanics of prediction, not its accuracy)."""

    def write(path, task: str, bands: int = 64, stem: str = "1x1") -> str:
        metadata = model_metadata(task, bands, (2, 6, 11, 14), stem=stem, mean=0.0, std=1.0)
        return str(save_model(path, create_model(metadata).eval(), metadata))

    return write


def test_patch_map_at_100m_agrees_with_the_labels(demo_city, patch_model, tmp_path):
    result = predict_raster(patch_model, demo_city.embeddings_tif, tmp_path / "lcz.tif")
    assert result["pixel_size"] == 100.0 and (result["width"], result["height"]) == (48, 48)
    with rasterio.open(tmp_path / "lcz.tif") as lcz, rasterio.open(demo_city.labels) as labels:
        codes = lcz.read(1)
        assert lcz.transform == labels.transform * Affine.scale(10)
        assert lcz.colormap(1)[2][:3] == (209, 0, 0)  # styled: LCZ 2's colour
        truth = labels.read(1)
    # the 10 m labels' majority class in each 100 m cell
    cells = truth.reshape(48, 10, 48, 10).transpose(0, 2, 1, 3).reshape(48, 48, 100)
    majority = np.apply_along_axis(lambda v: np.bincount(v, minlength=18).argmax(), 2, cells)
    valid = codes > 0
    assert valid.mean() > 0.95
    agreement = np.mean(codes[valid] == majority[valid])
    baseline = np.mean(majority == np.bincount(majority.ravel()).argmax())
    assert agreement >= baseline + 0.3, (agreement, baseline)
    assert (tmp_path / "lcz.qml").is_file()
    with rasterio.open(result["confidence"]) as conf:
        values = conf.read(1)
        assert conf.dtypes[0] == "float32" and conf.transform == lcz.transform
    assert np.all((values[valid] > 0) & (values[valid] <= 1))


def test_streamed_windows_match_patches_read_directly(demo_city, patch_model, tmp_path):
    result = predict_raster(patch_model, demo_city.embeddings_tif, tmp_path / "lcz.tif", stride=16)
    model = load_model(patch_model)
    with rasterio.open(result["output"]) as lcz, rasterio.open(result["confidence"]) as conf:
        codes, confidence = lcz.read(1), conf.read(1)
    assert codes.shape == (30, 30)
    # output cell (r, c) is classified from the 32 px patch centred on its 16 x 16 cell; 20
    # output cells make one window, so (0, 19) and (20, 21) sit at window edges
    cells = [(0, 0), (0, 19), (20, 21), (29, 29), (7, 20)]
    with rasterio.open(demo_city.embeddings_tif) as src:
        patches = np.stack(
            [
                src.read(
                    window=Window(c * 16 - 8, r * 16 - 8, 32, 32), boundless=True, fill_value=np.nan
                )
                for r, c in cells
            ]
        )
    expected_codes, expected_conf = model.predict(patches)
    np.testing.assert_array_equal([codes[rc] for rc in cells], expected_codes)
    np.testing.assert_allclose([confidence[rc] for rc in cells], expected_conf, rtol=1e-5)


def test_cells_without_any_data_are_nodata(demo_city, tmp_path, random_model, write_raster):
    with rasterio.open(demo_city.embeddings_tif) as src:
        data = src.read()
    data[:, 100:200, 100:205] = np.nan  # cells 10-19 x 10-19 fully missing, 20 partly
    tif = str(write_raster(tmp_path / "gappy.tif", data, float("nan"), 10.0, DEMO_ORIGIN))
    # (task, output pixel in input pixels, an output pixel partly covered by the gap)
    for task, scale, partly in (("patch", 10, (19, 20)), ("segmentation", 1, (199, 205))):
        model = random_model(tmp_path / f"{task}.safetensors", task)
        result = predict_raster(model, tif, tmp_path / f"{task}.tif")
        with rasterio.open(result["output"]) as lcz, rasterio.open(result["confidence"]) as conf:
            codes, confidence = lcz.read(1), conf.read(1)
        assert codes.shape == (480 // scale, 480 // scale)
        gap = (slice(100 // scale, 200 // scale), slice(100 // scale, 200 // scale))
        assert np.all(codes[gap] == 0) and np.all(np.isnan(confidence[gap]))
        assert codes[partly] > 0
        assert result["nodata_pixels"] == int((codes == 0).sum()) > 0
        assert set(np.unique(codes)) <= {0, 2, 6, 11, 14}


def test_band_count_mismatch_is_refused_with_a_clear_message(tmp_path, random_model, write_raster):
    model = random_model(tmp_path / "m.safetensors", "patch", bands=64)
    tif = write_raster(tmp_path / "ten_bands.tif", np.zeros((10, 40, 40), np.float32), pixel=10.0)
    with pytest.raises(LczError, match="trained on 64 bands.* has 10 bands") as error:
        predict_raster(model, tif, tmp_path / "out.tif")
    assert error.value.parameter == "embeddings"
    assert "same source" in error.value.message
    assert not (tmp_path / "out.tif").exists()


def test_pixel_size_mismatch_is_refused(tmp_path, random_model, write_raster):
    model = random_model(tmp_path / "m.safetensors", "patch", bands=4)
    tif = write_raster(tmp_path / "coarse.tif", np.ones((4, 40, 40), np.float32), pixel=30.0)
    with pytest.raises(LczError, match="10 m pixels .* 30"):
        predict_raster(model, tif, tmp_path / "out.tif")
    with pytest.raises(LczError) as error:
        predict_raster(
            model,
            write_raster(tmp_path / "ok.tif", np.ones((4, 40, 40), np.float32), pixel=10.0),
            tmp_path / "o.tif",
            stride=40,
        )
    assert error.value.parameter == "stride"


def test_cancel_leaves_no_output(demo_city, tmp_path, random_model):
    model = random_model(tmp_path / "m.safetensors", "segmentation")

    class CancelSecond(Progress):
        def _emit(self, percent, message):
            if message and message.startswith("block 2/"):
                self.cancel()

    progress = CancelSecond()
    with pytest.raises(Cancelled):
        predict_raster(model, demo_city.embeddings_tif, tmp_path / "lcz.tif", progress=progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_predict_over_an_extent_matches_the_full_map(demo_city, tmp_path, random_model):
    model = random_model(tmp_path / "m.safetensors", "patch")
    full = predict_raster(model, demo_city.embeddings_tif, tmp_path / "full.tif")
    x0, y0 = DEMO_ORIGIN
    # 1.2 km x 0.8 km, 100 m aligned, given in lon/lat like an extent drawn in QGIS
    from lcz_core.extents import reproject_extent

    box = (x0 + 1000, y0 - 2600, x0 + 2200, y0 - 1800)
    lonlat = reproject_extent(box, "EPSG:32633", "EPSG:4326")
    part = predict_raster(
        model,
        demo_city.embeddings_tif,
        tmp_path / "part.tif",
        extent=lonlat,
        extent_crs="EPSG:4326",
    )
    with rasterio.open(full["output"]) as a, rasterio.open(part["output"]) as b:
        whole, cut = a.read(1), b.read(1)
        col, row = ~a.transform * (b.transform.c, b.transform.f)
        assert b.transform.a == a.transform.a and 12 <= b.width <= 14 and 8 <= b.height <= 10
    with rasterio.open(full["confidence"]) as a, rasterio.open(part["confidence"]) as b:
        whole_conf, cut_conf = a.read(1), b.read(1)
    inside = (
        slice(round(row), round(row) + cut.shape[0]),
        slice(round(col), round(col) + cut.shape[1]),
    )
    # the same patches give the same probabilities; an untrained model's near-ties may flip
    # a class between batchings, so classes must agree almost everywhere
    np.testing.assert_allclose(cut_conf, whole_conf[inside], rtol=1e-4)
    assert (cut == whole[inside]).mean() > 0.97
    with pytest.raises(LczError, match="extent: .*does not overlap the embeddings"):
        predict_raster(model, demo_city.embeddings_tif, tmp_path / "o.tif", extent=(0, 0, 1, 1))


def per_patch_reference(model_path, tif, stride, rows, width):
    """Top probability, runner-up and code of output rows `rows`, each patch read and classified
    on its own (LczModel.probabilities on the patch alone: the semantics predict keeps)."""
    model = load_model(model_path)
    pad = (32 - stride) // 2
    top, second, codes = [], [], []
    with open_source(tif) as source:
        for r in rows:
            patches = np.stack(
                [
                    source.read(Window(c * stride - pad, r * stride - pad, 32, 32))
                    for c in range(width)
                ]
            )
            ranked = model.probabilities(patches).sort(dim=1, descending=True)
            top.append(ranked.values[:, 0].numpy())
            second.append(ranked.values[:, 1].numpy())
            codes.append(ranked.indices[:, 0].numpy() + 1)
    return np.stack(top), np.stack(second), np.stack(codes)


@pytest.mark.parametrize("stride", [10, 7])
def test_window_pipeline_equals_patch_by_patch_inference(
    demo_city, patch_model, random_model, write_raster, tmp_path, stride
):
    with rasterio.open(demo_city.embeddings_tif) as src:
        data = src.read(window=Window(0, 0, 400, 400))  # two windows each way, at both strides
    data[:, 150:260, 200:233] = np.nan  # a gap: partly covered output cells, patches half empty
    gappy = write_raster(tmp_path / "gappy.tif", data, float("nan"), 10.0, DEMO_ORIGIN)
    models = {
        "trained, 1x1 stem": patch_model,
        "random, 1x1 stem": random_model(tmp_path / "r1.safetensors", "patch"),
        "random, 3x3 stem": random_model(tmp_path / "r3.safetensors", "patch", stem="3x3"),
    }
    for name, model in models.items():
        result = predict_raster(model, gappy, tmp_path / "lcz.tif", stride=stride)
        with rasterio.open(result["output"]) as lcz, rasterio.open(result["confidence"]) as conf:
            codes, confidence = lcz.read(1), conf.read(1)
        # rows at both sides of a window edge, the last one (patches past the raster) and one
        # across the gap
        edge = PATCH_WINDOW // stride
        rows = [0, edge - 1, edge, codes.shape[0] - 1, 200 // stride]
        top, second, expected = per_patch_reference(model, gappy, stride, rows, codes.shape[1])
        valid = codes[rows] > 0
        assert valid.mean() > 0.8 and not valid.all(), name
        # documented tolerance: float rounding only (bit-identical on the machines measured)
        np.testing.assert_allclose(confidence[rows][valid], top[valid], rtol=1e-6, err_msg=name)
        decided = valid & (top - second > 1e-5)  # a class can only flip on an exact near-tie
        assert decided.sum() > 0.9 * valid.sum(), name
        np.testing.assert_array_equal(codes[rows][decided], expected[decided], err_msg=name)


def test_gdal_block_cache_is_bounded_during_the_run(demo_city, tmp_path, random_model):
    from lcz_core.predict import GDAL_CACHE_BYTES

    seen = []

    class CacheSize(Progress):
        def _emit(self, percent, message):
            if message.startswith("block"):
                seen.append(int(rasterio.env.get_gdal_config("GDAL_CACHEMAX")))

    model = random_model(tmp_path / "m.safetensors", "patch")
    predict_raster(model, demo_city.embeddings_tif, tmp_path / "lcz.tif", progress=CacheSize())
    assert len(seen) == 4 and set(seen) == {GDAL_CACHE_BYTES}  # 2 x 2 windows


def test_large_outputs_have_overviews_and_keep_their_style(demo_city, tmp_path, random_model):
    model = random_model(tmp_path / "m.safetensors", "segmentation")
    result = predict_raster(model, demo_city.embeddings_tif, tmp_path / "lcz.tif")
    with rasterio.open(result["output"]) as lcz, rasterio.open(result["confidence"]) as conf:
        assert (lcz.width, lcz.height) == (480, 480)
        assert lcz.overviews(1) == [2] and conf.overviews(1) == [2]
        assert lcz.profile["tiled"] and lcz.compression.name == "deflate"
        assert lcz.colormap(1)[2][:3] == (209, 0, 0)
        full, small = lcz.read(1), lcz.read(1, out_shape=(240, 240))
        small_conf = conf.read(1, out_shape=(240, 240))
    # each overview cell holds the majority of its 2 x 2 cells' codes (here: one of them)
    blocks = full.reshape(240, 2, 240, 2).transpose(0, 2, 1, 3).reshape(240, 240, 4)
    assert np.all((blocks == small[..., None]).any(axis=2) | (small == 0))
    assert np.nanmax(small_conf) <= 1
    assert (tmp_path / "lcz.qml").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_gpu_prediction_matches_the_cpu(demo_city, patch_model, tmp_path):
    cpu = predict_raster(patch_model, demo_city.embeddings_tif, tmp_path / "cpu.tif", device="cpu")
    gpu = predict_raster(patch_model, demo_city.embeddings_tif, tmp_path / "gpu.tif", device="cuda")
    with rasterio.open(cpu["output"]) as a, rasterio.open(gpu["output"]) as b:
        codes_cpu, codes_gpu = a.read(1), b.read(1)
    with rasterio.open(cpu["confidence"]) as a, rasterio.open(gpu["confidence"]) as b:
        conf_cpu, conf_gpu = a.read(1), b.read(1)
    assert np.array_equal(codes_cpu == 0, codes_gpu == 0)
    # cuDNN may use TF32 and other summation orders: probabilities agree to a few 1e-3
    np.testing.assert_allclose(conf_gpu, conf_cpu, atol=5e-3)
    assert (codes_gpu == codes_cpu).mean() > 0.99


def test_reading_ahead_yields_the_same_windows_in_order(demo_city):
    # the GPU path reads the next window in a thread while the current one is computed
    from lcz_core.predict import _read_ahead

    blocks = [(range(r, r + 100), range(c, c + 100)) for r in (0, 100) for c in (0, 100, 200)]
    threads = []

    with open_source(demo_city.embeddings_tif) as source:

        def read(rows, cols):
            threads.append(threading.current_thread().name)
            return source.read(Window(cols.start, rows.start, len(cols), len(rows)))

        inline = list(_read_ahead(read, blocks, overlap=False))
        ahead = _read_ahead(read, blocks, overlap=True)
        first = next(ahead)  # the generator closes early, as when a run is cancelled
        ahead.close()
        ahead = list(_read_ahead(read, blocks, overlap=True))
    assert [(r, c) for r, c, _ in ahead] == blocks == [(r, c) for r, c, _ in inline]
    for (_, _, a), (_, _, b) in zip(ahead, inline, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[2], inline[0][2])
    assert set(threads[:6]) == {"MainThread"}
    assert all(name.startswith("lcz-read") for name in threads[6:]) and len(threads) == 6 + 2 + 6


def test_threads_set_torch_for_the_run_only(demo_city, tmp_path, random_model):
    """Beside a busy desktop one thread is faster: the run uses the count given, then restores."""
    model = random_model(tmp_path / "m.safetensors", "patch")
    before = torch.get_num_threads()

    class ThreadsSeen(Progress):
        seen: set[int] = set()

        def _emit(self, percent, message):
            if message and message.startswith("block "):
                self.seen.add(torch.get_num_threads())

    progress = ThreadsSeen()
    predict_raster(
        model, demo_city.embeddings_tif, tmp_path / "lcz.tif", threads=before + 1, progress=progress
    )
    assert progress.seen == {before + 1} and torch.get_num_threads() == before
    with pytest.raises(LczError, match="threads"):
        predict_raster(model, demo_city.embeddings_tif, tmp_path / "x.tif", threads=-1)
