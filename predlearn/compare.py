"""``predlearn compare RUN_DIR...``: per-step curves of finished runs side by side.

Each RUN_DIR is resolved to one or more runs (``predlearn.compare_runs``): a run folder
(predlearn's ``runs/<model>-<data>-<time>/``, whatever its logger, or a CSV logger's
``version_N/``), any folder with a ``<stage>_curves.csv``, or a folder holding runs at any depth.
A run's curves come from its ``<stage>_curves.csv``. ``--wandb PROJECT`` also fetches the runs
of a W&B project through the W&B API. The command writes into ``--out``:

- ``compare_<metric>.png``: the metric against the predicted step, one line per run (the paper's
  Figures 3 and 5); with ``--paper`` the paper's Table 1 mean of each model it lists is drawn as a
  dashed horizontal line ("paper") on the MSE and cross-entropy plots;
- ``table.md`` and ``table.csv``: one row per run, its data set and the mean of each metric over
  the predicted steps and its value at the last step;
- with the runs' confidence intervals (``<stage>_intervals.csv``, written by ``predlearn test``):
  a band around each curve, the interval of each mean in the tables (``27.4 [25.1, 29.8]``;
  CSV columns ``<metric>_low``, ``<metric>_high``, ``sequences``, ``<metric>_events``), and
  ``distinguishable.md``, which runs of one data set the intervals tell apart
  (``predlearn.compare_intervals``); the runs that are not are said, one line per metric.

Runs on different data are never one row: the rows of one data set (``predlearn_run.json``'s
``data_source``: ``mmnist``, ``frames:sst.h5``) stand together, the plots name each line's data
set, and a line says that the runs are on several.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from predlearn.compare_intervals import (
    distinguishability,
    finite,
    level_words,
    write_note,
)
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


def data_sets(runs: Sequence[Run]) -> list[str]:
    """The data sets the runs are on, in the order first seen (unknown ones left out)."""
    return list(dict.fromkeys(run.data for run in runs if run.data))


def by_data_set(runs: Sequence[Run]) -> list[Run]:
    """The runs with those of one data set together, each data set where its first run is:
    a table never reads as if runs on different data were one result."""
    order = {data: index for index, data in enumerate(dict.fromkeys(run.data for run in runs))}
    return sorted(runs, key=lambda run: order[run.data])


def data_note(runs: Sequence[Run]) -> str | None:
    """The line said when the runs are on more than one data set, else None."""
    found = data_sets(runs)
    if len(found) < 2:
        return None
    return (f"predlearn compare: these runs are on {len(found)} data sets ({', '.join(found)}); "
            "each row is one run, grouped by data set (column data)")


def legend_name(run: Run, several_data_sets: bool) -> str:
    """A run's line in the plots: its label, with its data set when the runs are on several."""
    return f"{run.label}, {run.data or '?'}" if several_data_sets else run.label


def plot_metric(runs: Sequence[Run], key: str, out: Path, stage: str = "test",
                paper: bool = False) -> Path:
    """``compare_<key>.png``: the metric at each predicted step, one line per run."""
    from predlearn.metrics import curve_label
    from predlearn.visualize import new_figure, plot_per_step, save_figure

    fig, ax = new_figure(figsize=(6, 4))
    several = len(data_sets(runs)) > 1
    with_curve = [run for run in runs if run.curves.get(key)]
    names = {run.label: legend_name(run, several) for run in with_curve}
    found = {run.label: step_band(run, key) for run in with_curve}
    bands = {label: band for label, band in found.items() if band is not None}
    levels = dict.fromkeys(run.intervals[key].level for run in with_curve if run.label in bands)
    shaded = f", bands: {' / '.join(map(level_words, levels))} interval" if levels else ""
    drawn = plot_per_step(ax, {names[run.label]: run.curves[key] for run in with_curve}, key,
                          title=f"{curve_label(key)}, {stage} set{shaded}")
    for label, (low, high) in bands.items():
        ax.fill_between(range(1, len(low) + 1), low, high, color=drawn[names[label]].get_color(),
                        alpha=0.2, linewidth=0)
    for run in with_curve:
        reference = TABLE1.get(run.model)
        if paper and reference is not None and key in PAPER_COLUMNS:
            ax.axhline(getattr(reference, PAPER_COLUMNS[key]),
                       color=drawn[names[run.label]].get_color(), linestyle="--", linewidth=1,
                       label=f"{run.model}: paper")
    ax.legend(fontsize=8)
    return save_figure(fig, out / f"compare_{key.replace('[', '_').replace(']', '')}.png")


