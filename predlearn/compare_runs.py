"""The runs ``predlearn compare`` compares: found in folders by their CSV curves, or fetched from a
W&B project, each with its model, data, label and per-step curves.

A run folder is one with ``<stage>_curves.csv``, which ``PredictionFigures`` writes into every
run folder, whatever the logger, beside ``predlearn_run.json``, which names its model and data.
``predlearn test`` may also leave ``<stage>_intervals.csv`` there, the bootstrap confidence
intervals of the scores (``metric, step, value, low, high, level, sequences, blocks, events``:
``step`` is ``all``, the mean over the predicted steps, or 1..K); ``read_intervals_csv`` reads
it, and a run without one has no intervals.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predlearn.class_paths import class_path, registry_name
from predlearn.errors import DataError
from predlearn.runs import RUN_INFO
from predlearn.wandb_runs import fetch_runs


class CompareError(DataError, ValueError):
    """A RUN_DIR that cannot be compared; the message says which and why, in one line."""


@dataclass(frozen=True)
class Interval:
    """A score and the bounds of its confidence interval (NaN: undefined)."""

    value: float
    low: float
    high: float

    @property
    def defined(self) -> bool:
        """Whether both bounds are numbers (a NaN bound: no interval)."""
        return math.isfinite(self.low) and math.isfinite(self.high)


@dataclass
class MetricIntervals:
    """One metric's rows of ``<stage>_intervals.csv``: the interval of its mean over the
    predicted steps (the ``all`` row) and of each step, with the confidence level, the test
    sequences, the resampled blocks and the observed events (event scores; None otherwise)."""

    level: float
    mean: Interval | None = None
    steps: dict[int, Interval] = field(default_factory=dict)
    sequences: int | None = None
    blocks: int | None = None
    events: int | None = None


@dataclass
class Run:
    """The per-step curves of one run: metric key -> values at predicted steps 1..K."""

    folder: Path
    model: str
    label: str
    curves: dict[str, list[float]] = field(default_factory=dict)
    source: str = ""
    #: the data it ran on (``mmnist``, ``frames:sst.h5``); "" when unknown
    data: str = ""
    #: metric key -> its intervals, from ``<stage>_intervals.csv``; empty without that file
    intervals: dict[str, MetricIntervals] = field(default_factory=dict)
    #: the intervals file read; "" when the run has none
    intervals_file: str = ""

    def interval(self, key: str) -> Interval | None:
        """The interval of the metric's mean over the steps; None without one (no file, no
        row, or a NaN bound)."""
        found = self.intervals.get(key)
        mean = found.mean if found is not None else None
        return mean if mean is not None and mean.defined else None

    @property
    def sequences(self) -> int | None:
        """The number of test sequences the intervals name; None without intervals."""
        return next((m.sequences for m in self.intervals.values() if m.sequences is not None),
                    None)

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


def _no_curves(folder: Path, stage: str) -> CompareError:
    return CompareError(f"no {stage}_curves.csv in {folder}: give a predlearn run folder (or one "
                        "above runs)")


def find_runs(path: str | Path, stage: str = "test") -> list[Path]:
    """The run folders that ``path`` names: itself, or the runs below it, each counted once (the
    walk does not go into a run).

    Raises ``CompareError`` for a missing folder or one without any run of ``stage``.
    """
    folder = Path(path)
    if not folder.exists():
        raise CompareError(f"no such run folder: {folder}")
    if not folder.is_dir():
        raise CompareError(f"not a folder: {folder}")
    found = []
    for parent, children, _ in os.walk(folder):
        if (Path(parent) / f"{stage}_curves.csv").is_file():
            found.append(Path(parent))
            children.clear()
    if not found:
        raise _no_curves(folder, stage)
    return sorted(found)


# --- reading a run ------------------------------------------------------------------------------


def read_curves_csv(path: Path) -> dict[str, list[float]]:
    """``<stage>_curves.csv`` (``step, <metric>...``) -> metric -> values in step order."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise CompareError(f"{path} has no rows")
    rows.sort(key=lambda row: int(row["step"]))
    return {key: [float(row[key]) if row[key] else math.nan for row in rows]
            for key in rows[0] if key != "step"}


def read_curves(folder: Path, stage: str = "test") -> tuple[dict[str, list[float]], Path]:
    """A run's curves of ``stage`` and the file they came from."""
    path = folder / f"{stage}_curves.csv"
    if not path.is_file():
        raise _no_curves(folder, stage)
    return read_curves_csv(path), path


INTERVAL_COLUMNS = ("metric", "step", "value", "low", "high", "level", "sequences", "blocks",
                    "events")


