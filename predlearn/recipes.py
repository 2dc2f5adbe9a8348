"""The checks of ``PredictiveModule``'s options: values that make no sense, and training recipes
that do not apply to the predictor (scheduled sampling for a model that predicts its frames at
once, the loss over every frame for one that does not predict the observed frames). Each is an
``OptionValueError`` named by the module's argument: ``--model.<argument>: ...``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from predlearn.errors import OptionValueError, require
from predlearn.paper import check_frame_counts
from predlearn.registry import METRICS

__all__ = ["check_options", "check_recipe"]


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse nonsense values of ``PredictiveModule``'s arguments (``options``: its arguments
    by name) with an ``OptionValueError`` named by the argument; on the command line it comes out
    as ``--model.<argument>: ...``."""
    check_frame_counts(options["context_frames"], options["horizon"], options["test_horizon"])
    rate = options["learning_rate"]
    require(0 < rate < float("inf"), "learning_rate", f"must be positive; got {rate}", rate)
    for name, choices in (("loss", ("l1+l2", "l2", "l1", "crps", "afcrps")), ("loss_frames", ("predicted", "all"))):
        require(options[name] in choices, name, f"must be one of {', '.join(map(repr, choices))}; "
                f"got {options[name]!r}", options[name])
    metrics = options["metrics"]
    names = [] if metrics is None else [metrics] if isinstance(metrics, str) else metrics
    unknown = sorted(str(name) for name in names if name not in METRICS)
    require(not unknown, "metrics", f"unknown {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(METRICS.names())}", metrics)


def check_recipe(predictor: Any, sampling: Any, loss_frames: str) -> None:
    """Refuse a sampling schedule or ``loss_frames`` that ``predictor`` cannot follow."""
    needs_every_frame = loss_frames == "all" or (
        sampling is not None and sampling.feeds_predictions_of_observed_frames)
    if sampling is not None and not getattr(predictor, "feeds_back_frames", True):
        raise OptionValueError(
            "sampling", f"{type(predictor).__name__} predicts its frames at once, not one by "
            f"one: {type(sampling).__name__} does not apply to it; leave it out")
    if needs_every_frame and not getattr(predictor, "predicts_every_frame", True):
        recipe = "loss_frames='all'" if loss_frames == "all" else type(sampling).__name__
        raise OptionValueError(
            "loss_frames" if loss_frames == "all" else "sampling",
            f"{type(predictor).__name__} does not predict the observed frames while it reads "
            f"them: {recipe} does not apply to it")
