"""The keys of a stage's per-step curves in W&B, for its writer and its reader: ``test_curve/psnr``
against ``test_curve/predicted_step``, and the table ``test/per_step``."""

from __future__ import annotations

#: the x-axis of a stage's curves, after its ``<stage>_curve/`` prefix
AXIS = "predicted_step"


def curve_key(stage: str, metric: str) -> str:
    """A curve's key in W&B: ``test_curve/psnr``."""
    return f"{stage}_curve/{metric}"


def axis_key(stage: str) -> str:
    """The x-axis of a stage's curves: ``test_curve/predicted_step``."""
    return curve_key(stage, AXIS)


def curve_metric(stage: str, key: str) -> str | None:
    """The metric of a curve key of ``stage`` (``test_curve/psnr`` -> ``psnr``); None for any
    other key, the x-axis included."""
    prefix = curve_key(stage, "")
    metric = key[len(prefix):] if key.startswith(prefix) else ""
    return metric if metric and metric != AXIS else None


def table_key(stage: str) -> str:
    """The key of a stage's table of per-step values: ``test/per_step``."""
    return f"{stage}/per_step"
