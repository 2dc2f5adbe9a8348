"""The ConvLSTM cell with peepholes (Shi et al. 2015; paper §2.2, eq. 2).

Equations: docs/models.md#convlstm-cell.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from predlearn.zoo.cells.base import RecurrentCell


class ConvLSTMCell(RecurrentCell):
    """ConvLSTM: gates from W_x* X_t + W_h* H_{t-1} plus Hadamard peepholes on C.

    The peephole weights W_ci, W_cf, W_co hold one value per channel and position, as in Shi et al.
    Stacked ConvLSTMs keep C to their own layer (horizontal memory only).
    """

    uses_temporal_memory = True

    def __init__(self, *args: Any, peephole: bool = True, **kwargs: Any) -> None:
        """``RecurrentCell``'s arguments; ``peephole``: the Hadamard peepholes on C."""
        super().__init__(*args, **kwargs)
        hid = self.hidden_channels
        # Gate order in the stacked convolutions: g, i, f, o. The biases b_* sit in conv_x.
        self.conv_x = self.conv(self.input_channels, 4 * hid, bias=True)
        self.conv_h = self.conv(self.recurrent_channels, 4 * hid, bias=False)
        self.peephole = peephole
        if peephole:
            self.peepholes("w_ci", "w_cf", "w_co")

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None = None
    ) -> tuple[Tensor, Tensor, None]:
        if c is None:
            raise ValueError(f"{type(self).__name__} needs its cell state c; got None")
        h_new, c_new = self.lstm_update(self.conv_x(x) + self.conv_h(h), c)
        return h_new, c_new, None
