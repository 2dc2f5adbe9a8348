"""SimVP (Gao et al., CVPR 2022) with its v1 and v2 translators; the parts TAU shares.

See docs/models.md#simvp. No recurrence: a spatial encoder maps every frame to a small grid,
a translator mixes the J encoded frames stacked as channels (J * C' channels), and a spatial
decoder maps them back to J frames, all at once (paper Fig. 2). The translator is SimVP v1's
Inception-U-Net (``incepu``) or SimVP v2's gated spatiotemporal attention (``gsta``, Tan et al.,
"SimVPv2: Towards Simple yet Powerful Spatiotemporal Predictive Learning", arXiv 2211.12509).
Layers, activations, initialisation and drop-path schedule as OpenSTL's ``SimVP_Model`` (commit
c74deb5), whose encoder and decoder differ from the v1 authors' code (A4Bio/SimVP): SiLU, not
LeakyReLU(0.2); pixel-shuffle upsampling, not transposed convolutions; the skip added, not
concatenated; truncated-normal init.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.direct_predictor import DirectPredictor
from predlearn.errors import require
from predlearn.predictor import check_choice, check_frame, check_kernel_size, check_positive
from predlearn.zoo.incepu import InceptionUNet

# -- encoder and decoder (paper Fig. 2) -----------------------------------------------------------


class ConvNormSiLU(nn.Module):
    """Convolution, GroupNorm over 2 groups, SiLU; strided (``stride`` 2) to downsample, or with
    4x the channels and a pixel shuffle (``upsample``) to double the size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_channels, out_channels * (4 if upsample else 1), kernel_size,
                              stride, (kernel_size - stride + 1) // 2)
        self.norm = nn.GroupNorm(2, out_channels)
        nn.init.trunc_normal_(self.conv.weight, std=0.02)  # OpenSTL's BasicConv2d init
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.silu(self.norm(F.pixel_shuffle(x, 2) if self.upsample else x))


def strided_layers(layers: int) -> list[bool]:
    """Which of the encoder's layers halve the size: every second one, the first keeps it (the
    decoder mirrors the list, so its last layer, which adds the skip, keeps the size)."""
    return [index % 2 == 1 for index in range(layers)]


