"""The per-frame metrics ``mse``, ``bce``, ``psnr`` and ``ssim``: a mean over frames of a score per
frame, per predicted step (``PerStepMetric``). Their conventions: ``predlearn.metrics``, which
exports them; each frame's score is one sequence's contribution to the sums, so that the
intervals of ``predlearn.score_intervals`` can draw the sequences again.
"""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from predlearn.masked import (
    UNIT_BOUNDS,
    Bounds,
    checked_valid,
    clamped,
    frame_has_valid,
    masked_frame_score,
    masked_psnr,
    masked_ssim,
)
from predlearn.nowcast_scoring import check_frame_pair
from predlearn.sequence_sums import SequenceSums

__all__ = ["BCE_EPS", "DATA_RANGE", "SSIM_WINDOW", "FrameBCE", "FrameMSE", "FramePSNR",
           "FrameSSIM", "PerStepMetric"]


class _SSIMWindow(TypedDict):
    """The SSIM settings passed to torchmetrics by keyword."""

    gaussian_kernel: bool
    kernel_size: int
    sigma: float
    k1: float
    k2: float


DATA_RANGE = 1.0  # frames are floats in [0, 1]
BCE_EPS = 1e-7
SSIM_WINDOW: _SSIMWindow = {
    "gaussian_kernel": True, "kernel_size": 11, "sigma": 1.5, "k1": 0.01, "k2": 0.03}


