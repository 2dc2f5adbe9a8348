"""Read runs back from W&B: an offline run folder, decoded locally, or a project through the
public API (``wandb.Api``); ``predlearn compare`` turns either into the same curves.

An offline run folder (``.../wandb/offline-run-<time>-<id>/``) keeps everything W&B will upload
in one file, ``run-<id>.wandb``: a log of ``wandb.proto`` ``Record`` messages (what the run
defined, logged and summarised) in LevelDB's log format (32 KiB blocks of checksummed chunks),
behind a 7-byte header. ``read_offline_run`` decodes it into an ``OfflineRun``: the history
rows, the final summary, the metric definitions, the config, the name, group and tags.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predlearn.errors import BadFileError

_HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version
_CHUNK = struct.Struct("<IHB")  # checksum, length, type
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
#: the x-axis of a stage's curves and the keys of its curves (``predlearn.wandb_report``)
CURVE_PREFIX = "{stage}_curve/"
AXIS = "predicted_step"
#: the order of predlearn's own curves (as in ``<stage>_curves.csv``); others follow by name
ORDER = ("mse_per_frame", "mse_per_pixel", "bce_per_frame", "psnr", "ssim")


@dataclass
class OfflineRun:
    """What an offline W&B run holds, decoded."""

    path: Path
    id: str = ""
    name: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    #: each ``define_metric``: name or glob_name, step_metric, hidden, summary (e.g. ["min"])
    #: and at_row, the number of history rows logged before it
    metrics: list[dict[str, Any]] = field(default_factory=list)


def run_file(folder: str | Path) -> Path | None:
    """The ``run-<id>.wandb`` file of an offline run folder (or of its ``files/`` folder)."""
    folder = Path(folder)
    if folder.name == "files":
        folder = folder.parent
    found = sorted(folder.glob("run-*.wandb")) if folder.is_dir() else []
    return found[0] if found else None


def _chunks(data: bytes, path: Path) -> Iterator[bytes]:
    """The records of a LevelDB-format log, reassembled from their chunks."""
    if len(data) < _HEADER.size:
        raise BadFileError(f"{path}: not a W&B run file (too short)")
    ident, magic, _ = _HEADER.unpack_from(data)
    if ident != b":W&B" or magic != 0xBEE1:
        raise BadFileError(f"{path}: not a W&B run file (no :W&B header)")
    position, pending = _HEADER.size, b""
    while position + _CHUNK.size <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < _CHUNK.size:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        _, length, kind = _CHUNK.unpack_from(data, position)
        if kind == 0 and length == 0:  # zero padding up to the block's end
            position += left
            continue
        start = position + _CHUNK.size
        if start + length > len(data):
            break  # the last record of a run still being written
        chunk = data[start:start + length]
        position = start + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def _key(item: Any) -> str:
    """An item's key: ``key``, or its ``nested_key`` path joined with dots (W&B's flat form)."""
    return item.key or ".".join(item.nested_key)


def _value(item: Any) -> Any:
    try:
        return json.loads(item.value_json)
    except ValueError:
        return item.value_json


def _set(summary: dict[str, Any], item: Any) -> None:
    path = list(item.nested_key) or [item.key]
    target = summary
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = _value(item)


def read_offline_run(folder: str | Path) -> OfflineRun:
    """Decode the offline run in ``folder`` (``BadFileError`` when there is none, or when it
    is not in the format this W&B writes)."""
    from wandb.proto import wandb_internal_pb2

    path = run_file(folder)
    if path is None:
        raise BadFileError(f"{folder}: no W&B run file (run-*.wandb) in it")
    run = OfflineRun(path)
    for raw in _chunks(path.read_bytes(), path):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        try:
            record.ParseFromString(raw)
        except Exception as error:  # protobuf's DecodeError
            raise BadFileError(f"{path}: a record W&B {_wandb_version()} cannot read ({error}); "
                               "it may come from another W&B version") from error
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.id, run.name, run.group = record.run.run_id, record.run.display_name, \
                record.run.run_group
            run.tags = list(record.run.tags)
            run.config.update({_key(i): _value(i) for i in record.run.config.update})
        elif kind == "config":
            run.config.update({_key(i): _value(i) for i in record.config.update})
        elif kind == "history":
            run.history.append({_key(i): _value(i) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                _set(run.summary, item)
        elif kind == "metric":
            metric = record.metric
            run.metrics.append({
                "name": metric.name, "glob_name": metric.glob_name,
                "step_metric": metric.step_metric, "hidden": metric.options.hidden,
                "summary": [f.name for f, on in metric.summary.ListFields() if on is True],
                "at_row": len(run.history)})
    return run


def _wandb_version() -> str:
    import wandb

    return str(wandb.__version__)


def curves_from_history(rows: list[dict[str, Any]], stage: str) -> dict[str, list[float]]:
    """A stage's curves from W&B history rows: every ``<stage>_curve/<metric>`` at its
    ``<stage>_curve/predicted_step`` (1..K); a curve logged twice keeps its last values."""
    prefix = CURVE_PREFIX.format(stage=stage)
    axis = prefix + AXIS
    points: dict[str, dict[int, float]] = {}
    for row in rows:
        if axis not in row:
            continue
        step = int(row[axis])
        for key, value in row.items():
            if key.startswith(prefix) and key != axis and isinstance(value, (int, float)):
                points.setdefault(key[len(prefix):], {})[step] = float(value)
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
    prefix = CURVE_PREFIX.format(stage=stage)
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
        for key in sorted(known | set(summary)):  # rows hold every requested key, and a run may lack some metrics
            rows += list(run.scan_history(keys=[prefix + AXIS, prefix + key]))
        curves = curves_from_history(rows, stage)
        if curves:
            found.append(OnlineRun(run.name, "/".join(run.path), dict(run.config),
                                   list(run.tags), curves))
    return found