class Encoder(nn.Module):
    """Frames (N, C, H, W) -> (latent (N, C', H / 2^(L/2), W / 2^(L/2)), first layer's output)."""

    def __init__(self, in_channels: int, channels: int, layers: int, kernel_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ConvNormSiLU(in_channels if i == 0 else channels, channels, kernel_size,
                         2 if strided else 1)
            for i, strided in enumerate(strided_layers(layers)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = x = self.layers[0](x)
        for layer in self.layers[1:]:
            x = layer(x)
        return x, skip


class Decoder(nn.Module):
    """The encoder mirrored (pixel-shuffle upsampling); the encoder's first output is added
    before the last layer, and a 1x1 convolution reads the frame out (no output activation)."""

    def __init__(self, channels: int, out_channels: int, layers: int, kernel_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ConvNormSiLU(channels, channels, kernel_size, upsample=up)
            for up in reversed(strided_layers(layers)))
        self.readout = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = layer(x)
        return self.readout(self.layers[-1](x + skip))


# -- SimVP v2's translator: gated spatiotemporal attention (gSTA) ----------------------------------


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: zero a residual branch per sample with probability ``rate``, scaling the
    kept ones by 1 / (1 - rate); the identity when not training."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    return x * x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)


def large_kernel(dim: int, kernel_size: int, out_channels: int) -> nn.ModuleDict:
    """A large receptive field decomposed (gSTA, TAU): depth-wise 5x5, depth-wise dilated (dilation
    3, size ``kernel_size // 3`` made odd), then a 1x1 convolution to ``out_channels``."""
    dilation = 3
    local = 2 * dilation - 1
    wide = kernel_size // dilation + (kernel_size // dilation) % 2 - 1
    return nn.ModuleDict({
        "local": nn.Conv2d(dim, dim, local, padding=local // 2, groups=dim),
        "dilated": nn.Conv2d(dim, dim, wide, padding=dilation * (wide - 1) // 2, groups=dim,
                             dilation=dilation),
        "pointwise": nn.Conv2d(dim, out_channels, 1)})


def apply_large_kernel(convs: nn.ModuleDict, x: Tensor) -> Tensor:
    return convs["pointwise"](convs["dilated"](convs["local"](x)))


class GatedAttention(nn.Module):
    """gSTA's mixer: the large kernel gives 2 x dim maps split into f and g; sigmoid(g) * f."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.convs = large_kernel(dim, kernel_size, 2 * dim)

    def forward(self, x: Tensor) -> Tensor:
        features, gate = apply_large_kernel(self.convs, x).chunk(2, dim=1)
        return torch.sigmoid(gate) * features


class AttentionBranch(nn.Module):
    """1x1, GELU, the attention ``mixer``, 1x1, plus the branch's input (shortcut)."""

    def __init__(self, dim: int, mixer: nn.Module) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.mixer = mixer
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj_out(self.mixer(F.gelu(self.proj_in(x))))


class ConvMLP(nn.Module):
    """The channel mixer: 1x1 to ``hidden``, depth-wise 3x3, GELU, dropout, 1x1 back, dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.expand = nn.Conv2d(dim, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.project = nn.Conv2d(hidden, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(F.gelu(self.depthwise(self.expand(x))))
        return self.dropout(self.project(x))


def fan_out_init(module: nn.Module) -> None:
    """OpenSTL's init of the attention blocks: convolutions N(0, 2 / fan-out), linear layers
    truncated N(0, 0.02^2), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)


class AttentionBlock(nn.Module):
    """A MetaFormer block on ``dim`` channels: x + s1 * attention(BN(x)), then x + s2 * MLP(BN(x))
    (layer scales s initialised to 0.01, drop path on both branches), then a 1x1 convolution to
    ``out_channels`` where that differs."""

    def __init__(self, dim: int, out_channels: int, attention: AttentionBranch,
                 mlp_ratio: float, dropout: float, drop_path: float,
                 init_attention: bool = True) -> None:
        super().__init__()
        self.attention_norm = nn.BatchNorm2d(dim)
        self.attention = attention
        self.attention_scale = nn.Parameter(torch.full((dim,), 1e-2))
        self.mlp_norm = nn.BatchNorm2d(dim)
        self.mlp = ConvMLP(dim, int(dim * mlp_ratio), dropout)
        self.mlp_scale = nn.Parameter(torch.full((dim,), 1e-2))
        self.drop_path = drop_path
        fan_out_init(self.mlp)
        if init_attention:  # OpenSTL's TAU block keeps torch's init in its attention
            fan_out_init(self.attention)
        self.project = nn.Conv2d(dim, out_channels, 1) if out_channels != dim else None

    def forward(self, x: Tensor) -> Tensor:
        branch = self.attention(self.attention_norm(x)) * self.attention_scale.view(-1, 1, 1)
        x = x + drop_path(branch, self.drop_path, self.training)
        branch = self.mlp(self.mlp_norm(x)) * self.mlp_scale.view(-1, 1, 1)
        x = x + drop_path(branch, self.drop_path, self.training)
        return x if self.project is None else self.project(x)


class AttentionTranslator(nn.Module):
    """``layers`` attention blocks: J*C' -> hidden, hidden -> hidden, ..., hidden -> J*C'. Drop
    path rates rise linearly from 0.01 (first block) towards ``drop_path``; the last block has
    ``drop_path`` (OpenSTL's rule: 0.01 .. 0 at its default 0)."""

    def __init__(self, channels: int, hidden: int, layers: int, make_attention: Any,
                 mlp_ratio: float, dropout: float, drop_path: float,
                 init_attention: bool = True) -> None:
        super().__init__()
        rates = torch.linspace(1e-2, drop_path, layers, device="cpu").tolist()[:-1] + [drop_path]
        widths = [channels] + [hidden] * (layers - 1) + [channels]
        self.blocks = nn.ModuleList(
            AttentionBlock(widths[i], widths[i + 1], make_attention(widths[i]), mlp_ratio,
                           dropout, rates[i], init_attention) for i in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


# -- the model ------------------------------------------------------------------------------------


class SimVP(DirectPredictor):
    """SimVP: encoder, translator over the J frames' stacked channels, decoder (paper Fig. 2).

    Args:
        context_frames: J, the frames in and out of one call (the data set it).
        frame_channels, frame_size: the frames' (the data set them).
        spatial_channels: C' of the encoder and decoder (OpenSTL hid_S: 64).
        temporal_channels: the translator's width (hid_T: 512; IncepU's reductions: half).
        spatial_layers: encoder layers, as many in the decoder; even, every second one halves
            the size (N_S: 4, so a 16 x 16 grid at 64 x 64).
        temporal_layers: translator blocks (N_T: 8; IncepU: as many down and up).
        translator: ``incepu`` (v1, the default) or ``gsta`` (v2).
        encoder_kernel_size, decoder_kernel_size: their convolutions' size (3).
        mlp_ratio: gSTA: the MLP's widening (OpenSTL's SimVP_Model default: 8).
        dropout: gSTA: dropout in the MLP (0).
        drop_path: gSTA: the last block's drop-path rate; the others' rise from 0.01 to it (0).
        attention_kernel_size: gSTA: the receptive field of the decomposed kernel (21).
        inception_kernels, inception_groups: IncepU's branch sizes (3, 5, 7, 11) and groups (8).
    """

    translators: tuple[str, ...] = ("incepu", "gsta")
    #: whether the attention branches get OpenSTL's fan-out init (its TAU blocks keep torch's)
    fan_out_attention: bool = True

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model."""
        return {"spatial_channels": 4, "temporal_channels": 16, "spatial_layers": 2,
                "temporal_layers": 2, "inception_kernels": [3, 5], "inception_groups": 2}

    def __init__(
        self,
        context_frames: int = 10,
        frame_channels: int = 1,
        frame_size: Sequence[int] = (64, 64),
        spatial_channels: int = 64,
        temporal_channels: int = 512,
        spatial_layers: int = 4,
        temporal_layers: int = 8,
        translator: str = "incepu",
        encoder_kernel_size: int = 3,
        decoder_kernel_size: int = 3,
        mlp_ratio: float = 8.0,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        attention_kernel_size: int = 21,
        inception_kernels: Sequence[int] = (3, 5, 7, 11),
        inception_groups: int = 8,
    ) -> None:
        super().__init__()
        height, width = check_frame(frame_channels, frame_size)
        check_positive("context_frames", context_frames)
        check_choice("translator", translator, type(self).translators)
        require(spatial_channels >= 2 and spatial_channels % 2 == 0, "spatial_channels",
                f"must be even and positive (GroupNorm over 2 groups); got {spatial_channels}",
                spatial_channels)
        require(spatial_layers >= 2 and spatial_layers % 2 == 0, "spatial_layers",
                f"must be even and at least 2; got {spatial_layers}", spatial_layers)
        scale = 2 ** (spatial_layers // 2)
        require(height % scale == 0 and width % scale == 0, "spatial_layers",
                f"{spatial_layers} layers halve the frame {spatial_layers // 2} times: the frame "
                f"size {height}x{width} must be a multiple of {scale}", spatial_layers)
        require(temporal_layers >= 2, "temporal_layers",
                f"must be at least 2; got {temporal_layers}", temporal_layers)
        check_positive("temporal_channels", temporal_channels)
        check_kernel_size("encoder_kernel_size", encoder_kernel_size)
        check_kernel_size("decoder_kernel_size", decoder_kernel_size)
        self.frame_channels, self.frame_size = frame_channels, (height, width)
        self.context_frames = self.block_frames = context_frames
        self.translator_name = translator
        self.encoder = Encoder(frame_channels, spatial_channels, spatial_layers,
                               encoder_kernel_size)
        self.decoder = Decoder(spatial_channels, frame_channels, spatial_layers,
                               decoder_kernel_size)
        stacked = context_frames * spatial_channels
        self.translator: nn.Module
        if translator == "incepu":
            self.translator = self._inception_unet(stacked, temporal_channels, temporal_layers,
                                                   inception_kernels, inception_groups)
        else:
            require(mlp_ratio > 1, "mlp_ratio", f"must be above 1; got {mlp_ratio}", mlp_ratio)
            require(0 <= dropout < 1, "dropout", f"must be in [0, 1); got {dropout}", dropout)
            require(0 <= drop_path < 1, "drop_path", f"must be in [0, 1); got {drop_path}",
                    drop_path)
            require(attention_kernel_size >= 3, "attention_kernel_size",
                    f"must be at least 3; got {attention_kernel_size}", attention_kernel_size)
            self.translator = AttentionTranslator(
                stacked, temporal_channels, temporal_layers,
                lambda dim: self.attention_branch(dim, attention_kernel_size), mlp_ratio,
                dropout, drop_path, type(self).fan_out_attention)

    @staticmethod
    def _inception_unet(stacked: int, hidden: int, layers: int, kernels: Sequence[int],
                        groups: int) -> InceptionUNet:
        kernels = [int(k) for k in kernels]
        require(bool(kernels), "inception_kernels", "needs at least one size", kernels)
        for k in kernels:
            check_kernel_size("inception_kernels", k)
        require(hidden >= 2, "temporal_channels",
                f"must be at least 2 (IncepU reduces to half of it); got {hidden}", hidden)
        check_positive("inception_groups", groups)
        used = groups if (hidden // 2) % groups == 0 else 1
        require(stacked % used == 0, "inception_groups",
                f"{groups} groups must divide the stacked width context_frames x "
                f"spatial_channels = {stacked}", groups)
        return InceptionUNet(stacked, hidden, layers, kernels, groups)

    def attention_branch(self, dim: int, kernel_size: int) -> AttentionBranch:
        """The attention branch of a translator block on ``dim`` channels (gSTA's here)."""
        return AttentionBranch(dim, GatedAttention(dim, kernel_size))

    def predict_block(self, frames: Tensor) -> Tensor:
        batch, steps = frames.shape[:2]
        latent, skip = self.encoder(frames.flatten(0, 1))
        mixed = self.translator(latent.reshape(batch, -1, *latent.shape[2:]))
        decoded = self.decoder(mixed.reshape(latent.shape), skip)
        return decoded.unflatten(0, (batch, steps))


__all__ = ["AttentionBlock", "AttentionBranch", "AttentionTranslator", "ConvMLP", "ConvNormSiLU",
           "Decoder", "Encoder", "GatedAttention",
           "InceptionUNet", "SimVP", "apply_large_kernel", "drop_path", "large_kernel",
           "strided_layers"]
