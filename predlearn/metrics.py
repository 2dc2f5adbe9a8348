"""Per-frame metrics with per-step curves (docs/metrics.md).

Conventions, named in every logged key:

- ``mse_per_frame``: squared error summed over the pixels (and channels) of one frame, on the
  [0, 1] scale, then averaged over frames and sequences (Tables 1-2; 56.8 on 64x64 frames is a
  per-pixel MSE of about 0.0139). ``FrameMSE(per="pixel")`` gives the per-pixel mean instead.
- ``bce_per_frame``: binary cross-entropy summed over the pixels of a frame, the targets and the
  predictions in [0, 1] read as Bernoulli means (predictions clamped to [1e-7, 1 - 1e-7]).
- ``psnr``: per frame, 10 log10(1 / per-pixel MSE), data range 1.0 (the same as 255 on 8-bit
  frames), averaged over frames (not PSNR of the averaged MSE).
- ``ssim``: Wang et al. 2004, Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1.0.

Predictions are clipped to [0, 1] before scoring, as the authors' evaluation does. Each metric
keeps a sum per predicted step and a count of sequences in torchmetrics state, so the result is
the same on one device or summed across DDP ranks.

The metrics are registered by name like the models (``predlearn list``; entry-point group
``predlearn.metrics``): each class carries its logged key, its direction and the label of its
curve, so a plugin adds a metric in one file and ``--model.metrics=[mse,mine]`` uses it.

A registered metric is a torchmetrics ``Metric`` with ``update(preds, target)`` on
(B, K, C, H, W) tensors, ``curves()`` (logged key -> (K,) curve), ``directions()`` (key ->
higher is better) and the class method ``describe_key(key)`` (a plot label, None for keys it
does not log). Metrics that score in physical units (``physical_units = True``: the nowcasting
scores of ``predlearn.categorical_scores`` and ``predlearn.fractions_skill_score``) are built as
``cls(horizon, settings)`` with the data's ``predlearn.units.ScoringSettings``; the others as
``cls(horizon)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypedDict, cast

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from predlearn.units import ScoringSettings


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
#: the metrics scored at validation and test unless told otherwise (registry names)
DEFAULT_METRICS: tuple[str, ...] = ("mse", "bce", "psnr", "ssim")


class PerStepMetric(Metric):
    """Mean over sequences of a per-frame score, for each of ``horizon`` predicted steps.

    ``update(preds, target)`` takes (B, K, C, H, W) tensors; ``compute()`` returns a (K,) curve.
    """

    full_state_update = False
    higher_is_better: bool | None = False
    #: whether the metric needs the data's physical units (built with ``ScoringSettings``)
    physical_units: bool = False
    #: the convention, used as the key in logs (e.g. ``mse_per_frame``)
    key: str = ""
    #: what a plot's axis says for this key (the convention in words)
    label: str = ""
    # torchmetrics states (``add_state`` in ``__init__``): sums per step, and sequences counted
    total: Tensor
    count: Tensor

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

    def __init__(self, horizon: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.horizon = horizon
        # float64 sums: 5,000 sequences of per-frame sums stay exact enough to compare runs.
        self.add_state("total", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        """(B, K, C, H, W) -> (B, K) scores."""
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.shape != target.shape or preds.ndim != 5:
            raise ValueError(
                f"{type(self).__name__} needs predictions and targets of the same (B, K, C, H, W) "
                f"shape; got {tuple(preds.shape)} and {tuple(target.shape)}"
            )
        if preds.shape[1] != self.horizon:
            raise ValueError(
                f"{type(self).__name__} was built for {self.horizon} predicted steps; "
                f"got {preds.shape[1]}"
            )
        scores = self.per_frame(preds.detach().float().clamp(0, 1), target.detach().float())
        self.total += scores.sum(dim=0).to(torch.float64)
        self.count += scores.shape[0]

    def compute(self) -> Tensor:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() before any update")
        return self.total / self.count


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


class FrameBCE(PerStepMetric):
    """Per-frame binary cross-entropy, summed over a frame's pixels."""

    key = "bce_per_frame"
    label = "cross-entropy per frame (sum over pixels)"

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        p = preds.clamp(BCE_EPS, 1 - BCE_EPS)
        bce = -(target * p.log() + (1 - target) * (1 - p).log())
        return bce.flatten(2).sum(-1)


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


