"""``predlearn compare RUN_DIR...``: per-step curves of finished runs side by side, offline.

Each RUN_DIR is resolved to one or more runs:

- a predlearn run folder (``runs/<model>-<data>-<time>/``) or a CSV-logger version folder
  (``<save_dir>/<name>/version_N/``),
- a folder holding several runs, at any depth (a run's own W&B files are not a second run),
- a W&B offline run folder (``offline-run-*``), decoded locally (``predlearn.wandb_runs``),
- any folder with a ``<stage>_curves.csv``.

``--wandb PROJECT`` also fetches the runs of a W&B project through the W&B API.

A run's curves come from ``<stage>_curves.csv`` (written by ``PredictionFigures``), else from
the ``<stage>/<metric>/step_NN`` columns of the CSV logger's ``metrics.csv`` (the last logged
value of each column), else from the ``<stage>_curve/<metric>`` history of its W&B run (what the
W&B charts show). The command writes into ``--out``:

- ``compare_<metric>.png``: the metric against the predicted step, one line per run (the paper's
  Figures 3 and 5); with ``--paper`` the paper's Table 1 mean of each model it lists is drawn as a
  dashed horizontal line ("paper") on the MSE and cross-entropy plots;
- ``table.md`` and ``table.csv``: one row per run, the mean of each metric over the predicted
  steps and its value at the last step.
"""

from __future__ import annotations

import csv
import functools
import importlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from predlearn.errors import DataError, OutputError
from predlearn.paper import TABLE1
from predlearn.runs import RUN_INFO
from predlearn.wandb_runs import (
    OfflineRun,
    curves_from_history,
    fetch_runs,
    read_offline_run,
    run_file,
)

STAGES = ("test", "val")
#: Table 1 column of each metric that the paper reports (MNIST-2).
PAPER_COLUMNS = {"mse_per_frame": "mnist2_mse", "bce_per_frame": "mnist2_ce"}
_STEP_COLUMN = re.compile(r"^(?P<stage>[^/]+)/(?P<metric>[^/]+)/step_(?P<step>\d+)$")
_CONFIG_FILES = ("config.yaml", "hparams.yaml")


class CompareError(DataError, ValueError):
    """A RUN_DIR that cannot be compared; the message says which and why, in one line."""


@dataclass
class Run:
    """The per-step curves of one run: metric key -> values at predicted steps 1..K."""

    folder: Path
    model: str
    label: str
    curves: dict[str, list[float]] = field(default_factory=dict)
    source: str = ""

    @property
    def horizon(self) -> int:
        return len(next(iter(self.curves.values()))) if self.curves else 0

    def mean(self, key: str) -> float | None:
        values = self.curves.get(key)
        return None if not values else sum(values) / len(values)

    def last(self, key: str) -> float | None:
        values = self.curves.get(key)
        return None if not values else values[-1]


# --- finding runs -------------------------------------------------------------------------------


def _has_step_columns(metrics_csv: Path, stage: str) -> bool:
    with metrics_csv.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    return any(_matches_stage(column, stage) for column in header)


def _matches_stage(column: str, stage: str) -> bool:
    match = _STEP_COLUMN.match(column)
    return match is not None and match["stage"] == stage


def _offline_curves(folder: Path, stage: str) -> dict[str, list[float]]:
    """The curves of ``stage`` in a W&B offline run folder (decoded once per folder)."""
    run = _offline_run(str(folder))
    return curves_from_history(run.history, stage) if run is not None else {}


