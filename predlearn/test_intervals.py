"""The 95 % intervals of every test score (issue 32): ``PredictiveModule`` records each test
sequence's dataset index and statistics while it tests, and at the end of the test bootstraps
them (``predlearn.score_intervals``), in blocks of overlapping windows where the data module
says its test sequences are windows of a series (``test_windows``)."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.aggregation import CatMetric

from predlearn.metrics import SequenceMetrics
from predlearn.score_intervals import IntervalRow, blocks_from_windows, score_intervals

#: the confidence level of the test intervals
LEVEL = 0.95


class TestIntervals:
    """Records the order of the test sequences; ``finish`` gives the intervals' rows."""

    def __init__(self, replicates: int = 1000) -> None:
        self.replicates = replicates
        self.order: CatMetric | None = None
        self.seen = 0

    def start(self, metrics: SequenceMetrics, device: torch.device) -> None:
        """Before the first test batch: record every sequence's statistics from now on (with
        no replicates: nothing)."""
        if not self.replicates:
            return
        metrics.record_sequences = True
        self.order = CatMetric(nan_strategy="disable").to(device)
        self.order.set_dtype(torch.float64)
        self.seen = 0

    def record(self, count: int, rank: int, world: int) -> None:
        """``count`` more sequences on this rank: rank r reads items r, r + W, ... of the
        dataset (``UnpaddedDistributedSampler``; one process: 0, 1, 2, ...)."""
        if self.order is None:
            return
        local = self.seen + torch.arange(count, dtype=torch.float64)
        self.order.update((local * world + rank).to(self.order.device))
        self.seen += count

    def finish(self, metrics: SequenceMetrics, datamodule: Any) -> list[IntervalRow]:
        """The rows of ``<stage>_intervals.csv``; collective under DDP (every rank calls it)."""
        if self.order is None:
            return []
        indices = self.order.compute().reshape(-1).to("cpu", torch.int64)
        windows = getattr(datamodule, "test_windows", None)
        blocks_of = blocks_from_windows(windows() if callable(windows) else None)
        rows = score_intervals(metrics, indices, blocks_of, LEVEL, self.replicates)
        metrics.record_sequences = False
        self.order = None
        return rows
