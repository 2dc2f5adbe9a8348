"""A tiny ``DirectPredictor`` for the tests of models that predict their frames at once."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from predlearn.direct_predictor import DirectPredictor
from predlearn.predictor import check_frame


class BlockConv(DirectPredictor):
    """The J observed frames, stacked as channels, to the next J by one convolution; with
    ``smoothness`` a prediction loss: the mean squared step between predicted frames."""

    def __init__(self, context_frames: int = 10, frame_channels: int = 1,
                 frame_size: Sequence[int] = (64, 64), smoothness: float = 0.0) -> None:
        super().__init__()
        self.frame_channels, self.frame_size = frame_channels, check_frame(frame_channels,
                                                                           frame_size)
        self.context_frames = self.block_frames = context_frames
        self.smoothness = smoothness
        width = context_frames * frame_channels
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def predict_block(self, frames: Tensor) -> Tensor:
        return self.conv(frames.flatten(1, 2)).unflatten(1, frames.shape[1:3])

    def prediction_loss(self, predictions: Tensor, targets: Tensor) -> Tensor | None:
        if not self.smoothness:
            return None
        return self.smoothness * (predictions[:, 1:] - predictions[:, :-1]).square().mean()

    @classmethod
    def tiny_config(cls) -> dict:
        return {}


__all__ = ["BlockConv"]
