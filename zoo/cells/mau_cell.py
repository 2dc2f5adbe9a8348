"""The Motion-Aware Unit (MAU; Chang et al., NeurIPS 2021, §3): an attention module and a
fusion module on one layer's temporal state T and spatial state S.

Equations: docs/models.md#mau.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from predlearn.predictor import check_kernel_size, check_positive


def conv_norm(channels: int, out_channels: int, kernel_size: int,
              spatial_size: tuple[int, int]) -> nn.Sequential:
    """A 'same' convolution followed by a layer norm over (channels, H, W), the W * (.) of the
    MAU's equations (the authors' code and OpenSTL normalise every one)."""
    return nn.Sequential(
        nn.Conv2d(channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.LayerNorm([out_channels, *spatial_size]),
    )


class MAUCell(nn.Module):
    """One MAU layer: ``forward(t, s, t_past, s_past) -> (t_new, s_new)``.

    ``t`` is the layer's temporal state T_{t-1} (from the previous step), ``s`` the spatial
    state S_t coming from below (the encoded frame for the bottom layer); ``t_past`` and
    ``s_past`` are the layer's last ``tau`` temporal states and the last ``tau`` spatial inputs,
    oldest first (zeros before the first steps).

    Attention module (§3, "attention module"): with S'_t = LN(W_s' * S_t),
    alpha_j = softmax_j(<S'_t, S_j> / sqrt(C H W)) over the ``tau`` past spatial inputs S_j, the
    attended temporal state T^att = sum_j alpha_j T_j, and the augmented motion information
    T^AMI = U_f o T_{t-1} + (1 - U_f) o T^att with U_f = sigmoid(LN(W_f * T_{t-1})).

    Fusion module (§3, "fusion module"): [T_g, T_t, T_s] = LN(W_t * T^AMI),
    [S_g, S_t, S_s] = LN(W_s * S_t), U_t = sigmoid(T_g), U_s = sigmoid(S_g);
    T_new = U_t o T_t + (1 - U_t) o S_t and S_new = U_s o S_s + (1 - U_s) o T_s
    (``residual``: S_new + S_t, OpenSTL's ``cell_mode='residual'``).

    Every convolution has a bias and is followed by a layer norm, as in the authors' code and
    OpenSTL; the state keeps its channel count (one width for every layer).
    """

    def __init__(self, channels: int, kernel_size: int = 5,
                 spatial_size: Sequence[int] = (16, 16), tau: int = 5,
                 residual: bool = False) -> None:
        super().__init__()
        check_positive("hidden_channels", channels)
        check_kernel_size("kernel_size", kernel_size)
        check_positive("tau", tau)
        size = (int(spatial_size[0]), int(spatial_size[1]))
        self.channels, self.tau, self.residual = channels, tau, residual
        self.scale = 1 / math.sqrt(channels * size[0] * size[1])  # 1 / sqrt(d), d = C H W
        self.spatial_query = conv_norm(channels, channels, kernel_size, size)  # S'_t
        self.motion_gate = conv_norm(channels, channels, kernel_size, size)  # U_f
        self.temporal_fusion = conv_norm(channels, 3 * channels, kernel_size, size)  # T_g,t,s
        self.spatial_fusion = conv_norm(channels, 3 * channels, kernel_size, size)  # S_g,t,s

    def attention(self, t: Tensor, s: Tensor, t_past: Sequence[Tensor],
                  s_past: Sequence[Tensor]) -> Tensor:
        """The augmented motion information T^AMI (the attention module)."""
        query = self.spatial_query(s)
        keys = torch.stack(list(s_past), dim=0)  # (tau, B, C, H, W)
        scores = (keys * query).sum(dim=(2, 3, 4)) * self.scale  # (tau, B)
        alpha = torch.softmax(scores, dim=0)[..., None, None, None]
        attended = (torch.stack(list(t_past), dim=0) * alpha).sum(dim=0)
        gate = torch.sigmoid(self.motion_gate(t))
        return gate * t + (1 - gate) * attended

    def forward(self, t: Tensor, s: Tensor, t_past: Sequence[Tensor],
                s_past: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        if len(t_past) != self.tau or len(s_past) != self.tau:
            raise ValueError(f"MAUCell needs the last tau={self.tau} temporal and spatial "
                             f"states; got {len(t_past)} and {len(s_past)}")
        motion = self.attention(t, s, t_past, s_past)
        t_gate, t_to_t, t_to_s = torch.chunk(self.temporal_fusion(motion), 3, dim=1)
        s_gate, s_to_t, s_to_s = torch.chunk(self.spatial_fusion(s), 3, dim=1)
        u_t, u_s = torch.sigmoid(t_gate), torch.sigmoid(s_gate)
        t_new = u_t * t_to_t + (1 - u_t) * s_to_t
        s_new = u_s * s_to_s + (1 - u_s) * t_to_s
        return t_new, (s_new + s if self.residual else s_new)


__all__ = ["MAUCell", "conv_norm"]
