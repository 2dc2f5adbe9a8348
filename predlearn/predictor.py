"""The interface every registered predictor implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class Predictor(nn.Module, ABC):
    """Maps J observed frames to K predicted frames (DESIGN 2.2).

    ``forward(frames, horizon, targets=None, teacher_mask=None)``: ``frames`` is (B, J, C, H, W);
    the result is (B, K, C, H, W) with K = ``horizon``. After the J observed frames the predictor
    feeds back its own predictions (closed loop, paper §1.2: "we predict sequence from sequence").
    Only where ``teacher_mask[b, k]`` is true does it feed the ground truth ``targets[b, k]``
    instead of its own k-th prediction (scheduled sampling, an extension; shape (B, K - 1)).
    """

    def check_inputs(
        self, frames: Tensor, horizon: int, targets: Tensor | None, teacher_mask: Tensor | None
    ) -> None:
        """``check_predictor_inputs``, plus the frame shape the predictor was built for (its
        ``frame_channels`` and ``frame_size`` attributes, where it has them)."""
        check_predictor_inputs(frames, horizon, targets, teacher_mask)
        channels, size = getattr(self, "frame_channels", None), getattr(self, "frame_size", None)
        if channels is None or size is None:
            return
        expected = (channels, *size)
        if tuple(frames.shape[2:]) != expected:
            raise ValueError(
                f"{type(self).__name__} was built for frames (C, H, W) = {expected}; "
                f"got {tuple(frames.shape[2:])}. Set frame_channels and frame_size."
            )

    @abstractmethod
    def forward(
        self,
        frames: Tensor,
        horizon: int,
        targets: Tensor | None = None,
        teacher_mask: Tensor | None = None,
    ) -> Tensor: ...


def check_predictor_inputs(
    frames: Tensor, horizon: int, targets: Tensor | None, teacher_mask: Tensor | None
) -> None:
    """Raise a clear error when the inputs of ``Predictor.forward`` do not fit together."""
    if frames.ndim != 5:
        raise ValueError(
            f"frames must be (batch, time, channels, height, width); got shape {tuple(frames.shape)}"
        )
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1; got {horizon}")
    if teacher_mask is None:
        return
    if targets is None:
        raise ValueError("teacher_mask needs targets: the ground truth frames to feed")
    batch = frames.shape[0]
    if tuple(teacher_mask.shape) != (batch, horizon - 1):
        raise ValueError(
            f"teacher_mask must be (batch, horizon - 1) = {(batch, horizon - 1)}; "
            f"got {tuple(teacher_mask.shape)}"
        )
    if targets.shape[1] < horizon - 1 or targets.shape[2:] != frames.shape[2:]:
        raise ValueError(
            f"targets must be (batch, >= horizon - 1, {', '.join(map(str, frames.shape[2:]))}); "
            f"got {tuple(targets.shape)}"
        )


def select_next_input(
    prediction: Tensor, step: int, targets: Tensor | None, teacher_mask: Tensor | None
) -> Tensor:
    """The frame fed after predicted step ``step``: the prediction, or the truth where masked."""
    if teacher_mask is None:
        return prediction
    use_truth = teacher_mask[:, step].view(-1, *([1] * (prediction.ndim - 1)))
    return torch.where(use_truth, targets[:, step], prediction)


__all__ = ["Predictor", "check_predictor_inputs", "select_next_input"]
