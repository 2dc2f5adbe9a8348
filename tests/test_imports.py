"""Importing predlearn changes no process-wide state of its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def test_importing_predlearn_sets_no_warning_filter_or_plotting_backend():
    # The libraries predlearn builds on are imported first: what they set is theirs. Then every
    # predlearn module: the warning filters and matplotlib's backend must be exactly as they were.
    code = textwrap.dedent("""
        import warnings
        import lightning, matplotlib, numpy, torch, torchmetrics
        filters, backend = list(warnings.filters), matplotlib.rcParams["backend"]
        import predlearn, predlearn.cli, predlearn.compare, predlearn.sweep, predlearn.visualize
        import predlearn.module, predlearn.datamodules, predlearn.zoo
        from predlearn.datamodules import kth, moving_mnist, radar, stream
        assert list(warnings.filters) == filters, [f for f in warnings.filters if f not in filters]
        assert matplotlib.rcParams["backend"] == backend
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_figures_are_drawn_without_pyplot(tmp_path):
    import torch

    from predlearn.visualize import save_curves_figure

    path = save_curves_figure({"mse_per_frame": torch.arange(1.0, 4.0)}, tmp_path / "c.png",
                              title="curves")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # nothing left open in pyplot's registry


def test_every_public_name_resolves_on_first_use():
    import predlearn

    assert sorted(set(predlearn.__all__) - {"__version__"}) == sorted(predlearn._EXPORTS)
    for name in predlearn._EXPORTS:
        assert callable(getattr(predlearn, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        predlearn.nope  # noqa: B018


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["sweep", "--help"],
                                  ["prepare", "--help"], ["list"]])
def test_help_and_list_answer_without_importing_torch_or_lightning(argv):
    code = textwrap.dedent(f"""
        import sys
        from predlearn.cli import main
        try:
            main({argv!r})
        except SystemExit as done:
            assert done.code in (0, None), done.code
        heavy = sorted(m for m in ("torch", "lightning", "matplotlib", "wandb") if m in sys.modules)
        print("heavy:", heavy)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "heavy: []"


def test_top_level_help_lists_every_command(capsys):
    from predlearn.cli import COMMANDS, main

    main(["--help"])
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "sweep", "compare", "prepare", "list"):
        assert f"  {command} " in out and command in COMMANDS
    assert "on the test set: per-step curves, pictures, metrics" in out  # whole sentences
    with pytest.raises(SystemExit) as exit_info:
        main(["fitt"])
    assert exit_info.value.code == 2
    assert "unknown command 'fitt'" in capsys.readouterr().err
