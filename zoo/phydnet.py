"""PhyDNet (Le Guen and Thome, CVPR 2020): physical dynamics disentangled from unknown factors.

See docs/models.md#phydnet.

A shared convolutional encoder E maps each frame u_t to a latent grid; two recurrent branches
read it (paper §3): the PhyCell, a latent PDE model h~ = h + Phi(h) whose filters are
constrained to approximate partial derivatives, with a Kalman-like correction towards the
observation, and a ConvLSTM for what the PDE misses. Their latent states are decoded, summed and
decoded again into the next frame: u^_{t+1} = sigmoid(D(D_p(h^p_{t+1}) + D_r(h^r_{t+1}))).
The moment loss (paper §3) ties the PhyCell's filters to the derivatives through their moment
matrices (``kernel_moments``); it is this predictor's ``auxiliary_loss``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from predlearn.errors import require
from predlearn.predictor import (
    Predictor,
    check_choice,
    check_frame,
    check_kernel_size,
    check_patch_size,
    check_positive,
    check_widths,
)
from predlearn.zoo.cells.conv_lstm import ConvLSTMCell

# -- moments of convolution filters (paper §3; Dong et al., PDE-Net) ----------------------------


def moment_matrix(size: int, dtype: torch.dtype = torch.float64,
                  device: torch.device | None = None) -> Tensor:
    """M[i, u] = u**i / i!, for orders i = 0 .. size - 1 and filter offsets
    u = -(size - 1) // 2 .. size // 2 (the taps of a 'same'-padded filter, centre at 0)."""
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) // 2
    orders = torch.arange(size, dtype=dtype, device=device)
    factorials = torch.tensor([math.factorial(i) for i in range(size)], dtype=dtype, device=device)
    return offsets.unsqueeze(0) ** orders.unsqueeze(1) / factorials.unsqueeze(1)


def kernel_moments(kernels: Tensor) -> Tensor:
    """The moment matrices of k x k filters (..., k, k): m[..., i, j] = sum_{u,v} w[..., u, v]
    u^i v^j / (i! j!), i.e. M w M^T. Cross-correlating a smooth field h with w gives, by Taylor
    expansion, sum_{i,j} m[i, j] d^{i+j} h / dy^i dx^j (rows are y, columns x)."""
    rows, cols = kernels.shape[-2:]
    m_rows = moment_matrix(rows, kernels.dtype, kernels.device)
    m_cols = moment_matrix(cols, kernels.dtype, kernels.device)
    return torch.einsum("iu,...uv,jv->...ij", m_rows, kernels, m_cols)


def derivative_targets(size: int, dtype: torch.dtype = torch.float32,
                       device: torch.device | None = None) -> Tensor:
    """(size**2, size, size): filter n = size * i + j should have moment (i, j) equal to 1 and
    every other moment 0, i.e. approximate d^{i+j} / dy^i dx^j (paper §3)."""
    return torch.eye(size * size, dtype=dtype, device=device).view(size * size, size, size)


def moment_loss(weight: Tensor) -> Tensor:
    """The moment constraint of a PhyCell's derivative convolution, weight (k*k, C, k, k): for
    every input channel, the mean squared difference between the k*k filters' moment matrices
    and ``derivative_targets``, summed over the C channels (as OpenSTL and the authors' code).
    Moments are taken in float64."""
    filters, _, size, _ = weight.shape
    moments = kernel_moments(weight.double()).to(weight.dtype)
    targets = derivative_targets(size, weight.dtype, weight.device).unsqueeze(1)
    return (moments - targets).pow(2).sum() / (filters * size * size)


# -- the PhyCell (paper §3) ----------------------------------------------------------------------


