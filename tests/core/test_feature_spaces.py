"""Named embedding feature spaces (TESSERA versions, AlphaEarth) are never mixed in one model."""

import numpy as np
import pytest

from lcz_core.errors import LczError
from lcz_core.labels import open_labels
from lcz_core.models import LczModel, create_model
from lcz_core.predict import check_source
from lcz_core.progress import Progress
from lcz_core.rasters import AlphaEarthSource, open_source
from lcz_core.sampling import CityInput, make_dataset


@pytest.fixture
def aef_tif(tmp_path, write_raster):
    values = np.random.default_rng(0).integers(-127, 128, (64, 64, 64), dtype=np.int8)
    return write_raster(tmp_path / "aef.tif", values, nodata=-128, pixel=10.0)


def test_sources_name_their_feature_space(aef_tif, demo_city):
    assert AlphaEarthSource(aef_tif).feature_space == "alphaearth (quadratic dequantisation)"
    assert AlphaEarthSource(aef_tif, "linear").feature_space == "alphaearth (linear dequantisation)"
    assert open_source(demo_city.embeddings_tif).feature_space == ""


def test_cities_in_different_feature_spaces_are_not_sampled_together(aef_tif, demo_city, tmp_path):
    labels = open_labels(demo_city.polygons, class_field="lcz")
    cities = [
        CityInput("a", AlphaEarthSource(aef_tif, "quadratic"), labels, None),
        CityInput("b", AlphaEarthSource(aef_tif, "linear"), labels, None),
    ]
    with pytest.raises(LczError, match="feature spaces differ") as error:
        make_dataset(cities, tmp_path / "dataset")
    assert error.value.parameter == "embeddings" and not (tmp_path / "dataset").exists()


def test_a_model_refuses_another_feature_space(aef_tif, model_metadata):
    metadata = {**model_metadata(bands=64), "feature_space": "tessera v1.1"}
    model = LczModel(create_model(metadata).eval(), metadata)
    with pytest.raises(LczError, match="trained on tessera v1.1 embeddings .* alphaearth"):
        check_source(model, AlphaEarthSource(aef_tif), Progress())
    metadata["feature_space"] = "alphaearth (quadratic dequantisation)"
    check_source(model, AlphaEarthSource(aef_tif), Progress())


def test_predict_opens_the_source_with_its_dequantisation(aef_tif, model_metadata, tmp_path):
    from lcz_core.models import save_model
    from lcz_core.predict import predict_raster

    metadata = {**model_metadata(bands=64), "feature_space": "alphaearth (linear dequantisation)"}
    model = save_model(tmp_path / "m.safetensors", create_model(metadata).eval(), metadata)
    with pytest.raises(
        LczError, match="trained on alphaearth \\(linear .* alphaearth \\(quadratic"
    ):
        predict_raster(model, aef_tif, tmp_path / "q.tif", source_kind="aef")
    result = predict_raster(
        model, aef_tif, tmp_path / "l.tif", source_kind="aef", dequantise="linear"
    )
    assert result["width"] == result["height"] == 7
