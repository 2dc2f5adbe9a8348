"""A convolutional GRU cell: one step of one layer, with a hidden state H only (no C, no M)."""

from __future__ import annotations

import torch
from torch import Tensor

from predlearn import register_cell
from predlearn.zoo import RecurrentCell


@register_cell("conv_gru")
class ConvGRUCell(RecurrentCell):
    """ConvGRU: the GRU equations with convolutions in place of matrix products.

    With ``*`` a 'same'-padded convolution and ``⊙`` the elementwise product::

        r = sigmoid(W_xr * X + b_xr + W_hr * H + b_hr)          reset gate
        z = sigmoid(W_xz * X + b_xz + W_hz * H + b_hz)          update gate
        n = tanh(W_xn * X + b_xn + r ⊙ (W_hn * H + b_hn))       candidate
        H' = (1 - z) ⊙ n + z ⊙ H

    These are ``torch.nn.GRUCell``'s equations (the reset gate applied after the recurrent
    product), so with 1 x 1 kernels the cell is a ``GRUCell`` at every pixel.

    The cell keeps no temporal memory C and no zigzag memory M: the stack passes ``c=None`` and
    ``m=None`` and the cell returns ``(H', None, None)``. Its hidden input is its own layer at
    t-1 (``hidden_from_below`` is False), so ``recurrent_channels`` must equal
    ``hidden_channels``.
    """

    uses_temporal_memory = False
    uses_zigzag_memory = False
    hidden_from_below = False

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        spatial_size: tuple[int, int] = (64, 64),
        recurrent_channels: int | None = None,
    ) -> None:
        super().__init__(input_channels, hidden_channels, kernel_size, spatial_size,
                         recurrent_channels)
        if self.recurrent_channels != hidden_channels:
            raise ValueError(
                "a ConvGRU layer's hidden input is its own state: recurrent_channels "
                f"({self.recurrent_channels}) must equal hidden_channels ({hidden_channels})"
            )
        if input_channels < 1:
            raise ValueError(f"input_channels must be positive; got {input_channels}")
        # Gate order in the stacked convolutions: r, z, n (as in torch.nn.GRUCell).
        self.conv_x = self.conv(input_channels, 3 * hidden_channels, bias=True)
        self.conv_h = self.conv(hidden_channels, 3 * hidden_channels, bias=True)

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None = None, m: Tensor | None = None
    ) -> tuple[Tensor, None, None]:
        if x is None:
            raise ValueError("ConvGRUCell needs an input x at every step")
        x_r, x_z, x_n = torch.chunk(self.conv_x(x), 3, dim=1)
        h_r, h_z, h_n = torch.chunk(self.conv_h(h), 3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h_new = (1 - z) * n + z * h
        return h_new, None, None
