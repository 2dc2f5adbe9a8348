"""The ensemble scores of ``predlearn.ensemble_scores`` as a metric: per lead time, pooled over
every sequence scored, in the data's physical unit, correct under DDP (issue 32).

Predictions carry the members as their second dimension, (B, M, K, C, H, W); targets are
(B, K, C, H, W), both in [0, 1] and mapped to the data's unit (``ScoringSettings.mapping``:
dBZ for radar) before CRPS and spread are taken, so those read in dBZ. Events use the thresholds
of the settings, like the categorical scores. Every state is a float64 sum (``dist_reduce_fx=
"sum"``), so a score is the same on one process or on several; masked pixels (``valid`` False)
count nowhere.

Keys (each a (K,) curve): ``crps`` (fair), ``spread_skill``, ``brier_<tag>`` (e.g.
``brier_20dBZ``), and the rank histogram ``rank_histogram`` as a (K, M + 1) table of
frequencies, which ``histograms()`` returns (it is not a curve); ``reliability()`` gives the
reliability diagram's (T, 10, 3) counts per threshold, over every lead time. Each sequence's
contributions to the sums can be kept for the intervals (``predlearn.score_intervals``); the
Brier scores' ``cases_of`` are the observed event pixels per lead time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from predlearn.ensemble_scores import (
    brier_score,
    crps_ensemble,
    exceedance_probability,
    observation_rank,
    reliability_counts,
    spread_and_error,
    spread_skill_ratio,
)
from predlearn.nowcast_scoring import EventMetric, events_at, ratio_or_nan
from predlearn.units import ScoringSettings

#: the bins of the exceedance probability in the reliability diagram's counts
RELIABILITY_BINS = 10


class EnsembleScores(EventMetric):
    """Fair CRPS, spread-skill ratio, Brier scores and rank histograms of an M-member ensemble."""

    #: built as ``cls(horizon, settings, members)`` and updated with the members
    needs_members = True
    #: on any data: in the data's physical unit where it has one (radar: dBZ, with Brier scores
    #: at its thresholds), else on the frames' own scale (CRPS and spread only)
    physical_units = False

    crps_sum: Tensor
    spread_sum: Tensor
    error_sum: Tensor
    brier_sum: Tensor
    ranks: Tensor
    pixels: Tensor
    observed_events: Tensor
    reliability_sums: Tensor
    sum_states = ("crps_sum", "spread_sum", "error_sum", "pixels", "brier_sum",
                  "observed_events", "ranks", "reliability_sums", "count")

    def __init__(self, horizon: int, settings: ScoringSettings | None, members: int,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(horizon, settings, **kwargs)
        if members < 1:
            raise ValueError(f"ensemble scores need at least 1 member; got {members}")
        self.members = members
        self.generator = torch.Generator().manual_seed(seed)  # tie-breaking of the ranks
        double, thresholds = torch.float64, len(self.thresholds)
        for name in ("crps_sum", "spread_sum", "error_sum", "pixels"):
            self.add_state(name, torch.zeros(horizon, dtype=double), dist_reduce_fx="sum")
        # per lead time and threshold: the Brier scores and the observed events summed
        for name in ("brier_sum", "observed_events"):
            self.add_state(name, torch.zeros(horizon, thresholds, dtype=double),
                           dist_reduce_fx="sum")
        self.add_state("ranks", torch.zeros(horizon, members + 1, dtype=double),
                       dist_reduce_fx="sum")
        # per threshold and bin of the exceedance probability, over every lead time: the sum
        # of the probabilities, the observed events and the forecasts (``reliability()``)
        self.add_state("reliability_sums",
                       torch.zeros(thresholds, RELIABILITY_BINS, 3, dtype=double),
                       dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add (B, M, K, C, H, W) members against (B, K, C, H, W) targets; ``valid``: a boolean
        mask of the observed pixels, the targets' shape."""
        if preds.ndim != 6 or preds.shape[1] != self.members or \
                tuple(preds.shape[:1] + preds.shape[2:]) != tuple(target.shape):
            raise ValueError(f"EnsembleScores needs members (B, {self.members}, K, C, H, W) and "
                             f"targets (B, K, C, H, W); got {tuple(preds.shape)} and "
                             f"{tuple(target.shape)}")
        members = preds.detach().double().clamp(0, 1).transpose(0, 1)  # (M, B, K, C, H, W)
        observed = target.detach().double()
        self._checked(members[0].float(), observed.float())  # horizon and frame checks
        mask = torch.ones_like(observed, dtype=torch.bool) if valid is None else valid.bool()
        weight = mask.double()
        mapping = self.settings.mapping if self.settings is not None else None
        physical = members if mapping is None else mapping.to_physical(members)
        truth = observed if mapping is None else mapping.to_physical(observed)
        pixels = (2, 3, 4)  # per sequence and lead time, over the pixels
        if self.members > 1:
            variance, error = spread_and_error(physical, truth)
        else:  # one forecast: no spread; CRPS is its absolute error, Brier its 0/1 misses
            variance, error = torch.zeros_like(truth), (physical[0] - truth) ** 2
        batch = observed.shape[0]
        brier, events = [], []
        for threshold in self.thresholds:
            brier.append((brier_score(members, observed, threshold) * weight).sum(dim=pixels))
            events.append((events_at(observed, threshold) * weight).sum(dim=pixels))
        none = observed.new_zeros(batch, self.horizon, 0)  # no thresholds: empty columns
        ranks = observation_rank(members, observed, self.generator)  # (B, K, C, H, W)
        rank_counts = weight.new_zeros(batch, self.horizon, self.members + 1).scatter_add_(
            2, ranks.flatten(2), weight.flatten(2))
        self._accumulate({
            "crps_sum": (crps_ensemble(physical, truth) * weight).sum(dim=pixels),
            "spread_sum": (variance * weight).sum(dim=pixels),
            "error_sum": (error * weight).sum(dim=pixels),
            "pixels": weight.sum(dim=pixels),
            "brier_sum": torch.stack(brier, dim=-1) if brier else none,
            "observed_events": torch.stack(events, dim=-1) if events else none,
            "ranks": rank_counts,
            "reliability_sums": self._reliability(members, observed, mask),
            "count": self._sequences(batch, observed)})

    def _reliability(self, members: Tensor, observed: Tensor, mask: Tensor) -> Tensor:
        """(B, T, bins, 3) per sequence: ``reliability_counts`` of the exceedance
        probabilities and observed events at each threshold, masked pixels left out."""
        rows = []
        for sequence in range(observed.shape[0]):
            kept = mask[sequence]
            per_threshold = []
            for threshold in self.thresholds:
                probability = exceedance_probability(members[:, sequence], threshold)[kept]
                event = events_at(observed[sequence], threshold)[kept]
                per_threshold.append(torch.stack(
                    reliability_counts(probability, event, RELIABILITY_BINS), dim=-1))
            rows.append(torch.stack(per_threshold) if per_threshold else
                        observed.new_zeros(0, RELIABILITY_BINS, 3))
        return torch.stack(rows)

    def _curves_of(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        pixels = sums["pixels"]
        scores = {"crps": ratio_or_nan(sums["crps_sum"], pixels),
                  "spread_skill": spread_skill_ratio(sums["spread_sum"], sums["error_sum"],
                                                     self.members)}
        for index, tag in enumerate(self.tags):
            scores[f"brier_{tag}"] = ratio_or_nan(sums["brier_sum"][:, index], pixels)
        return scores

    def _cases_of(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """The Brier scores rest on the events observed at their threshold."""
        return {f"brier_{tag}": sums["observed_events"][:, index]
                for index, tag in enumerate(self.tags)}

    def reliability(self) -> Tensor:
        """(T, bins, 3): per threshold and bin of the exceedance probability (``bins`` equal
        bins of [0, 1], 1 in the last), over every lead time and sequence, the sum of the
        forecast probabilities, the observed events and the forecasts (masked pixels left
        out): a reliability diagram's counts."""
        return self.reliability_sums

    def histograms(self) -> Tensor:
        """(K, M + 1): per lead time, the frequency of each rank of the observation."""
        return self.ranks / self.ranks.sum(dim=1, keepdim=True).clamp_min(1)

    def directions(self) -> dict[str, bool | None]:
        """Logged key -> whether higher is better (None: spread-skill, best at 1)."""
        return {"crps": False, "spread_skill": None,
                **{f"brier_{tag}": False for tag in self.tags}}
