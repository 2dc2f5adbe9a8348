"""Ensembles for every predictor: learnt input noise, the (almost) fair CRPS loss (issue 32).

``--model.ensemble_members=M`` makes ``PredictiveModule`` forecast M members, (B, M, K, C, H, W).
A predictor that draws members itself (``Predictor.native_ensemble``: STEPS) is asked for them;
any other runs M times on the same observed frames with ``MemberNoise`` added to the input of
every step: to the observed frames and to each prediction it feeds back (a predictor with its
own ``forward``, such as SimVP, gets the noise on its observed frames). The noise is Gaussian,
drawn on a grid ``cells`` times coarser than the frame and upsampled bilinearly, so that it
perturbs structures, not single pixels; its scale is a weight, learnt with the rest.

Trained with L1 + L2, every member is pulled to the mean and the learnt scale to 0: the members
become copies. The CRPS loss rewards spread where the future is uncertain and sharpness where it
is not, so the members become samples: ``--model.loss=crps`` (the fair CRPS, Ferro 2014) or
``afcrps`` (almost fair, alpha = 0.95, Lang et al. 2024, "AIFS-CRPS"), averaged over pixels.
"""

from __future__ import annotations

import math
from typing import Any, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from predlearn import masked
from predlearn.ensemble_scores import crps_ensemble
from predlearn.errors import OptionValueError

__all__ = ["ENSEMBLE_LOSSES", "MemberNoise", "check_ensemble", "crps_loss", "expand_members"]

#: the training losses of an ensemble, with their alpha (1: fair; Lang et al. 2024 use 0.95)
ENSEMBLE_LOSSES = {"crps": 1.0, "afcrps": 0.95}


class MemberNoise(nn.Module):
    """Adds ``std * upsample(N(0, 1))`` to frames (..., C, H, W); ``std`` is learnt (its log is
    the one weight ``log_std``), the noise is drawn on a grid ``cells`` times coarser than the
    frame (1: independent per pixel) from torch's global generator."""

    def __init__(self, std: float = 0.1, cells: int = 4) -> None:
        super().__init__()
        self.log_std = nn.Parameter(torch.tensor(math.log(std)))
        self.cells = cells

    @property
    def std(self) -> float:
        """The current scale of the noise."""
        return float(self.log_std.detach().exp())

    def forward(self, frames: Tensor) -> Tensor:
        *lead, channels, height, width = frames.shape
        count = math.prod(lead) * channels
        coarse = (math.ceil(height / self.cells), math.ceil(width / self.cells))
        noise = torch.randn(count, 1, *coarse, device=frames.device, dtype=torch.float32)
        if self.cells > 1:
            noise = F.interpolate(noise, size=(height, width), mode="bilinear",
                                  align_corners=False)
        noise = noise.reshape(frames.shape)
        return frames + (self.log_std.exp() * noise).to(frames.dtype)


@overload
def expand_members(values: Tensor, members: int) -> Tensor: ...
@overload
def expand_members(values: None, members: int) -> None: ...
def expand_members(values: Tensor | None, members: int) -> Tensor | None:
    """Each item of dimension 0 repeated ``members`` times in a row: (B, ...) -> (B * M, ...),
    member m of item b at b * M + m, as ``Tensor.unflatten(0, (B, M))`` reads it back."""
    return None if values is None else values.repeat_interleave(members, dim=0)


def crps_loss(members: Tensor, targets: Tensor, alpha: float = 1.0,
              valid: Tensor | None = None) -> Tensor:
    """The mean over positions of alpha * fair CRPS + (1 - alpha) * CRPS of (B, M, ...) members
    against (B, ...) targets (``valid``: a mask of the targets' shape; the mean is over its true
    positions). Needs M >= 2; the gradient reaches every member (the pair term through a sort)."""
    if members.ndim != targets.ndim + 1 or members.shape[0] != targets.shape[0] or \
            members.shape[2:] != targets.shape[1:]:
        raise ValueError(f"crps_loss needs members (B, M, ...) and targets (B, ...); got "
                         f"{tuple(members.shape)} and {tuple(targets.shape)}")
    first = members.transpose(0, 1)  # (M, B, ...)
    score = crps_ensemble(first, targets, fair=True)
    if alpha != 1.0:
        score = alpha * score + (1 - alpha) * crps_ensemble(first, targets, fair=False)
    return score.mean() if valid is None else masked.masked_mean(score, valid)


def check_ensemble(predictor: Any, members: int, test_members: int | None, loss: str) -> None:
    """One line, named by the option, for an ensemble set-up that cannot work."""
    name = type(predictor).__name__
    for option, value in (("ensemble_members", members), ("test_ensemble_members", test_members)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise OptionValueError(option, f"must be a whole number of members, at least 1; "
                                   f"got {value!r}", value, owner="model")
    most = max(members, test_members or members)
    native = getattr(predictor, "native_ensemble", False)
    if loss in ENSEMBLE_LOSSES and members < 2 and not native:
        raise OptionValueError("loss", f"{loss!r} scores an ensemble: it needs "
                               "--model.ensemble_members=2 or more (2 is enough to train)",
                               loss, owner="model")
    if most > 1 and not native and not getattr(predictor, "trainable", True):
        raise OptionValueError(
            "ensemble_members", f"{name} has no weights that could learn a spread: its "
            f"{most} members would be copies. --model=steps is the baseline ensemble",
            most, owner="model")
    if (test_members or 1) > 1 and members == 1 and not native:
        raise OptionValueError(
            "test_ensemble_members", f"{test_members} members need a model trained as an "
            "ensemble (--model.ensemble_members=2 or more: the noise scale is learnt in "
            "training)", test_members, owner="model")
