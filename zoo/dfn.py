"""DFN: Dynamic Filter Networks (De Brabandere, Jia, Tuytelaars, Van Gool 2016; paper §4.1).

See docs/models.md#dfn.

A recurrent filter-generating network outputs, at every step, one normalised local filter per
pixel and sample (dynamic local filtering); the filters, shared over channels, are applied to the
last frame to produce the next one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.predictor import (
    Predictor,
    check_frame,
    check_kernel_size,
    check_positive,
    check_widths,
)


def apply_dynamic_filters(frame: Tensor, filters: Tensor) -> Tensor:
    """Filter each pixel of ``frame`` with its own k x k filter (dynamic local filtering).

    ``out[b, c, y, x] = sum_{i,j} filters[b, i*k + j, y, x] * frame[b, c, y + i - r, x + j - r]``
    with r = k // 2: a cross-correlation whose weights change with sample and position, the same
    filter for every channel. Pixels outside the frame count as zero (zero padding at the borders).
    Shapes: ``frame`` (B, C, H, W); ``filters`` (B, k*k, H, W) with k odd.
    """
    if frame.ndim != 4:
        raise ValueError(f"frame must be (B, C, H, W); got {tuple(frame.shape)}")
    batch, channels, height, width = frame.shape
    taps = filters.shape[1] if filters.ndim == 4 else 0
    size = math.isqrt(taps)
    if (filters.ndim != 4 or size * size != taps or size % 2 == 0
            or (filters.shape[0], *filters.shape[2:]) != (batch, height, width)):
        raise ValueError(
            f"filters must be (B, k*k, H, W) with k odd, B = {batch}, H, W = {height}, {width}; "
            f"got {tuple(filters.shape)}"
        )
    # unfold orders each patch row-major over the filter taps: index i*k + j <-> offset (i-r, j-r).
    patches = F.unfold(frame.reshape(batch * channels, 1, height, width), size, padding=size // 2)
    patches = patches.view(batch, channels, taps, height, width)
    return (patches * filters.unsqueeze(1)).sum(dim=2)


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     padding=kernel_size // 2)


class DFN(Predictor):
    """Dynamic Filter Network for video prediction (De Brabandere et al. 2016).

    The filter-generating network is the authors' Moving MNIST model (their released Lasagne code,
    ``models/model_bouncingMnistOriginal.py``), 3x3 convolutions with leaky ReLU throughout:

    - encoder: the current frame through four convolutions (widths ``encoder_channels``; the second
      has stride 2), then one more to the hidden width: ``e_t`` at half resolution;
    - recurrence: ``h_t = e_t + g(h_{t-1})``, where ``g`` is two convolutions of the hidden width
      and ``h_0 = 0``. It is a plain additive convolutional recurrence, not a (Conv)LSTM;
    - decoder: two convolutions, 2x nearest upsampling, two convolutions (widths
      ``decoder_channels``), a 1x1 convolution to ``head_channels`` and a linear 1x1 convolution to
      the ``filter_size``**2 filter taps, softmax over the taps at every pixel;
    - the filters are applied to the current frame (``apply_dynamic_filters``) to give the next.

    Choices and departures:

    - Channels: the same per-pixel filter moves every channel (the authors' multi-channel
      experiment shares filters over colour channels the same way).
    - Frame sizes with an odd side: the stride-2 convolution rounds the hidden grid up (zero
      padding) and the upsampled decoder output is cropped back to the frame size.
    - The optional refinement network and dynamic bias of the released code are left out (off in
      its Moving MNIST model by default).
    - Weights use He-uniform initialisation with gain 1 and biases zero, as in the released code.

    Args:
        frame_channels: channels of a frame.
        frame_size: (height, width) of a frame (checked against the input).
        filter_size: side k of each dynamic filter (odd).
        encoder_channels: widths of the four encoder convolutions.
        hidden_channels: width of the encoder's last convolution and of the recurrent state.
        decoder_channels: widths of the four decoder convolutions.
        head_channels: width of the 1x1 convolution before the filter taps.
        negative_slope: slope of the leaky ReLU.
    """

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model."""
        return {"encoder_channels": [3, 4, 3, 4], "hidden_channels": 5,
                "decoder_channels": [4, 3, 4, 3], "head_channels": 4}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: tuple[int, int] = (64, 64),
        filter_size: int = 9,  # De Brabandere et al. 2016, Moving MNIST: 9x9 filters
        encoder_channels: Sequence[int] = (32, 32, 64, 64),  # De Brabandere et al. code
        hidden_channels: int = 128,  # De Brabandere et al. code: 128-channel hidden state
        decoder_channels: Sequence[int] = (64, 64, 64, 64),  # De Brabandere et al. code
        head_channels: int = 128,  # De Brabandere et al. code: 1x1 convolution to 128
        negative_slope: float = 0.01,  # De Brabandere et al. code: Lasagne's leaky_rectify
    ) -> None:
        super().__init__()
        encoder_channels = check_widths("encoder_channels", encoder_channels, count=4)
        decoder_channels = check_widths("decoder_channels", decoder_channels, count=4)
        check_positive("hidden_channels", hidden_channels)
        check_positive("head_channels", head_channels)
        check_kernel_size("filter_size", filter_size)
        self.frame_channels = frame_channels
        self.frame_size = check_frame(frame_channels, frame_size)
        self.filter_size = filter_size
        self.hidden_channels = hidden_channels
        self.grid = tuple(-(-s // 2) for s in self.frame_size)

        def act() -> nn.Module:
            return nn.LeakyReLU(negative_slope)

        e0, e1, e2, e3 = encoder_channels
        d0, d1, d2, d3 = decoder_channels
        self.encoder = nn.Sequential(
            _conv(frame_channels, e0), act(), _conv(e0, e1, stride=2), act(),
            _conv(e1, e2), act(), _conv(e2, e3), act(), _conv(e3, hidden_channels), act(),
        )
        self.recurrence = nn.Sequential(
            _conv(hidden_channels, hidden_channels), act(),
            _conv(hidden_channels, hidden_channels), act(),
        )
        self.decoder_low = nn.Sequential(_conv(hidden_channels, d0), act(), _conv(d0, d1), act())
        self.decoder_high = nn.Sequential(
            _conv(d1, d2), act(), _conv(d2, d3), act(), _conv(d3, head_channels, 1), act(),
            _conv(head_channels, filter_size**2, 1),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # Lasagne's HeUniform(gain=1): U(-sqrt(3 / fan_in), +sqrt(3 / fan_in)); bias 0.
                nn.init.kaiming_uniform_(module.weight, a=1.0)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def init_state(self, batch: int, reference: Tensor) -> Tensor:
        """The zero hidden state (B, hidden_channels, ceil(H/2), ceil(W/2))."""
        return reference.new_zeros(batch, self.hidden_channels, *self.grid)

    def generate_filters(self, frame: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Filters (B, k*k, H, W), non-negative and summing to 1 over the taps, and the new state."""
        hidden = self.encoder(frame) + self.recurrence(hidden)
        features = F.interpolate(self.decoder_low(hidden), scale_factor=2.0, mode="nearest")
        height, width = self.frame_size
        logits = self.decoder_high(features[..., :height, :width])
        return torch.softmax(logits, dim=1), hidden

    def step(self, frame: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """One step: the next frame predicted from ``frame`` and the new hidden state."""
        filters, hidden = self.generate_filters(frame, hidden)
        return apply_dynamic_filters(frame, filters), hidden

    def initial_state(self, frames: Tensor) -> Tensor:
        """The zero hidden state, for the shared rollout (``Predictor.rollout``)."""
        return self.init_state(frames.shape[0], frames)

    def transition(
        self, inputs: Tensor, state: Tensor, predict: bool = True
    ) -> tuple[Tensor, Tensor]:
        """One step of the shared rollout: ``step`` on the previous frame."""
        return self.step(inputs, state)


__all__ = ["DFN", "apply_dynamic_filters"]
