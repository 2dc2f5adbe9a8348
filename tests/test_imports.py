"""Importing predlearn changes no process-wide state of its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap


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
