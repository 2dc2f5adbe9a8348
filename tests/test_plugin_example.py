"""The example plugin (examples/predlearn-plugin-example) found through its entry points.

Installing it with pip would need network access for build isolation, so the tests build what an
install leaves behind: the source folder on ``sys.path`` and a ``*.dist-info`` folder holding the
package's ``entry_points.txt``, which ``importlib.metadata`` discovers on ``sys.path``. The global
registries get fresh discovery state for each test and are restored afterwards, as are
``sys.path`` and ``sys.modules``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from mnist_fixtures import write_fake_mnist
from support import load_module_from, tiny_run

import predlearn
from predlearn.cli import run_cli
from predlearn.registry import CELLS, DATAMODULES, MODELS, PluginWarning

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "predlearn-plugin-example"
PACKAGE = "predlearn_plugin_example"
BROKEN_MODULE = "predlearn_broken_plugin_demo"


def example_entry_points() -> str:
    """The example's entry points, read from its pyproject.toml (as pip would write them)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli
        import tomli as tomllib
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in entries.items())
    return "\n".join(lines) + "\n"


def write_dist_info(site: Path, name: str, version: str, entry_points: str) -> None:
    dist_info = site / f"{re.sub(r'[-.]+', '_', name)}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist_info / "entry_points.txt").write_text(entry_points)


def _is_plugin_module(name: str) -> bool:
    return name.split(".")[0] in (PACKAGE, BROKEN_MODULE)


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(broken=False)``: make the example (and optionally a broken plugin) installed."""
    for registry in (MODELS, CELLS, DATAMODULES):
        registry.names()  # built-ins registered before the snapshot (their imports are cached)
    saved_modules = {k: v for k, v in sys.modules.items() if _is_plugin_module(k)}
    for name in saved_modules:  # so that importing the plugin runs its decorators again
        del sys.modules[name]

    def install_plugins(broken: bool = False) -> None:
        site = tmp_path / "site-packages"
        write_dist_info(site, "predlearn-plugin-example", "0.1.0", example_entry_points())
        if broken:
            (site / f"{BROKEN_MODULE}.py").write_text(
                'raise ImportError("this plugin is broken on purpose")\n')
            write_dist_info(site, "predlearn-broken-plugin-demo", "0.0.1",
                            f"[predlearn.models]\nbroken_demo = {BROKEN_MODULE}\n")
        monkeypatch.syspath_prepend(str(EXAMPLE))
        monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches
        for registry in (MODELS, CELLS):
            plugin_free = {name: obj for name, obj in registry._entries.items()
                           if not _is_plugin_module(getattr(obj, "__module__", ""))}
            monkeypatch.setattr(registry, "_entries", plugin_free)
            monkeypatch.setattr(registry, "failed", {})
            monkeypatch.setattr(registry, "_plugins_loaded", False)

    yield install_plugins
    for name in [k for k in sys.modules if _is_plugin_module(k)]:
        del sys.modules[name]
    sys.modules.update(saved_modules)


def test_the_plugins_names_are_listed_and_built_ins_stay(install, capsys):
    install()
    assert "convgru" not in MODELS._entries and "conv_gru" not in CELLS._entries
    assert "convgru" in predlearn.list_models()
    assert "conv_gru" in predlearn.list_cells()
    assert {"predrnn", "convlstm"} <= set(predlearn.list_models())
    model_class, cell_class = MODELS.get("convgru"), CELLS.get("conv_gru")
    assert model_class.__module__ == f"{PACKAGE}.models"
    assert cell_class.__module__ == f"{PACKAGE}.cells" and cell_class.__name__ == "ConvGRUCell"
    assert not set(predlearn.failed_plugins()) & {"convgru", "conv_gru"}

    run_cli(["list"])
    out = capsys.readouterr().out
    assert f"{PACKAGE}.models.ConvGRU" in out and f"{PACKAGE}.cells.ConvGRUCell" in out


@pytest.mark.slow
def test_the_plugin_model_trains_from_the_cli(install, tmp_path):
    install()
    mnist_root = write_fake_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=2",
                                    "--trainer.limit_val_batches=0", "--figures.enabled=false",
                                    "--checkpoint.monitor=null",  # no validation in this run
                                    model="convgru")])
    assert cli.trainer.global_step == 2
    predictor = cli.model.predictor
    assert type(predictor).__name__ == "ConvGRU" and type(predictor).__module__.startswith(PACKAGE)
    assert all(type(cell).__name__ == "ConvGRUCell" for cell in predictor.cells)
    assert all(torch.isfinite(p).all() for p in predictor.parameters())


def test_a_broken_plugin_is_reported_by_name_and_the_others_still_load(install):
    install(broken=True)
    with pytest.warns(PluginWarning, match="broken_demo.*broken on purpose"):
        names = predlearn.list_models()
    assert "convgru" in names and {"predrnn", "convlstm"} <= set(names)
    assert "broken_demo" not in names
    failed = predlearn.failed_plugins()
    assert failed["broken_demo"] == "ImportError: this plugin is broken on purpose"
    assert "conv_gru" in predlearn.list_cells()
    with pytest.raises(KeyError, match="plugins that failed to load: broken_demo"):
        predlearn.create_model("broken_demo")


def test_the_examples_own_checks_pass_through_the_installed_plugin(install):
    install()
    path = EXAMPLE / "tests" / "test_conv_gru.py"
    module = load_module_from(path, f"{PACKAGE}._example_tests")  # imports the installed plugin
    checks = [getattr(module, name) for name in sorted(vars(module)) if name.startswith("test_")]
    assert len(checks) >= 4
    for check in checks:
        check()


@pytest.mark.slow
def test_the_plugin_model_passes_the_generic_model_tests(install, tmp_path, monkeypatch):
    """The generic tests of tests/test_models.py, run on the installed plugin's model with the
    tiny size it inherits (``RecurrentStack.tiny_config``): a plugin is tested for free."""
    import support
    import test_models

    install()
    tiny = MODELS.get("convgru").tiny_config()
    assert tiny == {"hidden_channels": [4, 4], "kernel_size": 3}
    monkeypatch.setitem(support.TINY_MODELS, "convgru", tiny)
    monkeypatch.setattr(test_models, "TINY_MODELS", support.TINY_MODELS)
    for frame in ((1, 64, 64), (3, 128, 128)):
        test_models.test_shapes_and_gradients("convgru", frame)
    test_models.test_fit_by_registry_name_on_the_command_line("convgru", tmp_path)
