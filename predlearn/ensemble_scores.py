"""Proper scores of ensemble forecasts, as pure tensor functions (issue 32).

Members lie on dimension 0 of ``members`` (M, ...), the observation has the rest of the shape.
Every function keeps the remaining dimensions (pixels, lead times), so that callers reduce them
as they need (per lead time, masked pixels left out).

- CRPS (Gneiting and Raftery 2007): ``E|X - y| - 1/2 E|X - X'|``, from the M members. The *fair*
  estimator (Ferro 2014) divides the second term's sum over pairs by M(M-1) instead of M^2: it is
  the score of the ensemble's distribution, unbiased for the expected CRPS of an infinite
  ensemble, and 0 for a perfect forecast only when every member equals the observation. With one
  member both estimators are the absolute error.
- Brier score of an exceedance: ``(p - o)^2`` with p the fraction of members at or above the
  threshold and o the observed event (0 or 1).
- Rank histogram (Talagrand): the observation's rank among the members, 0 .. M; ties (common
  in radar: many members and the observation at 0) are broken at random, as pysteps does.
- Spread-skill ratio: the root of the mean ensemble variance over the RMSE of the ensemble mean,
  times sqrt((M + 1) / M) so that a calibrated ensemble of M members scores 1 (Fortin et al.
  2014); < 1 under-dispersed, > 1 over-dispersed.
- Reliability: per bin of forecast probability, the forecasts' mean probability, the observed
  frequency and the count.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check(members: Tensor, observed: Tensor, who: str) -> None:
    if members.ndim < 1 or tuple(members.shape[1:]) != tuple(observed.shape):
        raise ValueError(f"{who} needs members (M, *shape) and an observation of that shape; "
                         f"got {tuple(members.shape)} and {tuple(observed.shape)}")


def pair_sum(members: Tensor) -> Tensor:
    """sum over i, j of |x_i - x_j| along dimension 0, in O(M log M): for the sorted members,
    2 * sum_i (2i - M + 1) x_(i) (i from 0)."""
    count = members.shape[0]
    ordered = members.sort(dim=0).values
    weights = 2 * torch.arange(count, dtype=members.dtype, device=members.device) - count + 1
    return 2 * torch.tensordot(weights, ordered, dims=([0], [0]))


def crps_ensemble(members: Tensor, observed: Tensor, fair: bool = True) -> Tensor:
    """The CRPS of the ensemble at every position (the observation's shape)."""
    _check(members, observed, "crps_ensemble")
    count = members.shape[0]
    error = (members - observed.unsqueeze(0)).abs().mean(dim=0)
    if count == 1:
        return error
    pairs = count * (count - 1) if fair else count * count
    return error - pair_sum(members) / (2 * pairs)


def exceedance_probability(members: Tensor, threshold: float) -> Tensor:
    """The fraction of members at or above ``threshold`` at every position."""
    level = torch.tensor(threshold, dtype=members.dtype, device=members.device)
    return (members >= level).to(members.dtype).mean(dim=0)


def brier_score(members: Tensor, observed: Tensor, threshold: float) -> Tensor:
    """The Brier score of the exceedance of ``threshold`` at every position."""
    _check(members, observed, "brier_score")
    level = torch.tensor(threshold, dtype=observed.dtype, device=observed.device)
    event = (observed >= level).to(members.dtype)
    return (exceedance_probability(members, threshold) - event) ** 2


def observation_rank(members: Tensor, observed: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """The observation's rank among the members at every position, 0 .. M (int64): the number of
    members below it, plus a uniformly drawn share of the members equal to it."""
    _check(members, observed, "observation_rank")
    below = (members < observed.unsqueeze(0)).sum(dim=0)
    ties = (members == observed.unsqueeze(0)).sum(dim=0)
    draw = torch.rand(ties.shape, generator=generator, device="cpu").to(ties.device)
    return below + torch.floor(draw * (ties + 1)).to(below.dtype)


def rank_histogram(members: Tensor, observed: Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
    """Counts of the observation's rank, M + 1 bins (float64)."""
    ranks = observation_rank(members, observed, generator).flatten()
    return torch.bincount(ranks, minlength=members.shape[0] + 1).to(torch.float64)


def spread_and_error(members: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
    """(the ensemble variance with M - 1 in the denominator, the squared error of the ensemble
    mean) at every position: sums of these give the spread-skill ratio."""
    _check(members, observed, "spread_and_error")
    if members.shape[0] < 2:
        raise ValueError("the ensemble spread needs at least 2 members")
    variance = members.var(dim=0, unbiased=True)
    error = (members.mean(dim=0) - observed) ** 2
    return variance, error


def spread_skill_ratio(variance_sum: Tensor, error_sum: Tensor, members: int) -> Tensor:
    """sqrt((M + 1) / M) * sqrt(mean variance) / RMSE of the mean, from sums over the same
    positions; NaN where the error is 0."""
    ratio = torch.sqrt(variance_sum / error_sum.clamp_min(torch.finfo(error_sum.dtype).tiny))
    ratio = torch.where(error_sum > 0, ratio, torch.full_like(ratio, math.nan))
    return math.sqrt((members + 1) / members) * ratio


def reliability_counts(probability: Tensor, event: Tensor, bins: int = 10
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Per bin of forecast probability ([0, 1] cut into ``bins`` equal bins, 1 in the last):
    (the sum of the probabilities, the count of observed events, the count of forecasts)."""
    index = (probability.flatten() * bins).long().clamp(0, bins - 1)
    flat_p = probability.flatten().to(torch.float64)
    flat_o = event.flatten().to(torch.float64)
    total = torch.zeros(bins, dtype=torch.float64, device=probability.device)
    return (total.index_add(0, index, flat_p), total.index_add(0, index, flat_o),
            total.index_add(0, index, torch.ones_like(flat_p)))
