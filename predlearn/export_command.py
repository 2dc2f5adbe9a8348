"""The command line of ``predlearn export`` (``predlearn.export``): what SOURCE is, the options,
and the lines it prints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predlearn.errors import OptionValueError, OutputError
from predlearn.export import (
    GRAPHS,
    Exported,
    ExportRefused,
    forecast_graph,
    model_frame,
    model_name,
    refusal,
    step_graph,
    step_path,
    write,
)
from predlearn.export_check import TOLERANCE
from predlearn.export_formats import FORMATS, require_format
from predlearn.predictor import Predictor

#: the values a sample is drawn from where the source does not say (Moving MNIST's, KTH's)
UNIT_RANGE = (0.0, 1.0)


@dataclass
class Source:
    """A model to export: its predictor (eval, float32) and the frame counts and value range of
    its config (None where the source does not say)."""

    predictor: Predictor
    context_frames: int | None
    horizon: int | None
    value_range: tuple[float, float]


def load_source(source: str | os.PathLike) -> Source:
    """The predictor of a checkpoint file, a pretrained folder or a shipped model's name, read
    without running pickled code, and its config's J, K and value range."""
    from predlearn.pretrained_folder import (
        _checkpoint_of_file,
        _predictor_of_checkpoint,
        from_pretrained,
        pretrained_folder,
        read_config,
    )

    path = Path(source)
    if path.is_file():
        checkpoint = _checkpoint_of_file(path)
        predictor = _predictor_of_checkpoint(checkpoint, path)
        frames = dict(checkpoint.get("hyper_parameters") or {})
        bounds: Any = None
    else:
        folder = pretrained_folder(source)
        config = read_config(folder)
        predictor = from_pretrained(folder)
        frames = dict(config.get("frames") or {})
        bounds = (config.get("data") or {}).get("value_bounds")
    value_range = UNIT_RANGE
    if isinstance(bounds, (list, tuple)) and len(bounds) == 2:
        value_range = (float(bounds[0]), float(bounds[1]))
    context = frames.get("context_frames") or getattr(predictor, "context_frames", None)
    return Source(predictor.float().eval(), _count(context), _count(frames.get("horizon")),
                  value_range)


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value >= 1 else None


