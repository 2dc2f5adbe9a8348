"""The name registries, entry-point plugins and the CLI's rewriting of registry names.

Plugins are exercised without installing anything: fake ``importlib.metadata.EntryPoint`` objects
point at module files written into ``tmp_path``, loaded into fresh ``Registry`` objects so that
the global registries are never changed.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
import warnings
from importlib.metadata import EntryPoint

import pytest

import predlearn
import predlearn.registry as registry_module
from predlearn.registry import MODELS, PluginWarning, Registry, UnknownNameError
from predlearn.zoo import ConvLSTM, PredRNN, PredRNNM

GROUP = "predlearn.test_plugins"

# ---------------------------------------------------------------------------------------------
# Built-in entries


def test_builtin_models_are_listed():
    assert {"convlstm", "predrnn_m", "predrnn"} <= set(predlearn.list_models())
    assert predlearn.list_models() == sorted(predlearn.list_models())


def test_list_models_filters_with_a_shell_pattern():
    matched = predlearn.list_models("predrnn*")
    assert {"predrnn", "predrnn_m"} <= set(matched)
    assert "convlstm" not in matched
    assert all(name.startswith("predrnn") for name in matched)
    assert predlearn.list_models("no_such_*") == []


def test_builtin_cells_and_datamodules_are_listed():
    assert {"conv_lstm", "spatiotemporal_memory", "st_lstm"} <= set(predlearn.list_cells())
    assert "mmnist" in predlearn.list_datamodules()


def test_builtin_plugins_all_loaded():
    assert predlearn.failed_plugins() == {}


def test_builtins_are_declared_entry_points_that_resolve_to_their_names():
    from importlib.metadata import entry_points

    from predlearn.predictor import Predictor

    for registry in (MODELS, registry_module.CELLS, registry_module.DATAMODULES):
        own = [ep for ep in entry_points(group=registry.group) if ep.dist.name == "predlearn"]
        assert own, registry.group
        for ep in own:
            obj = registry.get(ep.name)
            assert f"{obj.__module__}:{obj.__qualname__}" == ep.value
            assert registry.name_of(obj) == ep.name
            assert registry.path_of(ep.name) == ep.value.replace(":", ".")
    # every predictor class predlearn.zoo exports is registered (a forgotten entry point fails)
    zoo = importlib.import_module("predlearn.zoo")
    predictors = [getattr(zoo, name) for name in zoo.__all__
                  if isinstance(getattr(zoo, name), type) and issubclass(getattr(zoo, name),
                                                                          Predictor)]
    assert {MODELS.name_of(cls) for cls in predictors} == set(predlearn.list_models())


@pytest.mark.parametrize(("name", "cls"), [("convlstm", ConvLSTM), ("predrnn_m", PredRNNM),
                                           ("predrnn", PredRNN)])
def test_create_model_builds_the_registered_class(name, cls):
    model = predlearn.create_model(name, frame_size=(4, 4), hidden_channels=[2], kernel_size=3)
    assert type(model) is cls
    assert model.hidden_channels == [2]
    assert MODELS.name_of(cls) == name


def test_create_cell_builds_the_registered_class():
    cell = predlearn.create_cell("st_lstm", input_channels=1, hidden_channels=2, kernel_size=3,
                                 spatial_size=(4, 4))
    assert type(cell).__name__ == "SpatiotemporalLSTMCell"
    assert cell.hidden_channels == 2


def test_unknown_model_lists_every_known_name():
    with pytest.raises(UnknownNameError) as caught:
        predlearn.create_model("nope")
    assert isinstance(caught.value, KeyError)
    message = str(caught.value)
    assert message.startswith("unknown model 'nope'")  # not quoted like a plain KeyError
    for name in predlearn.list_models():
        assert name in message


def test_lookup_is_case_insensitive():
    assert MODELS.get("PredRNN") is PredRNN
    assert "PREDRNN" in MODELS


# ---------------------------------------------------------------------------------------------
# Name rules


@pytest.mark.parametrize("name", ["PredRNN", "pred rnn", "1model", "", "model-x", "_model"])
def test_invalid_names_are_rejected(name):
    registry = Registry("model", GROUP)
    with pytest.raises(ValueError, match="must be lowercase letters, digits and underscores"):
        registry.add(name, object())
    assert name not in registry._entries


def test_register_decorator_rejects_uppercase_and_spaces_in_the_global_registry():
    class Dummy:
        pass

    for name in ("Dummy", "my model"):
        with pytest.raises(ValueError, match=f"model name '{name}' must be lowercase"):
            predlearn.register_model(name)(Dummy)
    assert "dummy" not in predlearn.list_models()


def test_register_decorator_defaults_to_the_lowercased_class_name():
    registry = Registry("model", GROUP)
    registry._plugins_loaded = True  # no discovery for this isolated registry

    @registry.register()
    class MyFancyModel:
        pass

    assert registry.names() == ["myfancymodel"]
    assert registry.get("myfancymodel") is MyFancyModel


def test_a_name_clash_raises_naming_both_objects():
    class Impostor:
        pass

    with pytest.raises(ValueError) as caught:
        predlearn.register_model("predrnn")(Impostor)
    message = str(caught.value)
    assert "'predrnn' is already registered by predlearn.zoo.predrnn.PredRNN" in message
    assert f"{__name__}.{Impostor.__qualname__}" in message
    assert MODELS.get("predrnn") is PredRNN


def test_registering_the_same_object_again_is_allowed():
    assert predlearn.register_model("predrnn")(PredRNN) is PredRNN
    assert MODELS.get("predrnn") is PredRNN
    assert predlearn.list_models().count("predrnn") == 1


# ---------------------------------------------------------------------------------------------
# Plugins through entry points


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Write plugin modules (unique names) into tmp_path and put it on sys.path.

    Returns a function ``write(source) -> module name``; the modules are forgotten afterwards.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(source: str) -> str:
        module = f"predlearn_test_plugin_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        written.append(module)
        importlib.invalidate_caches()
        return module

    yield write
    for module in written:
        sys.modules.pop(module, None)


GOOD = """
    class GoodModel:
        pass
