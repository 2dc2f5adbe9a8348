"""One stacking and rollout loop for every recurrent-cell predictor (docs/models.md).

ConvLSTM, PredRNN-M and PredRNN differ only in the cell; the cell's flags decide how states are
routed: C stays in its layer (horizontal), M zigzags up the layers and from the top layer at t-1
to the bottom layer at t (M^0_t = M^L_{t-1}, paper §3.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from predlearn.errors import OptionValueError
from predlearn.predictor import (
    Predictor,
    check_frame,
    check_kernel_size,
    check_patch_size,
    check_widths,
)
from predlearn.registry import CELLS, UnknownNameError


class RecurrentStack(Predictor):
    """Layers of one registered cell, unrolled over time, with a 1x1 convolution to pixels.

    Registered as ``stack``: any registered cell, chosen by name (``--model=stack
    --model.predictor.cell=st_lstm``), so a new cell needs no model class. The named models of
    Table 1 are this class with their cell fixed in the class attribute ``cell``.

    Args:
        frame_channels: channels of a frame (1 for Moving MNIST).
        frame_size: (height, width) of a frame.
        hidden_channels: width of each layer, bottom first (paper §4.1: 128 x 4).
        kernel_size: filter size of every convolution in the cells. The paper does not state it
            for Moving MNIST (radar, §4.3: 3); the authors' released code uses 5.
        patch_size: extension, off (1) in the paper configs. Space-to-depth reshaping: each
            p x p patch becomes p*p channels, so the recurrent grid is p times smaller per side
            (the authors' code uses 4).
        cell_options: extra keyword arguments for the cell (e.g. ``{"forget_bias": 1.0}``).
        checkpoint_steps: extension. Activation checkpointing per time step in training: the
            activations of each step are recomputed during the backward pass instead of being
            kept, trading about one extra forward pass for memory (long horizons, large frames).
        channels_last: extension, a memory layout only (same numbers within float rounding).
            Weights, states and inputs are kept channels-last (NHWC), the layout oneDNN and
            cuDNN convolutions prefer, which saves a layout conversion around every convolution
            (about 10 % of a CPU training step; docs/benchmarks.md).
        cell: the registry name of the cell (``predlearn list`` shows them). Required for
            ``stack``; a named model's own cell otherwise, which it cannot be given another.
    """

    cell: str = ""

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model. The stack
        itself needs a cell; its named subclasses have theirs."""
        return {"hidden_channels": [4, 4], "kernel_size": 3,
                **({} if cls.cell else {"cell": "st_lstm"})}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: tuple[int, int] = (64, 64),
        hidden_channels: Sequence[int] = (128, 128, 128, 128),  # paper §4.1: 128 x 4
        kernel_size: int = 5,
        patch_size: int = 1,
        cell_options: dict[str, Any] | None = None,
        checkpoint_steps: bool = False,
        channels_last: bool = False,
        cell: str | None = None,
    ) -> None:
        super().__init__()
        fixed = type(self).cell
        if fixed and cell not in (None, fixed):
            raise OptionValueError(
                "cell", f"{type(self).__name__} is built of {fixed!r} cells; for another cell "
                f"use the stack model: --model=stack --model.predictor.cell={cell}", cell)
        if not (cell or fixed):
            raise OptionValueError("cell", "name the cell of the stack (e.g. cell='st_lstm'); "
                                   "known cells: " + ", ".join(CELLS.names()))
        self.cell = cell or fixed
        height, width = check_frame(frame_channels, frame_size)
        check_patch_size(patch_size, height, width)
        hidden_channels = check_widths("hidden_channels", hidden_channels)
        check_kernel_size("kernel_size", kernel_size)
        try:
            cell_class = CELLS.get(self.cell)
        except UnknownNameError as error:
            raise OptionValueError("cell", str(error), self.cell) from None
        self.frame_channels = frame_channels
        self.frame_size = (height, width)
        self.patch_size = patch_size
        self.hidden_channels = hidden_channels
        self.checkpoint_steps = checkpoint_steps
        self.channels_last = channels_last
        self.cell_class = cell_class
        self.grid = (height // patch_size, width // patch_size)
        patched_channels = frame_channels * patch_size**2

        cells = []
        for layer, width_l in enumerate(hidden_channels):
            below = hidden_channels[layer - 1]  # for layer 0: the top layer (H^0_t = H^L_{t-1})
            if cell_class.hidden_from_below:
                input_channels = patched_channels if layer == 0 else 0
                recurrent_channels = below
            else:
                input_channels = patched_channels if layer == 0 else below
                recurrent_channels = width_l
            cells.append(
                cell_class(
                    input_channels=input_channels,
                    hidden_channels=width_l,
                    kernel_size=kernel_size,
                    spatial_size=self.grid,
                    recurrent_channels=recurrent_channels,
                    **(cell_options or {}),
                )
            )
        self.cells = nn.ModuleList(cells)
        # Extension: where widths differ, a 1x1 convolution carries M to the next layer's width.
        self.memory_adapters = nn.ModuleList(
            nn.Conv2d(hidden_channels[layer - 1], width_l, 1, bias=False)
            if cell_class.uses_zigzag_memory and hidden_channels[layer - 1] != width_l
            else nn.Identity()
            for layer, width_l in enumerate(hidden_channels)
        )
        # H^L_t back to pixels; a 1x1 convolution as in the authors' code (the paper names none).
        self.head = nn.Conv2d(hidden_channels[-1], patched_channels, 1)
        if channels_last:
            # Module.to takes memory_format (its documentation says so); torch's overloads omit it
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def _layout(self, tensor: Tensor) -> Tensor:
        """``tensor`` in the stack's memory layout (a no-op unless ``channels_last``)."""
        if self.channels_last:
            return tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def to_grid(self, frame: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C*p*p, H/p, W/p)."""
        return F.pixel_unshuffle(frame, self.patch_size) if self.patch_size > 1 else frame

    def from_grid(self, grid: Tensor) -> Tensor:
        return F.pixel_shuffle(grid, self.patch_size) if self.patch_size > 1 else grid

    def init_states(self, batch: int, reference: Tensor) -> dict[str, Any]:
        def zeros(channels: int) -> Tensor:
            return self._layout(reference.new_zeros(batch, channels, *self.grid))

        return {
            "h": [zeros(w) for w in self.hidden_channels],
            "c": [zeros(w) if self.cell_class.uses_temporal_memory else None
                  for w in self.hidden_channels],
            "m": zeros(self.hidden_channels[-1]) if self.cell_class.uses_zigzag_memory else None,
        }

    def step(self, frame: Tensor, states: dict[str, Any]) -> Tensor:
        """Advance every layer by one time step on ``frame``; returns the next frame.

        ``states`` is updated in place. With ``checkpoint_steps`` (in training), the step's
        activations are recomputed in the backward pass instead of being kept.
        """
        # Copies: the lists in ``states`` change below, the checkpoint must see this step's inputs.
        inputs = (frame, list(states["h"]), list(states["c"]), states["m"])
        if self.checkpoint_steps and self.training and torch.is_grad_enabled():
            output, h, c, m, increments = checkpoint(self._advance, *inputs, use_reentrant=False)
        else:
            output, h, c, m, increments = self._advance(*inputs)
        states["h"][:], states["c"][:], states["m"] = h, c, m
        if self.cell_class.returns_increments:
            states["increments"] = increments
        return output

    def _advance(self, frame: Tensor, h: list, c: list, m: Tensor | None):
        """One step as a pure function of the states (so that it can be checkpointed)."""
        h, c = list(h), list(c)  # the caller's lists stay as they were (recomputation reads them)
        increments = []
        x = self._layout(self.to_grid(frame))  # m enters as M^L_{t-1}: the zigzag memory goes to the bottom
        for layer, cell in enumerate(self.cells):
            if cell.hidden_from_below:
                # H^0_t = H^L_{t-1}: before the update, h[-1] still holds the previous step.
                x_in, h_in = (x if layer == 0 else None), h[layer - 1]
            else:
                x_in, h_in = (x if layer == 0 else h[layer - 1]), h[layer]
            if m is not None:
                m = self.memory_adapters[layer](m)
            h[layer], c[layer], m, *extra = cell(x_in, h_in, c[layer], m)
            increments.append(tuple(extra))
        return self.from_grid(self.head(h[-1])), h, c, m, increments

    def initial_state(self, frames: Tensor) -> dict[str, Any]:
        """Zero states for the shared rollout (``Predictor.rollout``)."""
        return self.init_states(frames.shape[0], frames)

    def transition(
        self, inputs: Tensor, state: dict[str, Any], predict: bool = True
    ) -> tuple[Tensor, dict[str, Any]]:
        """One step of the shared rollout: ``step`` (the head is cheap, so it always predicts)."""
        return self.step(inputs, state), state
