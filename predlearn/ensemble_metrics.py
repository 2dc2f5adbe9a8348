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
frequencies, which ``histograms()`` returns (it is not a curve).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from predlearn.ensemble_scores import (
    brier_score,
    crps_ensemble,
    observation_rank,
    spread_and_error,
    spread_skill_ratio,
)
from predlearn.nowcast_scoring import EventMetric, ratio_or_nan
from predlearn.units import ScoringSettings


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

    def __init__(self, horizon: int, settings: ScoringSettings | None, members: int,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(horizon, settings, **kwargs)
        if members < 2:
            raise ValueError(f"ensemble scores need at least 2 members; got {members}")
        self.members = members
        self.generator = torch.Generator().manual_seed(seed)  # tie-breaking of the ranks
        double = torch.float64
        for name in ("crps_sum", "spread_sum", "error_sum", "pixels"):
            self.add_state(name, torch.zeros(horizon, dtype=double), dist_reduce_fx="sum")
        self.add_state("brier_sum", torch.zeros(horizon, len(self.thresholds), dtype=double),
                       dist_reduce_fx="sum")
        self.add_state("ranks", torch.zeros(horizon, members + 1, dtype=double),
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
        reduce = (0, 2, 3, 4)  # over sequences and pixels, per lead time
        self.crps_sum += (crps_ensemble(physical, truth) * weight).sum(dim=reduce)
        variance, error = spread_and_error(physical, truth)
        self.spread_sum += (variance * weight).sum(dim=reduce)
        self.error_sum += (error * weight).sum(dim=reduce)
        self.pixels += weight.sum(dim=reduce)
        for index, threshold in enumerate(self.thresholds):
            self.brier_sum[:, index] += (brier_score(members, observed, threshold)
                                         * weight).sum(dim=reduce)
        ranks = observation_rank(members, observed, self.generator)  # (B, K, C, H, W)
        for step in range(self.horizon):
            chosen = ranks[:, step][mask[:, step]]
            self.ranks[step] += torch.bincount(chosen, minlength=self.members + 1).double()
        self.count += preds.shape[0]

    def compute(self) -> dict[str, Tensor]:
        self._need_updates()
        scores = {"crps": ratio_or_nan(self.crps_sum, self.pixels),
                  "spread_skill": spread_skill_ratio(self.spread_sum, self.error_sum,
                                                     self.members)}
        for index, tag in enumerate(self.tags):
            scores[f"brier_{tag}"] = ratio_or_nan(self.brier_sum[:, index], self.pixels)
        return scores

    def histograms(self) -> Tensor:
        """(K, M + 1): per lead time, the frequency of each rank of the observation."""
        return self.ranks / self.ranks.sum(dim=1, keepdim=True).clamp_min(1)

    def directions(self) -> dict[str, bool | None]:
        """Logged key -> whether higher is better (None: spread-skill, best at 1)."""
        return {"crps": False, "spread_skill": None,
                **{f"brier_{tag}": False for tag in self.tags}}
