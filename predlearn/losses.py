"""The training loss of every predictor: mean L1 + mean squared error (paper §4), or one of
them, over the observed pixels only when the data has a mask (docs/metrics.md)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from predlearn import masked
from predlearn.ensemble import ENSEMBLE_LOSSES, crps_loss, expand_members

__all__ = ["LossName", "members_loss", "sequence_loss"]

#: the paper's losses, and the CRPS losses of an ensemble (``predlearn.ensemble``)
LossName = Literal["l1+l2", "l2", "l1", "crps", "afcrps"]


def sequence_loss(predictions: Tensor, targets: Tensor, name: LossName = "l1+l2",
                  valid: Tensor | None = None) -> Tensor:
    """The training loss of ``PredictiveModule``: mean L1 + mean squared error by default
    (paper §4), or ``"l2"`` / ``"l1"`` alone; also for loops outside Lightning (benchmarks).

    ``valid``: a boolean mask of the observed elements; the means are then over those only (0,
    with a zero gradient, where none is). All True (or None): the unmasked means, exactly."""
    if name in ENSEMBLE_LOSSES:
        raise ValueError(f"the {name!r} loss scores ensemble members: use members_loss")
    valid = masked.checked_valid(valid, targets, "sequence_loss")
    if valid is not None:
        return masked.masked_loss(predictions, targets, valid, name)
    if name == "l2":
        return F.mse_loss(predictions, targets)
    if name == "l1":
        return F.l1_loss(predictions, targets)
    return F.l1_loss(predictions, targets) + F.mse_loss(predictions, targets)


def members_loss(members: Tensor, targets: Tensor, name: LossName = "crps",
                 valid: Tensor | None = None) -> Tensor:
    """The loss of (B, M, T, C, H, W) ensemble members against (B, T, C, H, W) targets: the
    (almost) fair CRPS for ``"crps"`` / ``"afcrps"``, else ``sequence_loss`` of every member
    (which makes the members copies of the mean: docs/nowcasting.md)."""
    valid = masked.checked_valid(valid, targets, "members_loss")
    if name in ENSEMBLE_LOSSES:
        return crps_loss(members, targets, ENSEMBLE_LOSSES[name], valid)
    count = members.shape[1]
    return sequence_loss(members.flatten(0, 1), expand_members(targets, count),
                         name, expand_members(valid, count))