def _offline_run(folder: str) -> OfflineRun | None:
    """The decoded W&B offline run in ``folder`` (None: none), decoded again only when its
    file changed."""
    path = run_file(folder)
    if path is None:
        return None
    stat = path.stat()
    return _decoded(str(path.parent), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _decoded(folder: str, modified: int, size: int) -> OfflineRun:
    return read_offline_run(folder)


def _source(folder: Path, stage: str) -> str | None:
    """Where a folder's curves of ``stage`` are: ``curves`` (``<stage>_curves.csv``),
    ``metrics`` (a CSV logger's ``metrics.csv``), ``wandb`` (a W&B offline run), or None."""
    if (folder / f"{stage}_curves.csv").is_file():
        return "curves"
    metrics = folder / "metrics.csv"
    if metrics.is_file() and _has_step_columns(metrics, stage):
        return "metrics"
    if folder.name != "files" and run_file(folder) is not None \
            and _offline_curves(folder, stage):
        return "wandb"
    return None


def find_runs(path: str | Path, stage: str = "test") -> list[Path]:
    """The run folders that ``path`` names: itself (or its W&B ``files/``), or the runs below
    it, each counted once (the walk does not go into a run: a run folder's own W&B files are
    not a second run).

    Raises ``CompareError`` for a missing folder or one without any run of ``stage``.
    """
    folder = Path(path)
    if not folder.exists():
        raise CompareError(f"no such run folder: {folder}")
    if not folder.is_dir():
        raise CompareError(f"not a folder: {folder}")
    for candidate in (folder, folder / "files"):  # an older W&B offline-run-*/files/
        if candidate.is_dir() and _source(candidate, stage):
            return [candidate]
    found = []
    for parent, children, _ in os.walk(folder):
        here = Path(parent)
        if here != folder and _source(here, stage):
            found.append(here)
            children.clear()
        children.sort()
    if not found:
        raise CompareError(
            f"no {stage}_curves.csv, {stage}/<metric>/step_NN columns in metrics.csv or W&B "
            f"offline run with {stage} curves in {folder}"
        )
    return sorted(found)


# --- reading a run ------------------------------------------------------------------------------


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def read_curves_csv(path: Path) -> dict[str, list[float]]:
    """``<stage>_curves.csv`` (``step, <metric>...``) -> metric -> values in step order."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise CompareError(f"{path} has no rows")
    rows.sort(key=lambda row: int(row["step"]))
    return {key: [_float(row[key]) for row in rows] for key in rows[0] if key != "step"}


def curves_from_metrics_csv(path: Path, stage: str) -> dict[str, list[float]]:
    """The ``<stage>/<metric>/step_NN`` columns of a CSV logger's ``metrics.csv``, each at its
    last logged (non-empty) value, as metric -> values in step order."""
    latest: dict[str, str] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for column, value in row.items():
                if value not in ("", None) and column and _matches_stage(column, stage):
                    latest[column] = value
    steps: dict[str, dict[int, float]] = {}
    for column, value in latest.items():
        match = _STEP_COLUMN.match(column)
        assert match is not None  # only the columns _matches_stage accepted are in ``latest``
        steps.setdefault(match["metric"], {})[int(match["step"])] = float(value)
    if not steps:
        raise CompareError(f"no {stage}/<metric>/step_NN values in {path}")
    curves = {}
    for metric, values in steps.items():
        if sorted(values) != list(range(1, len(values) + 1)):
            raise CompareError(f"{path}: {stage}/{metric} misses some steps ({sorted(values)})")
        curves[metric] = [values[s] for s in range(1, len(values) + 1)]
    return curves


def read_curves(folder: Path, stage: str = "test") -> tuple[dict[str, list[float]], Path]:
    """A run's curves of ``stage`` and the file they came from."""
    source = _source(folder, stage)
    if source == "curves":
        path = folder / f"{stage}_curves.csv"
        return read_curves_csv(path), path
    if source == "metrics":
        path = folder / "metrics.csv"
        return curves_from_metrics_csv(path, stage), path
    if source == "wandb":
        found = run_file(folder)
        assert found is not None  # the source says there is one
        return _offline_curves(folder, stage), found
    raise CompareError(
        f"no {stage}_curves.csv, {stage}/<metric>/step_NN columns in metrics.csv or W&B "
        f"offline run with {stage} curves in {folder}"
    )


def _unwrap(value: Any) -> Any:
    """W&B's config.yaml keeps each entry as ``{value: ..., desc: ...}``."""
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
        return value["value"]
    return value


def _find_predictor(config: Any) -> str | None:
    """The predictor's class path anywhere in a loaded config (LightningCLI, hparams or W&B)."""
    config = _unwrap(config)
    if isinstance(config, dict):
        predictor = _unwrap(config.get("predictor"))
        if isinstance(predictor, dict) and isinstance(predictor.get("class_path"), str):
            return predictor["class_path"]
        if isinstance(predictor, str):
            return predictor
        for value in config.values():
            found = _find_predictor(value)
            if found:
                return found
    return None


def model_name(class_path: str) -> str:
    """The registry name of a predictor class path (its lowercased class name if unregistered)."""
    from predlearn.registry import MODELS

    module_name, _, class_name = class_path.rpartition(".")
    try:
        name = MODELS.name_of(getattr(importlib.import_module(module_name), class_name))
    except (ImportError, AttributeError, ValueError):
        name = None
    if name is None:  # not importable here: match the class path of a registered model
        for registered in MODELS.names():
            obj = MODELS.get(registered)
            if f"{obj.__module__}.{obj.__qualname__}" == class_path:
                return registered
    return name or class_name.lower()


def model_of_wandb_run(config: dict[str, Any], tags: Sequence[str]) -> str | None:
    """The model of a W&B run: ``model`` in its config (set by predlearn), the predictor's
    class path in it, or a tag that names a registered model."""
    from predlearn.registry import MODELS

    if isinstance(config.get("model"), str):
        return config["model"]
    found = _find_predictor(config)
    if found:
        return model_name(found)
    return next((tag for tag in tags if tag in MODELS.names()), None)


def find_model(folder: Path) -> str:
    """The model of a run: from its ``predlearn_run.json``, ``config.yaml``/``hparams.yaml``
    (for a W&B run: its ``files/`` or run folder, its config and tags, or the command line in
    ``wandb-metadata.json``), else ``?``."""
    offline = _offline_run(str(folder)) if folder.name != "files" else None
    if offline is not None:
        found = model_of_wandb_run(offline.config, offline.tags)
        if found:
            return found
    places = [folder, folder.parent] if folder.name == "files" else [folder]
    for place in places:
        info = place / RUN_INFO  # written next to the curves by the figures callback
        if info.is_file():
            model = json.loads(info.read_text()).get("model")
            if model:
                return model
        for name in _CONFIG_FILES:
            path = place / name
            if not path.is_file():
                continue
            try:
                config = yaml.safe_load(path.read_text())
            except yaml.YAMLError:
                continue
            found = _find_predictor(config)
            if found:
                return model_name(found)
        found = _model_from_wandb_metadata(place / "wandb-metadata.json")
        if found:
            return found
    return "?"


def _model_from_wandb_metadata(path: Path) -> str | None:
    """``--model=NAME`` or ``--model.predictor=CLASS_PATH`` from a W&B run's command line."""
    if not path.is_file():
        return None
    try:
        args = json.loads(path.read_text()).get("args") or []
    except (ValueError, AttributeError):
        return None
    for flag in ("--model.predictor", "--model"):
        for i, arg in enumerate(args):
            value = arg[len(flag) + 1:] if arg.startswith(flag + "=") else (
                args[i + 1] if arg == flag and i + 1 < len(args) else None)
            if value and not value.endswith((".yaml", ".yml", ".json")):
                return model_name(value) if "." in value else value
    return None


def run_name(folder: Path) -> str:
    """A short name of a run folder: ``run/version_0``, ``offline-run-...``, or the folder name."""
    if folder.name == "files":
        folder = folder.parent
    if folder.name.startswith("version_") and folder.parent.name:
        return f"{folder.parent.name}/{folder.name}"
    return folder.name or str(folder)


def load_run(folder: Path, stage: str = "test", label: str | None = None) -> Run:
    curves, source = read_curves(folder, stage)
    model = find_model(folder)
    offline = _offline_run(str(folder)) if source.suffix == ".wandb" else None
    name = offline.name if offline is not None and offline.name else run_name(folder)
    return Run(folder, model, label or f"{model} ({name})", curves, str(source))


def load_wandb_runs(project: str, stage: str = "test", group: str | None = None,
                    api: Any = None) -> list[Run]:
    """The runs of a W&B project with curves of ``stage`` (``predlearn.wandb_runs``), fetched
    through the W&B API (``api``: one to use instead of ``wandb.Api()``)."""
    runs = []
    for online in fetch_runs(project, stage, group, api):
        model = model_of_wandb_run(online.config, online.tags) or "?"
        runs.append(Run(Path(online.path), model, f"{model} ({online.name})", online.curves,
                        f"wandb:{online.path}"))
    if not runs:
        raise CompareError(f"no run of the W&B project {project}"
                           + (f" in group {group}" if group else "") + f" has {stage} curves")
    return runs


def load_runs(paths: Iterable[str | Path], stage: str = "test",
              labels: Sequence[str] | None = None, wandb_project: str | None = None,
              wandb_group: str | None = None, api: Any = None) -> list[Run]:
    """Every run that ``paths`` name, then those of ``wandb_project`` (fetched online), all
    with the same number of predicted steps."""
    folders = [run for path in paths for run in find_runs(path, stage)]
    fetched = load_wandb_runs(wandb_project, stage, wandb_group, api) if wandb_project else []
    count = len(folders) + len(fetched)
    if count == 0:
        raise CompareError("nothing to compare: name run folders, or a W&B project (--wandb)")
    if labels is not None and len(labels) != count:
        raise CompareError(f"--labels gives {len(labels)} labels for {count} runs: "
                           + ", ".join([*map(str, folders), *(r.label for r in fetched)]))
    runs = [load_run(f, stage, labels[i] if labels else None) for i, f in enumerate(folders)]
    for index, run in enumerate(fetched, start=len(folders)):
        if labels:
            run.label = labels[index]
        runs.append(run)
    _make_labels_unique(runs)
    first = runs[0]
    for run in runs[1:]:
        if run.horizon != first.horizon:
            raise CompareError(
                f"runs have different numbers of predicted steps: {first.label} has "
                f"{first.horizon}, {run.label} has {run.horizon}"
            )
    return runs


def _make_labels_unique(runs: Sequence[Run]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        count = seen.get(run.label, 0)
        seen[run.label] = count + 1
        if count:
            run.label = f"{run.label} #{count + 1}"


# --- outputs ------------------------------------------------------------------------------------


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
    header = ["label", "model", *(f"{k}_{s}" for k in keys for s in ("mean", f"step_{horizon:02d}"))]
    rows = [[run.label, run.model, *(v for k in keys for v in (run.mean(k), run.last(k)))]
            for run in runs]
    table_csv = out / "table.csv"
    with table_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    md_header = ["Run", "Model", *(f"{k} mean \\| step {horizon}" for k in keys)]
    lines = [
        f"Mean over the {horizon} predicted steps \\| value at the last step.",
        "",
        "| " + " | ".join(md_header) + " |",
        "|" + "---|" * len(md_header),
    ]
    for run in runs:
        cells = [cell(run.label), cell(run.model),
                 *(f"{cell(run.mean(k))} \\| {cell(run.last(k))}" for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    table_md = out / "table.md"
    table_md.write_text("\n".join(lines) + "\n")
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
    from predlearn.argparsing import ArgumentParser

    parser = ArgumentParser(
        prog="predlearn compare",
        description="Compare the per-step curves of finished runs (read locally): one plot per "
                    "metric and a table of the means over the predicted steps.",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR",
                        help="a run folder (predlearn's runs/<run>/, CSV-logger version_N, W&B "
                             "offline-run-*, any folder with <stage>_curves.csv) or a folder of "
                             "runs")
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
