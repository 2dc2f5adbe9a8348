"""Read the runs of a W&B project back through W&B's public API (``wandb.Api``): their per-step
curves, as ``predlearn compare --wandb`` compares them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from predlearn.wandb_keys import axis_key, curve_key, curve_metric

#: the order of predlearn's own curves (as in ``<stage>_curves.csv``); others follow by name
ORDER = ("mse_per_frame", "mse_per_pixel", "bce_per_frame", "psnr", "ssim")


def curves_from_history(rows: list[dict[str, Any]], stage: str) -> dict[str, list[float]]:
    """A stage's curves from W&B history rows: every ``<stage>_curve/<metric>`` at its
    ``<stage>_curve/predicted_step`` (1..K); a curve logged twice keeps its last values."""
    axis = axis_key(stage)
    points: dict[str, dict[int, float]] = {}
    for row in rows:
        if axis not in row:
            continue
        step = int(row[axis])
        for key, value in row.items():
            metric = curve_metric(stage, key)
            if metric and isinstance(value, (int, float)):
                points.setdefault(metric, {})[step] = float(value)
    ordered = sorted(points, key=lambda key: (ORDER.index(key) if key in ORDER else len(ORDER),
                                              key))
    return {metric: [points[metric][s] for s in sorted(points[metric])] for metric in ordered}


@dataclass
class OnlineRun:
    """A run fetched through the W&B API: its name, path, config, tags and curves."""

    name: str
    path: str
    config: dict[str, Any]
    tags: list[str]
    curves: dict[str, list[float]]


def fetch_runs(project: str, stage: str = "test", group: str | None = None,
               api: Any = None) -> list[OnlineRun]:
    """The runs of a W&B ``project`` (``entity/project`` or ``project``) that have curves of
    ``stage``, oldest first, through ``wandb.Api`` (``api``: one to use instead); ``group``:
    only that group's runs (predlearn groups by data set)."""
    from predlearn.registry import METRICS

    if api is None:
        import wandb

        api = wandb.Api()
    known = {key for name in METRICS.names()
             for key in getattr(METRICS.get(name), "labels", dict)()}
    found = []
    for run in api.runs(project, filters={"group": group} if group else None,
                        order="+created_at"):
        # keys that depend on settings (``csi_30dBZ``) are found in the run's summary
        run_summary: Any = getattr(run, "summary", None)
        logged = list(run_summary.keys()) if hasattr(run_summary, "keys") else []
        summary = [key[len(stage) + 1:] for key in logged
                   if key.startswith(f"{stage}/") and key.count("/") == 1]
        rows: list[dict[str, Any]] = []
        # one scan per metric: a scan's rows hold every key asked, and a run may lack some
        for key in sorted(known | set(summary)):
            rows += list(run.scan_history(keys=[axis_key(stage), curve_key(stage, key)]))
        curves = curves_from_history(rows, stage)
        if curves:
            found.append(OnlineRun(run.name, "/".join(run.path), dict(run.config),
                                   list(run.tags), curves))
    return found
