"""Scheduled sampling: an extension from the authors' released code (DESIGN 1.11), off by default.

During training, at each predicted step the ground-truth frame replaces the model's own
prediction as the next input with probability p(step) = max(0, start - decay * step), and p = 0
from ``stop`` on. Validation and test are always closed loop.
"""

from __future__ import annotations

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
