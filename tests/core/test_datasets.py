"""The dataset contract: streamed writing, reading back, splits, safe replacement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lcz_core.datasets import SPLIT_CODES, Batch, ShardFiles, open_dataset, write_dataset
from lcz_core.errors import LczError
from lcz_core.lcz import code_from_text

BANDS = ["b0", "b1", "b2"]


def _manifest(kind: str = "patches") -> dict:
    return {
        "kind": kind,
        "patch_size": 4,
        "pixel_size": 10.0,
        "band_names": BANDS,
        "embedding_source": "test numbers",
        "cities": ["a", "b"],
        "crs": "EPSG:32633",
        "seed": 7,
        "split_method": "random",
        "split_fractions": [0.7, 0.15, 0.15],
        "buffer_m": 0.0,
    }


def _batches(n_batches: int, n: int, kind: str = "patches"):
    rng = np.random.default_rng(0)
    for b in range(n_batches):
        x = rng.normal(size=(n, 3, 4, 4)).astype(np.float32)
        x[0, :, 0, 0] = np.nan
        y = rng.integers(1, 18, size=(n,) if kind == "patches" else (n, 4, 4)).astype(np.uint8)
        yield Batch(
            x=x,
            y=y,
            split=np.arange(n) % 3,
            city=np.full(n, b % 2),
            centre_x=np.arange(n) * 40.0 + b,
            centre_y=np.arange(n) * -40.0,
        )


def test_written_dataset_reads_back_identically(tmp_path):
    folder = tmp_path / "ds"
    manifest = write_dataset(folder, _batches(3, 5), _manifest(), expected=15)
    expected = list(_batches(3, 5))
    ds = open_dataset(folder)
    assert len(ds) == 15 and ds.kind == "patches"
    assert ds.x.shape == (15, 3, 4, 4) and ds.x.dtype == np.float16
    np.testing.assert_array_equal(ds.x[5:10], expected[1].x.astype(np.float16))  # NaN too
    np.testing.assert_allclose(ds.x[5:10], expected[1].x, rtol=2**-11)
    np.testing.assert_array_equal(ds.y[:], np.concatenate([b.y for b in expected]))
    np.testing.assert_array_equal(ds.city[:], [0] * 5 + [1] * 5 + [0] * 5)
    np.testing.assert_array_equal(ds.centre_x[10:], expected[2].centre_x)
    assert ds.city.dtype == np.uint16 and ds.split.dtype == np.uint8
    np.testing.assert_array_equal(ds.indices("val"), np.flatnonzero(ds.split[:] == 1))
    assert ds.manifest == json.loads((folder / "manifest.json").read_text())
    assert manifest["band_count"] == 3 and manifest["format_version"] == 1
    train_y = ds.y[:][ds.split[:] == SPLIT_CODES["train"]]
    for label, n in manifest["class_counts"]["train"].items():  # keyed 1-10, A-G
        assert n == int(np.sum(train_y == code_from_text(label)))
    assert sum(sum(c.values()) for c in manifest["class_counts"].values()) == 15
    assert manifest["split_counts"] == {"train": 6, "val": 6, "test": 3}  # splits 0, 1, 2, 0, 1
    assert manifest["split_shares"] == {"train": 0.4, "val": 0.4, "test": 0.2}
    for label, shares in manifest["class_shares"].items():
        in_class = ds.y[:] == code_from_text(label)
        assert shares["val"] == round(float(np.mean(ds.split[:][in_class] == 1)), 4)


def test_tiles_count_labelled_pixels(tmp_path):
    manifest = write_dataset(tmp_path / "tiles", _batches(1, 6, "tiles"), _manifest("tiles"))
    ds = open_dataset(tmp_path / "tiles")
    assert ds.y.shape == (6, 4, 4)
    assert sum(sum(c.values()) for c in manifest["class_counts"].values()) == 6 * 16


def test_existing_dataset_replaced_and_other_folders_refused(tmp_path):
    folder = tmp_path / "ds"
    write_dataset(folder, _batches(1, 4), _manifest())
    write_dataset(folder, _batches(2, 4), _manifest())
    assert len(open_dataset(folder)) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(LczError, match="not a dataset") as error:
        write_dataset(other, _batches(1, 4), _manifest())
    assert error.value.parameter == "output"


def test_failure_midway_leaves_no_folder(tmp_path):
    def broken():
        yield from _batches(1, 4)
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "ds", broken(), _manifest())
    assert list(tmp_path.iterdir()) == []


def test_bad_batch_shape_refused(tmp_path):
    batch = next(_batches(1, 4))
    batch.x = batch.x[:, :2]
    with pytest.raises(ValueError, match="expected"):
        write_dataset(tmp_path / "ds", [batch], _manifest())


def test_samples_are_stored_one_chunk_each_and_read_in_any_order(tmp_path):
    for kind in ("patches", "tiles"):
        write_dataset(tmp_path / kind, _batches(3, 50, kind), _manifest(kind))
        ds = open_dataset(tmp_path / kind)
        assert ds.x.chunks == (1, 3, 4, 4) and ds.x.shards[0] == ds.block > 1
        assert ShardFiles.of(ds.x) is not None  # read straight from the shard files
        assert (tmp_path / kind / "data.zarr" / "x" / "c").is_dir()
        expected = list(_batches(3, 50, kind))
        all_x = np.concatenate([b.x for b in expected]).astype(np.float16)
        all_y = np.concatenate([b.y for b in expected])
        chosen = np.array([0, 3, 4, 5, 49, 50, 51, 149])  # runs, singles, shard borders
        x, y = ds.read(chosen)
        assert x.dtype == np.float16 and x.shape == (8, 3, 4, 4)  # as stored
        np.testing.assert_array_equal(x, all_x[chosen])
        np.testing.assert_array_equal(y, all_y[chosen])
        assert ds.read(np.array([], np.int64))[0].shape == (0, 3, 4, 4)
        held = open_dataset(tmp_path / kind).load()  # the same samples, held in memory
        assert isinstance(held.x, np.ndarray)
        for got, want in zip(held.read(chosen), (x, y), strict=True):
            np.testing.assert_array_equal(got, want)


def test_embeddings_beyond_float16_are_refused(tmp_path):
    batch = next(_batches(1, 4))
    batch.x[2, 1, 0, 0] = 70_000.0  # float16 reaches 65504
    with pytest.raises(LczError, match="reach 70000.*rescale") as error:
        write_dataset(tmp_path / "ds", [batch], _manifest())
    assert error.value.parameter == "embeddings"
    assert not (tmp_path / "ds").exists()
    batch.x[2, 1, 0, 0] = np.inf  # an infinite value stays what it was
    write_dataset(tmp_path / "ds", [batch], _manifest())
    assert np.isinf(open_dataset(tmp_path / "ds").x[2, 1, 0, 0])


def test_shard_files_read_what_zarr_reads(tmp_path):
    batches = list(_batches(2, 40, "tiles"))
    batches[1].x[5:40] = np.nan  # samples that are all fill value: chunks zarr does not write
    manifest = {**_manifest("tiles"), "band_names": BANDS}
    write_dataset(tmp_path / "ds", batches, manifest)
    ds = open_dataset(tmp_path / "ds")
    chosen = np.array([0, 1, 39, 40, 44, 45, 46, 79])
    for array in (ds.x, ds.y):
        files = ShardFiles.of(array)
        assert files is not None
        out = np.empty((len(chosen), *array.shape[1:]), array.dtype)
        files.read(chosen, out)
        np.testing.assert_array_equal(out, np.stack([array[int(i)] for i in chosen]))
    x = ds.read(chosen)[0]
    assert np.isnan(x[5:]).all() and not np.isnan(x[4]).all()  # 45 on: never written
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    plain = group.create_array("x", shape=(4, 3), chunks=(2, 3), dtype="float32")  # zstd
    assert ShardFiles.of(plain) is None