class PerStepMetric(SequenceSums):
    """Mean over frames of a per-frame score, for each of ``horizon`` predicted steps.

    ``update(preds, target, valid=None)`` takes (B, K, C, H, W) tensors (``valid``: a boolean
    mask of the observed pixels); ``compute()`` returns a (K,) curve: per step, the sum of the
    scores of the frames with any valid pixel over their number (NaN for a step without any).
    ``bounds``: the range predictions are clamped to before scoring; None clamps nothing.
    A sequence contributes its frames' scores and counts (``SequenceSums``).
    """

    full_state_update = False
    higher_is_better: bool | None = False
    #: whether the metric needs the data's physical units (built with ``ScoringSettings``)
    physical_units: bool = False
    #: whether the metric reads values as in [0, 1] (refused for data without those bounds)
    unit_range: bool = False
    #: the convention, used as the key in logs (e.g. ``mse_per_frame``)
    key: str = ""
    #: what a plot's axis says for this key (the convention in words)
    label: str = ""
    # torchmetrics states (``add_state`` in ``__init__``): sums and frames counted per step, and
    # sequences counted (to refuse a result before any update, after the DDP sum)
    total: Tensor
    count: Tensor
    sequences: Tensor
    sum_states = ("total", "count", "sequences")
    sequences_state = "sequences"

    @classmethod
    def labels(cls) -> dict[str, str]:
        """Every key this metric can log, with its curve label."""
        return {cls.key: cls.label or cls.key}

    @classmethod
    def describe_key(cls, key: str) -> str | None:
        """The curve label of ``key``, or None if this metric does not log it."""
        return cls.labels().get(key)

    def curves(self) -> dict[str, Tensor]:
        """Logged key -> (K,) curve (also for K = 1, which torchmetrics squeezes)."""
        return {self.key: self.compute().reshape(-1)}

    def directions(self) -> dict[str, bool]:
        """Logged key -> whether higher is better."""
        return {self.key: bool(self.higher_is_better)}

    def __init__(self, horizon: int, *, bounds: Bounds = UNIT_BOUNDS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.horizon = horizon
        self.bounds = bounds
        # float64 sums: 5,000 sequences of per-frame sums stay exact enough to compare runs.
        self.add_state("total", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sequences", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        """(B, K, C, H, W) -> (B, K) scores."""
        raise NotImplementedError

    def masked_per_frame(self, preds: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """(B, K, C, H, W) -> (B, K) scores over the valid pixels of each frame (any value for a
        frame without one: ``update`` leaves it out)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not score frames with missing values: it needs a "
            "masked_per_frame (docs/metrics.md, 'Missing values')")

    def update(self, preds: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        check_frame_pair(preds, target, type(self).__name__)
        if preds.shape[1] != self.horizon:
            raise ValueError(
                f"{type(self).__name__} was built for {self.horizon} predicted steps; "
                f"got {preds.shape[1]}"
            )
        valid = checked_valid(valid, preds, type(self).__name__)
        preds = clamped(preds.detach().float(), self.bounds)
        target = target.detach().float()
        if valid is None:
            scores = self.per_frame(preds, target).to(torch.float64)
            kept = torch.ones_like(scores)
        else:
            kept = frame_has_valid(valid).to(torch.float64)
            scores = self.masked_per_frame(preds, target, valid).to(torch.float64)
            scores = torch.where(kept > 0, scores, torch.zeros_like(scores))
        # each sequence's contributions, then their sums (``SequenceSums``)
        self._accumulate({"total": scores, "count": kept,
                          "sequences": torch.ones_like(scores[:, 0])})

    def compute(self) -> Tensor:
        if self.sequences == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() before any update")
        return self._curves_of(self.state_sums())[self.key]

    def _curves_of(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        # 0 / 0: NaN for a step without a valid frame
        return {self.key: (sums["total"] / sums["count"]).reshape(-1)}


class FrameMSE(PerStepMetric):
    """Per-frame MSE: squared error summed over a frame's pixels ([0, 1] scale)."""

    key = "mse_per_frame"
    label = "MSE per frame (sum over pixels, [0, 1])"

    @classmethod
    def labels(cls) -> dict[str, str]:
        return {cls.key: cls.label, "mse_per_pixel": "MSE per pixel ([0, 1])"}

    def __init__(self, horizon: int, per: str = "frame", **kwargs) -> None:
        super().__init__(horizon, **kwargs)
        if per not in ("frame", "pixel"):
            raise ValueError(f"per must be 'frame' or 'pixel'; got {per!r}")
        self.per = per
        self.key = f"mse_per_{per}"

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        squared = (preds - target).square().flatten(2)
        return squared.sum(-1) if self.per == "frame" else squared.mean(-1)

    def masked_per_frame(self, preds: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        return masked_frame_score((preds - target).square(), valid, per=self.per)


def _bce(preds: Tensor, target: Tensor) -> Tensor:
    """Elementwise binary cross-entropy, predictions clamped to [BCE_EPS, 1 - BCE_EPS]."""
    p = preds.clamp(BCE_EPS, 1 - BCE_EPS)
    return -(target * p.log() + (1 - target) * (1 - p).log())


class FrameBCE(PerStepMetric):
    """Per-frame binary cross-entropy, summed over a frame's pixels."""

    key = "bce_per_frame"
    label = "cross-entropy per frame (sum over pixels)"
    unit_range = True

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        return _bce(preds, target).flatten(2).sum(-1)

    def masked_per_frame(self, preds: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        return masked_frame_score(_bce(preds, target), valid)


class FramePSNR(PerStepMetric):
    """PSNR of each frame (data range 1.0), averaged per step."""

    key = "psnr"
    label = "PSNR (dB, data range 1.0)"
    higher_is_better = True

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        b, k = preds.shape[:2]
        psnr = peak_signal_noise_ratio(
            preds.flatten(0, 1), target.flatten(0, 1), data_range=DATA_RANGE,
            reduction="none", dim=(1, 2, 3),
        )
        return psnr.view(b, k)

    def masked_per_frame(self, preds: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        return masked_psnr(preds, target, valid, DATA_RANGE)


class FrameSSIM(PerStepMetric):
    """SSIM of each frame (Gaussian window 11, sigma 1.5, data range 1.0), averaged per step."""

    key = "ssim"
    label = "SSIM (Gaussian 11, sigma 1.5)"
    higher_is_better = True

    @staticmethod
    def _check_size(preds: Tensor) -> None:
        window = SSIM_WINDOW["kernel_size"]
        if min(preds.shape[-2:]) < window:
            raise ValueError(
                f"SSIM needs frames of at least {window}x{window} (its Gaussian window); got "
                f"{preds.shape[-2]}x{preds.shape[-1]}. Leave 'ssim' out of the metrics."
            )

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        b, k = preds.shape[:2]
        self._check_size(preds)
        ssim = structural_similarity_index_measure(
            preds.flatten(0, 1), target.flatten(0, 1), data_range=DATA_RANGE,
            reduction="none", **SSIM_WINDOW,
        )
        assert isinstance(ssim, Tensor)  # a pair only with return_full_image/contrast_sensitivity
        return ssim.view(b, k)

    def masked_per_frame(self, preds: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        self._check_size(preds)
        return masked_ssim(preds, target, valid, DATA_RANGE, **SSIM_WINDOW)
