"""Training-data algorithms in a real QGIS, on the synthetic demo city."""

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio


def _embeddings(demo_city):
    return {"EMBEDDINGS": str(demo_city.embeddings_tif)}


def test_create_grid_with_blocked_split(lcz_provider, demo_city, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    result = processing.run(
        "lcz:creategrid",
        {
            **_embeddings(demo_city),
            "SPLIT_METHOD": 0,
            "SEED": 3,
            "OUTPUT": str(tmp_path / "grid.gpkg"),
        },
    )
    assert result["CELLS"] == 15 * 15
    assert result["TRAIN_CELLS"] > result["VAL_CELLS"] > 0 and result["TEST_CELLS"] > 0
    layer = QgsVectorLayer(result["OUTPUT"], "grid")
    assert layer.isValid() and layer.featureCount() == 225
    assert {"cell_id", "split"} <= {f.name() for f in layer.fields()}
    again = processing.run(
        "lcz:creategrid",
        {
            **_embeddings(demo_city),
            "SPLIT_METHOD": 0,
            "SEED": 3,
            "OUTPUT": str(tmp_path / "again.gpkg"),
        },
    )
    first, second = gpd.read_file(result["OUTPUT"]), gpd.read_file(again["OUTPUT"])
    assert list(first["split"]) == list(second["split"])


def test_sample_patches_from_polygons_writes_dataset_and_cells(lcz_provider, demo_city, tmp_path):
    import processing

    result = processing.run(
        "lcz:samplepatches",
        {
            **_embeddings(demo_city),
            "LABELS": str(demo_city.patches),
            "CLASS_FIELD": "lcz",
            "SPLIT_METHOD": 1,
            "OUTPUT": str(tmp_path / "dataset"),
            "GRID_OUTPUT": str(tmp_path / "cells.gpkg"),
        },
    )
    manifest = json.loads((tmp_path / "dataset" / "manifest.json").read_text())
    assert result["COUNT"] > 100 and manifest["band_count"] == 64
    counts = json.loads(result["CLASS_COUNTS"])
    assert set(counts) == {"train", "val", "test"} and sum(counts["train"].values()) > 0
    cells = gpd.read_file(tmp_path / "cells.gpkg")
    assert (
        set(cells["split"]) <= {"train", "val", "test", "excluded"}
        and len(cells) >= result["COUNT"]
    )


def test_rasterize_labels_on_the_embedding_grid(lcz_provider, demo_city, tmp_path):
    import processing

    result = processing.run(
        "lcz:rasterizelabels",
        {
            **_embeddings(demo_city),
            "LABELS": str(demo_city.polygons),
            "CLASS_FIELD": "lcz",
            "OUTPUT": str(tmp_path / "l.tif"),
        },
    )
    with rasterio.open(result["OUTPUT"]) as out, rasterio.open(demo_city.labels) as truth:
        burnt, labels = out.read(1), truth.read(1)
        assert out.transform == truth.transform
    labelled = burnt > 0
    assert labelled.sum() == result["LABELLED_PIXELS"] > 0
    # the demo's polygons lie inside uniform areas of the label map
    assert np.array_equal(burnt[labelled], labels[labelled])


def test_missing_labels_field_is_a_clear_error(lcz_provider, demo_city, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="^Field holding the LCZ class: .*nope"):
        processing.run(
            "lcz:samplepatches",
            {
                **_embeddings(demo_city),
                "LABELS": str(demo_city.patches),
                "CLASS_FIELD": "nope",
                "OUTPUT": str(tmp_path / "d"),
            },
        )
    assert not (tmp_path / "d").exists()


def test_grid_opens_coloured_by_split(lcz_provider, demo_city, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    result = processing.run(
        "lcz:creategrid", {**_embeddings(demo_city), "OUTPUT": str(tmp_path / "g.gpkg")}
    )
    layer = QgsVectorLayer(result["OUTPUT"], "grid")
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "split"
    colours = {c.value(): c.symbol().color().name() for c in renderer.categories()}
    assert colours["train"] == "#1f78b4" and colours["test"] == "#e31a1c"


def test_sample_patches_needs_embeddings_or_a_catalogue(lcz_provider, demo_city, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(
        QgsProcessingException, match="give Embeddings and LCZ labels, or City catalogue"
    ):
        processing.run(
            "lcz:samplepatches", {"LABELS": str(demo_city.labels), "OUTPUT": str(tmp_path / "d")}
        )


def test_sample_patches_from_a_city_catalogue(lcz_provider, demo_city, tmp_path):
    import processing

    catalogue = tmp_path / "cities.toml"
    catalogue.write_text(
        f"""
[cities.synthetica]
year = 2024
extent = [380000, 5820200, 384800, 5825000]
extent_crs = "EPSG:32633"

[cities.synthetica.embeddings.demo]
kind = "zarr"
path = "{demo_city.embeddings_zarr}"

[cities.synthetica.labels.demo]
kind = "raster"
path = "{demo_city.labels}"
"""
    )
    result = processing.run(
        "lcz:samplepatches", {"CITIES": str(catalogue), "OUTPUT": str(tmp_path / "d")}
    )
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["cities"] == ["synthetica"] and result["COUNT"] > 50
