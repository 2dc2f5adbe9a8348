"""``predlearn compare RUN_DIR...``: per-step curves of finished runs side by side.

Each RUN_DIR is resolved to one or more runs (``predlearn.compare_runs``): a run folder
(predlearn's ``runs/<model>-<data>-<time>/``, whatever its logger, or a CSV logger's
``version_N/``), any folder with a ``<stage>_curves.csv``, or a folder holding runs at any depth.
A run's curves come from its ``<stage>_curves.csv``. ``--wandb PROJECT`` also fetches the runs
of a W&B project through the W&B API. The command writes into ``--out``:

- ``compare_<metric>.png``: the metric against the predicted step, one line per run (the paper's
  Figures 3 and 5); with ``--paper`` the paper's Table 1 mean of each model it lists is drawn as a
  dashed horizontal line ("paper") on the MSE and cross-entropy plots;
- ``table.md`` and ``table.csv``: one row per run, the mean of each metric over the predicted
  steps and its value at the last step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from predlearn.compare_runs import Run, load_runs
from predlearn.errors import OutputError
from predlearn.paper import TABLE1
from predlearn.tables import cell, write_csv, write_markdown

STAGES = ("test", "val")
#: Table 1 column of each metric that the paper reports (MNIST-2).
PAPER_COLUMNS = {"mse_per_frame": "mnist2_mse", "bce_per_frame": "mnist2_ce"}


def metric_keys(runs: Sequence[Run]) -> list[str]:
    """Every metric of any run, in the order first seen."""
    return list(dict.fromkeys(key for run in runs for key in run.curves))


def plot_metric(runs: Sequence[Run], key: str, out: Path, stage: str = "test",
                paper: bool = False) -> Path:
    """``compare_<key>.png``: the metric at each predicted step, one line per run."""
    from predlearn.metrics import curve_label
    from predlearn.visualize import new_figure, plot_per_step, save_figure

    fig, ax = new_figure(figsize=(6, 4))
    with_curve = [run for run in runs if run.curves.get(key)]
    drawn = plot_per_step(ax, {run.label: run.curves[key] for run in with_curve}, key,
                          title=f"{curve_label(key)}, {stage} set")
    for run in with_curve:
        reference = TABLE1.get(run.model)
        if paper and reference is not None and key in PAPER_COLUMNS:
            ax.axhline(getattr(reference, PAPER_COLUMNS[key]), color=drawn[run.label].get_color(),
                       linestyle="--", linewidth=1, label=f"{run.model}: paper")
    ax.legend(fontsize=8)
    return save_figure(fig, out / f"compare_{key}.png")


def write_tables(runs: Sequence[Run], out: Path) -> tuple[Path, Path]:
    """``table.csv`` and ``table.md``: per run, each metric's mean over the steps and last value."""
    keys = metric_keys(runs)
    horizon = runs[0].horizon
    header = ["label", "model",
              *(f"{k}_{s}" for k in keys for s in ("mean", f"step_{horizon:02d}"))]
    table_csv = write_csv(out / "table.csv", header, [
        [run.label, run.model, *(v for k in keys for v in (run.mean(k), run.last(k)))]
        for run in runs])
    table_md = write_markdown(
        out / "table.md", f"Mean over the {horizon} predicted steps \\| value at the last step.",
        ["Run", "Model", *(f"{k} mean \\| step {horizon}" for k in keys)],
        [[cell(run.label), cell(run.model),
          *(f"{cell(run.mean(k))} \\| {cell(run.last(k))}" for k in keys)] for run in runs])
    return table_md, table_csv


def compare(paths: Iterable[str | Path], out: str | Path, stage: str = "test",
            labels: Sequence[str] | None = None, paper: bool = False,
            wandb_project: str | None = None, wandb_group: str | None = None,
            api: Any = None) -> list[Path]:
    """Load the runs (folders, and a W&B project's when ``wandb_project`` is given), write the
    plots and tables into ``out``; returns the files written."""
    runs = load_runs(paths, stage, labels, wandb_project, wandb_group, api)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder for the plots and tables")
    out.mkdir(parents=True, exist_ok=True)
    plots = [plot_metric(runs, key, out, stage, paper) for key in metric_keys(runs)]
    return [*plots, *write_tables(runs, out)]


def main(argv: list[str]) -> None:
    """Entry point of ``predlearn compare``."""
    from predlearn.errors import ArgumentParser

    parser = ArgumentParser(
        prog="predlearn compare",
        description="Compare the per-step curves of finished runs (read from their CSV files, "
                    "or from W&B online): one plot per metric and a table of the means over the "
                    "predicted steps.",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR",
                        help="a run folder (predlearn's runs/<run>/, CSV-logger version_N, any "
                             "folder with <stage>_curves.csv) or a folder of runs")
    parser.add_argument("--wandb", default=None, metavar="PROJECT",
                        help="also fetch the runs of this W&B project (entity/project) that "
                             "have curves, through the W&B API (online, logged in)")
    parser.add_argument("--wandb-group", default=None, metavar="GROUP",
                        help="with --wandb: only the runs of this group (predlearn groups runs "
                             "by data set: mmnist, kth, radar)")
    parser.add_argument("--stage", choices=STAGES, default="test",
                        help="which curves to compare (default: test)")
    parser.add_argument("--out", default=None,
                        help="folder for the plots and tables (default: runs/compare-<time>)")
    parser.add_argument("--labels", default=None,
                        help="comma-separated labels, one per run, in the order found")
    parser.add_argument("--paper", action="store_true",
                        help="draw the paper's Table 1 means (MSE, CE per frame) as dashed lines")
    args = parser.parse_args(list(argv))
    if not args.runs and not args.wandb:
        parser.error("name at least one RUN_DIR, or a W&B project with --wandb")
    out = Path(args.out or f"runs/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    labels = [label.strip() for label in args.labels.split(",")] if args.labels else None
    written = compare(args.runs, out, args.stage, labels, args.paper,  # refusals: CompareError
                      wandb_project=args.wandb, wandb_group=args.wandb_group)
    for path in written:
        print(f"predlearn compare: wrote {path}")
