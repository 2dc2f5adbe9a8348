"""MIM, Memory In Memory (Wang et al., CVPR 2019): PredRNN with the forget path of every layer above
the first replaced by two cascaded memories over the differences between time steps.

Built as OpenSTL's ``MIM_Model`` (docs/models.md#mim); cells in ``zoo/cells/mim_block.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.errors import require
from predlearn.predictor import (
    Predictor,
    check_frame,
    check_kernel_size,
    check_patch_size,
    check_widths,
)
from predlearn.zoo.cells.mim_block import BiasFreeSTLSTMCell, MIMBlock


class MIM(Predictor):
    """An ST-LSTM layer, then MIM blocks; the zigzag memory M runs up the layers and from the top
    at t-1 to the bottom at t, as in PredRNN (paper §3).

    Each MIM block l >= 2 keeps, besides H, C and M, the state of its MIM-N (D, N) and its MIM-S
    cell S. The first block's MIM-N reads the difference H^1_t - H^1_{t-1} of the ST-LSTM layer's
    hidden states (the state carries H^1_{t-1}); each block above reads the D of the block below
    at the same step (OpenSTL and the authors' code). At the first step there is no difference:
    D is zero and MIM-N does not run. Every state starts at zero for every sequence.

    Args:
        frame_channels: channels of a frame (set from the data).
        frame_size: (height, width) of a frame (set from the data); the peepholes of MIM-N and
            MIM-S hold one weight per position, so the model is built for one size.
        hidden_channels: the width of each layer, bottom first (OpenSTL: 128 x 4). At least two
            layers (an ST-LSTM and one MIM block), all of one width (M passes through all).
        kernel_size: the filter size of every convolution but the 1 x 1 ones (OpenSTL: 5).
        patch_size: space-to-depth reshaping, each p x p patch becoming p*p channels
            (OpenSTL: 4).
        forget_bias: added inside every forget gate (OpenSTL's cells: 1.0).
        layer_norm: a LayerNorm over every stacked convolution's output (OpenSTL's option, off
            in its Moving MNIST set-up).
        detach_stationary: cut the gradient through the stationary memory S between steps, as
            OpenSTL does (it keeps S on the module and detaches it at every step); False
            back-propagates through S over the whole sequence.
    """

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Three layers, so that a MIM-N fed by the MIM-N below is exercised."""
        return {"hidden_channels": [4, 4, 4], "kernel_size": 3}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: Sequence[int] = (64, 64),
        hidden_channels: Sequence[int] = (128, 128, 128, 128),  # OpenSTL: num_hidden
        kernel_size: int = 5,  # OpenSTL: filter_size
        patch_size: int = 4,  # OpenSTL: patch_size
        forget_bias: float = 1.0,  # OpenSTL's cells
        layer_norm: bool = False,  # OpenSTL: layer_norm 0
        detach_stationary: bool = True,  # OpenSTL (a side effect of its stateful module)
    ) -> None:
        super().__init__()
        height, width = check_frame(frame_channels, frame_size)
        check_patch_size(patch_size, height, width)
        widths = check_widths("hidden_channels", hidden_channels)
        require(len(widths) >= 2 and len(set(widths)) == 1, "hidden_channels",
                "MIM needs at least two layers (an ST-LSTM, then MIM blocks) of one width, as "
                f"the memory M passes through every layer; got {widths}", hidden_channels)
        check_kernel_size("kernel_size", kernel_size)
        self.frame_channels = frame_channels
        self.frame_size = (height, width)
        self.patch_size = patch_size
        self.hidden_channels = widths
        self.grid = (height // patch_size, width // patch_size)
        patched = frame_channels * patch_size**2
        shared: dict[str, Any] = {"kernel_size": kernel_size, "spatial_size": self.grid,
                                  "forget_bias": forget_bias, "layer_norm": layer_norm}
        self.first = BiasFreeSTLSTMCell(patched, widths[0], **shared)
        self.blocks = nn.ModuleList(
            MIMBlock(widths[layer - 1], widths[layer], detach_stationary=detach_stationary,
                     **shared)
            for layer in range(1, len(widths))
        )
        self.head = nn.Conv2d(widths[-1], patched, 1, bias=False)  # OpenSTL: conv_last, no bias

    def to_grid(self, frame: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C*p*p, H/p, W/p)."""
        return F.pixel_unshuffle(frame, self.patch_size) if self.patch_size > 1 else frame

    def from_grid(self, grid: Tensor) -> Tensor:
        return F.pixel_shuffle(grid, self.patch_size) if self.patch_size > 1 else grid

    def initial_state(self, frames: Tensor) -> dict[str, Any]:
        """Zeros for every state; ``step`` counts the steps taken (MIM-N waits for the second)."""
        def zeros(channels: int) -> Tensor:
            return frames.new_zeros(frames.shape[0], channels, *self.grid)

        blocks = self.hidden_channels[1:]
        return {
            "h": [zeros(w) for w in self.hidden_channels],
            "c": [zeros(w) for w in self.hidden_channels],
            "m": zeros(self.hidden_channels[0]),
            "n": [(zeros(w), zeros(w)) for w in blocks],  # MIM-N: (D, N) per block
            "s": [zeros(w) for w in blocks],  # MIM-S: S per block
            "step": 0,
        }

    def transition(
        self, inputs: Tensor, state: dict[str, Any], predict: bool = True
    ) -> tuple[Tensor | None, dict[str, Any]]:
        """One step up the stack on the frame ``inputs``; the next frame from the top H."""
        h, c, n, s = list(state["h"]), list(state["c"]), list(state["n"]), list(state["s"])
        h[0], c[0], m = self.first(self.to_grid(inputs), h[0], c[0], state["m"])
        change = None if state["step"] == 0 else h[0] - state["h"][0]
        for index, block in enumerate(self.blocks):
            layer = index + 1
            h[layer], c[layer], m, n[index], s[index] = block(
                h[layer - 1], h[layer], c[layer], m, change, n[index], s[index])
            change = None if change is None else n[index][0]  # the next MIM-N reads this D
        prediction = self.from_grid(self.head(h[-1])) if predict else None
        return prediction, {"h": h, "c": c, "m": m, "n": n, "s": s, "step": state["step"] + 1}
