"""The Eidetic 3D LSTM cell of E3D-LSTM (Wang et al., ICLR 2019, §3).

Every state is a short clip, (B, channels, window, H, W): the cell's convolutions are 3D, over a
window of the last few steps. The forget gate of C is replaced by a recall gate R that attends
over the C states of earlier steps (the "eidetic" memory); the zigzag memory M is PredRNN's.
Used by ``predlearn.zoo.e3d_lstm.E3DLSTM`` (it does not fit ``RecurrentStack``'s one-step
``forward(x, h, c, m)``: it also reads the history of C).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.predictor import check_choice, check_kernel_size, check_positive

#: ``paper``: the paper's equations (§3.2); ``openstl``: OpenSTL's port of the authors' code
Variant = Literal["paper", "openstl"]
VARIANTS = ("paper", "openstl")


class WindowConv3d(nn.Module):
    """A 3D convolution over a window of ``window`` steps that returns ``window`` steps again.

    'Same' padding in space, none in time; the (window - temporal_kernel + 1) output steps are
    resized back to ``window`` by nearest-neighbour repetition (OpenSTL's ``tf_Conv3d``; with the
    default window and temporal kernel of 2 the one output step is repeated twice).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int],
                 bias: bool = False) -> None:
        super().__init__()
        kt, kh, kw = kernel
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw),
                              padding=(0, kh // 2, kw // 2), bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if out.shape[2:] != x.shape[2:]:
            out = F.interpolate(out, size=x.shape[2:], mode="nearest")
        return out


def tokens(x: Tensor, variant: Variant) -> Tensor:
    """(B, C, T, H, W) -> (B, N, C): the rows the recall attends over.

    ``paper``: one row per position (t, y, x), its C channels as features (the paper's
    R_t in R^{THW x C}; the authors' channels-last TensorFlow code). ``openstl``: OpenSTL's plain
    ``reshape(B, -1, C)`` of the channels-first tensor, whose rows are runs of C consecutive
    values of one channel's map (numerically what its port computes).
    """
    if variant == "paper":
        return x.flatten(2).transpose(1, 2)
    return x.reshape(x.shape[0], -1, x.shape[1])


def untokens(rows: Tensor, like: Tensor, variant: Variant) -> Tensor:
    """The inverse of ``tokens`` for a result shaped like ``like``."""
    if variant == "paper":
        return rows.transpose(1, 2).reshape(like.shape)
    return rows.reshape(like.shape)


def recall(query: Tensor, history: Sequence[Tensor], variant: Variant) -> Tensor:
    """RECALL(R_t, C_{t-tau:t-1}) = softmax(R_t . C^T) . C (paper §3.2), over every row of every
    stored C state; no 1/sqrt(d) scaling (the paper and both codes have none)."""
    keys = torch.cat([tokens(c, variant) for c in history], dim=1)[:, None]
    # One head of contiguous rows: that is what torch's fused CPU kernel takes (3-D or strided
    # inputs fall back to an explicit softmax; a CPU-sized training step is 3.4x slower).
    rows = F.scaled_dot_product_attention(tokens(query, variant).contiguous()[:, None], keys, keys,
                                          scale=1.0)
    return untokens(rows[:, 0], query, variant)


class EideticLSTMCell(nn.Module):
    """One layer of E3D-LSTM for one step: ``forward(x, h, c, m, history) -> (h, c, m)``.

    With X the input clip, H, C the layer's states at t-1, M the zigzag memory from below and
    ``history`` the C states of earlier steps (paper §3.2):

        g = tanh(W_xg * X + W_hg * H),  i = sigmoid(W_xi * X + W_hi * H),
        r = sigmoid(W_xr * X + W_hr * H)
        C' = i . g + LayerNorm(C + RECALL(r, history))
        g' = tanh(W'_xg * X + W_mg * M),  i' = sigmoid(W'_xi * X + W_mi * M),
        f' = sigmoid(W'_xf * X + W_mf * M + 1)
        M' = i' . g' + f' . M                       (``openstl``: f' . tanh(W_mm * M) + i' . g')
        o = sigmoid(W_xo * X + W_ho * H + W_co * C' + W_mo * M')
                                                    (``openstl``: sigmoid(tanh(...)))
        H' = o . tanh(W_1x1x1 * [C', M'])

    Every W is a ``WindowConv3d`` (temporal kernel x k x k; W_1x1x1 a 1 x 1 x 1). The constant 1
    in f' is the authors' forget bias. ``variant="paper"`` gives the x-convolution the paper's
    biases (one per gate); ``"openstl"`` has none, as OpenSTL. ``layer_norm`` (OpenSTL's option,
    the authors' default) normalises each convolution's output over (channels, window, H, W).

    Args:
        input_channels: channels of X (the patched frame for the bottom layer, else the width of
            the layer below).
        hidden_channels: width of H, C and M.
        window_length: steps in every state clip (OpenSTL and the authors' code: 2).
        kernel_size: spatial filter size (OpenSTL: 5, fixed).
        temporal_kernel_size: filter size over the window (OpenSTL: 2), at most the window.
        spatial_size: (height, width) of the state grid (for the layer norms).
        layer_norm: normalise the convolutions' outputs (off in OpenSTL's Moving MNIST config).
        variant: ``paper`` or ``openstl`` (the differences above and in ``tokens``).
    """

    def __init__(self, input_channels: int, hidden_channels: int, window_length: int = 2,
                 kernel_size: int = 5, temporal_kernel_size: int = 2,
                 spatial_size: Sequence[int] = (16, 16), layer_norm: bool = False,
                 variant: Variant = "paper") -> None:
        super().__init__()
        check_positive("hidden_channels", hidden_channels)
        check_kernel_size("kernel_size", kernel_size)
        check_choice("variant", variant, VARIANTS)
        self.hidden_channels = hid = hidden_channels
        self.variant = variant
        kernel = (temporal_kernel_size, kernel_size, kernel_size)
        shape = (window_length, *spatial_size)
        self.memory_gates = memory_gates = 3 if variant == "paper" else 4
        # x: g i r g' i' f' o; h: g i r o; m: g' i' f' (+ the openstl variant's W_mm)
        self.conv_x = WindowConv3d(input_channels, 7 * hid, kernel, bias=variant == "paper")
        self.conv_h = WindowConv3d(hid, 4 * hid, kernel)
        self.conv_m = WindowConv3d(hid, memory_gates * hid, kernel)
        self.conv_co = WindowConv3d(hid, hid, kernel)
        self.conv_mo = WindowConv3d(hid, hid, kernel)
        self.conv_1x1 = WindowConv3d(2 * hid, hid, (1, 1, 1))
        self.norm_c = nn.LayerNorm([hid, *shape])
        self.norms = nn.ModuleDict(
            {name: nn.LayerNorm([n * hid, *shape])
             for name, n in (("x", 7), ("h", 4), ("m", memory_gates), ("co", 1), ("mo", 1))}
        ) if layer_norm else None

    def _conv(self, name: str, value: Tensor) -> Tensor:
        out = getattr(self, f"conv_{name}")(value)
        return out if self.norms is None else self.norms[name](out)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor,
                history: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        xg, xi, xr, xg_m, xi_m, xf_m, xo = torch.chunk(self._conv("x", x), 7, dim=1)
        hg, hi, hr, ho = torch.chunk(self._conv("h", h), 4, dim=1)
        g = torch.tanh(xg + hg)
        i = torch.sigmoid(xi + hi)
        r = torch.sigmoid(xr + hr)
        c_new = i * g + self.norm_c(c + recall(r, history, self.variant))

        mg, mi, mf, *mm = torch.chunk(self._conv("m", m), self.memory_gates, dim=1)
        g_m = torch.tanh(xg_m + mg)
        i_m = torch.sigmoid(xi_m + mi)
        f_m = torch.sigmoid(xf_m + mf + 1.0)  # the authors' forget bias
        kept = m if self.variant == "paper" else torch.tanh(mm[0])
        m_new = i_m * g_m + f_m * kept

        o = xo + ho + self._conv("co", c_new) + self._conv("mo", m_new)
        o = torch.sigmoid(o if self.variant == "paper" else torch.tanh(o))
        h_new = o * torch.tanh(self.conv_1x1(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new

