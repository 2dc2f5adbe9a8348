"""Predictors that map the observed frames to the next ones in one call (SimVP, TAU).

They have no recurrence and no closed loop over single frames: ``predict_block`` maps the
J observed frames to the next ``block_frames`` at once. A longer horizon (KTH's 10 -> 20 test)
chains blocks, feeding the newest J frames back, as OpenSTL does for these models. The recipes
that replace fed-back frames by the truth (scheduled sampling) or score predictions of observed
frames (``loss_frames: all``) do not apply; ``PredictiveModule`` refuses them in one line.
"""

from __future__ import annotations

import torch
from torch import Tensor

from predlearn.errors import OptionValueError
from predlearn.predictor import Predictor

__all__ = ["DirectPredictor"]


class DirectPredictor(Predictor):
    """J frames in, ``block_frames`` frames out, in one call (docs/models.md).

    Subclasses set ``context_frames`` (J, which their layers are built for: the command line
    sets it from the data) and ``block_frames`` (frames per call, usually J), and give
    ``predict_block(frames) -> (B, block_frames, C, H, W)``.
    """

    predicts_every_frame = False
    feeds_back_frames = False
    context_frames: int
    block_frames: int

    def predict_block(self, frames: Tensor) -> Tensor:
        """(B, J, C, H, W) observed frames -> (B, block_frames, C, H, W) next frames."""
        raise NotImplementedError(f"{type(self).__name__} gives no predict_block")

    def forward(self, frames: Tensor, horizon: int, targets: Tensor | None = None,
                teacher_mask: Tensor | None = None) -> Tensor:
        if teacher_mask is not None and bool(teacher_mask.any()):  # all false: nothing fed
            raise OptionValueError("sampling", f"{type(self).__name__} predicts its frames at "
                                   "once, not one by one: scheduled sampling does not apply; "
                                   "leave --model.sampling out", owner="model")
        self.check_inputs(frames, horizon, None, None)
        if frames.shape[1] != self.context_frames:
            raise OptionValueError(
                "context_frames", f"{type(self).__name__} was built for "
                f"{self.context_frames} observed frames; got {frames.shape[1]}",
                self.context_frames, owner="model.predictor")
        history, blocks = frames, []
        produced = 0
        while produced < horizon:
            block = self.predict_block(history[:, -self.context_frames:])
            blocks.append(block)
            produced += block.shape[1]
            if produced < horizon:
                history = torch.cat([history, block.to(history.dtype)], dim=1)
        return torch.cat(blocks, dim=1)[:, :horizon]
