"""MAU: the Motion-Aware Unit (Chang et al., NeurIPS 2021), with its encoder and decoder.

See docs/models.md#mau.

Each frame is cut into ``patch_size`` patches, encoded by strided convolutions ``sr_size``
times smaller per side, passed up a stack of MAU cells (``predlearn.zoo.cells.mau_cell``), and
decoded by transposed convolutions back to a frame. Each layer keeps its temporal state and its
last ``tau`` temporal states and spatial inputs, over which the cell attends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.errors import require
from predlearn.predictor import (
    Predictor,
    check_choice,
    check_frame,
    check_kernel_size,
    check_positive,
    check_widths,
)
from predlearn.zoo.cells.mau_cell import MAUCell

#: the state of a rollout: ``t`` the temporal state of every layer, ``t_past`` and ``s_past``
#: every layer's last ``tau`` temporal states and spatial inputs (oldest first)
State = dict[str, list[Any]]


def encoder_layers(in_channels: int, channels: int, levels: int) -> nn.ModuleList:
    """§3 (encoders): a 1x1 convolution to ``channels``, then ``levels`` 3x3 convolutions of
    stride 2, each followed by a leaky ReLU (slope 0.2)."""
    first = nn.Sequential(nn.Conv2d(in_channels, channels, 1), nn.LeakyReLU(0.2))
    return nn.ModuleList([first, *(
        nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2))
        for _ in range(levels))])


def decoder_layers(channels: int, levels: int) -> nn.ModuleList:
    """§3 (decoders): ``levels`` 3x3 transposed convolutions of stride 2, each doubling the size,
    with a leaky ReLU (slope 0.2) after every one but the last."""
    layers = []
    for level in range(levels):
        up = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1)
        layers.append(nn.Sequential(up, nn.LeakyReLU(0.2)) if level < levels - 1
                      else nn.Sequential(up))
    return nn.ModuleList(layers)


class MAU(Predictor):
    """MAU (Chang et al., NeurIPS 2021): encoder, stacked Motion-Aware Units, decoder.

    At every step the (patched) frame is encoded to S_t at 1/``sr_size`` of the patch grid;
    layer l updates (T^l, S) from its temporal state T^l_{t-1}, the spatial state from below and
    its last ``tau`` temporal states and spatial inputs; the top S is decoded to the next frame
    (``model_mode='recall'``: each decoder level adds the encoder's map of the same size, the
    paper's information recalling). A 1x1 convolution maps it to the patch's channels.

    Defaults are OpenSTL's Moving MNIST set-up (configs/mmnist/MAU.py), which are the authors'
    (their mnist configs): 4 x 64 channels, 5 x 5 filters, no patches, sr_size 4, tau 5.
    OpenSTL's two unused 1x1 convolutions (``merge``, ``conv_last_sr``) are left out (4,475,329
    parameters at the defaults, OpenSTL's 4.5M less 8,259), and so is its ``stride`` (always 1:
    any other breaks the cells' shapes). The encoder runs inside ``transition``, not ``encode``:
    with ``recall`` the decoder needs the encoder's maps of the same step.

    Args:
        frame_channels: channels of a frame (1 for Moving MNIST).
        frame_size: (height, width) of a frame; both divisible by ``patch_size * sr_size``.
        hidden_channels: width of each MAU layer, bottom first; one width for all (the states
            pass between layers unchanged in size, as in OpenSTL).
        kernel_size: filter size of the cells' convolutions.
        patch_size: space-to-depth reshaping before the encoder (OpenSTL's ``patch_size``).
        sr_size: how many times smaller the cells' grid is than the patch grid: a power of 2,
            one stride-2 convolution (and one transposed convolution) per factor 2.
        tau: how many past states each cell attends over.
        cell_mode: ``"normal"``, or ``"residual"`` (each cell adds its spatial input to its
            spatial output).
        model_mode: ``"normal"``, or ``"recall"`` (skip connections from the encoder to the
            decoder, the paper's information recalling).
    """

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model."""
        return {"hidden_channels": [4, 4], "kernel_size": 3, "patch_size": 2, "sr_size": 2,
                "tau": 2}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: Sequence[int] = (64, 64),
        hidden_channels: Sequence[int] = (64, 64, 64, 64),  # OpenSTL: num_hidden '64,64,64,64'
        kernel_size: int = 5,  # OpenSTL: filter_size 5
        patch_size: int = 1,  # OpenSTL: patch_size 1
        sr_size: int = 4,  # OpenSTL: sr_size 4
        tau: int = 5,  # OpenSTL: tau 5
        cell_mode: Literal["normal", "residual"] = "normal",  # OpenSTL: cell_mode 'normal'
        model_mode: Literal["normal", "recall"] = "normal",  # OpenSTL: model_mode 'normal'
    ) -> None:
        super().__init__()
        height, width = check_frame(frame_channels, frame_size)
        widths = check_widths("hidden_channels", hidden_channels)
        require(len(set(widths)) == 1, "hidden_channels",
                f"MAU passes its states between layers unchanged, so every layer needs the same "
                f"width; got {widths}", hidden_channels)
        check_kernel_size("kernel_size", kernel_size)
        check_positive("patch_size", patch_size)
        check_positive("tau", tau)
        require(sr_size >= 1 and sr_size & (sr_size - 1) == 0, "sr_size",
                f"must be a power of 2 (1, 2, 4, ...); got {sr_size}", sr_size)
        scale = patch_size * sr_size
        require(height % scale == 0 and width % scale == 0, "frame_size",
                f"{height}x{width} must be divisible by patch_size * sr_size = {scale}",
                frame_size)
        check_choice("cell_mode", cell_mode, ("normal", "residual"))
        check_choice("model_mode", model_mode, ("normal", "recall"))
        self.frame_channels, self.frame_size = frame_channels, (height, width)
        self.patch_size, self.tau, self.recall = patch_size, tau, model_mode == "recall"
        self.hidden_channels = widths
        self.grid = (height // scale, width // scale)
        channels, patched = widths[0], frame_channels * patch_size**2
        levels = int(math.log2(sr_size))
        self.encoders = encoder_layers(patched, channels, levels)
        self.cells = nn.ModuleList(
            MAUCell(channels, kernel_size, self.grid, tau, residual=cell_mode == "residual")
            for _ in widths)
        self.decoders = decoder_layers(channels, levels)
        self.head = nn.Conv2d(channels, patched, 1)  # OpenSTL's srcnn

    def initial_state(self, frames: Tensor) -> State:
        """Zero temporal states, and ``tau`` zero past states per layer (OpenSTL's start)."""
        zeros = frames.new_zeros(frames.shape[0], self.hidden_channels[0], *self.grid)
        layers = range(len(self.cells))
        return {"t": [zeros for _ in layers], "t_past": [[zeros] * self.tau for _ in layers],
                "s_past": [[zeros] * self.tau for _ in layers]}

    def encode_frame(self, frame: Tensor) -> list[Tensor]:
        """The encoder's maps of one frame, finest first; the last is S for the bottom cell."""
        x = F.pixel_unshuffle(frame, self.patch_size) if self.patch_size > 1 else frame
        maps = []
        for layer in self.encoders:
            x = layer(x)
            maps.append(x)
        return maps

    def decode(self, s: Tensor, maps: list[Tensor]) -> Tensor:
        """The top spatial state back to a frame (``recall``: plus the encoder's maps)."""
        for level, layer in enumerate(self.decoders):
            s = layer(s)
            if self.recall:
                s = s + maps[-2 - level]
        out = self.head(s)
        return F.pixel_shuffle(out, self.patch_size) if self.patch_size > 1 else out

    def transition(self, inputs: Tensor, state: State,
                   predict: bool = True) -> tuple[Tensor | None, State]:
        """One step: every layer attends over its last ``tau`` states, then the new T joins
        them; the decoder runs only where a prediction is wanted."""
        maps = self.encode_frame(inputs)
        s = maps[-1]
        t_new, t_past, s_past = [], [], []
        for layer, cell in enumerate(self.cells):
            t_old, ts, ss = state["t"][layer], state["t_past"][layer], state["s_past"][layer]
            t, s_next = cell(t_old, s, ts, ss)
            t_new.append(t)
            t_past.append([*ts[1:], t])
            s_past.append([*ss[1:], s])
            s = s_next
        state = {"t": t_new, "t_past": t_past, "s_past": s_past}
        return (self.decode(s, maps) if predict else None), state


__all__ = ["MAU", "decoder_layers", "encoder_layers"]
