"""Bootstrap intervals: the point estimate, coverage of a known mean at about the nominal rate,
and blocks that keep overlapping windows from shrinking the interval falsely."""

from __future__ import annotations

import math

import pytest
import torch

from predlearn.bootstrap import bootstrap_interval, distinguishable, window_blocks


def mean_of(sums: torch.Tensor) -> torch.Tensor:
    """Sufficient statistics (sum, count) -> the mean."""
    return sums[0] / sums[1]


def test_windows_of_a_series_are_blocked_by_window_length():
    series = [0, 0, 0, 0, 0, 1, 1, 1]
    starts = [0, 5, 10, 20, 25, 0, 5, 30]
    assert window_blocks(series, starts, window=20).tolist() == [0, 0, 0, 1, 1, 2, 2, 3]
    shuffled = [3, 0, 6, 1]  # any order of windows: blocks follow the time order
    assert window_blocks([series[i] for i in shuffled], [starts[i] for i in shuffled],
                         20).tolist() == [1, 0, 2, 0]


def test_the_point_estimate_is_the_score_of_all_sequences():
    values = torch.tensor([1.0, 2.0, 6.0])
    stats = torch.stack([values, torch.ones(3)], dim=1)
    point, low, high = bootstrap_interval(stats, mean_of, replicates=200)
    assert point.item() == pytest.approx(3.0)
    assert 1.0 <= low.item() < 3.0 < high.item() <= 6.0


def test_intervals_cover_a_known_mean_at_about_the_nominal_rate():
    generator = torch.Generator().manual_seed(0)
    covered = 0
    trials = 200
    for trial in range(trials):
        values = torch.randn(60, generator=generator, dtype=torch.float64).exp()  # skewed
        stats = torch.stack([values, torch.ones(60, dtype=torch.float64)], dim=1)
        _, low, high = bootstrap_interval(stats, mean_of, replicates=400, seed=trial)
        covered += bool(low <= math.exp(0.5) <= high)  # E[exp(N(0, 1))] = e^(1/2)
    assert 0.88 <= covered / trials <= 0.99  # nominal 0.95; the percentile bootstrap runs low


def correlated_windows(generator, series_length=400, window=20, stride=2):
    """Window means of an AR(1) series (strongly correlated frames), every ``stride`` frames."""
    noise = torch.randn(series_length, generator=generator, dtype=torch.float64)
    frames = torch.empty(series_length, dtype=torch.float64)
    frames[0] = noise[0]
    for t in range(1, series_length):
        frames[t] = 0.9 * frames[t - 1] + math.sqrt(1 - 0.81) * noise[t]
    starts = list(range(0, series_length - window + 1, stride))
    means = torch.stack([frames[s:s + window].mean() for s in starts])
    return means, starts


def test_blocks_keep_overlapping_windows_from_shrinking_the_interval():
    """Overlapping windows of a correlated series: resampled one by one, the intervals cover the
    true mean (0) far less often than nominal; in blocks of a window length, about as often."""
    generator = torch.Generator().manual_seed(1)
    window, trials = 20, 120
    hits = {"windows": 0, "blocks": 0}
    for trial in range(trials):
        means, starts = correlated_windows(generator, window=window)
        stats = torch.stack([means, torch.ones_like(means)], dim=1)
        blocks = window_blocks([0] * len(starts), starts, window)
        for name, grouping in (("windows", None), ("blocks", blocks)):
            _, low, high = bootstrap_interval(stats, mean_of, grouping, replicates=300,
                                              seed=trial)
            hits[name] += bool(low <= 0 <= high)
    assert hits["windows"] / trials < 0.8
    assert hits["blocks"] / trials > hits["windows"] / trials + 0.1


def test_an_undefined_score_has_no_interval_and_ratios_use_the_summed_counts():
    # CSI = hits / (hits + misses + false alarms), per sequence counts
    counts = torch.tensor([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0], [4.0, 0.0, 2.0]])

    def csi(sums):
        total = sums.sum()
        return sums[0] / total if total > 0 else torch.tensor(math.nan, dtype=sums.dtype)

    point, low, high = bootstrap_interval(counts, csi, replicates=300)
    assert point.item() == pytest.approx(6 / 10)  # from the sums, not a mean of ratios
    assert low <= point <= high
    _, low, high = bootstrap_interval(torch.zeros(4, 3), csi, replicates=50)
    assert math.isnan(low) and math.isnan(high)


def test_intervals_that_do_not_overlap_are_distinguishable():
    low = torch.tensor([0.1, 0.1])
    high = torch.tensor([0.2, 0.3])
    assert distinguishable(low, high, torch.tensor([0.25, 0.25]),
                           torch.tensor([0.4, 0.4])).tolist() == [True, False]
