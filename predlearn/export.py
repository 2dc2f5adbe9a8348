"""``predlearn export SOURCE --format=onnx|torch-export --output=PATH``: a model for deployment.

SOURCE is a checkpoint (.ckpt), a pretrained folder or a shipped model's name. Two graphs
(docs/deploy.md):

- the forecast, the whole closed loop: ``frames`` (B, J, C, H, W) float32 in the model's value
  range -> ``forecast`` (B, K, C, H, W), K fixed at export (default: the model's horizon);
- for recurrent models (those that run the shared rollout), the step a streaming service calls
  once per new frame: ``frame`` (B, C, H, W) and the state tensors -> ``prediction`` (the next
  frame) and the new state tensors, in the same order (``state.h.0`` -> ``new_state.h.0``).
  ``--what=both`` writes it beside PATH, ``-step`` before the suffix (model.onnx ->
  model-step.onnx). The state's names, shapes and initial values (zeros, or the first observed
  frame) are in the file's description.

Each graph is built in memory, loaded back from its file's bytes (onnxruntime for ONNX,
``torch.export.load`` for .pt2) and compared with PyTorch on a random sample; the largest absolute
difference is printed. Nothing is written unless every graph asked for passes (within
``--tolerance`` x max(1, largest |value|)): a failed check, like a refusal, leaves PATH as it was.
Every file holds its description as JSON (``predlearn.export_formats``): model, graph, inputs and
outputs with their shapes, J, K, value range, state, the difference measured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from predlearn.errors import OptionValueError, OutputError, UsageError
from predlearn.export_check import TOLERANCE, Check, sample, step_refusal
from predlearn.export_formats import FORMATS, Built, build, require_format
from predlearn.export_graphs import ForecastGraph, StateLayout, StepGraph, output_name
from predlearn.predictor import Predictor

GRAPHS = ("forecast", "step", "both")
#: the description's layout
DESCRIPTION_FORMAT = "predlearn-export/1"
#: the frame (C, H, W) of a model built for any size (the baselines)
DEFAULT_FRAME = (1, 64, 64)
class ExportRefused(UsageError):
    """A model, or one of its graphs, that cannot be exported: ``reason`` says why."""

    def __init__(self, model: str, graph: str, reason: str) -> None:
        self.model, self.graph, self.reason = model, graph, reason
        super().__init__(f"{model}: cannot export its {graph}: {reason}")


@dataclass
class Exported:
    """One graph checked and ready to write: where, its description, the file's bytes."""

    path: Path
    description: dict[str, Any]
    data: bytes
    difference: float


def model_name(predictor: Predictor) -> str:
    """The registry name of ``predictor``'s class (its class name where it has none)."""
    from predlearn.registry import MODELS

    return MODELS.name_of(type(predictor)) or type(predictor).__name__


def refusal(predictor: Predictor, graph: str = "forecast") -> str | None:
    """Why ``predictor`` has no ``graph`` ("forecast" or "step") to export, known before any
    export is tried; None where it may have one."""
    reason = type(predictor).export_refusal  # a predictor says so itself (docs/plugins.md)
    if reason:
        return str(reason)
    if graph == "step" and not predictor.uses_shared_rollout():
        return ("it predicts its frames in one call, not one step at a time, so it has no step "
                "graph; export the forecast (--what=forecast)")
    return None


