"""The categorical scores CSI, POD, FAR, HSS and ETS from pooled contingency counts.

``CategoricalScores`` (registry name ``categorical``): the scores per lead time and threshold,
from the 2x2 contingency table pooled over every sequence scored (Jolliffe & Stephenson 2012,
"Forecast Verification", 2nd ed., ch. 3). Pooled counts, not the mean of per batch or per
sequence scores: a score of a ratio is not the mean of the ratios, and a sequence without any
event has no score of its own. Events and undefined scores: ``predlearn.nowcast_scoring``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from predlearn.masked import checked_valid
from predlearn.nowcast_scoring import (
    THRESHOLD_TAG,
    EventMetric,
    check_frame_pair,
    events_at,
    ratio_or_nan,
    threshold_words,
)
from predlearn.units import ScoringSettings

#: positions in the last dimension of ``contingency_counts``
HITS, MISSES, FALSE_ALARMS, CORRECT_NEGATIVES = 0, 1, 2, 3
#: the categorical scores, in key order, with whether higher is better
CATEGORICAL_SCORES: dict[str, bool] = {
    "csi": True, "pod": True, "far": False, "hss": True, "ets": True}
_SCORE_NAMES = {"csi": "CSI", "pod": "POD", "far": "FAR", "hss": "HSS", "ets": "ETS"}
_CATEGORICAL_KEY = re.compile(
    r"^(?P<score>" + "|".join(CATEGORICAL_SCORES) + ")_" + THRESHOLD_TAG + "$")


def contingency_counts(preds: Tensor, target: Tensor, thresholds: Sequence[float],
                       valid: Tensor | None = None) -> Tensor:
    """The 2x2 contingency table of each sequence, lead time and threshold: (B, K, T, 4) float64
    counts of hits, misses, false alarms and correct negatives (``HITS``, ``MISSES``,
    ``FALSE_ALARMS``, ``CORRECT_NEGATIVES``) over the C, H, W pixels of a frame.

    ``preds``, ``target``: (B, K, C, H, W); ``thresholds``: on the same scale as the frames (x in
    [0, 1]); an event is ``value >= threshold``. ``valid``: a boolean mask of the observed pixels;
    a masked pixel is in no cell of the table.
    """
    check_frame_pair(preds, target, "contingency_counts")
    valid = checked_valid(valid, preds, "contingency_counts")
    kept = None if valid is None else valid.flatten(2)
    pixels = preds[0, 0].numel() if kept is None else kept.sum(-1)
    tables = []
    for threshold in thresholds:  # one threshold at a time: (B, K, T, C*H*W) could be large
        forecast = events_at(preds, threshold).flatten(2)
        observed = events_at(target, threshold).flatten(2)
        if kept is not None:  # masked pixels: neither forecast nor observed events
            forecast, observed = forecast & kept, observed & kept
        hits = (forecast & observed).sum(-1)
        misses = (~forecast & observed).sum(-1)
        false_alarms = (forecast & ~observed).sum(-1)
        negatives = pixels - hits - misses - false_alarms
        tables.append(torch.stack([hits, misses, false_alarms, negatives], dim=-1))
    if not tables:
        raise ValueError("contingency_counts needs at least one threshold")
    return torch.stack(tables, dim=2).to(torch.float64)


def categorical_scores(counts: Tensor) -> dict[str, Tensor]:
    """CSI, POD, FAR, HSS and ETS from contingency counts (..., 4) in the order of
    ``contingency_counts`` (sum them over sequences first: scores of pooled counts).

    With a hits, b false alarms, c misses, d correct negatives and n = a + b + c + d
    (Jolliffe & Stephenson 2012, "Forecast Verification", ch. 3):

    - ``csi = a / (a + b + c)`` (critical success index, threat score);
    - ``pod = a / (a + c)`` (probability of detection, hit rate);
    - ``far = b / (a + b)`` (false alarm ratio; lower is better);
    - ``hss = 2 (ad - bc) / ((a + c)(c + d) + (a + b)(b + d))`` (Heidke skill score);
    - ``ets = (a - ar) / (a + b + c - ar)``, ``ar = (a + b)(a + c) / n`` (equitable threat score,
      Gilbert skill score; ``ar`` the hits expected by chance).

    A score whose denominator is 0 is undefined and returned as NaN: CSI, POD, FAR, ETS when no
    event is observed nor forecast; POD when none is observed; FAR when none is forecast; HSS
    and ETS also when every pixel is an event in both forecast and observation.
    """
    counts = counts.to(torch.float64)
    a = counts[..., HITS]
    c = counts[..., MISSES]
    b = counts[..., FALSE_ALARMS]
    d = counts[..., CORRECT_NEGATIVES]
    n = a + b + c + d
    chance = ratio_or_nan((a + b) * (a + c), n)
    return {
        "csi": ratio_or_nan(a, a + b + c),
        "pod": ratio_or_nan(a, a + c),
        "far": ratio_or_nan(b, a + b),
        "hss": ratio_or_nan(2 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d)),
        "ets": ratio_or_nan(a - chance, a + b + c - chance),
    }


class CategoricalScores(EventMetric):
    """CSI, POD, FAR, HSS and ETS per lead time at each event threshold, from contingency counts
    pooled over every sequence scored (``categorical_scores``). Keys: ``<score>_<tag>`` with the
    threshold tags of the settings, e.g. ``csi_20dBZ``, ``far_1mmh``."""

    counts: Tensor
    sum_states = ("counts", "count")

    def __init__(self, horizon: int, settings: ScoringSettings, **kwargs: Any) -> None:
        super().__init__(horizon, settings, **kwargs)
        self.add_state("counts", torch.zeros(horizon, len(self.thresholds), 4, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add the contingency counts of (B, K, C, H, W) frames; ``valid``: a boolean mask of the
        observed pixels (masked pixels are in no cell)."""
        preds, target = self._checked(preds, target)
        counts = contingency_counts(preds, target, self.thresholds, valid)  # (B, K, T, 4)
        self._accumulate({"counts": counts, "count": self._sequences(preds.shape[0], counts)})

    def _curves_of(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        scores = categorical_scores(sums["counts"])  # each (K, T)
        return {f"{name}_{tag}": scores[name][:, t]
                for name in CATEGORICAL_SCORES for t, tag in enumerate(self.tags)}

    def _cases_of(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every key at a threshold rests on the events observed there: hits + misses."""
        observed = sums["counts"][..., HITS] + sums["counts"][..., MISSES]  # (K, T)
        return {f"{name}_{tag}": observed[:, t]
                for name in CATEGORICAL_SCORES for t, tag in enumerate(self.tags)}

    def directions(self) -> dict[str, bool]:
        """Logged key -> whether higher is better (all but FAR)."""
        return {f"{name}_{tag}": higher
                for name, higher in CATEGORICAL_SCORES.items() for tag in self.tags}

    @classmethod
    def describe_key(cls, key: str) -> str | None:
        """``csi_20dBZ`` -> ``CSI, event >= 20 dBZ``; None for a key this metric does not log."""
        match = _CATEGORICAL_KEY.match(key)
        if match is None:
            return None
        words = threshold_words(match["value"], match["unit"])
        return f"{_SCORE_NAMES[match['score']]}, {words}"
