"""The zigzag spatiotemporal memory cell of PredRNN-M (paper §3.1, eq. 3; DESIGN 1.3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from predlearn.zoo.cells.base import RecurrentCell


class SpatiotemporalMemoryCell(RecurrentCell):
    """A ConvLSTM whose only memory is M, flowing up the layers and on to the next step.

    Gates see the frame (bottom layer only), the layer below's hidden state at the same step
    H^{l-1}_t (for the bottom layer, the top layer's at t-1) and M^{l-1}_t through Hadamard
    peepholes W_mi, W_mf, W_mo (one value per channel and position, as ConvLSTM's).
    """

    uses_zigzag_memory = True
    hidden_from_below = True

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        spatial_size: tuple[int, int] = (64, 64),
        recurrent_channels: int | None = None,
        peephole: bool = True,
    ) -> None:
        super().__init__(input_channels, hidden_channels, kernel_size, spatial_size,
                         recurrent_channels)
        hid = hidden_channels
        # Gate order g, i, f, o. X_t enters only the bottom layer (the indicator 1{l=1}), so the
        # biases b_* sit in conv_h, which every layer has.
        self.conv_x = self.conv(input_channels, 4 * hid, bias=False) if input_channels else None
        self.conv_h = self.conv(self.recurrent_channels, 4 * hid, bias=True)
        self.peephole = peephole
        if peephole:
            shape = (hid, *self.spatial_size)
            self.w_mi = nn.Parameter(torch.zeros(shape))
            self.w_mf = nn.Parameter(torch.zeros(shape))
            self.w_mo = nn.Parameter(torch.zeros(shape))

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, None, Tensor]:
        if m is None:
            raise ValueError(f"{type(self).__name__} needs the spatiotemporal memory m; got None")
        pre = self.conv_h(h)
        if self.conv_x is not None:
            if x is None:
                raise ValueError("this bottom-layer cell needs the input frame x")
            pre = pre + self.conv_x(x)
        g, i, f, o = torch.chunk(pre, 4, dim=1)
        if self.peephole:
            i = i + self.w_mi * m
            f = f + self.w_mf * m
        m_new = torch.sigmoid(f) * m + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole:
            o = o + self.w_mo * m_new
        h_new = torch.sigmoid(o) * torch.tanh(m_new)
        return h_new, None, m_new
