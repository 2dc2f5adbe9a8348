"""Error bars on every test score: 95 % bootstrap intervals over the test sequences (issue 32).

Every score a metric logs is a function of sums over sequences (``SequenceSums``): a metric's
``update`` adds per-sequence contributions to its sum states and, with ``record_sequences``,
also keeps each sequence's contributions as one float64 row (``sequence_statistics``, a list
state that DDP concatenates). ``scores_of(totals)`` maps the sums, flattened (S,), to the curves
``curves()`` logs, by the one formula ``curves()`` uses; ``cases_of(totals)`` gives the observed
event pixels per step of the keys that rest on events.

``score_intervals`` draws the sequences again (``predlearn.bootstrap``: whole blocks of
overlapping windows, ``blocks_from_windows`` of a data module's ``test_windows()``) and gives,
for each logged key, a row for the mean over the steps (``all``, as ``flatten_curves`` logs it)
and one per step; ``write_intervals_csv`` writes them as ``<stage>_intervals.csv``::

    metric,step,value,low,high,level,sequences,blocks,events
    mse_per_frame,all,27.4,25.1,29.8,0.95,21,2,
    csi_20dBZ,all,0.31,0.27,0.35,0.95,21,2,1234
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from predlearn.bootstrap import bootstrap_interval, window_blocks
from predlearn.sequence_sums import SequenceSums

__all__ = ["INTERVAL_COLUMNS", "MIN_BLOCKS", "IntervalRow", "SequenceSums", "blocks_from_windows",
           "read_intervals_csv", "score_intervals", "write_intervals_csv"]

INTERVAL_COLUMNS = ("metric", "step", "value", "low", "high", "level", "sequences", "blocks",
                    "events")


@dataclass(frozen=True)
class IntervalRow:
    """One row of ``<stage>_intervals.csv``: a score (``step`` ``"all"``, the mean over the
    steps, or ``"1"`` .. ``"K"``), the bounds of its ``level`` interval (NaN: undefined), the
    sequences and blocks drawn, and the observed event pixels it rests on (None: not an event
    score)."""

    metric: str
    step: str
    value: float
    low: float
    high: float
    level: float
    sequences: int
    blocks: int
    events: int | None = None


def blocks_from_windows(windows: tuple[Sequence[int], Sequence[int], int] | None
                        ) -> Callable[[Tensor], Tensor] | None:
    """The block of each test item from a data module's ``test_windows()`` (series ids, first
    frames, window length; ``bootstrap.window_blocks`` with the window length as the block
    length): a map of dataset indices (N,) to block ids (N,). None (independent sequences, each
    its own block) for None."""
    if windows is None:
        return None
    series, starts, length = windows
    blocks = window_blocks(list(series), list(starts), int(length))

    def blocks_of(indices: Tensor) -> Tensor:
        return blocks[indices.to("cpu", torch.int64)]

    return blocks_of


def _metric_rows(key: str, curve: Tensor, low: Tensor, high: Tensor, cases: Tensor | None,
                 level: float, sequences: int, blocks: int) -> list[IntervalRow]:
    """The rows of one curve: its mean (``low``/``high`` index 0; ``curve.mean()`` in the
    curve's dtype, as ``flatten_curves`` logs it), then each step."""
    events = None if cases is None else [round(float(v)) for v in cases]
    rows = [IntervalRow(key, "all", float(curve.mean()), float(low[0]), float(high[0]), level,
                        sequences, blocks, None if events is None else sum(events))]
    for step, value in enumerate(curve.tolist(), start=1):
        rows.append(IntervalRow(key, str(step), float(value), float(low[step]),
                                float(high[step]), level, sequences, blocks,
                                None if events is None else events[step - 1]))
    return rows


#: the fewest independent blocks an interval is drawn from: with fewer, a bootstrap resample
#: repeats a handful of blocks and its quantiles bound nothing (the bounds are left NaN)
MIN_BLOCKS = 10


def _few_blocks(blocks_of: Callable[[Tensor], Tensor] | None, indices: Tensor) -> str | None:
    """The warning for a test set of fewer than ``MIN_BLOCKS`` blocks, or None."""
    count = indices.numel() if blocks_of is None else int(
        torch.unique(torch.as_tensor(blocks_of(indices))).numel())
    if count >= MIN_BLOCKS:
        return None
    return (f"predlearn: the test set holds {count} independent block(s) of sequences (fewer "
            f"than {MIN_BLOCKS}: overlapping windows of a short series); its scores get no "
            "interval (NaN bounds). Test on a longer series for error bars.")


def score_intervals(metrics: Any, indices: Tensor,
                    blocks_of: Callable[[Tensor], Tensor] | None = None, level: float = 0.95,
                    replicates: int = 1000, seed: int = 0) -> list[IntervalRow]:
    """The ``level`` bootstrap interval of every logged key of ``metrics`` (per-channel keys
    included), its mean over the steps and each step, from the sequences recorded
    (``record_sequences`` on before the first update).

    ``indices`` (N,): the dataset index of each recorded sequence, in the order recorded
    (over DDP ranks, in the order the ranks' rows are concatenated); ``blocks_of``: indices ->
    block ids (``blocks_from_windows``; None: each sequence its own block). The values are those
    ``curves()`` gives (and their ``curve.mean()``); the same draws serve every metric (one
    ``seed``). Metrics that keep no statistics (plugins that are not ``SequenceSums``, or whose
    own ``update`` records no rows: a warning names them) are left out; with none recorded at
    all (``record_sequences`` set too late), a ``RuntimeError``. Every DDP rank must call it.
    """
    indices = torch.as_tensor(indices).reshape(-1).to("cpu", torch.int64)
    few = _few_blocks(blocks_of, indices)
    if few:
        warnings.warn(few, stacklevel=2)
    blocks = None if blocks_of is None else torch.as_tensor(blocks_of(indices)).reshape(-1)
    if blocks is not None and blocks.shape != indices.shape:
        raise ValueError(f"blocks_of gave {tuple(blocks.shape)} blocks for "
                         f"{indices.shape[0]} sequences")
    count = indices.shape[0]
    n_blocks = count if blocks is None else int(torch.unique(blocks).numel())
    rows: list[IntervalRow] = []
    unrecorded: list[str] = []
    for index, metric in metrics._scored():
        if not isinstance(metric, SequenceSums):
            continue
        curves = metric.curves()  # type: ignore[operator]  # every SequenceSums metric has curves()
        try:  # the same on every DDP rank: the check follows the sync
            statistics = metric.recorded()
        except RuntimeError as error:  # e.g. a plugin's own update that keeps no rows
            unrecorded.append(str(error))
            continue
        if statistics.shape[0] != count:
            raise ValueError(f"{type(metric).__name__} recorded {statistics.shape[0]} "
                             f"sequences; {count} indices given")
        if count == 0:
            raise ValueError("no sequence recorded: set record_sequences before testing")
        keys = list(curves)

        def score(totals: Tensor, metric: SequenceSums = metric,
                  keys: list[str] = keys) -> Tensor:
            found = metric.scores_of(totals)
            table = torch.stack([found[key].to(torch.float64) for key in keys])  # (keys, K)
            return torch.cat([table.mean(dim=1, keepdim=True), table], dim=1)

        _, low, high = bootstrap_interval(statistics, score, blocks, replicates, level, seed)
        if n_blocks < MIN_BLOCKS:  # a resample of a few blocks is no sample: no interval
            low, high = torch.full_like(low, math.nan), torch.full_like(high, math.nan)
        cases = metric.cases_of(statistics.sum(dim=0))
        for row, key in enumerate(keys):
            rows += _metric_rows(metrics._key(key, index), curves[key],
                                 low[row], high[row], cases.get(key), level, count, n_blocks)
    if unrecorded and not rows:
        raise RuntimeError("; ".join(unrecorded))
    if unrecorded:
        warnings.warn(f"no intervals for: {'; '.join(unrecorded)}", stacklevel=2)
    return rows


def _number(value: float) -> str:
    """6 significant digits, as ``write_curves_csv`` writes; NaN as ``nan``."""
    return "nan" if math.isnan(value) else f"{value:.6g}"


def write_intervals_csv(rows: Sequence[IntervalRow], path: str | Path) -> Path:
    """``<stage>_intervals.csv``: ``INTERVAL_COLUMNS``, one line per row (``events`` empty
    for a score not on events)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(INTERVAL_COLUMNS)
        for row in rows:
            writer.writerow([row.metric, row.step, _number(row.value), _number(row.low),
                             _number(row.high), _number(row.level), row.sequences, row.blocks,
                             "" if row.events is None else row.events])
    return path


def read_intervals_csv(path: str | Path) -> list[IntervalRow]:
    """The rows ``write_intervals_csv`` wrote (numbers to its 6 significant digits)."""
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in INTERVAL_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path} has no column {', '.join(missing)}: not an intervals file")
        return [IntervalRow(line["metric"], line["step"], float(line["value"]),
                            float(line["low"]), float(line["high"]), float(line["level"]),
                            int(line["sequences"]), int(line["blocks"]),
                            int(line["events"]) if line["events"].strip() else None)
                for line in reader]