def _number(text: str | None) -> float:
    """A field as a number: NaN when empty (or missing at the end of a row)."""
    return float(text) if text and text.strip() else math.nan


def _count(text: str | None) -> int | None:
    """A field as a count: None when empty or NaN."""
    number = _number(text)
    return int(number) if math.isfinite(number) else None


def read_intervals_csv(path: Path) -> dict[str, MetricIntervals]:
    """``<stage>_intervals.csv`` -> metric key -> its intervals (``nan`` or empty bounds stay
    NaN: no interval). Raises ``CompareError`` for a file without those columns or with a
    field that is not a number."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in INTERVAL_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise CompareError(f"{path} has no column {', '.join(missing)}: not an intervals "
                               f"file ({','.join(INTERVAL_COLUMNS)})")
        rows = list(reader)
    found: dict[str, MetricIntervals] = {}
    for line, row in enumerate(rows, start=2):
        try:
            interval = Interval(_number(row["value"]), _number(row["low"]), _number(row["high"]))
            metric = found.setdefault(row["metric"], MetricIntervals(_number(row["level"])))
            step = (row["step"] or "").strip()
            if step == "all":
                metric.mean = interval
                metric.sequences = _count(row["sequences"])
                metric.blocks = _count(row["blocks"])
                metric.events = _count(row["events"])
            else:
                metric.steps[int(step)] = interval
        except (TypeError, ValueError) as error:
            raise CompareError(f"{path}, line {line}: {error}") from None
    return found


def model_name(predictor: type | str) -> str:
    """The registry name of a predictor class or class path (its lowercased class name if
    unregistered)."""
    from predlearn.registry import MODELS

    path = class_path(predictor) if isinstance(predictor, type) else predictor
    return registry_name(MODELS, predictor) or path.rpartition(".")[2].lower()


def model_of_wandb_run(config: dict[str, Any], tags: Sequence[str]) -> str | None:
    """The model of a W&B run: ``model`` in its config (predlearn sets it), else a tag that
    names a registered model (predlearn tags runs by model)."""
    from predlearn.registry import MODELS

    if isinstance(config.get("model"), str):
        return config["model"]
    return next((tag for tag in tags if tag in MODELS.names()), None)


def data_of_wandb_run(config: dict[str, Any]) -> str:
    """The data of a W&B run: ``data_source`` or ``data`` in its config, "" without either."""
    return str(config.get("data_source") or config.get("data") or "")


def read_run_info(folder: Path) -> dict[str, Any]:
    """A run folder's ``predlearn_run.json`` (written next to the curves by the figures
    callback); empty without one."""
    info = folder / RUN_INFO
    return json.loads(info.read_text()) if info.is_file() else {}


def find_model(folder: Path) -> str:
    """The model of a run folder, from its ``predlearn_run.json``; ``?`` without one."""
    return str(read_run_info(folder).get("model") or "?")


def find_data(folder: Path) -> str:
    """The data of a run folder, from its ``predlearn_run.json``: its ``data_source`` (the
    file of your own data), else the data module's registry name; "" without either."""
    info = read_run_info(folder)
    return str(info.get("data_source") or info.get("data") or "")


def run_name(folder: Path) -> str:
    """A short name of a run folder: ``run/version_0`` for a CSV logger's, else its name."""
    if folder.name.startswith("version_") and folder.parent.name:
        return f"{folder.parent.name}/{folder.name}"
    return folder.name or str(folder)


def load_run(folder: Path, stage: str = "test", label: str | None = None) -> Run:
    """The run in ``folder``: its curves of ``stage``, model, data and label (``<model>
    (<name>)``)."""
    curves, source = read_curves(folder, stage)
    model = find_model(folder)
    intervals = folder / f"{stage}_intervals.csv"
    found = read_intervals_csv(intervals) if intervals.is_file() else {}
    return Run(folder, model, label or f"{model} ({run_name(folder)})", curves, str(source),
               find_data(folder), found, str(intervals) if intervals.is_file() else "")


def load_wandb_runs(project: str, stage: str = "test", group: str | None = None,
                    api: Any = None) -> list[Run]:
    """The runs of a W&B project with curves of ``stage`` (``predlearn.wandb_runs``), fetched
    through the W&B API (``api``: one to use instead of ``wandb.Api()``)."""
    runs = []
    for online in fetch_runs(project, stage, group, api):
        model = model_of_wandb_run(online.config, online.tags) or "?"
        runs.append(Run(Path(online.path), model, f"{model} ({online.name})", online.curves,
                        f"wandb:{online.path}", data_of_wandb_run(online.config)))
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