def step_band(run: Run, key: str) -> tuple[list[float], list[float]] | None:
    """A run's per-step interval of ``key`` as (lows, highs) at steps 1..K (NaN where a step
    has none); None when no step has both bounds."""
    found = run.intervals.get(key)
    if found is None:
        return None
    steps = [found.steps.get(step) for step in range(1, run.horizon + 1)]
    low = [math.nan if s is None or not s.defined else s.low for s in steps]
    high = [math.nan if s is None or not s.defined else s.high for s in steps]
    return (low, high) if finite(low) else None


def _mean_cell(run: Run, key: str) -> str:
    """``27.4 [25.1, 29.8] \\| 30.1``: the mean (and its interval), then the last value."""
    interval = run.interval(key)
    mean = cell(run.mean(key))
    if interval is not None:
        mean += f" [{cell(interval.low)}, {cell(interval.high)}]"
    events = run.intervals[key].events if key in run.intervals else None
    return f"{mean} \\| {cell(run.last(key))}" + ("" if events is None else f" ({events} events)")


def write_tables(runs: Sequence[Run], out: Path) -> tuple[Path, Path]:
    """``table.csv`` and ``table.md``: per run (grouped by data set), its data and each metric's
    mean over the steps and last value; with intervals, those of the means, the number of test
    sequences and (event scores) the events observed."""
    keys = metric_keys(runs)
    horizon = runs[0].horizon
    rows = by_data_set(runs)
    bounded = {k for k in keys if any(k in run.intervals for run in runs)}
    counted = {k for k in bounded if any(run.intervals[k].events is not None
                                         for run in runs if k in run.intervals)}
    sequences = any(run.sequences is not None for run in runs)
    header = ["label", "model", "data", *(["sequences"] if sequences else []),
              *(f"{k}_{s}" for k in keys for s in (
                  "mean", *(("low", "high") if k in bounded else ()), f"step_{horizon:02d}",
                  *(("events",) if k in counted else ())))]

    def csv_values(run: Run, key: str) -> list[Any]:
        found = run.intervals.get(key)
        interval = run.interval(key)
        bounds = [None, None] if interval is None else [interval.low, interval.high]
        return [run.mean(key), *(bounds if key in bounded else ()), run.last(key),
                *([found.events if found else None] if key in counted else ())]

    table_csv = write_csv(out / "table.csv", header, [
        [run.label, run.model, run.data or None, *([run.sequences] if sequences else []),
         *(v for k in keys for v in csv_values(run, k))] for run in rows])
    levels = dict.fromkeys(m.level for run in runs for m in run.intervals.values())
    within = (f" [its {' / '.join(map(level_words, levels))} bootstrap interval]"
              if levels else "")
    table_md = write_markdown(
        out / "table.md",
        f"Mean over the {horizon} predicted steps{within} \\| value at the last step.",
        ["Run", "Model", "Data", *(["Sequences"] if sequences else []),
         *(f"{k} mean{' [interval]' if k in bounded else ''} \\| step {horizon}" for k in keys)],
        [[cell(run.label), cell(run.model), cell(run.data or None),
          *([cell(run.sequences)] if sequences else []), *(_mean_cell(run, k) for k in keys)]
         for run in rows])
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
    note = data_note(runs)
    if note:
        print(note, flush=True)
    plots = [plot_metric(runs, key, out, stage, paper) for key in metric_keys(runs)]
    written = [*plots, *write_tables(runs, out)]
    intervals = distinguishability(runs, metric_keys(runs), stage)
    for line in intervals.said:
        print(line, flush=True)
    return [*written, write_note(intervals, out)] if intervals.any_intervals else written


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
