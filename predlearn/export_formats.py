"""The two formats ``predlearn export`` writes, built in memory and loaded back to be checked.

- ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (torch's exporter: ``torch.export``, then
  onnxscript's translation) from the same ``ExportedProgram`` as the other format; checked with
  onnxruntime on the CPU. Needs the ``export`` extra (onnx, onnxruntime, onnxscript). The
  description of the graph (``describe`` in predlearn.export) is the model's metadata property
  ``predlearn`` (JSON): ``onnxruntime.InferenceSession(path).get_modelmeta()
  .custom_metadata_map["predlearn"]``.
- ``torch-export``: ``torch.export.export`` saved with ``torch.export.save`` (a ``.pt2``); checked
  by ``torch.export.load(...).module()``. The description is its extra file ``predlearn.json``
  (``torch.export.load(path, extra_files={"predlearn.json": ""})``).

The batch dimension is dynamic where the exporter keeps it so (the graph then runs on any batch
of 1 or more and is checked on two); where it cannot (CDNA's per-sample convolution is one
grouped ONNX Conv whose group count is the batch) the graph is built for the sample's batch and
``Built.batch_note`` says why.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lightning_utilities.core.imports import RequirementCache
from torch import Tensor, nn

from predlearn.errors import PredlearnError, UsageError

FORMATS = ("onnx", "torch-export")
SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2"}
#: what the ONNX format needs: the ``export`` extra of predlearn (tests replace an entry)
ONNX_REQUIREMENTS = {"onnx": RequirementCache("onnx>=1.16"),
                     "onnxruntime": RequirementCache("onnxruntime>=1.18"),
                     "onnxscript": RequirementCache("onnxscript>=0.2")}
#: the name of the .pt2's extra file holding the graph's description
PT2_DESCRIPTION = "predlearn.json"
#: the smallest batch torch.export keeps dynamic (it specialises a dimension of size 1)
DYNAMIC_EXAMPLE_BATCH = 2

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OPERATOR = re.compile(r"target=torch\.ops\.([\w.]+)")

#: runs a loaded graph: its inputs in order -> its outputs in order
Runner = Callable[[Sequence[Tensor]], list[Tensor]]


def require_format(format: str) -> None:
    """Refuse, in one line naming the extra, a format whose packages are not installed."""
    if format != "onnx":
        return
    missing = [name for name, requirement in ONNX_REQUIREMENTS.items() if not requirement]
    if missing:
        raise UsageError(f"ONNX export needs the `export` extra ({', '.join(missing)} missing or "
                         "too old): pip install 'predlearn[export]'")


@dataclass
class Built:
    """A graph in a format: its file's bytes (``save`` adds the description), how to run it."""

    format: str
    program: Any  # the ExportedProgram, or the ONNXProgram
    run: Runner
    dynamic_batch: bool
    batch_note: str | None

    def save(self, description: dict[str, Any]) -> bytes:
        """The file's bytes, with ``description`` (JSON) inside it."""
        text = json.dumps(description)
        buffer = io.BytesIO()
        if self.format == "onnx":
            import onnx

            proto = self.program.model_proto
            onnx.helper.set_model_props(proto, {"predlearn": text})
            return proto.SerializeToString()
        torch.export.save(self.program, buffer, extra_files={PT2_DESCRIPTION: text})
        return buffer.getvalue()


