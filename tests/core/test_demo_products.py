"""The demo city in the products' layouts reads back as the demo GeoTIFF, and predicts."""

from __future__ import annotations

import numpy as np
import rasterio

from lcz_core.demo import make_demo_city
from lcz_core.demo_products import write_demo_products
from lcz_core.rasters import crop_to_extent, open_source


def test_demo_city_in_tessera_and_alphaearth_layouts(tmp_path, model_metadata):
    from lcz_core.models import create_model, save_model
    from lcz_core.predict import predict_raster

    city = make_demo_city(tmp_path / "city", size=320)
    products = write_demo_products(city)
    with rasterio.open(city.embeddings_tif) as dataset:
        truth = dataset.read()
    options = dict(year=products.year, extent=products.extent, extent_crs=products.extent_crs)
    with open_source(products.tessera_store, **options) as store:
        assert store.feature_space == "tessera 0.0 synthetic"
        crop = crop_to_extent(store, products.extent)
        got = crop.read(rasterio.windows.Window(0, 0, crop.width, crop.height))
    assert got.shape == truth.shape and (np.isnan(got) == np.isnan(truth)).all()
    step = np.abs(np.nan_to_num(truth)).max(axis=0) / 127  # the int8 step of each pixel
    assert (np.abs(got - truth) <= step / 2 + 1e-6).all(where=~np.isnan(truth))
    with open_source(products.aef_index, **options) as aef:
        crop = crop_to_extent(aef, products.extent)
        got = crop.read(rasterio.windows.Window(0, 0, crop.width, crop.height))
        assert len(aef.members) == 4  # 320 px: files of 256
    unit = truth / np.linalg.norm(truth, axis=0)
    assert np.nanmax(np.abs(got - unit)) < 0.01

    metadata = {**model_metadata(bands=64), "feature_space": "tessera 0.0 synthetic"}
    model = save_model(tmp_path / "m.safetensors", create_model(metadata).eval(), metadata)
    result = predict_raster(
        model, products.tessera_store, tmp_path / "lcz.tif", source_kind="tessera-zarr", **options
    )
    with rasterio.open(tmp_path / "lcz.tif") as lcz, rasterio.open(city.labels) as labels:
        assert lcz.crs == labels.crs and lcz.bounds == labels.bounds
    assert result["width"] == result["height"] == 32
