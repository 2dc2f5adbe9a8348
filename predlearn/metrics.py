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

Predictions are clipped to the data's ``value_bounds`` before scoring ([0, 1], as the authors'
evaluation does; None, z-scored data: no clip). Each metric keeps sums and frame counts per
predicted step in torchmetrics state, so the result is the same on one device or across DDP
ranks. ``update(preds, target, valid=None)`` scores the observed pixels of a boolean mask only
(``predlearn.masked``; docs/metrics.md, "Missing values"); with ``channel_names``,
``SequenceMetrics`` also logs a curve per channel, ``<key>[<channel>]``.

The metrics are registered by name like the models (``predlearn list``; entry-point group
``predlearn.metrics``): each class carries its logged key, its direction and its curve's label,
so a plugin adds a metric in one file and ``--model.metrics=[mse,mine]`` uses it. A registered
metric is a torchmetrics ``Metric`` with ``update(preds, target)`` on (B, K, C, H, W) tensors
(``valid=`` a mask given only where a pixel is missing), ``curves()`` (logged key -> (K,)
curve), ``directions()`` (key -> higher is better) and the class method ``describe_key(key)``
(a plot label, None for keys it does not log). Metrics in physical units (``physical_units``:
``predlearn.categorical_scores``, ``predlearn.fractions_skill_score``) are built as
``cls(horizon, settings)`` with the data's ``predlearn.units.ScoringSettings``; the others as
``cls(horizon)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypedDict, cast

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from predlearn.masked import (
    UNIT_BOUNDS,
    Bounds,
    channel,
    channel_key,
    check_unit_range,
    checked_valid,
    clamped,
    curve_channels,
    frame_has_valid,
    masked_frame_score,
    masked_psnr,
    masked_ssim,
    split_channel_key,
    update_masked,
)
from predlearn.metric_keys import flatten_curves
from predlearn.nowcast_scoring import check_frame_pair
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
    """Mean over frames of a per-frame score, for each of ``horizon`` predicted steps.

    ``update(preds, target, valid=None)`` takes (B, K, C, H, W) tensors (``valid``: a boolean
    mask of the observed pixels); ``compute()`` returns a (K,) curve: per step, the sum of the
    scores of the frames with any valid pixel over their number (NaN for a step without any).
    ``bounds``: the range predictions are clamped to before scoring; None clamps nothing.
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
            scores = self.per_frame(preds, target)
            self.total += scores.sum(dim=0).to(torch.float64)
            self.count += scores.shape[0]
        else:
            kept = frame_has_valid(valid)
            scores = self.masked_per_frame(preds, target, valid).to(torch.float64)
            self.total += torch.where(kept, scores, torch.zeros_like(scores)).sum(dim=0)
            self.count += kept.sum(dim=0)
        self.sequences += preds.shape[0]

    def compute(self) -> Tensor:
        if self.sequences == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() before any update")
        return self.total / self.count  # 0 / 0: NaN for a step without a valid frame


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


def curve_label(key: str) -> str:
    """The axis label of a logged curve key (the key itself for an unknown one); a channel's
    key is its metric's label and the channel: ``MSE per frame (...) [ir108]``."""
    from predlearn.registry import METRICS

    base, channel_name = split_channel_key(key)
    if channel_name is not None:
        return f"{curve_label(base)} [{channel_name}]"
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
    ``bounds``: the range predictions are clamped to (None: no clamp; then metrics that read
    values as in [0, 1], ``bce``, are refused). ``channel_names``: with more than one, each
    metric not in physical units is also scored on each channel alone, logged as
    ``<key>[<name>]``. ``members``: the ensemble members M of the predictions; with M > 1
    ``update`` takes (B, M, K, C, H, W), the metrics with ``needs_members`` (``ensemble``)
    score the members and every other metric scores their mean (docs/nowcasting.md).
    """

    def __init__(self, horizon: int, names: Iterable[str] = DEFAULT_METRICS,
                 prefix: str = "test", settings: ScoringSettings | None = None, *,
                 bounds: Bounds = UNIT_BOUNDS,
                 channel_names: Sequence[str] | None = None, members: int = 1) -> None:
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
        check_unit_range(names, bounds)
        self.members = members
        #: the metrics that score ensemble members (the others score the members' mean)
        self.member_names = [name for name in names
                             if getattr(METRICS.get(name), "needs_members", False)]
        if self.member_names and members < 2:
            raise ValueError(f"metrics {self.member_names} score ensemble members; these "
                             f"predictions have {members}")
        self.prefix = prefix
        self.horizon = horizon
        self.settings = settings
        self.names = names
        self.bounds = bounds
        self.channel_names = curve_channels(channel_names)
        self.metrics = nn.ModuleDict({name: self._build(name) for name in names})
        # per channel: the metrics not in physical units, each scoring that channel alone
        self.channel_metrics = nn.ModuleList([
            nn.ModuleDict({name: self._build(name) for name in names
                           if name not in physical and name not in self.member_names})
            for _ in self.channel_names])
        self.updated = False

    def _build(self, name: str) -> nn.Module:
        """Registered metric ``name`` for this set's horizon, settings and bounds."""
        from predlearn.registry import METRICS

        cls = METRICS.get(name)
        if getattr(cls, "needs_members", False):
            return cls(self.horizon, self.settings, self.members)
        if getattr(cls, "physical_units", False):
            return cls(self.horizon, self.settings)
        metric = cls(self.horizon)
        if isinstance(metric, PerStepMetric):  # set, not passed: plugins' __init__(horizon)
            metric.bounds = self.bounds
        return metric

    def _scored(self) -> Iterable[tuple[int | None, PerStepMetric]]:
        """(channel index, None for all channels; metric), in the order of the logged keys:
        each metric's curves over all channels, then its curves per channel."""
        sets = cast("list[nn.ModuleDict]", list(self.channel_metrics))
        for name, metric in self.metrics.items():
            yield None, cast(PerStepMetric, metric)
            for index, metrics in enumerate(sets):
                if name in metrics:
                    yield index, cast(PerStepMetric, metrics[name])

    def _key(self, key: str, index: int | None) -> str:
        return channel_key(key, None if index is None else self.channel_names[index])

    def update(self, preds: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Score (B, K, C, H, W) predictions, or (B, M, K, C, H, W) members, against targets;
        ``valid``: a boolean mask of the observed pixels (None: all; only those are scored)."""
        members = None
        if self.members > 1:
            if preds.ndim != 6 or preds.shape[1] != self.members:
                raise ValueError(f"{self.members} ensemble members (B, {self.members}, K, C, H, W) "
                                 f"expected; got shape {tuple(preds.shape)}")
            members, preds = preds, preds.mean(dim=1)
        valid = checked_valid(valid, preds, type(self).__name__)
        if self.channel_names and preds.shape[2] != len(self.channel_names):
            raise ValueError(
                f"{len(self.channel_names)} channel names {list(self.channel_names)} for frames "
                f"of {preds.shape[2]} channels (shape {tuple(preds.shape)})")
        for index, metric in self._scored():
            if members is not None and index is None and \
                    getattr(metric, "needs_members", False):
                metric.update(members, target, valid)
            elif index is None:
                update_masked(metric, preds, target, valid)
            else:  # that channel alone, with its mask
                update_masked(metric, channel(preds, index), channel(target, index),
                              None if valid is None else channel(valid, index))
        self.updated = True

    def reset(self) -> None:
        for _, metric in self._scored():
            metric.reset()
        self.updated = False

    def curves(self) -> dict[str, Tensor]:
        return {self._key(key, index): curve for index, metric in self._scored()
                for key, curve in metric.curves().items()}

    def tables(self) -> dict[str, Tensor]:
        """The ensemble metrics' tables that are not curves: ``rank_histogram`` (K, M + 1)
        frequencies and ``reliability`` (T, bins, 3) counts (``EnsembleScores``); empty
        without ensemble metrics. Synced across DDP ranks like the curves."""
        tables: dict[str, Tensor] = {}
        for name in self.member_names:
            metric = cast(Metric, self.metrics[name])
            with metric.sync_context():  # the sums of every rank, as compute() sees them
                tables["rank_histogram"] = metric.histograms().clone()  # type: ignore[operator]
                reliability = getattr(metric, "reliability", None)
                if reliability is not None and getattr(metric, "tags", None):
                    tables["reliability"] = reliability().clone()
        return tables

    def directions(self) -> dict[str, bool]:
        """Each logged key -> whether higher is better (PSNR, SSIM) or lower (MSE, CE)."""
        return {self._key(key, index): higher for index, metric in self._scored()
                for key, higher in metric.directions().items()}

    def compute(self) -> dict[str, Tensor]:
        return flatten_curves(self.curves(), self.prefix)