def build(module: nn.Module, args: Callable[[int], tuple[Tensor, ...]], format: str,
          input_names: Sequence[str], output_names: Sequence[str], batch: int,
          check: Callable[[Runner, int], None], opset: int | None = None) -> Built:
    """``module`` as a graph in ``format``, its batch dynamic if the exporter and the check
    allow it, else fixed at ``batch``. ``args(b)``: example inputs of batch ``b``; ``check(run,
    b)`` raises if the loaded graph ``run`` is wrong on a sample of batch ``b``. The dynamic
    graph is checked at ``batch`` and ``batch + 1``."""
    try:
        program = _exported(module, args(max(batch, DYNAMIC_EXAMPLE_BATCH)), dynamic=True)
        built = _converted(program, format, input_names, output_names, opset, dynamic=True)
        check(built.run, batch)
        check(built.run, batch + 1)
        return built
    except Exception as error:  # the exporters fail in many ways; the fixed batch may still do
        if isinstance(error, PredlearnError):
            raise  # a refusal, or a difference beyond the tolerance: not the batch's fault
        note = _first_line(error)
    program = _exported(module, args(batch), dynamic=False)
    built = _converted(program, format, input_names, output_names, opset, dynamic=False)
    built.batch_note = f"the batch is fixed at {batch}: the exporter could not keep it dynamic " \
                       f"({note})"
    check(built.run, batch)
    return built


def _exported(module: nn.Module, args: tuple[Tensor, ...], dynamic: bool) -> Any:
    """``torch.export.export`` of ``module`` on ``args`` (all batch-first)."""
    dynamic_shapes = None
    if dynamic:
        batch = torch.export.Dim("batch", min=1)
        first, *rest = ({0: batch} for _ in args)
        dynamic_shapes = (first, tuple(rest)) if rest else (first,)
    with torch.no_grad(), _quiet():
        return torch.export.export(module, args, dynamic_shapes=dynamic_shapes)


def _converted(program: Any, format: str, input_names: Sequence[str],
               output_names: Sequence[str], opset: int | None, dynamic: bool) -> Built:
    """The format's file of ``program``, loaded back as a ``Built``."""
    if format == "torch-export":
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        buffer.seek(0)
        loaded = torch.export.load(buffer).module()

        def run_loaded(inputs: Sequence[Tensor]) -> list[Tensor]:
            with torch.no_grad():
                outputs = loaded(*inputs)
            return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]

        return Built(format, program, run_loaded, dynamic, None)
    with _quiet():
        onnx_program = torch.onnx.export(program, (), dynamo=True, input_names=list(input_names),
                                         output_names=list(output_names),
                                         opset_version=opset, verbose=False)
    if onnx_program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    if dynamic:  # the exporter names the batch after its symbol (s28); the graph says "batch"
        shape = onnx_program.model.graph.inputs[0].shape
        first = shape[0] if shape is not None else 0
        if not isinstance(first, int):
            onnx_program.rename_axes({first: "batch"})
    return Built(format, onnx_program, onnx_runner(onnx_program.model_proto.SerializeToString()),
                 dynamic, None)


def onnx_runner(data: bytes, threads: int | None = None) -> Runner:
    """An onnxruntime CPU session of the ONNX file ``data``, as a ``Runner``."""
    # imported by name: onnxruntime has no type information (its names are Any)
    onnxruntime = importlib.import_module("onnxruntime")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]

    def run(inputs: Sequence[Tensor]) -> list[Tensor]:
        feed = {name: tensor.detach().cpu().numpy() for name, tensor in zip(names, inputs,
                                                                            strict=True)}
        return [torch.from_numpy(output) for output in session.run(None, feed)]

    return run


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the exporters' progress lines and warnings (they print to stdout and log the
    torchvision operators they skip); errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _first_line(error: BaseException) -> str:
    """An exporter's error in one short line (they run to pages, with terminal colours): its
    first sentence, and the operator whose translation failed where the error names one."""
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    text = lines[0].split(". ")[0].rstrip(".:") if lines else type(error).__name__
    text = text if len(text) <= 160 else text[:157] + "..."
    cause: BaseException | None = error
    while cause is not None:
        found = _OPERATOR.search(str(cause))
        if found:
            return f"{text} at operator {found.group(1)}"
        cause = cause.__cause__ or cause.__context__
    return text


__all__ = ["FORMATS", "ONNX_REQUIREMENTS", "PT2_DESCRIPTION", "SUFFIXES", "Built", "Runner",
           "build", "onnx_runner", "require_format"]
