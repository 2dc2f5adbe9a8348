"""The cells of MIM (Memory In Memory; Wang et al., CVPR 2019, §3): the MIM block with its
non-stationary (MIM-N) and stationary (MIM-S) modules, and the bias-free ST-LSTM of its first
layer.

Built as OpenSTL builds them (``openstl/modules/mim_modules.py``; equations and differences from
the paper: docs/models.md#mim): no learned biases, a forget bias of 1.0, and the gate terms shared
as noted below.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from predlearn.zoo.cells.base import RecurrentCell
from predlearn.zoo.cells.st_lstm import SpatiotemporalLSTMCell


def layer_norms(enabled: bool, channels: list[int], size: tuple[int, ...]) -> nn.ModuleList | None:
    """One LayerNorm over (c, H, W) per stacked pre-activation of ``channels``, or None."""
    return nn.ModuleList(nn.LayerNorm([c, *size]) for c in channels) if enabled else None


class BiasFreeSTLSTMCell(SpatiotemporalLSTMCell):
    """predlearn's ST-LSTM (PredRNN eq. 4) with the input convolution built without biases, as in
    the first layer of OpenSTL's MIM; otherwise the same cell (gate order aside)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conv_x = self.conv(self.input_channels, 7 * self.hidden_channels, bias=False)


class PeepholeLSTM(RecurrentCell):
    """A convolutional LSTM with Hadamard peepholes and no biases: the form of both MIM-N and
    MIM-S (paper §3).

    ``forward(x, h, c) -> (h, c)``: gates from W_x* x + W_h* h, the input and forget gates also
    see W_c ⊙ c (the old cell), the output gate W_o ⊙ c (the new one); ``forget_bias`` is added
    inside the forget gate. ``layer_norm`` normalises each of the two convolutions' outputs.
    """

    def __init__(self, *args: Any, forget_bias: float = 1.0, layer_norm: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hid = self.hidden_channels
        self.conv_x = self.conv(self.input_channels, 4 * hid, bias=False)  # W_x{g,i,f,o}
        self.conv_h = self.conv(self.recurrent_channels, 4 * hid, bias=False)  # W_h{g,i,f,o}
        self.peepholes("w_ci", "w_cf", "w_co")
        offset = torch.zeros(4 * hid, 1, 1)
        offset[2 * hid:3 * hid] = forget_bias  # the f chunk of g, i, f, o
        self.register_buffer("gate_offset", offset, persistent=False)
        self.norms = layer_norms(layer_norm, [4 * hid, 4 * hid], self.spatial_size)

    def forward(  # type: ignore[override]
        self, x: Tensor, h: Tensor, c: Tensor
    ) -> tuple[Tensor, Tensor]:
        pre_x, pre_h = self.conv_x(x), self.conv_h(h)
        if self.norms is not None:
            pre_x, pre_h = self.norms[0](pre_x), self.norms[1](pre_h)
        return self.lstm_update(pre_x + pre_h + self.gate_offset, c)


class NonStationaryModule(PeepholeLSTM):
    """MIM-N (paper §3, the non-stationary module): an LSTM over the differences of the hidden
    states of the layer below, D_t = MIM-N(H^{l-1}_t - H^{l-1}_{t-1}, D_{t-1}, N_{t-1}); its
    hidden state D is the block's non-stationary signal, its cell N the difference memory. In the
    blocks above the first, OpenSTL (like the authors' code) feeds it the D of the block below
    instead."""


class StationaryModule(PeepholeLSTM):
    """MIM-S (paper §3, the stationary module): T_t = MIM-S(D_t, C_{t-1}, S_{t-1}), an LSTM whose
    input is the non-stationary signal D_t and whose hidden input is the block's old temporal
    memory C_{t-1}; its output T_t replaces the forget-gated f_t ⊙ C_{t-1} of the ST-LSTM, its
    cell S is the stationary memory."""


class MIMBlock(RecurrentCell):
    """The MIM block (paper §3): an ST-LSTM whose forget path for the temporal memory C is
    replaced by the cascade MIM-N -> MIM-S.

    ``forward(x, h, c, m, change, n, s) -> (h, c, m, n, s)``: ``x`` is H^{l-1}_t, ``h``, ``c``
    this layer's H and C at t-1, ``m`` the zigzag memory M from the layer below, ``change`` the
    input of MIM-N at this step (None at the first step, where there is no difference yet: D stays
    zero and MIM-N does not run), ``n`` = (D, N) MIM-N's state and ``s`` MIM-S's cell at t-1.

    As in OpenSTL and the authors' code: one convolution of x serves both memories (W_xi = W'_xi,
    W_xg = W'_xg), and the output gate reads x, H_{t-1} and the old M (not the new C and M of the
    paper). With ``detach_stationary``, the stationary memory S is cut from the gradient at every
    step, as in OpenSTL (which keeps S on the module between calls and detaches it).
    """

    uses_temporal_memory = True
    uses_zigzag_memory = True

    def __init__(self, *args: Any, forget_bias: float = 1.0, layer_norm: bool = False,
                 detach_stationary: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hid = self.hidden_channels
        self.conv_x = self.conv(self.input_channels, 4 * hid, bias=False)  # W_x{g,i,f',o}
        self.conv_h = self.conv(hid, 3 * hid, bias=False)  # W_h{g,i,o}
        self.conv_m = self.conv(hid, 4 * hid, bias=False)  # W_m{g',i',f',o}
        self.conv_1x1 = self.conv(2 * hid, hid, bias=False, kernel_size=1)  # W_1x1 * [C_t, M_t]
        self.norms = layer_norms(layer_norm, [4 * hid, 3 * hid, 4 * hid], self.spatial_size)
        options: dict[str, Any] = {"kernel_size": self.kernel_size,
                                   "spatial_size": self.spatial_size,
                                   "forget_bias": forget_bias, "layer_norm": layer_norm}
        self.nonstationary = NonStationaryModule(self.input_channels, hid, **options)
        self.stationary = StationaryModule(hid, hid, **options)
        self.forget_bias = forget_bias
        self.detach_stationary = detach_stationary

    def _pre(self, index: int, conv: nn.Module, value: Tensor, chunks: int) -> tuple[Tensor, ...]:
        pre = conv(value)
        return torch.chunk(pre if self.norms is None else self.norms[index](pre), chunks, dim=1)

    def forward(  # type: ignore[override]
        self, x: Tensor, h: Tensor, c: Tensor, m: Tensor, change: Tensor | None,
        n: tuple[Tensor, Tensor], s: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor], Tensor]:
        d, n_cell = n
        if change is not None:
            d, n_cell = self.nonstationary(change, d, n_cell)  # MIM-N
        xg, xi, xf, xo = self._pre(0, self.conv_x, x, 4)
        hg, hi, ho = self._pre(1, self.conv_h, h, 3)
        mg, mi, mf, mo = self._pre(2, self.conv_m, m, 4)

        g, i = torch.tanh(xg + hg), torch.sigmoid(xi + hi)
        g_m, i_m = torch.tanh(xg + mg), torch.sigmoid(xi + mi)
        f_m = torch.sigmoid(xf + mf + self.forget_bias)
        m_new = f_m * m + i_m * g_m

        t_out, s_new = self.stationary(d, c, s.detach() if self.detach_stationary else s)  # MIM-S
        c_new = t_out + i * g  # C_t = T_t + i_t ⊙ g_t
        o = torch.sigmoid(xo + ho + mo)
        h_new = o * torch.tanh(self.conv_1x1(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new, (d, n_cell), s_new
