"""Confidence intervals of scores by a bootstrap over sequences (issue 32).

A test score is a function of sums over the test sequences (MSE: the sum of squared errors and
the count of pixels; CSI: hits, misses and false alarms). Each sequence contributes a row of
*sufficient statistics*; a bootstrap replicate draws the sequences again with replacement and
recomputes the score from the reweighted sums, and the 2.5 % and 97.5 % quantiles of the
replicates bound the 95 % interval (the percentile bootstrap).

Windows cut from one series overlap (a window of J + K frames every ``stride`` frames), so their
errors are correlated: drawing them one by one would make the interval falsely narrow. They are
drawn in *blocks* instead (Künsch 1989): ``window_blocks`` groups consecutive windows of a series
into blocks that span at least one window length, and whole blocks are drawn. Independent
sequences (Moving MNIST) are blocks of one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def window_blocks(series: Sequence[int], starts: Sequence[int], window: int) -> Tensor:
    """A block number for each window: windows of the same series, in order of their first
    frame ``starts``, cut into runs that each span at least ``window`` frames (so that windows in
    different blocks of a series share few frames). Returns int64 (N,)."""
    if len(series) != len(starts):
        raise ValueError(f"window_blocks needs one series id per start; got {len(series)} and "
                         f"{len(starts)}")
    order = sorted(range(len(starts)), key=lambda i: (series[i], starts[i]))
    blocks = torch.empty(len(starts), dtype=torch.int64)
    block, first, previous = -1, 0, None
    for index in order:
        if previous is None or series[index] != previous or starts[index] - first >= window:
            block, first = block + 1, starts[index]
        blocks[index] = block
        previous = series[index]
    return blocks


def bootstrap_interval(statistics: Tensor, score: Callable[[Tensor], Tensor],
                       blocks: Tensor | None = None, replicates: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(the score, the lower and the upper bound of its ``level`` interval).

    ``statistics``: (N, ...) one row of sufficient statistics per sequence; ``score`` maps their
    sum over sequences (...) to the score (any shape; NaN where undefined, e.g. no event);
    ``blocks``: (N,) block ids (``window_blocks``; None: every sequence its own block). The
    interval is the percentile interval of ``replicates`` block resamples, NaN where the score
    is undefined in more than half of them.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    count = statistics.shape[0]
    blocks = torch.arange(count) if blocks is None else blocks.to(torch.int64)
    if blocks.shape != (count,):
        raise ValueError(f"blocks must be (N,) = ({count},); got {tuple(blocks.shape)}")
    _, blocks = torch.unique(blocks, return_inverse=True)
    n_blocks = int(blocks.max()) + 1 if count else 0
    stats = statistics.to(torch.float64).reshape(count, -1)
    per_block = torch.zeros(n_blocks, stats.shape[1], dtype=torch.float64).index_add(
        0, blocks, stats)
    generator = torch.Generator().manual_seed(seed)
    # a replicate draws n_blocks blocks with replacement: its weights are multinomial counts
    draws = torch.randint(n_blocks, (replicates, n_blocks), generator=generator)
    counts = torch.zeros(replicates, n_blocks, dtype=torch.float64).scatter_add(
        1, draws, torch.ones(replicates, n_blocks, dtype=torch.float64))
    sums = (counts @ per_block).reshape(replicates, *statistics.shape[1:])
    point = score(stats.sum(dim=0).reshape(statistics.shape[1:]))
    values = torch.stack([score(row) for row in sums]).to(torch.float64)
    tail = (1 - level) / 2
    low = torch.nanquantile(values, tail, dim=0)
    high = torch.nanquantile(values, 1 - tail, dim=0)
    undefined = values.isnan().double().mean(dim=0) > 0.5
    nan = torch.full_like(low, math.nan)
    return point, torch.where(undefined, nan, low), torch.where(undefined, nan, high)


def distinguishable(low_a: Tensor, high_a: Tensor, low_b: Tensor, high_b: Tensor) -> Tensor:
    """Where two scores' intervals do not overlap (a conservative test: overlapping 95 %
    intervals can still differ at the 5 % level, non-overlapping ones do)."""
    return (high_a < low_b) | (high_b < low_a)
