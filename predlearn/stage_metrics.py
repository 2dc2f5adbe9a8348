"""Which metrics a stage scores: the names given or the data's defaults, the ensemble scores
added where every stage forecasts members, and the refusals of scores the data or the forecast
cannot have (``PredictiveModule.prepare_metrics``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from predlearn import masked
from predlearn.errors import OptionValueError
from predlearn.masked import Bounds
from predlearn.metrics import DEFAULT_METRICS, SequenceMetrics
from predlearn.registry import METRICS
from predlearn.units import ScoringSettings

__all__ = ["ensemble_metric_names", "prepare_stage_metrics", "stage_metric_names"]


def stage_metric_names(named: Sequence[str] | None, datamodule: Any, bounds: Bounds,
                       members: int) -> tuple[list[str], ScoringSettings | None]:
    """(the metric names, the data's scoring settings) for ``datamodule``: ``named``, or its
    ``default_metrics`` (else ``DEFAULT_METRICS``) with the ensemble scores when ``members``
    >= 2. Scores in physical units on data without them are refused in one line."""
    names = masked.metric_names(named, getattr(datamodule, "default_metrics", None)
                                or DEFAULT_METRICS, bounds)
    names = ensemble_metric_names(names, named is None, members)
    settings: ScoringSettings | None = getattr(datamodule, "scoring", None)
    physical = [n for n in names if getattr(METRICS.get(n), "physical_units", False)]
    if physical and settings is None:
        name = type(datamodule).__name__ if datamodule is not None else "the data"
        raise OptionValueError(
            "metrics", f"{', '.join(map(repr, physical))} score events at thresholds in "
            f"physical units (e.g. dBZ); {name} has no value mapping (radar data has one): "
            "leave them out", names, owner="model")
    return names, settings


def ensemble_metric_names(names: list[str], defaults: bool, members: int) -> list[str]:
    """``names`` with the ensemble scores added to the defaults when a stage forecasts members
    (``members`` >= 2). Named for a single forecast, they score it as one member: CRPS is
    then its absolute error (in the data's unit), the spread 0."""
    ensemble = [n for n in names if getattr(METRICS.get(n), "needs_members", False)]
    if defaults and members > 1 and not ensemble:
        return [*names, "ensemble"]
    return names


def prepare_stage_metrics(module: Any, datamodule: Any) -> None:
    """``PredictiveModule.prepare_metrics``: its ``val_metrics`` and ``test_metrics`` (a stage
    of one forecast scores no ensemble: STEPS validates one), ``value_mapping``,
    ``value_bounds`` and ``test_spectrum`` for ``datamodule``; rebuilt only when the choice
    changes."""
    bounds = masked.as_bounds(getattr(datamodule, "value_bounds", masked.UNIT_BOUNDS))
    channels = masked.curve_channels(getattr(datamodule, "channel_names", None))
    named = module.metric_names
    names, settings = stage_metric_names(named, datamodule, bounds,
                                         max(module.members, module.test_members))
    # a stage of one forecast scores no ensemble unless asked (STEPS validates one forecast)
    single = names if named is not None else [
        n for n in names if not getattr(METRICS.get(n), "needs_members", False)]
    chosen = (names, settings, bounds, channels)
    if chosen != getattr(module, "_metrics_chosen", None):
        module._metrics_chosen = chosen
        module.val_metrics, module.test_metrics = (
            SequenceMetrics(horizon, names if count > 1 else single, prefix, settings,
                            bounds=bounds, channel_names=channels, members=count)
            for horizon, prefix, count in ((module.horizon, "val", module.members),
                                           (module.test_horizon, "test", module.test_members)))
    module.value_mapping = None if settings is None else settings.mapping
    module.value_bounds = bounds
    if getattr(datamodule, "power_spectrum", False) and module.test_spectrum is None:
        from predlearn.power_spectrum import PowerSpectrum

        _, height, width = datamodule.frame_shape()
        module.test_spectrum = PowerSpectrum(module.test_horizon, (height, width), bounds=bounds)
