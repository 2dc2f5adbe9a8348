"""The Causal LSTM of PredRNN++ (Wang et al., ICML 2018, §3.1, eq. 1).

The temporal memory C is updated first; the spatiotemporal memory M is then updated from the new
C_t (a cascade, not PredRNN's two parallel memories), and H reads both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from predlearn.zoo.cells.base import RecurrentCell


class CausalLSTMCell(RecurrentCell):
    """Causal LSTM: C (same layer, t-1 -> t) then M (zigzag, from the layer below), cascaded.

    With X the input, H and C this layer's states at t-1, M the memory from below (M^{k-1}_t):

        g, i, f = tanh, sigma, sigma (W_x * X + W_h * H + W_c * C)       (+ forget bias in f)
        C_t     = f . C + i . g
        g'      = tanh(W'_xg * X + W'_cg * C_t)
        i', f'  = sigma, sigma (W'_x * X + W'_c * C_t + W'_m * M)        (+ forget bias in f')
        M_t     = f' . tanh(W_3 * M) + i' . g'
        o       = tanh(W_xo * X + W_ho * H + W_co * C_t + W_mo * M_t)
        H_t     = o . tanh(W_1x1 * [C_t, M_t])

    This is the wiring of the authors' released code and of OpenSTL. Eq. 1 as printed differs
    in two terms: g' also reads M^{k-1}_t, and o reads [X, C_t, M_t] without H_{t-1}.

    Every W * is a 'same' convolution without bias (eq. 1 has none; OpenSTL has none; the authors'
    TensorFlow code adds biases). Each source's gates are one stacked convolution.

    Args:
        forget_bias: a constant added inside both forget gates f and f' (OpenSTL and the authors'
            code: 1.0; eq. 1 has no such term).
        layer_norm: layer normalisation of each stacked convolution's output over (channels, H,
            W), with a learned scale and shift per element, as OpenSTL's ``layer_norm=1`` (its
            Moving MNIST config: off; the authors' code: on). The 1 x 1 convolution is never
            normalised.
        (the others: ``RecurrentCell``'s; ``recurrent_channels`` is the width of H.)
    """

    uses_temporal_memory = True
    uses_zigzag_memory = True

    def __init__(self, *args: Any, forget_bias: float = 1.0, layer_norm: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hid = self.hidden_channels
        self.forget_bias = forget_bias
        widths = {
            "x": (self.input_channels, 7 * hid),  # g, i, f | g', i', f' | o
            "h": (self.recurrent_channels, 4 * hid),  # g, i, f | o
            "c": (hid, 3 * hid),  # C_{t-1} -> g, i, f
            "m": (hid, 3 * hid),  # M^{k-1}_t -> W_3 * M, i', f'
            "cc": (hid, 4 * hid),  # C_t -> g', i', f' | o
            "mo": (hid, hid),  # M_t -> o
        }
        self.convs = nn.ModuleDict(
            {name: self.conv(n_in, n_out, bias=False) for name, (n_in, n_out) in widths.items()})
        self.conv_1x1 = self.conv(2 * hid, hid, bias=False, kernel_size=1)  # W_1x1 * [C_t, M_t]
        self.norms = None
        if layer_norm:
            self.norms = nn.ModuleDict(
                {name: nn.LayerNorm([n_out, *self.spatial_size])
                 for name, (_, n_out) in widths.items()})

    def _pre(self, name: str, value: Tensor, chunks: int) -> tuple[Tensor, ...]:
        """One source's stacked pre-activations, normalised if ``layer_norm``, split in gates."""
        out = self.convs[name](value)
        if self.norms is not None:
            out = self.norms[name](out)
        return torch.chunk(out, chunks, dim=1)

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if x is None or c is None or m is None:
            raise ValueError(f"{type(self).__name__} needs the input x and both memories, the cell "
                             "state c and the spatiotemporal memory m; got None")
        xg, xi, xf, xg_m, xi_m, xf_m, xo = self._pre("x", x, 7)
        hg, hi, hf, ho = self._pre("h", h, 4)
        cg, ci, cf = self._pre("c", c, 3)
        m3, mi, mf = self._pre("m", m, 3)

        g = torch.tanh(xg + hg + cg)
        i = torch.sigmoid(xi + hi + ci)
        f = torch.sigmoid(xf + hf + cf + self.forget_bias)
        c_new = f * c + i * g

        ccg, cci, ccf, cco = self._pre("cc", c_new, 4)
        g_m = torch.tanh(xg_m + ccg)
        i_m = torch.sigmoid(xi_m + cci + mi)
        f_m = torch.sigmoid(xf_m + ccf + mf + self.forget_bias)
        m_new = f_m * torch.tanh(m3) + i_m * g_m

        (mo,) = self._pre("mo", m_new, 1)
        o = torch.tanh(xo + ho + cco + mo)
        h_new = o * torch.tanh(self.conv_1x1(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new