class PhyCell(nn.Module):
    """One PhyCell layer on a latent grid of ``channels`` channels (paper §3).

    Prediction: h~_{t+1} = h_t + Phi(h_t), Phi a k x k convolution to k*k "derivative" maps (the
    moment loss makes filter k*i + j a d^{i+j}/dy^i dx^j), a group norm (k groups) and a 1 x 1
    convolution that combines them. Correction: h_{t+1} = h~_{t+1} + K_t * (E(u_t) - h~_{t+1}),
    with the gain K_t = sigmoid(W * [E(u_t), h_t] + b), a 3 x 3 convolution (OpenSTL and the
    authors' code: sigmoid, from the observation and the previous state).
    """

    def __init__(self, channels: int, kernel_size: int = 7, gate_kernel_size: int = 3) -> None:
        super().__init__()
        filters = kernel_size * kernel_size
        self.derivatives = nn.Conv2d(channels, filters, kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(kernel_size, filters)
        self.combine = nn.Conv2d(filters, channels, 1)
        self.gate = nn.Conv2d(2 * channels, channels, gate_kernel_size,
                              padding=gate_kernel_size // 2)

    def forward(self, observation: Tensor, hidden: Tensor) -> Tensor:
        predicted = hidden + self.combine(self.norm(self.derivatives(hidden)))
        gain = torch.sigmoid(self.gate(torch.cat([observation, hidden], dim=1)))
        return predicted + gain * (observation - predicted)

    def moment_loss(self) -> Tensor:
        """``moment_loss`` of this cell's derivative filters."""
        return moment_loss(self.derivatives.weight)


# -- the encoders and decoders (OpenSTL / the authors' DCGAN-style blocks) -----------------------


def down_block(in_channels: int, out_channels: int, stride: int, groups: int) -> nn.Sequential:
    """3 x 3 convolution (stride 1 or 2), group norm, leaky ReLU (slope 0.2)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, padding=1),
                         nn.GroupNorm(groups, out_channels), nn.LeakyReLU(0.2))


def up_block(in_channels: int, out_channels: int, stride: int, groups: int) -> nn.Sequential:
    """3 x 3 transposed convolution (stride 1 or 2, exact inverse size), group norm, leaky ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 3, stride, padding=1,
                                            output_padding=stride - 1),
                         nn.GroupNorm(groups, out_channels), nn.LeakyReLU(0.2))


