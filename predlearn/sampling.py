"""Sampling schedules: when training feeds the ground truth instead of the model's own output.

Extensions from the authors' released code, off by default (the paper, §4, trains closed loop:
each prediction is fed back). ``PredictiveModule(sampling=...)`` takes one schedule; on the
command line ``--model.sampling=ScheduledSampling --model.sampling.decay=0.0016``. Validation and
test are always closed loop. docs/models.md "Options" gives the recipes and their sources.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from predlearn.class_paths import class_path
from predlearn.errors import OptionValueError, names_options_under, require


class SamplingSchedule:
    """A schedule of teacher forcing over training steps: ``masks`` says, for one batch at one
    step, where to feed the truth (``Predictor.rollout``'s ``context_mask`` and
    ``teacher_mask``), ``probabilities`` what to log. Its constructor arguments are its
    ``config``, which checkpoints keep."""

    #: whether the schedule replaces observed frames by predictions (needs a predictor that
    #: predicts every frame, ``Predictor.predicts_every_frame``)
    feeds_predictions_of_observed_frames = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Name the options a schedule refuses ``--model.sampling.<argument>``."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = names_options_under(  # type: ignore[method-assign]
                "model.sampling", cls.__dict__["__init__"])

    def masks(self, step: int, batch: int, context: int, horizon: int,
              device: torch.device | None = None, generator: torch.Generator | None = None
              ) -> tuple[Tensor | None, Tensor]:
        """(context_mask (batch, context - 1) or None, teacher_mask (batch, horizon - 1)):
        where true, the truth is fed."""
        raise NotImplementedError

    def probabilities(self, step: int) -> dict[str, float]:
        """The probabilities at ``step``, by the key they are logged under."""
        raise NotImplementedError

    @property
    def config(self) -> dict[str, Any]:
        """``{"class_path": ..., "init_args": {...}}``: how a checkpoint rebuilds it."""
        return {"class_path": class_path(type(self)), "init_args": dict(vars(self))}


class ScheduledSampling(SamplingSchedule):
    """At each predicted step the truth replaces the prediction as the next input with
    probability p(step) = max(0, start - decay * step), and p = 0 from ``stop`` on. Defaults:
    the authors' PredRNN code (1.0, 2e-5 per step, 0 from step 50,000)."""

    def __init__(self, start: float = 1.0, decay: float = 2e-5, stop: int = 50_000) -> None:
        require(0.0 <= start <= 1.0, "start", f"must lie in [0, 1]; got {start}", start)
        require(decay >= 0, "decay", f"must be >= 0; got {decay}", decay)
        require(stop >= 0, "stop", f"must be >= 0; got {stop}", stop)
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

    def masks(self, step: int, batch: int, context: int, horizon: int,
              device: torch.device | None = None, generator: torch.Generator | None = None
              ) -> tuple[Tensor | None, Tensor]:
        return None, self.mask(step, batch, horizon, device, generator)

    def probabilities(self, step: int) -> dict[str, float]:
        return {"train/teacher_forcing_prob": self.probability(step)}


class ReverseScheduledSampling(SamplingSchedule):
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

    feeds_predictions_of_observed_frames = True

    def __init__(self, start: int = 25_000, end: int = 50_000, alpha: float = 2_500.0) -> None:
        require(start >= 0, "start", f"must be >= 0; got {start}", start)
        if end <= start:
            raise OptionValueError("end", f"must come after start ({start}); got {end}", end)
        require(alpha > 0, "alpha", f"must be positive; got {alpha}", alpha)
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
              device: torch.device | None = None, generator: torch.Generator | None = None
              ) -> tuple[Tensor | None, Tensor]:
        draws = torch.rand(batch, context - 1 + horizon - 1, device=device, generator=generator)
        context_mask = draws[:, : context - 1] < self.context_probability(step)
        teacher_mask = draws[:, context - 1 :] < self.target_probability(step)
        return context_mask, teacher_mask

    def probabilities(self, step: int) -> dict[str, float]:
        return {"train/teacher_forcing_prob": self.target_probability(step),
                "train/context_truth_prob": self.context_probability(step)}