"""
BROKEN = """
    raise ImportError("needs the missing package frobnicate")
"""
# Registers, at import, a name that the global registry already holds for another class.
CLASHING = """
    from predlearn.registry import register_model

    @register_model("predrnn")
    class NotPredRNN:
        pass
"""
# A module-valued entry point whose import registers through a decorator.
SELF_REGISTERING = """
    from predlearn.registry import register_cell

    @register_cell("{name}")
    class SelfRegisteredCell:
        pass
"""


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


def test_good_plugin_is_registered_under_its_entry_point_name(plugins):
    module = plugins(GOOD)
    registry = Registry("model", GROUP)
    assert registry.load_entry_point(entry_point("good_model", f"{module}:GoodModel"))
    loaded = registry._entries["good_model"]
    assert loaded is sys.modules[module].GoodModel
    assert registry.failed == {}


def test_broken_plugin_is_reported_and_the_next_one_still_loads(plugins):
    broken, good = plugins(BROKEN), plugins(GOOD)
    registry = Registry("model", GROUP)
    with pytest.warns(PluginWarning) as record:
        ok_broken = registry.load_entry_point(entry_point("broken_model", f"{broken}:Model"))
    ok_good = registry.load_entry_point(entry_point("good_model", f"{good}:GoodModel"))
    assert (ok_broken, ok_good) == (False, True)
    assert len(record) == 1
    message = str(record[0].message)
    assert "'broken_model'" in message and broken in message and GROUP in message
    assert "needs the missing package frobnicate" in message
    assert registry.failed == {
        "broken_model": "ImportError: needs the missing package frobnicate"}
    assert "good_model" in registry._entries and "broken_model" not in registry._entries


def test_clashing_plugin_is_reported_not_raised(plugins):
    module = plugins(CLASHING)
    registry = Registry("model", GROUP)
    with pytest.warns(PluginWarning, match="'clash'.*already registered by "
                      "predlearn.zoo.predrnn.PredRNN"):
        assert not registry.load_entry_point(entry_point("clash", module))
    assert registry.failed["clash"].startswith("ValueError: model name 'predrnn'")
    assert MODELS.get("predrnn") is PredRNN  # the built-in entry is untouched


def test_plugin_with_an_invalid_entry_point_name_is_reported(plugins):
    module = plugins(GOOD)
    registry = Registry("model", GROUP)
    with pytest.warns(PluginWarning, match="must be lowercase"):
        assert not registry.load_entry_point(entry_point("bad name", f"{module}:GoodModel"))
    assert "bad name" in registry.failed


def test_plugin_naming_a_missing_attribute_is_reported(plugins):
    module = plugins(GOOD)
    registry = Registry("model", GROUP)
    with pytest.warns(PluginWarning, match="AttributeError"):
        assert not registry.load_entry_point(entry_point("ghost", f"{module}:Ghost"))
    assert registry.failed["ghost"].startswith("AttributeError")


def test_module_entry_point_registers_through_its_decorators(plugins, monkeypatch):
    """An entry point may name a module: its import registers; the module is not added."""
    cells = Registry("cell", GROUP)
    monkeypatch.setattr(registry_module, "CELLS", cells)  # register_cell writes here
    name = f"cell_{uuid.uuid4().hex[:8]}"
    module = plugins(SELF_REGISTERING.format(name=name))
    assert cells.load_entry_point(entry_point("my_cells", module))
    assert cells._entries == {name: sys.modules[module].SelfRegisteredCell}


def test_entry_point_name_clashing_with_a_registered_entry_is_reported(plugins):
    """docs/models.md / registry docstring: a plugin clashing with a registered name is reported."""
    module = plugins(GOOD)
    registry = Registry("model", GROUP)

    class Existing:
        pass

    registry.add("taken", Existing)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loaded = registry.load_entry_point(entry_point("taken", f"{module}:GoodModel"))
    assert registry.get("taken") is Existing
    assert not loaded
    assert "taken" in registry.failed
    assert any(issubclass(w.category, PluginWarning) for w in record)


def test_discovery_loads_entry_points_of_the_registry_group(plugins, monkeypatch):
    broken, good = plugins(BROKEN), plugins(GOOD)
    points = [entry_point("broken_model", f"{broken}:Model"),
              entry_point("good_model", f"{good}:GoodModel")]
    asked = []

    def fake_entry_points(*, group):
        asked.append(group)
        return [p for p in points if p.group == group]

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    registry = Registry("model", GROUP)
    assert registry._plugins_loaded is False
    with pytest.warns(PluginWarning, match="broken_model"):
        names = registry.names()
    assert asked == [GROUP]
    assert names == ["good_model"]
    assert registry.failed == {
        "broken_model": "ImportError: needs the missing package frobnicate"}
    # discovery runs once
    registry.names()
    assert asked == [GROUP]
    # the unknown-name error points at the plugin that failed
    with pytest.raises(UnknownNameError, match="known models: good_model; plugins that failed "
                       "to load: broken_model"):
        registry.get("broken_model")


def test_discovery_of_an_empty_group(monkeypatch):
    monkeypatch.setattr(registry_module, "entry_points", lambda *, group: [])
    registry = Registry("model", GROUP)
    assert registry.names() == []
    with pytest.raises(UnknownNameError, match=r"unknown model 'x'; known models: \(none\)$"):
        registry.get("x")


def test_failed_plugins_collects_every_registry(monkeypatch):
    for name, registry in (("MODELS", Registry("model", "a")), ("CELLS", Registry("cell", "b")),
                           ("DATAMODULES", Registry("datamodule", "c"))):
        registry._plugins_loaded = True
        registry.failed[f"{name.lower()}_plugin"] = "ImportError: x"
        monkeypatch.setattr(registry_module, name, registry)
    assert predlearn.failed_plugins() == {"models_plugin": "ImportError: x",
                                          "cells_plugin": "ImportError: x",
                                          "datamodules_plugin": "ImportError: x"}


# ---------------------------------------------------------------------------------------------
# The CLI's name rewriting


@pytest.fixture(scope="module")
def cli():
    return importlib.import_module("predlearn.lightning_cli")


def test_cli_rewrites_registry_names_to_class_paths(cli):
    mmnist = registry_module.DATAMODULES.get("mmnist")
    data_path = f"{mmnist.__module__}.{mmnist.__qualname__}"
    assert cli.resolve_registry_names(["fit", "--model=predrnn", "--data", "mmnist"]) == [
        "fit", "--model.predictor=predlearn.zoo.predrnn.PredRNN", f"--data={data_path}"]
    assert cli.resolve_registry_names(["test", "--model", "convlstm", "--data=mmnist"]) == [
        "test", "--model.predictor=predlearn.zoo.predrnn.ConvLSTM", f"--data={data_path}"]
    # names with underscores are names too
    assert cli.resolve_registry_names(["fit", "--model", "predrnn_m"]) == [
        "fit", "--model.predictor=predlearn.zoo.predrnn.PredRNNM"]


def test_cli_passes_class_paths_and_other_arguments_through(cli):
    argv = ["fit", "--model", "predlearn.zoo.predrnn.PredRNNM", "--trainer.max_steps=5",
            "--data=my.module.MyData", "--model.lr", "0.001", "--config", "configs/x.yaml"]
    assert cli.resolve_registry_names(argv) == [
        "fit", "--model.predictor=predlearn.zoo.predrnn.PredRNNM", "--trainer.max_steps=5",
        "--data=my.module.MyData", "--model.lr", "0.001", "--config", "configs/x.yaml"]


def test_cli_model_cell_is_short_for_the_stacks_cell(cli):
    assert cli.resolve_registry_names(["fit", "--model=stack", "--model.cell=st_lstm"]) == [
        "fit", "--model.predictor=predlearn.zoo.recurrent_stack.RecurrentStack",
        "--model.predictor.cell=st_lstm"]
    assert cli.resolve_registry_names(["fit", "--model.cell", "conv_lstm"])[1:] == [
        "--model.predictor.cell", "conv_lstm"]


def test_cli_model_config_file_goes_to_the_whole_module(cli):
    assert cli.resolve_registry_names(["fit", "--model=module.yaml"]) == ["fit",
                                                                          "--model=module.yaml"]


@pytest.mark.parametrize("argv", [["fit", "--model=nope"], ["fit", "--data", "nope"]])
def test_cli_unknown_name_lists_known_names(cli, argv):
    registry = MODELS if argv[1].startswith("--model") else registry_module.DATAMODULES
    with pytest.raises(UnknownNameError) as caught:
        cli.resolve_registry_names(argv)
    message = str(caught.value)
    assert "'nope'" in message
    for name in registry.names():
        assert name in message


def test_cli_unknown_name_exits_with_the_message(capsys):
    from predlearn.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["fit", "--model=nope"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("predlearn: error: unknown model 'nope'") and "predrnn" in err
    assert "Traceback" not in err
