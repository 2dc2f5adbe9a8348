"""The training loss of every predictor: mean L1 + mean squared error (paper §4), or one of
them, over the observed pixels only when the data has a mask (docs/metrics.md)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from predlearn import masked

__all__ = ["LossName", "sequence_loss"]

LossName = Literal["l1+l2", "l2", "l1"]


def sequence_loss(predictions: Tensor, targets: Tensor, name: LossName = "l1+l2",
                  valid: Tensor | None = None) -> Tensor:
    """The training loss of ``PredictiveModule``: mean L1 + mean squared error by default
    (paper §4), or ``"l2"`` / ``"l1"`` alone; also for loops outside Lightning (benchmarks).

    ``valid``: a boolean mask of the observed elements; the means are then over those only (0,
    with a zero gradient, where none is). All True (or None): the unmasked means, exactly."""
    valid = masked.checked_valid(valid, targets, "sequence_loss")
    if valid is not None:
        return masked.masked_loss(predictions, targets, valid, name)
    if name == "l2":
        return F.mse_loss(predictions, targets)
    if name == "l1":
        return F.l1_loss(predictions, targets)
    return F.l1_loss(predictions, targets) + F.mse_loss(predictions, targets)
