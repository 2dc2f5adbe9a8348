"""The zigzag spatiotemporal memory cell of PredRNN-M (paper §3.1, eq. 3).

Equations: docs/models.md#predrnn-m-memory-cell.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from predlearn.zoo.cells.base import RecurrentCell


class SpatiotemporalMemoryCell(RecurrentCell):
    """A ConvLSTM whose only memory is M, flowing up the layers and on to the next step.

    Gates see the frame (bottom layer only), the layer below's hidden state at the same step
    H^{l-1}_t (for the bottom layer, the top layer's at t-1) and M^{l-1}_t through Hadamard
    peepholes W_mi, W_mf, W_mo (one value per channel and position, as ConvLSTM's).
    """

    uses_zigzag_memory = True
    hidden_from_below = True

    def __init__(self, *args: Any, peephole: bool = True, **kwargs: Any) -> None:
        """``RecurrentCell``'s arguments; ``peephole``: the Hadamard peepholes on M."""
        super().__init__(*args, **kwargs)
        hid = self.hidden_channels
        # Gate order g, i, f, o. X_t enters only the bottom layer (the indicator 1{l=1}), so the
        # biases b_* sit in conv_h, which every layer has.
        self.conv_x = (self.conv(self.input_channels, 4 * hid, bias=False)
                       if self.input_channels else None)
        self.conv_h = self.conv(self.recurrent_channels, 4 * hid, bias=True)
        self.peephole = peephole
        if peephole:
            self.peepholes("w_mi", "w_mf", "w_mo")

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
        h_new, m_new = self.lstm_update(pre, m)
        return h_new, None, m_new