class FrameSSIM(PerStepMetric):
    """SSIM of each frame (Gaussian window 11, sigma 1.5, data range 1.0), averaged per step."""

    key = "ssim"
    label = "SSIM (Gaussian 11, sigma 1.5)"
    higher_is_better = True

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        b, k = preds.shape[:2]
        window = SSIM_WINDOW["kernel_size"]
        if min(preds.shape[-2:]) < window:
            raise ValueError(
                f"SSIM needs frames of at least {window}x{window} (its Gaussian window); got "
                f"{preds.shape[-2]}x{preds.shape[-1]}. Leave 'ssim' out of the metrics."
            )
        ssim = structural_similarity_index_measure(
            preds.flatten(0, 1), target.flatten(0, 1), data_range=DATA_RANGE,
            reduction="none", **SSIM_WINDOW,
        )
        assert isinstance(ssim, Tensor)  # a pair only with return_full_image/contrast_sensitivity
        return ssim.view(b, k)


def curve_label(key: str) -> str:
    """The axis label of a logged curve key (the key itself for an unknown one)."""
    from predlearn.registry import METRICS

    for name in METRICS.names():
        describe = getattr(METRICS.get(name), "describe_key", None)
        label = describe(key) if describe is not None else None
        if label:
            return label
    return key


class SequenceMetrics(nn.Module):
    """A set of per-step metrics for one stage, with the logged key names.

    ``compute()`` returns ``{"<prefix>/<key>": mean, "<prefix>/<key>/step_01": ..., ...}``;
    ``curves()`` returns ``{key: (K,) tensor}``. ``settings``: the data's physical units and
    thresholds, needed by metrics with ``physical_units`` (e.g. ``categorical``, ``fss``).
    """

    def __init__(self, horizon: int, names: Iterable[str] = DEFAULT_METRICS,
                 prefix: str = "test", settings: ScoringSettings | None = None) -> None:
        from predlearn.registry import METRICS

        super().__init__()
        names = list(names)
        unknown = sorted(name for name in names if name not in METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {METRICS.names()}")
        physical = [name for name in names if getattr(METRICS.get(name), "physical_units", False)]
        if physical and settings is None:
            raise ValueError(
                f"metrics {physical} score events in physical units (e.g. dBZ); the data has no "
                "value mapping (radar data has one): leave them out for this data")
        self.prefix = prefix
        self.horizon = horizon
        self.settings = settings
        self.names = names
        self.metrics = nn.ModuleDict({
            name: (METRICS.get(name)(horizon, settings) if name in physical
                   else METRICS.get(name)(horizon))
            for name in names})
        self.updated = False

    def _each(self) -> Iterable[PerStepMetric]:
        # every registered metric has PerStepMetric's curves/directions (the module docstring);
        # a ModuleDict knows its values only as modules
        return cast("Iterable[PerStepMetric]", self.metrics.values())

    def update(self, preds: Tensor, target: Tensor) -> None:
        for metric in self._each():
            metric.update(preds, target)
        self.updated = True

    def reset(self) -> None:
        for metric in self._each():
            metric.reset()
        self.updated = False

    def curves(self) -> dict[str, Tensor]:
        return {key: curve for metric in self._each() for key, curve in metric.curves().items()}

    def directions(self) -> dict[str, bool]:
        """Each logged key -> whether higher is better (PSNR, SSIM) or lower (MSE, CE)."""
        return {key: higher for metric in self._each()
                for key, higher in metric.directions().items()}

    def compute(self) -> dict[str, Tensor]:
        return flatten_curves(self.curves(), self.prefix)


def step_key(prefix: str, key: str, step: int) -> str:
    """The logged key of one step of a curve, 1-based: ``test/mse_per_frame/step_03``."""
    return f"{prefix}/{key}/step_{step:02d}"


_STEP_KEY = re.compile(r"^[^/]+/[^/]+/step_\d+$")


def is_step_key(key: str) -> bool:
    """Whether ``key`` is one step of a curve (``test/psnr/step_03``), a scalar kept for the CSV
    logger; W&B gets the curve as one chart instead (``predlearn.wandb_report``)."""
    return _STEP_KEY.match(key) is not None


def flatten_curves(curves: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Curves as scalar log entries: the mean of each curve and one entry per step."""
    values: dict[str, Tensor] = {}
    for key, curve in curves.items():
        values[f"{prefix}/{key}"] = curve.mean()
        for step, value in enumerate(curve, start=1):
            values[step_key(prefix, key, step)] = value
    return values
