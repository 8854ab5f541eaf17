"""The QGIS algorithms are the step specs: same parameters, choices and defaults; dialog values
become the worker arguments the CLI expects, checked before the worker starts."""

import pytest

from lcz_core.steps import STEPS

QGIS_STEPS = [s for s in STEPS if s.qgis]


def _algorithm(step):
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().algorithmById("lcz:" + step.algorithm_id)


@pytest.mark.parametrize("step", QGIS_STEPS, ids=lambda s: s.name)
def test_dialog_parameters_are_the_spec(lcz_provider, step):
    from lcz_qgis.algorithms.parameters import FOLDER_SUFFIX, MORE_PREFIX, is_part

    algorithm = _algorithm(step)
    definitions = {d.name(): d for d in algorithm.parameterDefinitions()}
    expected = []
    for param in step.params:
        if is_part(param, step):
            continue
        expected.append(param.qgis_name)
        if param.kind == "embeddings":
            expected.append(param.qgis_name + FOLDER_SUFFIX)
        if param.multiple:
            expected.append(MORE_PREFIX + param.qgis_name)
    assert list(definitions) == expected
    for param in step.params:
        if is_part(param, step):
            continue
        definition = definitions[param.qgis_name]
        assert definition.description().startswith(param.label)
        advanced = bool(definition.flags() & definition.FlagAdvanced)
        assert advanced == param.advanced
        if param.kind == "enum":
            assert definition.options() == list(param.choices)
            if not param.inherit_from:
                assert definition.defaultValue() == param.choices.index(param.default)
        elif param.kind in ("int", "float", "string") and not param.inherit_from:
            assert definition.defaultValue() == param.default
    outputs = {o.name() for o in algorithm.outputDefinitions()}
    assert {o.name.upper() for o in step.outputs} <= outputs


def _arguments(algorithm, parameters):
    from qgis.core import QgsProcessingContext

    context = QgsProcessingContext()
    ok, message = algorithm.checkParameterValues(parameters, context)
    assert ok, message
    return algorithm.worker_arguments(parameters, context)


def test_an_option_equal_to_its_default_still_overrides_the_experiment(lcz_provider, tmp_path):
    from lcz_core.steps import TRAIN_PATCH_CLASSIFIER

    algorithm = _algorithm(TRAIN_PATCH_CLASSIFIER)
    experiment = tmp_path / "experiment.toml"
    experiment.write_text('dataset = "d"\noutput = "o"\n')
    given = {"EXPERIMENT": str(experiment), "OUTPUT": str(tmp_path / "run")}
    arguments = _arguments(algorithm, {**given, "EPOCHS": 30, "AUGMENT": 0})
    assert arguments[arguments.index("--epochs") + 1] == "30"
    assert arguments[arguments.index("--augment") + 1] == "true"
    arguments = _arguments(algorithm, given)
    assert "--epochs" not in arguments and "--augment" not in arguments


def test_out_of_range_values_are_refused_in_the_dialog(lcz_provider, demo_city, tmp_path):
    from qgis.core import QgsProcessingContext

    from lcz_core.steps import PREDICT, TRAIN_PATCH_CLASSIFIER

    context = QgsProcessingContext()
    algorithm = _algorithm(TRAIN_PATCH_CLASSIFIER)
    ok, message = algorithm.checkParameterValues(
        {"DATASET": str(tmp_path), "OUTPUT": str(tmp_path / "r"), "EPOCHS": 0}, context
    )
    assert not ok and message.startswith("Maximum epochs") and "outside 1 to 10000" in message
    ok, message = algorithm.checkParameterValues({"OUTPUT": str(tmp_path / "r")}, context)
    assert not ok and "Dataset folder (patches)" in message and "Experiment file" in message
    predict = _algorithm(PREDICT)
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")
    ok, message = predict.checkParameterValues(
        {
            "MODEL": str(model),
            "EMBEDDINGS": str(demo_city.embeddings_tif),
            "EXTENT": "500000,500000,5800000,5800000 [EPSG:32633]",
            "OUTPUT": str(tmp_path / "o.tif"),
        },
        context,
    )
    assert not ok and message.startswith("Extent: ") and "no area" in message


def test_a_layer_of_a_multi_layer_file_reaches_the_worker(lcz_provider, demo_city, tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    from lcz_core.steps import CREATE_GRID

    gpkg = tmp_path / "two_layers.gpkg"
    frame = gpd.GeoDataFrame({"split": ["train"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:32633")
    frame.to_file(gpkg, layer="first")
    frame.assign(split="test").to_file(gpkg, layer="second")
    arguments = _arguments(
        _algorithm(CREATE_GRID),
        {
            "EMBEDDINGS": str(demo_city.embeddings_tif),
            "SPLIT_METHOD": 4,
            "SPLIT_POLYGONS": f"{gpkg}|layername=second",
            "OUTPUT": str(tmp_path / "g.gpkg"),
        },
    )
    assert f"--split-polygons={gpkg}|layername=second" in arguments
    assert arguments[arguments.index("--split-method") + 1] == "polygons"


def test_a_zarr_store_is_chosen_as_a_folder(lcz_provider, demo_city, tmp_path):
    from lcz_core.steps import CREATE_GRID

    arguments = _arguments(
        _algorithm(CREATE_GRID),
        {"EMBEDDINGS_FOLDER": str(demo_city.embeddings_zarr), "OUTPUT": str(tmp_path / "g.gpkg")},
    )
    assert f"--embeddings={demo_city.embeddings_zarr}" in arguments