class PhyDNet(Predictor):
    """PhyDNet (Le Guen and Thome, CVPR 2020), at OpenSTL's Moving MNIST set-up by default.

    Args:
        frame_channels, frame_size: the frames' (filled in from the data).
        patch_size: how much the shared encoder shrinks each side, 2 or 4 (OpenSTL: 4, a
            16 x 16 latent grid at 64 x 64 frames); the frame size must be a multiple of it.
        encoder_channels: width of the shared encoder's and decoder's outer layers (32).
        latent_channels: channels of the latent grid, the PhyCell's state (64).
        norm_groups: groups of the encoders' and decoders' group norms (16).
        phycell_kernel_size: k of the PhyCell's k*k derivative filters, odd (7: 49 filters,
            derivatives up to order 6 in each direction).
        convlstm_channels: widths of the ConvLSTM branch's layers, bottom first (128, 128, 64).
        convlstm_kernel_size: its filter size (3).
        moment_weight: weight of the moment loss (``auxiliary_loss``) against the frame loss
            summed over the rollout's next-frame predictions, as OpenSTL and the authors add
            them (1). PredictiveModule's frame loss is the mean over the predicted frames, so
            the term added is ``moment_weight * moment_loss / steps`` (steps: the rollout's
            J - 1 + K transitions): with ``loss=l2`` and ``loss_frames=all`` the training loss
            is OpenSTL's divided by J - 1 + K.
    """

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model."""
        return {"encoder_channels": 4, "latent_channels": 8, "norm_groups": 2,
                "phycell_kernel_size": 3, "convlstm_channels": [4, 8]}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: Sequence[int] = (64, 64),
        patch_size: int = 4,  # OpenSTL configs/mmnist/PhyDNet.py
        encoder_channels: int = 32,  # OpenSTL encoder_E / decoder_D: nf = 32
        latent_channels: int = 64,  # OpenSTL: input_dim = 64
        norm_groups: int = 16,  # OpenSTL dcgan blocks: GroupNorm(16, .)
        phycell_kernel_size: int = 7,  # OpenSTL: kernel (7, 7), 49 filters
        convlstm_channels: Sequence[int] = (128, 128, 64),  # OpenSTL hidden_dims
        convlstm_kernel_size: int = 3,  # OpenSTL: kernel (3, 3)
        moment_weight: float = 1.0,  # OpenSTL / authors: loss += moment loss
    ) -> None:
        super().__init__()
        height, width = check_frame(frame_channels, frame_size)
        check_choice("patch_size", patch_size, (2, 4))
        check_patch_size(patch_size, height, width)
        check_positive("encoder_channels", encoder_channels)
        check_positive("latent_channels", latent_channels)
        check_positive("norm_groups", norm_groups)
        for name, channels in (("encoder_channels", encoder_channels),
                               ("latent_channels", latent_channels)):
            require(channels % norm_groups == 0, name, f"must be a multiple of norm_groups "
                    f"({norm_groups}); got {channels}", channels)
        check_kernel_size("phycell_kernel_size", phycell_kernel_size)
        widths = check_widths("convlstm_channels", convlstm_channels)
        check_kernel_size("convlstm_kernel_size", convlstm_kernel_size)
        require(moment_weight >= 0, "moment_weight", f"must be >= 0; got {moment_weight}",
                moment_weight)
        self.frame_channels = frame_channels
        self.frame_size = (height, width)
        self.grid = (height // patch_size, width // patch_size)
        self.latent_channels = latent_channels
        self.convlstm_channels = widths
        self.moment_weight = moment_weight
        nf, latent, groups, inner = encoder_channels, latent_channels, norm_groups, patch_size // 2
        self.encoder = nn.Sequential(  # E: frame -> latent grid (shared by both branches)
            down_block(frame_channels, nf, 2, groups), down_block(nf, nf, 1, groups),
            down_block(nf, latent, inner, groups))
        self.physics_encoder = nn.Sequential(  # E_p
            down_block(latent, latent, 1, groups), down_block(latent, latent, 1, groups))
        self.residual_encoder = nn.Sequential(  # E_r
            down_block(latent, latent, 1, groups), down_block(latent, latent, 1, groups))
        self.phycell = PhyCell(latent, phycell_kernel_size)
        self.convlstm = nn.ModuleList(
            ConvLSTMCell(latent if layer == 0 else widths[layer - 1], width_l,
                         convlstm_kernel_size, self.grid, peephole=False)
            for layer, width_l in enumerate(widths))
        self.physics_decoder = nn.Sequential(  # D_p
            up_block(latent, latent, 1, groups), up_block(latent, latent, 1, groups))
        self.residual_decoder = nn.Sequential(  # D_r
            up_block(widths[-1], latent, 1, groups), up_block(latent, latent, 1, groups))
        self.decoder = nn.Sequential(  # D: latent grid -> frame (logits)
            up_block(latent, nf, 2, groups), up_block(nf, nf, 1, groups),
            nn.ConvTranspose2d(nf, frame_channels, 3, inner, padding=1, output_padding=inner - 1))

    def encode(self, frames: Tensor) -> Tensor:
        """E, the shared encoder: (N, C, H, W) -> (N, latent_channels, H/p, W/p)."""
        return self.encoder(frames)

    def initial_state(self, frames: Tensor) -> dict[str, Any]:
        """Zero states of both branches (OpenSTL: ``initHidden`` at the first frame)."""
        batch = frames.shape[0]

        def zeros(channels: int) -> Tensor:
            return frames.new_zeros(batch, channels, *self.grid)

        return {"physics": zeros(self.latent_channels),
                "h": [zeros(w) for w in self.convlstm_channels],
                "c": [zeros(w) for w in self.convlstm_channels], "steps": 0}

    def transition(
        self, inputs: Tensor, state: dict[str, Any], predict: bool = True
    ) -> tuple[Tensor | None, dict[str, Any]]:
        """One step on an encoded frame E(u_t): both branches, then (if ``predict``) u^_{t+1}."""
        physics = self.phycell(self.physics_encoder(inputs), state["physics"])
        h, c = list(state["h"]), list(state["c"])
        below = self.residual_encoder(inputs)
        for layer, cell in enumerate(self.convlstm):
            h[layer], c[layer], _ = cell(below, h[layer], c[layer])
            below = h[layer]
        state = {"physics": physics, "h": h, "c": c, "steps": state["steps"] + 1}
        if not predict:
            return None, state
        latent = self.physics_decoder(physics) + self.residual_decoder(h[-1])
        return torch.sigmoid(self.decoder(latent)), state

    def moment_loss(self) -> Tensor:
        """The PhyCell's moment constraint (``moment_loss``), unweighted."""
        return self.phycell.moment_loss()

    def auxiliary_loss(self, state: dict[str, Any]) -> Tensor | None:
        """``moment_weight`` x the moment loss / the rollout's steps (training only)."""
        if not self.training or self.moment_weight == 0 or state["steps"] == 0:
            return None
        return self.moment_weight * self.moment_loss() / state["steps"]


__all__ = ["PhyCell", "PhyDNet", "derivative_targets", "kernel_moments", "moment_loss",
           "moment_matrix"]
