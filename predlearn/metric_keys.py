"""The keys the metrics log: a curve's mean as ``<stage>/<key>`` and its steps as
``<stage>/<key>/step_NN`` (docs/metrics.md), for the loggers, the CSV and W&B alike."""

from __future__ import annotations

import re

from torch import Tensor

__all__ = ["flatten_curves", "is_step_key", "step_key"]


def step_key(prefix: str, key: str, step: int) -> str:
    """The logged key of one step of a curve, 1-based: ``test/mse_per_frame/step_03``."""
    return f"{prefix}/{key}/step_{step:02d}"


_STEP_KEY = re.compile(r"^[^/]+/[^/]+/step_\d+$")


def is_step_key(key: str) -> bool:
    """Whether ``key`` is one step of a curve (``test/psnr/step_03``,
    ``test/mse_per_frame[ir108]/step_03``), a scalar kept for the CSV logger; W&B gets the
    curve as one chart instead (``predlearn.wandb_report``)."""
    return _STEP_KEY.match(key) is not None


def flatten_curves(curves: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Curves as scalar log entries: the mean of each curve and one entry per step."""
    values: dict[str, Tensor] = {}
    for key, curve in curves.items():
        values[f"{prefix}/{key}"] = curve.mean()
        for step, value in enumerate(curve, start=1):
            values[step_key(prefix, key, step)] = value
    return values
