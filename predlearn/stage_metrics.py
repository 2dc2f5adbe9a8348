"""Which metrics a stage scores: the names given or the data's defaults, the ensemble scores
added where every stage forecasts members, and the refusals of scores the data or the forecast
cannot have (``PredictiveModule.prepare_metrics``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from predlearn import masked
from predlearn.errors import OptionValueError
from predlearn.masked import Bounds
from predlearn.metrics import DEFAULT_METRICS
from predlearn.registry import METRICS
from predlearn.units import ScoringSettings

__all__ = ["ensemble_metric_names", "stage_metric_names"]


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
    """``names`` with the ensemble scores added to the defaults when every stage forecasts
    members (``members`` >= 2); refused when named for a single forecast."""
    ensemble = [n for n in names if getattr(METRICS.get(n), "needs_members", False)]
    if ensemble and members < 2:
        raise OptionValueError("metrics", f"{', '.join(map(repr, ensemble))} score ensemble "
                               "members: set --model.ensemble_members=2 or more, or leave them "
                               "out", names, owner="model")
    if defaults and members > 1 and not ensemble:
        return [*names, "ensemble"]
    return names
