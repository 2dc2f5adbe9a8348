"""The Spatiotemporal LSTM (ST-LSTM) of PredRNN (paper §3.2, eq. 4).

Equations: docs/models.md#st-lstm-cell.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from predlearn.zoo.cells.base import RecurrentCell


class SpatiotemporalLSTMCell(RecurrentCell):
    """Two memories: the temporal cell C (same layer, t-1 -> t) and the zigzag memory M.

    Every W in eq. 4 is a convolution, W_co and W_mo included. The output-gate terms
    W_co * C_t + W_mo * M_t are computed as one convolution over [C_t, M_t], which is the same sum.

    Extensions (off by default, as in the paper): ``forget_bias`` adds a constant inside both
    forget gates (the authors' released code uses 1.0); ``layer_norm`` normalises each stacked
    pre-activation (present but off in the authors' scripts).
    """

    uses_temporal_memory = True
    uses_zigzag_memory = True

    def __init__(self, *args: Any, forget_bias: float = 0.0, layer_norm: bool = False,
                 **kwargs: Any) -> None:
        """``RecurrentCell``'s arguments, and the extensions above."""
        super().__init__(*args, **kwargs)
        hid = self.hidden_channels
        # conv_x stacks W_x{g,i,f}, W'_x{g,i,f}, W_xo with all the biases b_*, b'_*, b_o.
        self.conv_x = self.conv(self.input_channels, 7 * hid, bias=True)
        self.conv_h = self.conv(self.recurrent_channels, 4 * hid, bias=False)  # W_h{g,i,f,o}
        self.conv_m = self.conv(hid, 3 * hid, bias=False)  # W_m{g,i,f}
        self.conv_o = self.conv(2 * hid, hid, bias=False)  # [W_co, W_mo] * [C_t, M_t]
        self.conv_1x1 = self.conv(2 * hid, hid, bias=False, kernel_size=1)  # W_1x1 * [C_t, M_t]
        self.forget_bias = forget_bias
        self.norms = None
        if layer_norm:
            shape = self.spatial_size
            self.norms = torch.nn.ModuleList(
                torch.nn.LayerNorm([n * hid, *shape]) for n in (7, 4, 3, 1)
            )

    def _norm(self, index: int, value: Tensor) -> Tensor:
        return value if self.norms is None else self.norms[index](value)

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        h_new, c_new, m_new, _, _ = self.update(x, h, c, m)
        return h_new, c_new, m_new

    def update(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Eq. 4, returning also the increments i * g of C and i' * g' of M."""
        if c is None or m is None:
            raise ValueError(f"{type(self).__name__} needs both memories, the cell state c and "
                             "the spatiotemporal memory m; got None")
        xg, xi, xf, xg_m, xi_m, xf_m, xo = torch.chunk(self._norm(0, self.conv_x(x)), 7, dim=1)
        hg, hi, hf, ho = torch.chunk(self._norm(1, self.conv_h(h)), 4, dim=1)
        mg, mi, mf = torch.chunk(self._norm(2, self.conv_m(m)), 3, dim=1)

        g = torch.tanh(xg + hg)
        i = torch.sigmoid(xi + hi)
        f = torch.sigmoid(xf + hf + self.forget_bias)
        delta_c = i * g
        c_new = f * c + delta_c

        g_m = torch.tanh(xg_m + mg)
        i_m = torch.sigmoid(xi_m + mi)
        f_m = torch.sigmoid(xf_m + mf + self.forget_bias)
        delta_m = i_m * g_m
        m_new = f_m * m + delta_m

        memories = torch.cat([c_new, m_new], dim=1)
        o = torch.sigmoid(xo + ho + self._norm(3, self.conv_o(memories)))
        h_new = o * torch.tanh(self.conv_1x1(memories))
        return h_new, c_new, m_new, delta_c, delta_m


class SpatiotemporalLSTMv2Cell(SpatiotemporalLSTMCell):
    """The ST-LSTM of PredRNN v2 (Wang et al., TPAMI 2022): eq. 4 unchanged, but each step also
    returns the increments of C and M, which the memory-decoupling loss keeps apart
    (``predlearn.zoo.PredRNNv2``, which sets ``forget_bias`` to 1.0 as the authors' v2 code
    does). The convolutions keep this repository's learned biases (the authors' v2 code has
    none).
    """

    #: the stack keeps (delta_c, delta_m) of every layer in ``states["increments"]``
    returns_increments = True

    def forward(  # type: ignore[override]
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return self.update(x, h, c, m)