def step_path(path: str | os.PathLike) -> Path:
    """Where ``--what=both`` writes the step graph: ``-step`` before the suffix of ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-step{path.suffix}")


def export_forecast(predictor: Predictor, path: str | os.PathLike, format: str = "onnx",
                    horizon: int = 10, context_frames: int = 10, **options: Any) -> float:
    """Write the forecast graph of ``predictor`` (J = ``context_frames`` in, K = ``horizon``
    out) to ``path`` in ``format``, checked against PyTorch; returns the largest absolute
    difference. ``options``: ``batch_size``, ``opset``, ``tolerance``, ``value_range``,
    ``frame`` (C, H, W) (``forecast_graph``'s)."""
    exported = forecast_graph(predictor, path, format, horizon, context_frames, **options)
    write(exported)
    return exported.difference


def export_step(predictor: Predictor, path: str | os.PathLike, format: str = "onnx",
                horizon: int = 10, context_frames: int = 10, **options: Any) -> float:
    """Write the step graph of a recurrent ``predictor`` to ``path`` in ``format``, checked by
    streaming J observed frames and K - 1 fed-back steps against ``predictor(frames, K)``;
    returns the largest absolute difference. ``options`` as ``export_forecast``'s."""
    exported = step_graph(predictor, path, format, horizon, context_frames, **options)
    write(exported)
    return exported.difference


def forecast_graph(predictor: Predictor, path: str | os.PathLike, format: str, horizon: int,
                   context_frames: int, *, batch_size: int = 2, opset: int | None = None,
                   tolerance: float = TOLERANCE, value_range: tuple[float, float] = (0.0, 1.0),
                   frame: tuple[int, int, int] | None = None) -> Exported:
    """The forecast graph, built and checked, not written (``write`` writes it). Puts
    ``predictor`` in eval mode: a graph is traced once, without dropout or batch statistics."""
    check = _check(predictor, format, horizon, context_frames, "forecast", batch_size,
                   tolerance, value_range, frame)
    shape = (context_frames, *check.frame)
    built = _built(predictor, format, ForecastGraph(predictor, horizon),
                   lambda batch: (sample((batch, *shape), value_range),), ["frames"],
                   ["forecast"], batch_size, check.forecast, opset)
    batch = _batch(built, batch_size)
    inputs = [_tensor("frames", [batch, *shape])]
    outputs = [_tensor("forecast", [batch, horizon, *check.frame])]
    return _exported(path, built, check, "forecast", inputs, outputs, {})


def step_graph(predictor: Predictor, path: str | os.PathLike, format: str, horizon: int,
               context_frames: int, *, batch_size: int = 2, opset: int | None = None,
               tolerance: float = TOLERANCE, value_range: tuple[float, float] = (0.0, 1.0),
               frame: tuple[int, int, int] | None = None) -> Exported:
    """The step graph, built and checked, not written (``write`` writes it)."""
    check = _check(predictor, format, horizon, context_frames, "step", batch_size, tolerance,
                   value_range, frame)
    frames = check.frames(batch_size)
    name = model_name(predictor)
    try:
        with torch.no_grad():
            layout = StateLayout.of(predictor, frames)
    except ValueError as error:
        raise ExportRefused(name, "step", f"{error}; export the forecast (--what=forecast)"
                            ) from None
    reason = step_refusal(predictor, layout, frames, horizon)
    if reason:
        raise ExportRefused(name, "step", f"{reason}; export the forecast (--what=forecast)")

    def example(batch: int) -> tuple[torch.Tensor, ...]:
        frames = check.frames(batch)
        return (frames[:, 0], *layout.initial(frames))

    built = _built(predictor, format, StepGraph(predictor, layout), example,
                   ["frame", *layout.names], ["prediction", *map(output_name, layout.names)],
                   batch_size, check.step(layout), opset)
    batch = _batch(built, batch_size)
    state = [{**slot.describe(), "shape": [batch, *slot.shape]} for slot in layout.slots]
    inputs = [_tensor("frame", [batch, *check.frame]),
              *({key: item[key] for key in ("name", "shape", "dtype")} for item in state)]
    outputs = [_tensor("prediction", [batch, *check.frame]),
               *({"name": item["output"], "shape": item["shape"], "dtype": item["dtype"]}
                 for item in state)]
    return _exported(path, built, check, "step", inputs, outputs, {"state": state})


def write(exported: Exported) -> Path:
    """Write a checked graph's file, atomically (a failed write leaves no partial file)."""
    from predlearn.files import written_atomically

    with written_atomically(exported.path) as part:
        part.write_bytes(exported.data)
    return exported.path


# -- the pieces --------------------------------------------------------------------------------


def _check(predictor: Predictor, format: str, horizon: int, context_frames: int, graph: str,
           batch_size: int, tolerance: float, value_range: tuple[float, float],
           frame: tuple[int, int, int] | None) -> Check:
    """Refuse what cannot be exported (one line naming the model or option); the ``Check``."""
    if format not in FORMATS:
        raise OptionValueError("--format", f"must be one of {', '.join(FORMATS)}; got {format!r}")
    reason = refusal(predictor, graph)
    if reason:
        raise ExportRefused(model_name(predictor), graph, reason)
    require_format(format)
    for option, value in (("--horizon", horizon), ("--batch-size", batch_size),
                          ("context_frames", context_frames)):
        if int(value) < 1:
            raise OptionValueError(option, f"must be at least 1; got {value}", value)
    if not tolerance > 0:
        raise OptionValueError("--tolerance", f"must be positive; got {tolerance}", tolerance)
    predictor.eval()
    return Check(predictor, context_frames, horizon, frame or model_frame(predictor),
                 (float(value_range[0]), float(value_range[1])), tolerance)


def model_frame(predictor: Predictor) -> tuple[int, int, int]:
    """The frame (C, H, W) the predictor was built for (``DEFAULT_FRAME`` where it has none)."""
    channels, size = getattr(predictor, "frame_channels", None), getattr(predictor, "frame_size",
                                                                         None)
    if channels is None or size is None:
        return DEFAULT_FRAME
    return int(channels), int(size[0]), int(size[1])


def _built(predictor: Predictor, format: str, module: torch.nn.Module, args: Any,
           input_names: list[str], output_names: list[str], batch_size: int, check: Any,
           opset: int | None) -> Built:
    """``build``, its exporter's failure in one line naming the model."""
    from predlearn.errors import PredlearnError

    try:
        return build(module, args, format, input_names, output_names, batch_size, check, opset)
    except PredlearnError:
        raise
    except Exception as error:  # an exporter's refusal, pages long: its first line
        from predlearn.export_formats import _first_line

        raise UsageError(f"{model_name(predictor)}: cannot be exported as {format} "
                         f"({_first_line(error)})") from error


def _batch(built: Built, batch_size: int) -> int | str:
    return "batch" if built.dynamic_batch else batch_size


def _tensor(name: str, shape: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": "float32"}


def _exported(path: str | os.PathLike, built: Built, check: Check, graph: str,
              inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
              extra: dict[str, Any]) -> Exported:
    """The graph's description, and its file's bytes with it inside."""
    from predlearn import __version__

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"--output {path} is a folder; give the name of the file to write")
    description = {
        "format": DESCRIPTION_FORMAT, "predlearn": __version__, "torch": torch.__version__,
        "model": model_name(check.predictor), "graph": graph, "export_format": built.format,
        "context_frames": check.context_frames, "horizon": check.horizon,
        "value_range": list(check.value_range),
        "batch": "dynamic" if built.dynamic_batch else inputs[0]["shape"][0],
        "batch_note": built.batch_note, "inputs": inputs, "outputs": outputs, **extra,
        "largest_difference": check.largest, "tolerance": check.tolerance}
    return Exported(path, description, built.save(description), check.largest)


__all__ = ["DESCRIPTION_FORMAT", "GRAPHS", "ExportRefused", "Exported", "export_forecast",
           "export_step", "forecast_graph", "model_frame", "model_name", "refusal", "step_graph",
           "step_path", "write"]
