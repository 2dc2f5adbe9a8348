"""Which runs of ``predlearn compare`` differ: their confidence intervals side by side.

A run tested by ``predlearn test`` has, beside its curves, the bootstrap intervals of its scores
(``<stage>_intervals.csv``, read by ``predlearn.compare_runs``). For each metric and each data
set, two runs whose intervals of the mean over the predicted steps overlap are *not
distinguishable* at that level; two whose intervals do not overlap are, and the metric's
direction says which is better (``predlearn.bootstrap.distinguishable``: a conservative test,
overlapping 95 % intervals can still differ at the 5 % level). ``distinguishability`` returns the
lines said and those written to ``distinguishable.md``.

Like the rest of ``compare``, nothing here imports torch until a note is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from predlearn.compare_runs import Interval, Run
from predlearn.tables import cell

#: the ensemble scores' directions (``EnsembleScores.directions``; spread-skill is best at 1)
ENSEMBLE_DIRECTIONS: dict[str, bool | None] = {"crps": False, "spread_skill": None}


def higher_is_better(key: str) -> bool | None:
    """Whether a higher value of the metric ``key`` is better; None when it cannot be ranked
    (spread-skill, best at 1) or is unknown. From the registered metric that logs the key (its
    ``higher_is_better``, or per key: the categorical scores, all but FAR) and the ensemble
    scores (CRPS and Brier scores: lower is better)."""
    from predlearn.categorical_scores import CATEGORICAL_SCORES
    from predlearn.masked import split_channel_key
    from predlearn.registry import METRICS

    base, _ = split_channel_key(key)
    if base in ENSEMBLE_DIRECTIONS:
        return ENSEMBLE_DIRECTIONS[base]
    if base.startswith("brier_"):
        return False
    for name in METRICS.names():
        metric = METRICS.get(name)
        describe = getattr(metric, "describe_key", None)
        if describe is None or describe(base) is None:
            continue
        higher = getattr(metric, "higher_is_better", None)
        if isinstance(higher, bool):
            return higher
        score = base.partition("_")[0]
        if score in CATEGORICAL_SCORES:
            return CATEGORICAL_SCORES[score]
    return None


def level_words(level: float) -> str:
    """``0.95`` -> ``95 %``."""
    return f"{level * 100:g} %"


def interval_text(interval: Interval) -> str:
    """``27.4 [25.1, 29.8]``: the value and its bounds (``cell``'s 4 significant digits)."""
    return f"{cell(interval.value)} [{cell(interval.low)}, {cell(interval.high)}]"


def names(labels: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def overlapping_groups(intervals: Sequence[Interval]) -> list[list[int]]:
    """The largest groups (indices, each of two or more) whose intervals all overlap one
    another. Intervals on a line that overlap pairwise share a point, so each group is the set
    of intervals that hold one of the upper bounds; groups inside another are left out."""
    groups: list[list[int]] = []
    for point in sorted({interval.high for interval in intervals}):
        group = [i for i, found in enumerate(intervals) if found.low <= point <= found.high]
        if len(group) > 1 and not any(set(group) <= set(other) for other in groups):
            groups = [other for other in groups if not set(other) <= set(group)] + [group]
    return groups


@dataclass
class Note:
    """What ``compare`` says of the intervals: ``said`` (printed, one line per metric and data
    set with runs that are not distinguishable, and one for runs without intervals) and
    ``written`` (``distinguishable.md``: those and the distinguishable pairs)."""

    said: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    #: whether any run had intervals (else there is nothing to write)
    any_intervals: bool = False


def _metric_note(runs: Sequence[Run], key: str, heading: str, note: Note) -> None:
    """The lines of one metric on the runs of one data set (two or more runs)."""
    from torch import tensor

    from predlearn.bootstrap import distinguishable

    with_interval = [(run, run.interval(key)) for run in runs]
    undefined = [run.label for run, found in with_interval
                 if found is None and key in run.intervals]
    scored = [(run, found) for run, found in with_interval if found is not None]
    if len(scored) < 2 and not undefined:
        return
    higher = higher_is_better(key)
    if higher is None:
        direction = "best at 1, not ranked" if key.startswith("spread_skill") else "not ranked"
    else:
        direction = "higher is better" if higher else "lower is better"
    note.written += ["", f"## {heading} ({direction})", ""]
    levels = dict.fromkeys(intervals.level for intervals in (r.intervals[key] for r, _ in scored))
    for level in levels:
        same = [(run, found) for run, found in scored if run.intervals[key].level == level]
        words = level_words(level)
        groups = overlapping_groups([found for _, found in same])
        if groups:
            line = f"{heading}: " + "; ".join(
                f"{names([same[i][0].label for i in group])} are not distinguishable at {words} "
                f"(intervals overlap: {', '.join(interval_text(same[i][1]) for i in group)})"
                for group in groups)
            note.said.append(line)
            note.written.append(f"- {line}")
        for i, (run_a, a) in enumerate(same):
            for run_b, b in same[i + 1:]:
                if not bool(distinguishable(tensor(a.low), tensor(a.high),
                                            tensor(b.low), tensor(b.high))):
                    continue
                if higher is None:
                    note.written.append(
                        f"- {heading}: {run_a.label} and {run_b.label} are distinguishable at "
                        f"{words} ({interval_text(a)} vs {interval_text(b)}; {direction})")
                    continue
                (best, first), (worst, second) = (
                    ((run_a, a), (run_b, b)) if (a.value > b.value) == higher
                    else ((run_b, b), (run_a, a)))
                note.written.append(
                    f"- {heading}: {best.label} is better than {worst.label} at {words} "
                    f"({interval_text(first)} vs {interval_text(second)}; {direction})")
    if len(levels) > 1:
        note.written.append(f"- {heading}: intervals at different levels "
                            f"({', '.join(map(level_words, levels))}): only runs at one level "
                            "are compared")
    if undefined:
        note.written.append(f"- {heading}: no interval (a bound undefined, NaN) for "
                            f"{names(undefined)}")


def distinguishability(runs: Sequence[Run], keys: Sequence[str], stage: str = "test") -> Note:
    """For each metric ``keys`` and each data set with two or more runs, which runs are not
    distinguishable by their intervals and which are (and which is better); runs without
    ``<stage>_intervals.csv`` are left out and named in one line."""
    note = Note(any_intervals=any(run.intervals_file for run in runs))
    without = [run.label for run in runs if not run.intervals_file]
    several = len({run.data for run in runs}) > 1
    note.written += [f"# Which runs differ ({stage} set)", "", (
        "Two runs are distinguishable at a level when the intervals of their means over the "
        "predicted steps do not overlap (a conservative test: overlapping intervals can still "
        "differ); only runs on one data set are compared.")]
    for key in keys:
        for data in dict.fromkeys(run.data for run in runs):
            group = [run for run in runs if run.data == data]
            if len(group) > 1:
                heading = f"{key}, {data or 'data unknown'}" if several else key
                _metric_note(group, key, heading, note)
    if without:
        plural = len(without) > 1
        line = (f"{'runs' if plural else 'run'} {names(without)} {'have' if plural else 'has'} "
                f"no {stage}_intervals.csv: rerun predlearn test to get intervals")
        note.said.append(line)
        note.written += ["", line]
    return note


def write_note(note: Note, out: Path) -> Path:
    """``distinguishable.md`` in ``out``."""
    path = out / "distinguishable.md"
    path.write_text("\n".join(note.written) + "\n")
    return path


def finite(values: Sequence[float]) -> bool:
    """Whether any of ``values`` is a number (not NaN)."""
    return any(math.isfinite(value) for value in values)
