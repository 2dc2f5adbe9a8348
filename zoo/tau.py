"""TAU (Tan et al., CVPR 2023): SimVP with the Temporal Attention Unit as translator.

See docs/models.md#tau. The encoder and decoder are SimVP's (``zoo/simvp.py``); each translator
block's attention is the Temporal Attention Unit: an intra-frame statical attention SA, a
decomposed large kernel (depth-wise, depth-wise dilated, 1x1), times an inter-frame dynamical
attention DA, a squeeze-and-excitation over the block's channels (the J frames' stacked
features), gating the block's input: H' = (SA ⊗ DA) ⊙ H. Training adds the differential divergence
regularisation (``divergence_regularisation``) as the predictor's prediction loss.
Sizes, init and loss weight as OpenSTL's ``configs/mmnist/TAU.py`` (commit c74deb5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.errors import require
from predlearn.predictor import check_positive
from predlearn.zoo.simvp import AttentionBranch, SimVP, apply_large_kernel, large_kernel

#: OpenSTL's squeeze: dim -> dim // max(dim // 16, 4) (16 at the default widths) -> dim
SQUEEZE = 16


def squeeze_width(dim: int) -> int:
    """The hidden width of DA's two fully connected layers (OpenSTL's rule)."""
    return dim // max(dim // SQUEEZE, 4)


class TemporalAttentionUnit(nn.Module):
    """SA(H) ⊗ DA(H) ⊙ H: SA the large kernel to ``dim`` maps, DA = sigmoid(FC(ReLU(FC(pool H))))
    per channel (the paper's TAU)."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.convs = large_kernel(dim, kernel_size, dim)
        hidden = squeeze_width(dim)
        self.squeeze = nn.Linear(dim, hidden, bias=False)
        self.excite = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        statical = apply_large_kernel(self.convs, x)
        pooled = x.mean(dim=(2, 3))
        dynamical = self.excite(F.relu(self.squeeze(pooled))).sigmoid()[:, :, None, None]
        return statical * dynamical * x


def divergence_regularisation(predictions: Tensor, targets: Tensor, temperature: float = 0.1,
                              eps: float = 1e-12) -> Tensor:
    """The paper's differential divergence regularisation: the frame differences
    ΔŶ_t = Ŷ_{t+1} - Ŷ_t and ΔY_t of prediction and truth, each flattened over (C, H, W) and
    softmaxed at ``temperature``, to p and q; KL(p || q) = Σ p log(p / q), taken as OpenSTL does
    (eps inside the logarithm and the quotient) and averaged over batch, differences and pixels.
    (B, T, C, H, W) inputs, T >= 2."""
    batch, steps = predictions.shape[:2]
    p = F.softmax(predictions.diff(dim=1).reshape(batch, steps - 1, -1) / temperature, dim=-1)
    q = F.softmax(targets.diff(dim=1).reshape(batch, steps - 1, -1) / temperature, dim=-1)
    return (p * (p / (q + eps) + eps).log()).mean()


class TAU(SimVP):
    """TAU: SimVP's encoder and decoder, Temporal Attention Unit translator blocks, and the
    differential divergence regularisation in training.

    Args:
        alpha: weight of the regularisation (OpenSTL's configs/mmnist/TAU.py: 0.1).
        temperature: the softmax temperature of the regularisation (OpenSTL's diff_div_reg:
            0.1; the paper names it tau).
        (the others: ``SimVP``'s, its gSTA options; OpenSTL's Moving MNIST set-up is SimVP's.)
    """

    translators = ("tau",)
    fan_out_attention = False  # OpenSTL's TAUSubBlock replaces its attention after the init

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model."""
        return {"spatial_channels": 4, "temporal_channels": 8, "spatial_layers": 2,
                "temporal_layers": 2, "mlp_ratio": 2.0, "attention_kernel_size": 9}

    def __init__(
        self,
        context_frames: int = 10,
        frame_channels: int = 1,
        frame_size: Sequence[int] = (64, 64),
        spatial_channels: int = 64,
        temporal_channels: int = 512,
        spatial_layers: int = 4,
        temporal_layers: int = 8,
        encoder_kernel_size: int = 3,
        decoder_kernel_size: int = 3,
        mlp_ratio: float = 8.0,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        attention_kernel_size: int = 21,
        alpha: float = 0.1,
        temperature: float = 0.1,
    ) -> None:
        require(temporal_channels >= 4, "temporal_channels",
                f"must be at least 4 (the TAU's squeeze); got {temporal_channels}",
                temporal_channels)
        require(context_frames * spatial_channels >= 4, "spatial_channels",
                "context_frames x spatial_channels must be at least 4 (the TAU's squeeze); got "
                f"{context_frames} x {spatial_channels}", spatial_channels)
        require(alpha >= 0, "alpha", f"must be >= 0; got {alpha}", alpha)
        check_positive("temperature", temperature)
        super().__init__(context_frames, frame_channels, frame_size, spatial_channels,
                         temporal_channels, spatial_layers, temporal_layers, "tau",
                         encoder_kernel_size, decoder_kernel_size, mlp_ratio, dropout,
                         drop_path, attention_kernel_size)
        self.alpha, self.temperature = alpha, temperature

    def attention_branch(self, dim: int, kernel_size: int) -> AttentionBranch:
        return AttentionBranch(dim, TemporalAttentionUnit(dim, kernel_size))

    def prediction_loss(self, predictions: Tensor, targets: Tensor) -> Tensor | None:
        """alpha x ``divergence_regularisation``; none with alpha 0 or fewer than 3 predicted
        frames (OpenSTL returns 0 there)."""
        if not self.alpha or predictions.shape[1] <= 2:
            return None
        return self.alpha * divergence_regularisation(predictions, targets, self.temperature)


__all__ = ["TAU", "TemporalAttentionUnit", "divergence_regularisation", "squeeze_width"]
