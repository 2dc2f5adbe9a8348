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

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, cast

from torch import Tensor, nn
from torchmetrics import Metric

from predlearn.frame_metrics import (
    BCE_EPS,
    DATA_RANGE,
    SSIM_WINDOW,
    FrameBCE,
    FrameMSE,
    FramePSNR,
    FrameSSIM,
    PerStepMetric,
)
from predlearn.masked import (
    UNIT_BOUNDS,
    Bounds,
    channel,
    channel_key,
    check_unit_range,
    checked_valid,
    curve_channels,
    split_channel_key,
    update_masked,
)
from predlearn.metric_keys import flatten_curves
from predlearn.units import ScoringSettings

if TYPE_CHECKING:
    from predlearn.score_intervals import IntervalRow

__all__ = ["BCE_EPS", "DATA_RANGE", "DEFAULT_METRICS", "SSIM_WINDOW", "FrameBCE", "FrameMSE",
           "FramePSNR", "FrameSSIM", "PerStepMetric", "SequenceMetrics", "curve_label"]

#: the metrics scored at validation and test unless told otherwise (registry names)
DEFAULT_METRICS: tuple[str, ...] = ("mse", "bce", "psnr", "ssim")


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
            if index is None and getattr(metric, "needs_members", False):
                # one forecast: an ensemble of one member (CRPS = MAE)
                metric.update(preds.unsqueeze(1) if members is None else members, target, valid)
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

    @property
    def record_sequences(self) -> bool:
        """Whether every metric that can keeps each sequence's statistics for ``intervals``
        (``predlearn.score_intervals.SequenceSums``); set it before the first update."""
        found = [metric for _, metric in self._scored() if hasattr(metric, "record_sequences")]
        return bool(found) and all(metric.record_sequences for metric in found)

    @record_sequences.setter
    def record_sequences(self, value: bool) -> None:
        for _, metric in self._scored():
            if hasattr(metric, "record_sequences"):
                metric.record_sequences = bool(value)

    def intervals(self, indices: Tensor, blocks_of: Callable[[Tensor], Tensor] | None = None,
                  level: float = 0.95, replicates: int = 1000,
                  seed: int = 0) -> list[IntervalRow]:
        """The bootstrap intervals of every logged key, its mean over the steps and each step
        (``predlearn.score_intervals.score_intervals``: ``indices``, the dataset index of each
        recorded sequence in the order recorded; ``blocks_of``, their blocks)."""
        from predlearn.score_intervals import score_intervals

        return score_intervals(self, indices, blocks_of, level, replicates, seed)

    def directions(self) -> dict[str, bool]:
        """Each logged key -> whether higher is better (PSNR, SSIM) or lower (MSE, CE)."""
        return {self._key(key, index): higher for index, metric in self._scored()
                for key, higher in metric.directions().items()}

    def compute(self) -> dict[str, Tensor]:
        return flatten_curves(self.curves(), self.prefix)
