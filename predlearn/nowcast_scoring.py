"""What the nowcasting scores share: shape checks, events, undefined ratios, key tags, a base.

Frames are (B, K, C, H, W) tensors in [0, 1] (K predicted lead times). An *event* at a pixel is
``value >= threshold``, the threshold given in dBZ or mm/h by the data's
``predlearn.units.ScoringSettings`` and turned into a value of x in [0, 1] (thresholding commutes
with the increasing value map, so this is exactly ``dBZ >= threshold`` on the stored values).

A score whose denominator is 0 (e.g. CSI when no event is observed nor forecast) is undefined:
NaN, never 0 and never a division warning. Every state a score reads is a float64 sum reduced by
``sum`` across DDP ranks, so a score is the same on one process or on several (the sequences'
own statistics, kept for the intervals, are concatenated: ``predlearn.score_intervals``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import Tensor

from predlearn.sequence_sums import SequenceSums
from predlearn.units import THRESHOLD_UNITS, ScoringSettings, unit_tag

# unit tags as they appear in keys (``mmh``) -> the unit in words (``mm/h``)
_UNITS = {unit_tag(unit): unit for unit in THRESHOLD_UNITS}
#: a threshold tag in a logged key (``20dBZ``, ``1mmh``): groups ``value`` and ``unit``
THRESHOLD_TAG = r"(?P<value>[-+0-9.e]+)(?P<unit>" + "|".join(map(re.escape, _UNITS)) + ")"


def check_frame_pair(preds: Tensor, target: Tensor, who: str) -> None:
    """Refuse (``ValueError``, naming ``who``) predictions and targets that are not (B, K, C, H, W)
    tensors of one shape."""
    if preds.shape != target.shape or preds.ndim != 5:
        raise ValueError(
            f"{who} needs predictions and targets of the same (B, K, C, H, W) shape; got "
            f"{tuple(preds.shape)} and {tuple(target.shape)}")


def events_at(frames: Tensor, threshold: float) -> Tensor:
    """``frames >= threshold`` with the threshold in the frames' own dtype (so that a pixel stored
    exactly at the threshold counts as an event)."""
    return frames >= torch.tensor(threshold, dtype=frames.dtype, device=frames.device)


def ratio_or_nan(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, NaN (undefined) where the denominator is 0."""
    defined = denominator != 0
    safe = torch.where(defined, denominator, torch.ones_like(denominator))
    return torch.where(defined, numerator / safe, torch.full_like(numerator, math.nan))


def threshold_words(value: str, unit: str) -> str:
    """A threshold tag's parts in words: ``("20", "dBZ")`` -> ``event >= 20 dBZ``."""
    return f"event >= {value} {_UNITS[unit]}"


class EventMetric(SequenceSums):
    """The base of the registered nowcasting metrics (events at thresholds in physical units):
    the shape checks of ``update``, a count of sequences (to refuse scores before any update,
    after the DDP sum) and ``curves()``. A subclass adds its sum states to ``sum_states`` (with
    ``count``), gives each sequence's contributions to ``_accumulate`` and its scores as a pure
    function of the sums, ``_curves_of`` (``SequenceSums``)."""

    full_state_update = False
    higher_is_better: bool | None = None  # per key: ``directions()``
    #: built as ``cls(horizon, settings)`` with the data's ``ScoringSettings``
    physical_units = True
    count: Tensor
    sequences_state = "count"

    def __init__(self, horizon: int, settings: ScoringSettings | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if horizon < 1:
            raise ValueError(f"a horizon is at least 1 predicted step; got {horizon}")
        self.horizon = horizon
        self.settings = settings
        # no settings (data without physical units, for the ensemble scores): no thresholds
        self.tags = settings.threshold_tags() if settings is not None else []
        self.thresholds = settings.unit_thresholds() if settings is not None else []
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _checked(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Shape checks; returns predictions (detached, clamped to [0, 1]) and targets."""
        check_frame_pair(preds, target, type(self).__name__)
        if preds.shape[1] != self.horizon:
            raise ValueError(
                f"{type(self).__name__} was built for {self.horizon} predicted steps; got "
                f"{preds.shape[1]} (shape {tuple(preds.shape)})")
        return preds.detach().float().clamp(0, 1), target.detach().float()

    def _need_updates(self) -> None:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__}: scores asked for before any update")

    def _sequences(self, batch: int, like: Tensor) -> Tensor:
        """Each of ``batch`` sequences' contribution to ``count``: 1 (float64)."""
        return torch.ones(batch, dtype=torch.float64, device=like.device)

    def compute(self) -> dict[str, Tensor]:
        self._need_updates()
        return self._curves_of(self.state_sums())

    def curves(self) -> dict[str, Tensor]:
        """Logged key -> (K,) float64 curve per lead time (synced across DDP ranks)."""
        # torchmetrics squeezes one-element results; a curve keeps its (K,) shape
        return {key: value.reshape(self.horizon) for key, value in self.compute().items()}

    def scores_of(self, totals: Tensor) -> dict[str, Tensor]:
        return {key: value.reshape(self.horizon)
                for key, value in super().scores_of(totals).items()}
