"""E3D-LSTM (Wang et al., "Eidetic 3D LSTM: A Model for Video Prediction and Beyond", ICLR 2019).

A stack of Eidetic 3D LSTM cells (``predlearn.zoo.cells.eidetic_lstm``) run one frame at a time
by the shared rollout: the state carries the window of the last inputs that the 3D convolutions
read, every layer's H and C clips, the history of C states the recall attends over, and the
zigzag memory M. Equations and options: docs/models.md#e3d-lstm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.errors import require
from predlearn.predictor import (
    Predictor,
    check_choice,
    check_frame,
    check_kernel_size,
    check_patch_size,
    check_positive,
    check_widths,
)
from predlearn.zoo.cells.eidetic_lstm import VARIANTS, EideticLSTMCell, Variant


class E3DLSTM(Predictor):
    """E3D-LSTM: Eidetic 3D LSTMs stacked, with the recall over past C states (paper §3).

    At step t the bottom layer reads the clip of the last ``window_length`` (patched) inputs,
    zeros before the first frame; layer l > 1 reads H of the layer below. Each layer keeps its H
    and C clips (``window_length`` steps deep) and the C states of all earlier steps (the
    initial zeros included), which its recall gate attends over. With ``variant="paper"`` the
    memory M goes up the layers and from the top layer at t-1 to the bottom layer at t (paper
    §3, as PredRNN's); with ``"openstl"`` every layer gets the initial zero M, as in OpenSTL and
    the authors' TensorFlow code, whose cells return the M they were given instead of the new
    one. A 3D convolution over the window (kernel window x 1 x 1, stride window, no bias, as
    OpenSTL) maps the top layer's H to the next frame.

    Args:
        frame_channels: channels of a frame (1 for Moving MNIST).
        frame_size: (height, width) of a frame.
        hidden_channels: width of each layer, bottom first (OpenSTL: 128 x 4; the authors'
            script: 64 x 4). Equal widths with ``variant="paper"`` (M passes through all).
        kernel_size: spatial filter size of the cells (OpenSTL: 5, fixed in its model).
        temporal_kernel_size: filter size over the window (OpenSTL: 2), at most the window.
        window_length: inputs per clip and depth of every state clip (OpenSTL and the authors'
            code: 2, window stride 1). Extension: any length, still one new step per frame.
        patch_size: space-to-depth reshaping; p x p patches become p^2 channels (OpenSTL: 4).
        layer_norm: layer normalisation of every convolution's output (OpenSTL: off; the
            authors' script: on). C's own LayerNorm (the equations') is always there.
        recall_window: extension. Attend over the last ``recall_window`` C states only (the
            paper's tau); None: all earlier states, as both codes do.
        variant: ``"paper"`` (the paper's equations: M zigzags and is kept by the forget gate,
            o = sigmoid(...), recall rows are positions, biases in the x-convolutions) or
            ``"openstl"`` (OpenSTL exactly; docs/models.md#e3d-lstm lists the differences).
    """

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """A few channels; patches of 8 keep the recall's attention small at 128 x 128."""
        return {"hidden_channels": [4, 4], "kernel_size": 3, "patch_size": 8}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: Sequence[int] = (64, 64),
        hidden_channels: Sequence[int] = (128, 128, 128, 128),  # OpenSTL num_hidden
        kernel_size: int = 5,  # OpenSTL: (2, 5, 5)
        temporal_kernel_size: int = 2,
        window_length: int = 2,  # OpenSTL and the authors' code
        patch_size: int = 4,  # OpenSTL patch_size
        layer_norm: bool = False,  # OpenSTL layer_norm 0
        recall_window: int | None = None,
        variant: Variant = "paper",
    ) -> None:
        super().__init__()
        height, width = check_frame(frame_channels, frame_size)
        check_patch_size(patch_size, height, width)
        widths = check_widths("hidden_channels", hidden_channels)
        check_kernel_size("kernel_size", kernel_size)
        check_positive("window_length", window_length)
        require(1 <= temporal_kernel_size <= window_length, "temporal_kernel_size",
                f"must be between 1 and window_length ({window_length}); got "
                f"{temporal_kernel_size}", temporal_kernel_size)
        if recall_window is not None:
            check_positive("recall_window", recall_window)
        check_choice("variant", variant, VARIANTS)
        require(variant != "paper" or len(set(widths)) == 1, "hidden_channels",
                "the zigzag memory M passes through every layer (variant='paper'), so every "
                f"layer needs the same width; got {widths}", hidden_channels)
        self.frame_channels = frame_channels
        self.frame_size = (height, width)
        self.patch_size = patch_size
        self.hidden_channels = widths
        self.window_length = window_length
        self.recall_window = recall_window
        self.variant = variant
        self.grid = (height // patch_size, width // patch_size)
        patched = frame_channels * patch_size**2
        self.cells = nn.ModuleList(
            EideticLSTMCell(patched if layer == 0 else widths[layer - 1], w, window_length,
                            kernel_size, temporal_kernel_size, self.grid, layer_norm, variant)
            for layer, w in enumerate(widths)
        )
        self.head = nn.Conv3d(widths[-1], patched, (window_length, 1, 1),
                              stride=(window_length, 1, 1), bias=False)

    def to_grid(self, frame: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C*p*p, H/p, W/p)."""
        return F.pixel_unshuffle(frame, self.patch_size) if self.patch_size > 1 else frame

    def from_grid(self, grid: Tensor) -> Tensor:
        return F.pixel_shuffle(grid, self.patch_size) if self.patch_size > 1 else grid

    def initial_state(self, frames: Tensor) -> dict[str, Any]:
        """Zeros: the inputs before the first frame, every H and C clip, M; C's history empty."""
        batch = frames.shape[0]
        patched = self.frame_channels * self.patch_size**2

        def clip(channels: int) -> Tensor:
            return frames.new_zeros(batch, channels, self.window_length, *self.grid)

        return {
            "window": [frames.new_zeros(batch, patched, *self.grid)
                       for _ in range(self.window_length - 1)],
            "h": [clip(w) for w in self.hidden_channels],
            "c": [clip(w) for w in self.hidden_channels],
            "history": [[] for _ in self.hidden_channels],
            "m": clip(self.hidden_channels[0]),
        }

    def transition(self, inputs: Tensor, state: dict[str, Any],
                   predict: bool = True) -> tuple[Tensor, dict[str, Any]]:
        """One step: the clip of the last ``window_length`` inputs through every layer; returns
        the next frame (the head is cheap, so it always predicts) and the new state."""
        window = [*state["window"], self.to_grid(inputs)]
        x = torch.stack(window, dim=2)  # (B, C p^2, window, H/p, W/p), oldest first
        h, c, m = list(state["h"]), list(state["c"]), state["m"]
        histories = []
        for layer, cell in enumerate(self.cells):
            history = [*state["history"][layer], c[layer]]  # C_{-1} = 0, C_0 .. C_{t-1}
            if self.recall_window is not None:
                history = history[-self.recall_window:]
            histories.append(history)
            memory = m if self.variant == "paper" else torch.zeros_like(h[layer])
            h[layer], c[layer], memory = cell(x if layer == 0 else h[layer - 1], h[layer],
                                              c[layer], memory, history)
            if self.variant == "paper":
                m = memory  # up the stack, then from the top at t to the bottom at t + 1
        prediction = self.from_grid(self.head(h[-1]).squeeze(2))
        return prediction, {"window": window[1:], "h": h, "c": c, "history": histories, "m": m}
