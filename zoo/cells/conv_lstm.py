"""The ConvLSTM cell with peepholes (Shi et al. 2015; paper §2.2, eq. 2; DESIGN 1.2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from predlearn.zoo.cells.base import RecurrentCell


class ConvLSTMCell(RecurrentCell):
    """ConvLSTM: gates from W_x* X_t + W_h* H_{t-1} plus Hadamard peepholes on C.

    The peephole weights W_ci, W_cf, W_co hold one value per channel and position, as in Shi et al.
    Stacked ConvLSTMs keep C to their own layer (horizontal memory only).
    """

    uses_temporal_memory = True

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
        # Gate order in the stacked convolutions: g, i, f, o. The biases b_* sit in conv_x.
        self.conv_x = self.conv(input_channels, 4 * hid, bias=True)
        self.conv_h = self.conv(self.recurrent_channels, 4 * hid, bias=False)
        self.peephole = peephole
        if peephole:
            shape = (hid, *self.spatial_size)
            self.w_ci = nn.Parameter(torch.zeros(shape))
            self.w_cf = nn.Parameter(torch.zeros(shape))
            self.w_co = nn.Parameter(torch.zeros(shape))

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None = None
    ) -> tuple[Tensor, Tensor, None]:
        if c is None:
            raise ValueError(f"{type(self).__name__} needs its cell state c; got None")
        g, i, f, o = torch.chunk(self.conv_x(x) + self.conv_h(h), 4, dim=1)
        if self.peephole:
            i = i + self.w_ci * c
            f = f + self.w_cf * c
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole:
            o = o + self.w_co * c_new
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, c_new, None
