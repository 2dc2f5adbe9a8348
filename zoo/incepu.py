"""SimVP v1's translator (Gao et al., CVPR 2022): an Inception U-Net over the J encoded frames
stacked as channels, as OpenSTL's ``MidIncepNet`` builds it (``zoo/simvp.py`` uses it as
``translator: incepu``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GroupConvBranch", "Inception", "InceptionUNet"]


class GroupConvBranch(nn.Module):
    """A group convolution, GroupNorm with as many groups, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                              groups=groups)
        self.norm = nn.GroupNorm(groups, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class Inception(nn.Module):
    """A 1x1 reduction, then the sum of parallel group convolutions of several sizes, each with
    GroupNorm and LeakyReLU(0.2) (groups 1 where they do not divide the reduced width)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int,
                 kernels: Sequence[int], groups: int) -> None:
        super().__init__()
        groups = groups if hidden % groups == 0 else 1
        self.reduce = nn.Conv2d(in_channels, hidden, 1)
        self.branches = nn.ModuleList(
            GroupConvBranch(hidden, out_channels, k, groups) for k in kernels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class InceptionUNet(nn.Module):
    """``layers`` Inception blocks down and as many up, each up block fed the concatenation of
    the previous output and the mirrored down block's (U-Net skips)."""

    def __init__(self, channels: int, hidden: int, layers: int, kernels: Sequence[int],
                 groups: int) -> None:
        super().__init__()
        half = hidden // 2
        self.down = nn.ModuleList(Inception(channels if i == 0 else hidden, half, hidden,
                                            kernels, groups) for i in range(layers))
        self.up = nn.ModuleList(
            Inception(hidden if i == 0 else 2 * hidden, half,
                      channels if i == layers - 1 else hidden, kernels, groups)
            for i in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](x)
        for block, skip in zip(self.up[1:], reversed(skips[:-1]), strict=True):
            x = block(torch.cat([x, skip], dim=1))
        return x
