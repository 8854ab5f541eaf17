"""The step specs are the one description of every step: the CLI, the API and the texts agree."""

import inspect
import json
import subprocess
import sys

import pytest

import lcz_core
from lcz_core import cli
from lcz_core.errors import LczError
from lcz_core.spec import Param, Step
from lcz_core.steps import PREDICT, SAMPLE_PATCHES, STEPS, TRAIN_PATCH_CLASSIFIER


def _subparser(step):
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[step.name]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_cli_flags_are_the_spec(step):
    actions = {a.dest: a for a in _subparser(step)._actions if a.dest != "help"}
    assert list(actions) == [p.name for p in step.params]
    for param in step.params:
        action = actions[param.name]
        assert action.option_strings == [param.flag]
        assert action.default is None  # "not given": the spec fills the default
        assert action.required == param.required
        if param.kind == "enum":
            assert tuple(action.choices) == param.choices
        if param.default is not None:
            assert f"(default: {param.describe_default()})" in action.help


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_public_function_follows_the_spec(step):
    function = step.function
    assert (
        function.__name__ in lcz_core.__all__ and getattr(lcz_core, function.__name__) is function
    )
    parameters = inspect.signature(function).parameters
    assert list(parameters) == [p.name for p in step.params] + ["progress"]
    for param in step.params:
        expected = inspect.Parameter.empty if param.required else param.default
        assert parameters[param.name].default == expected
    assert step.title in function.__doc__ and step.help in function.__doc__


def test_specs_need_only_the_standard_library():
    # QGIS's own Python reads the specs: without numpy, rasterio or torch they must still import
    blocked = ["numpy", "rasterio", "torch", "timm", "zarr", "geopandas", "matplotlib", "tqdm"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import lcz_core, lcz_core.cli, lcz_core.steps\n"
        "print(len(lcz_core.steps.STEPS))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(STEPS)


def test_program_name_follows_how_it_is_run():
    assert cli.program_name("/x/lcz_core/__main__.py") == "python -m lcz_core"
    assert cli.program_name("/usr/local/bin/lcz") == "lcz"
    assert cli.build_parser("lcz").format_usage().startswith("usage: lcz ")


def test_values_are_checked_before_any_work(tmp_path):
    with pytest.raises(LczError) as error:
        TRAIN_PATCH_CLASSIFIER.resolve({"dataset": str(tmp_path), "output": "x", "epochs": 0})
    assert error.value.parameter == "epochs" and "minimum 1" in error.value.message
    with pytest.raises(LczError, match="not a whole number"):
        TRAIN_PATCH_CLASSIFIER.resolve({"dataset": str(tmp_path), "output": "x", "epochs": "2.5"})
    with pytest.raises(LczError, match="above the maximum"):
        TRAIN_PATCH_CLASSIFIER.resolve({"dataset": str(tmp_path), "output": "x", "epochs": 1e12})
    with pytest.raises(LczError, match="is not true or false"):
        TRAIN_PATCH_CLASSIFIER.resolve({"dataset": str(tmp_path), "output": "x", "augment": "no"})
    with pytest.raises(LczError, match="not one of blocks, random"):
        SAMPLE_PATCHES.resolve({"cities": "c.toml", "output": "d", "split_method": "hexagons"})
    with pytest.raises(LczError, match="has no area"):
        PREDICT.resolve({"model": "m", "embeddings": "e", "output": "o", "extent": "1,1,1,2"})


def test_training_options_equal_to_the_default_still_override_the_experiment(tmp_path):
    given = {"experiment": str(tmp_path / "run" / "experiment.toml")}
    resolved = TRAIN_PATCH_CLASSIFIER.resolve({**given, "epochs": 30})
    assert resolved["epochs"] == 30  # the default, given: it overrides the file
    assert TRAIN_PATCH_CLASSIFIER.resolve(given)["epochs"] is None  # not given: the file decides
    assert TRAIN_PATCH_CLASSIFIER.resolve({"dataset": "d", "output": "o"})["epochs"] == 30


def test_one_of_the_required_alternatives_must_be_given():
    with pytest.raises(LczError, match="give Embeddings and LCZ labels, or City catalogue"):
        SAMPLE_PATCHES.resolve({"embeddings": "e.tif", "output": "d"})


def test_predict_help_states_the_stride_the_core_uses():
    from lcz_core.predict import LCZ_SCALE_M

    assert f"about {LCZ_SCALE_M:g} m" in PREDICT.param("stride").help


def test_one_name_one_meaning_across_steps():
    kinds = {}
    for step in STEPS:
        for param in step.params:
            if param.name != "output":  # every step's main output, of the step's own kind
                kinds.setdefault(param.name, set()).add((param.kind, param.choices))
    assert {name: k for name, k in kinds.items() if len(k) > 1} == {}


def test_a_spec_refuses_a_default_outside_its_choices():
    with pytest.raises(ValueError):
        Param("x", "enum", "X", default="c", choices=("a", "b"))
    with pytest.raises(ValueError):
        Step("s", "S", "G", "", (Param("x", "int", "X"), Param("x", "int", "X")))


def test_outputs_may_not_overwrite_inputs_or_each_other(demo_city, tmp_path):
    embeddings = str(demo_city.embeddings_tif)
    with pytest.raises(LczError) as error:
        PREDICT.resolve({"model": "m.safetensors", "embeddings": embeddings, "output": embeddings})
    assert error.value.parameter == "output" and "Embeddings" in error.value.message
    link = tmp_path / "link.tif"
    link.symlink_to(embeddings)
    with pytest.raises(LczError, match="would overwrite Embeddings"):
        PREDICT.resolve({"model": "m", "embeddings": embeddings, "output": str(link)})
    out = str(tmp_path / "lcz.tif")
    with pytest.raises(LczError, match="would write the same file"):
        PREDICT.resolve({"model": "m", "embeddings": embeddings, "output": out, "confidence": out})
    zarr = str(demo_city.embeddings_zarr)
    with pytest.raises(LczError, match="would overwrite Embeddings"):
        PREDICT.resolve({"model": "m", "embeddings": zarr, "output": zarr + "/lcz.tif"})
    with pytest.raises(LczError, match="would overwrite LCZ labels"):
        SAMPLE_PATCHES.resolve(
            {"embeddings": embeddings, "labels": str(demo_city.polygons), "output": "d",
             "grid_output": str(demo_city.polygons)}
        )  # fmt: skip
    with pytest.raises(LczError, match="would overwrite"):
        SAMPLE_PATCHES.resolve(
            {"embeddings": embeddings, "labels": str(demo_city.polygons),
             "output": str(demo_city.folder)}
        )  # fmt: skip


def test_cli_reports_an_output_clash_before_any_work(demo_city, capsys):
    embeddings = str(demo_city.embeddings_tif)
    before = demo_city.embeddings_tif.read_bytes()
    code = cli.main(["predict", "--model", "m.safetensors", "--embeddings", embeddings,
                     "--output", embeddings])  # fmt: skip
    assert code == 1
    assert "error: --output: " in capsys.readouterr().err
    assert demo_city.embeddings_tif.read_bytes() == before


def test_worker_errors_carry_the_parameter(demo_city, capsys):
    code = cli.main(["--jsonl", "predict", "--model", "m.safetensors", "--embeddings",
                     str(demo_city.embeddings_tif), "--output", str(demo_city.embeddings_tif)])  # fmt: skip
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and last["type"] == "error" and last["parameter"] == "output"
    assert not last["message"].startswith("--")
