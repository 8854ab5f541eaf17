"""The networks and the model file (weights + JSON metadata, no pickle)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from lcz_core.errors import LczError
from lcz_core.models import (
    METADATA_KEY,
    LczModel,
    UNet,
    create_model,
    create_patch_classifier,
    load_model,
    prepare_inputs,
    read_model_metadata,
    save_model,
)

torch.set_num_threads(1)


def test_patch_classifier_keeps_32px_detail_until_the_residual_stages():
    model = create_patch_classifier("resnet10t", 6, width=8, stem="3x3").eval()
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert isinstance(model.maxpool, torch.nn.Identity)
    x = torch.randn(2, 6, 32, 32)
    # stride-1 stem, no max-pool: the last stage sees 4 x 4 (32 / 8), not 1 x 1
    assert model.forward_features(x).shape == (2, 64, 4, 4)
    assert model(x).shape == (2, 17)
    assert create_patch_classifier("resnet18", 6, width=None).fc.in_features == 512
    assert create_patch_classifier("resnet10t", 6).conv1.kernel_size == (1, 1)


def test_unknown_or_non_resnet_architecture_is_refused():
    with pytest.raises(LczError) as error:
        create_patch_classifier("vit_tiny_patch16_224", 6)
    assert error.value.parameter == "architecture"
    with pytest.raises(LczError, match="not a timm ResNet"):
        create_patch_classifier("no_such_net", 6)
    with pytest.raises(LczError) as error:
        create_patch_classifier("resnet18", 6, stem="5x5")
    assert error.value.parameter == "stem"


@pytest.mark.parametrize("side", [32, 48])
def test_unet_predicts_every_pixel(side):
    net = UNet(6, width=8).eval()
    assert net(torch.randn(1, 6, side, side)).shape == (1, 17, side, side)


def test_prepare_inputs_normalises_then_fills_missing_with_zero():
    x = np.array([[[[1.0, np.nan]], [[3.0, 5.0]]]], dtype=np.float32)  # 1 x 2 x 1 x 2
    out = prepare_inputs(x, np.array([1.0, 1.0]), np.array([2.0, 4.0]))
    np.testing.assert_array_equal(out, [[[[0.0, 0.0]], [[0.5, 1.0]]]])
    assert out.dtype == np.float32


def test_model_file_round_trip_without_pickle(tmp_path, model_metadata):
    torch.manual_seed(0)
    metadata = model_metadata()
    network = create_model(metadata).eval()
    path = save_model(tmp_path / "m.safetensors", network, {**metadata, "metrics": {"oa": 0.5}})
    # safetensors: 8-byte little-endian header length, then a JSON header; no pickle anywhere
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert json.loads(header["__metadata__"][METADATA_KEY])["metrics"] == {"oa": 0.5}
    assert read_model_metadata(path)["band_names"] == metadata["band_names"]
    loaded = load_model(path)
    x = np.random.default_rng(0).normal(size=(3, 6, 32, 32)).astype(np.float32)
    expected = LczModel(network, metadata).probabilities(x)
    torch.testing.assert_close(loaded.probabilities(x), expected)


def test_probabilities_only_for_trained_classes_and_predict_batches(model_metadata):
    model = LczModel(create_model(model_metadata(classes=(2, 6, 14))).eval(), model_metadata())
    x = np.random.default_rng(1).normal(size=(5, 6, 32, 32)).astype(np.float32)
    x[0] = np.nan  # an all-missing patch still gets a class (inputs become the mean)
    p = model.probabilities(x)
    assert p.shape == (5, 17)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(5))
    assert torch.all(p[:, [i for i in range(17) if i + 1 not in (2, 6, 14)]] == 0)
    codes, confidence = model.predict(x, batch_size=2)
    assert set(codes.tolist()) <= {2, 6, 14} and codes.dtype == np.uint8
    np.testing.assert_allclose(confidence, p.max(dim=1).values.numpy(), rtol=1e-6)


def test_unet_model_predicts_per_pixel(model_metadata):
    metadata = model_metadata("segmentation")
    model = LczModel(create_model(metadata).eval(), metadata)
    codes, confidence = model.predict(np.zeros((2, 6, 32, 32), np.float32))
    assert codes.shape == confidence.shape == (2, 32, 32)


def test_broken_model_files_are_refused(tmp_path):
    with pytest.raises(LczError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(LczError, match="not a model file") as error:
        load_model(junk)
    assert error.value.parameter == "model"
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(LczError, match="not an LCZ model"):
        read_model_metadata(plain)