def parser() -> Any:
    from predlearn.errors import ArgumentParser

    parser = ArgumentParser(
        prog="predlearn export", allow_abbrev=False,
        description="Export a model for deployment without the training stack: its whole "
                    "closed-loop forecast (J frames in, K frames out) and, for recurrent models, "
                    "the single step a streaming service calls once per new frame. Each graph "
                    "is loaded back and checked against PyTorch on a random sample before it "
                    "is written; nothing is written if a check fails. docs/deploy.md.")
    parser.add_argument("source", metavar="SOURCE",
                        help="a checkpoint (.ckpt), a pretrained folder or a shipped model's "
                             "name (predrnn-mmnist2)")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="onnx (checked with onnxruntime; needs the export extra) or "
                             "torch-export (a .pt2 of torch.export, checked with torch.export."
                             "load)")
    parser.add_argument("--output", required=True, metavar="PATH",
                        help="the file to write; with --what=both the step goes beside it, "
                             "-step before the suffix (model.onnx -> model-step.onnx)")
    parser.add_argument("--what", choices=GRAPHS, default=None,
                        help="forecast, step (recurrent models) or both (default: both where "
                             "the model's step exports, else the forecast alone)")
    parser.add_argument("--horizon", type=int, default=None, metavar="K",
                        help="frames the forecast predicts; the step is checked over as many "
                             "(default: the model's own, from its config)")
    parser.add_argument("--context-frames", type=int, default=None, metavar="J",
                        help="observed frames the forecast takes (default: the model's own)")
    parser.add_argument("--batch-size", type=int, default=2, metavar="B",
                        help="batch of the check's sample, and of a graph whose batch cannot "
                             "stay dynamic (default: 2)")
    parser.add_argument("--opset", type=int, default=None, metavar="N",
                        help="ONNX opset (default: torch's exporter's)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="largest absolute difference from PyTorch accepted, times max(1, "
                             f"largest |value|) (default: {TOLERANCE:g})")
    parser.add_argument("--frame", default=None, metavar="C,H,W",
                        help="frame shape of a model built for any size (the baselines; "
                             "default: the model's own, else 1,64,64)")
    return parser


def main(argv: list[str]) -> None:
    """Entry point of ``predlearn export``."""
    args = parser().parse_args(list(argv))
    source = load_source(args.source)
    predictor = source.predictor
    name = model_name(predictor)
    context = source.context_frames if args.context_frames is None else args.context_frames
    horizon = source.horizon if args.horizon is None else args.horizon
    if context is None or horizon is None:
        option = "--context-frames" if context is None else "--horizon"
        raise OptionValueError(option, f"{args.source} does not say its {option[2:]}; give it")
    output = Path(args.output)
    if output.exists() and output.resolve() == Path(args.source).resolve():
        raise OutputError(f"--output {output} is the SOURCE; give another file")
    reason = refusal(predictor, "forecast")  # refused before anything is printed or built
    if reason:
        raise ExportRefused(name, "forecast", reason)
    require_format(args.format)
    graphs = _graphs(predictor, args.what)
    options = {"batch_size": args.batch_size, "opset": args.opset, "tolerance": args.tolerance,
               "value_range": source.value_range, "frame": _frame(args.frame, predictor)}
    paths = {"forecast": output, "step": step_path(output) if len(graphs) == 2 else output}
    builders = {"forecast": forecast_graph, "step": step_graph}
    print(f"predlearn export: {name}, {context} observed frames -> {horizon} predicted, values "
          f"in {list(source.value_range)}, as {args.format}", flush=True)
    exported, skipped = [], None
    for graph in graphs:
        try:
            exported.append(builders[graph](predictor, paths[graph], args.format, horizon,
                                            context, **options))
        except ExportRefused as error:
            if graph != "step" or args.what is not None:
                raise
            skipped = error.reason.split("; export the forecast")[0]  # not asked for by name
    for item in exported:  # every graph passed its check: now the files
        write(item)
        print_exported(item)
    if skipped:
        print(f"predlearn export: {name} has no step graph ({skipped}); wrote the forecast alone")


def _graphs(predictor: Predictor, what: str | None) -> list[str]:
    """The graphs to export: ``what``'s; by default the step too where the model has one."""
    if what in ("forecast", "step"):
        return [what]
    reason = refusal(predictor, "step")
    if what == "both" and reason:
        raise ExportRefused(model_name(predictor), "step", reason)
    return ["forecast"] if reason else ["forecast", "step"]


def _frame(text: str | None, predictor: Predictor) -> tuple[int, int, int] | None:
    """``--frame C,H,W``; refused where the model is built for another frame."""
    if text is None:
        return None
    try:
        channels, height, width = (int(part) for part in text.split(","))
    except ValueError:
        raise OptionValueError("--frame", f"must be C,H,W (three positive integers, e.g. "
                               f"1,64,64); got {text!r}", text) from None
    frame = (channels, height, width)
    if min(frame) < 1:
        raise OptionValueError("--frame", f"must be three positive integers; got {text!r}", text)
    own = model_frame(predictor)
    if hasattr(predictor, "frame_size") and frame != own:
        raise OptionValueError("--frame", f"{model_name(predictor)} was built for frames "
                               f"{','.join(map(str, own))}; leave --frame out", text)
    return frame


def print_exported(exported: Exported) -> None:
    """What was written: the file, its inputs and outputs, the difference from PyTorch."""
    description = exported.description
    batch = "dynamic" if description["batch"] == "dynamic" else f"fixed at {description['batch']}"
    size = exported.path.stat().st_size / 1e6
    print(f"wrote {exported.path} ({description['export_format']}, {description['graph']}, "
          f"{size:.1f} MB, batch {batch})")
    if description.get("batch_note"):
        print(f"  note: {description['batch_note']}")
    starts = {item["name"]: item["initial"] for item in description.get("state", [])}
    for kind in ("inputs", "outputs"):
        for item in description[kind]:
            start = f" (starts as {starts[item['name']]})" if item["name"] in starts else ""
            shape = ", ".join(map(str, item["shape"]))
            print(f"  {kind[:-1]:6s} {item['name']:24s} [{shape}] {item['dtype']}{start}")
    against = ("predictor(frames, K)" if description["graph"] == "forecast" else
               f"predictor(frames, K), streamed: {description['context_frames']} observed steps "
               f"and {description['horizon'] - 1} fed back")
    runner = "onnxruntime" if description["export_format"] == "onnx" else "torch.export.load"
    print(f"  largest difference from PyTorch: {exported.difference:.3g} ({runner} against "
          f"{against}; tolerance {description['tolerance']:g})")


__all__ = ["Source", "load_source", "main", "parser", "print_exported"]
