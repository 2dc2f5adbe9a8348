"""Scheduled sampling and reverse scheduled sampling: extensions from the authors' released code
(DESIGN 1.11; PredRNN v2), off by default.

During training, at each predicted step the ground-truth frame replaces the model's own
prediction as the next input with probability p(step) = max(0, start - decay * step), and p = 0
from ``stop`` on. Validation and test are always closed loop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class ScheduledSampling:
    """The teacher-forcing probability schedule and the per-sample masks it draws."""

    def __init__(self, start: float = 1.0, decay: float = 2e-5, stop: int = 50_000) -> None:
        if not 0.0 <= start <= 1.0 or decay < 0 or stop < 0:
            raise ValueError(
                f"scheduled sampling needs 0 <= start <= 1, decay >= 0, stop >= 0; "
                f"got start={start}, decay={decay}, stop={stop}"
            )
        self.start, self.decay, self.stop = start, decay, stop

    def probability(self, step: int) -> float:
        if step >= self.stop:
            return 0.0
        return max(0.0, self.start - self.decay * step)

    def mask(self, step: int, batch: int, horizon: int, device: torch.device | None = None,
             generator: torch.Generator | None = None) -> Tensor:
        """(batch, horizon - 1) booleans: where to feed the truth instead of the prediction."""
        draws = torch.rand(batch, horizon - 1, device=device, generator=generator)
        return draws < self.probability(step)


class ReverseScheduledSampling:
    """Reverse scheduled sampling (PredRNN v2, Wang et al., TPAMI 2022; the authors' ``run.py``).

    Two probabilities of feeding the truth, by training step s:

    - observed frames (the encoder side), r(s): 0.5 until ``start``, then
      1 - 0.5 exp(-(s - start) / alpha) until ``end``, then 1. Early on the model is often fed
      its own predictions of observed frames, which forces it to learn long-term dynamics; by
      ``end`` it reads the real observed frames, as at test time.
    - predicted frames (the forecaster side), p(s): 0.5 until ``start``, falling linearly to 0 at
      ``end``, then 0 (closed loop, as at test time).

    Defaults are the authors' Moving MNIST script: start 25,000, end 50,000, alpha 2,500.
    """

    def __init__(self, start: int = 25_000, end: int = 50_000, alpha: float = 2_500.0) -> None:
        if not 0 <= start < end or alpha <= 0:
            raise ValueError(
                f"reverse scheduled sampling needs 0 <= start < end and alpha > 0; got "
                f"start={start}, end={end}, alpha={alpha}"
            )
        self.start, self.end, self.alpha = start, end, alpha

    def context_probability(self, step: int) -> float:
        """r(s): the probability of feeding an observed frame rather than its prediction."""
        if step < self.start:
            return 0.5
        if step < self.end:
            return 1.0 - 0.5 * math.exp(-(step - self.start) / self.alpha)
        return 1.0

    def target_probability(self, step: int) -> float:
        """p(s): the probability of feeding the true future frame rather than the prediction."""
        if step < self.start:
            return 0.5
        if step < self.end:
            return 0.5 - 0.5 * (step - self.start) / (self.end - self.start)
        return 0.0

    def masks(self, step: int, batch: int, context: int, horizon: int,
              device: torch.device | None = None,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(context_mask (batch, context - 1), teacher_mask (batch, horizon - 1)): where true,
        feed the truth (``Predictor.rollout``)."""
        draws = torch.rand(batch, context - 1 + horizon - 1, device=device, generator=generator)
        context_mask = draws[:, : context - 1] < self.context_probability(step)
        teacher_mask = draws[:, context - 1 :] < self.target_probability(step)
        return context_mask, teacher_mask
