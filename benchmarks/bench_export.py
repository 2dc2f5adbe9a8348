"""Speed of an exported forecast: onnxruntime on the CPU beside PyTorch eager, side by side.

For each model, the forecast graph of ``predlearn export`` (``predlearn.export.forecast_graph``:
built, loaded back from its bytes, checked against PyTorch; not written to disk) runs in an
onnxruntime CPU session (``intra_op_num_threads`` = T) and the same predictor runs eagerly in
PyTorch (``torch.set_num_threads(T)``, ``inference_mode``), for T in ``--threads`` and each batch
in ``--batch-sizes``. One call is one whole forecast: J = 10 observed frames in, K = 10 out.
Repetitions are interleaved (round r times every configuration once, in turn) so that a noisy,
shared machine slows all of them alike; the table gives the median time per call and the ratio
onnxruntime / PyTorch (below 1: the exported graph is faster).

Models: ``predrnn-mmnist2`` (the shipped PredRNN: 3 x 48 ST-LSTM, patch 4, 64 x 64 Moving MNIST)
and ``simvp`` at its ``configs/mmnist-small/simvp.yaml`` size (random weights: speed does not
depend on them). Denormal floats are flushed to zero in both runtimes, as predlearn's training
does (``--keep-denormals``: IEEE denormals in both).

    python benchmarks/bench_export.py --threads 1 2 --batch-sizes 1 8 --repeats 10 \\
        --json benchmarks/results/export_2026-12-07.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_common
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
SIMVP_CONFIG = ROOT / "configs" / "mmnist-small" / "simvp.yaml"
MODELS = ("predrnn-mmnist2", "simvp")
CONTEXT, HORIZON, FRAME = 10, 10, (1, 64, 64)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per configuration")
    parser.add_argument("--json", type=Path, default=Path(
        f"benchmarks/results/export_{datetime.date.today().isoformat()}.json"))
    bench_common.add_denormal_option(parser)
    return parser.parse_args(argv)


def predictor(name: str) -> torch.nn.Module:
    """The model ``name`` in eval mode: the shipped PredRNN, or SimVP at its mmnist-small size."""
    import predlearn
    from predlearn.class_paths import import_class

    if name == "predrnn-mmnist2":
        return predlearn.from_pretrained(name)
    config = OmegaConf.to_container(OmegaConf.load(SIMVP_CONFIG))
    options = config["model"]["predictor"]  # type: ignore[index]
    torch.manual_seed(0)
    cls = import_class(options["class_path"])
    return cls(**options["init_args"], context_frames=CONTEXT).eval()


def runners(name: str, model: torch.nn.Module, threads: list[int], keep_denormals: bool
            ) -> tuple[dict[str, Callable[[torch.Tensor, int], Any]], float, str]:
    """``{"pytorch": run, "onnxruntime-T": run, ...}`` (run(frames, T)), the export's largest
    difference from PyTorch, and its batch ("dynamic" or fixed)."""
    import onnxruntime

    from predlearn.export import forecast_graph

    exported = forecast_graph(model, f"{name}.onnx", "onnx", HORIZON, CONTEXT)
    data = exported.data

    def eager(frames: torch.Tensor, count: int) -> Any:
        torch.set_num_threads(count)
        with torch.inference_mode():
            return model(frames, HORIZON)

    result: dict[str, Callable[[torch.Tensor, int], Any]] = {"pytorch": eager}
    for count in threads:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = count, 1
        if not keep_denormals:
            options.add_session_config_entry("session.set_denormal_as_zero", "1")
        session = onnxruntime.InferenceSession(data, options,
                                               providers=["CPUExecutionProvider"])

        def run(frames: torch.Tensor, _count: int, session: Any = session) -> Any:
            return session.run(None, {"frames": frames.numpy()})

        result[f"onnxruntime-{count}"] = run
    return result, exported.difference, str(exported.description["batch"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every (model, batch, threads, runtime) timed ``--repeats`` times, interleaved."""
    from predlearn.denormals import set_flush_denormal

    set_flush_denormal(not args.keep_denormals)
    configs, exports = [], {}
    for name in args.models:
        model = predictor(name)
        runs, difference, batch_kind = runners(name, model, args.threads, args.keep_denormals)
        exports[name] = {"largest_difference": difference, "batch": batch_kind,
                         "parameters": sum(p.numel() for p in model.parameters())}
        for batch in args.batch_sizes:
            frames = torch.rand(batch, CONTEXT, *FRAME, generator=torch.Generator().manual_seed(0))
            for count in args.threads:
                for runtime in ("pytorch", f"onnxruntime-{count}"):
                    configs.append({"model": name, "batch": batch, "threads": count,
                                    "runtime": runtime.split("-")[0], "frames": frames,
                                    "run": runs[runtime], "seconds": []})
    for round_ in range(args.warmup + args.repeats):
        for config in configs:
            start = time.perf_counter()
            config["run"](config["frames"], config["threads"])
            elapsed = time.perf_counter() - start
            if round_ >= args.warmup:
                config["seconds"].append(elapsed)
        print(f"round {round_ + 1}/{args.warmup + args.repeats} done", file=sys.stderr,
              flush=True)
    results = [{key: value for key, value in config.items() if key not in ("frames", "run")}
               | {"median": statistics.median(config["seconds"])} for config in configs]
    return {"exports": exports, "results": results}


def table(measured: dict[str, Any]) -> str:
    """The Markdown table: per model, batch and threads, the medians and their ratio."""
    rows = {}
    for result in measured["results"]:
        key = (result["model"], result["batch"], result["threads"])
        rows.setdefault(key, {})[result["runtime"]] = result["median"]
    lines = [("| model | batch | threads | PyTorch eager (ms / forecast) | onnxruntime "
             "(ms / forecast) | onnxruntime / PyTorch |"), "|---|---:|---:|---:|---:|---:|"]
    for (model, batch, threads), medians in rows.items():
        eager, ort = medians["pytorch"], medians["onnxruntime"]
        lines.append(f"| {model} | {batch} | {threads} | {eager * 1e3:.0f} | {ort * 1e3:.0f} | "
                     f"{ort / eager:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    args = parse_args(argv)
    measured = measure(args)
    markdown = table(measured)
    print(markdown)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "args": {key: (value.name if isinstance(value, Path) else value)
                 for key, value in vars(args).items()},
        "command": ("python benchmarks/bench_export.py " + " ".join(argv or sys.argv[1:])
                    ).replace(f"{ROOT}/", ""),  # no machine paths in the record
        "machine": bench_common.describe_machine(
            "cpu", threads=" and ".join(map(str, args.threads)),  # type: ignore[arg-type]
            keep_denormals=args.keep_denormals),
        "onnxruntime": onnxruntime.__version__,
        "workload": {"context_frames": CONTEXT, "horizon": HORIZON, "frame": list(FRAME)},
        **measured, "table": markdown}
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
