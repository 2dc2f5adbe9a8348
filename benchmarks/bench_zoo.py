"""Time to quality across the zoo: every model under one wall-clock budget, side by side.

Every model of ``configs/mmnist-small/`` (the paper's zoo and the modern one, at CPU-sized
widths; the folder is the single place the sizes live) trains with one recipe on the same
batches of Moving MNIST-2 (MNIST test digits 0-6,999) for ``--seconds`` seconds of training, and
is scored every ``--eval-every`` seconds of its own training on one fixed set of sequences from
digits 8,000-9,999, closed loop: per-frame MSE (the paper's convention, docs/metrics.md), SSIM,
and the MSE of each predicted frame.

One protocol for all: MSE over the 10 predicted frames, closed loop (no ground truth fed back:
a step-scheduled sampling would reach a fast model's end and not a slow one's), Adam 1e-3, batch
8, bf16 autocast, the model's own auxiliary loss where it has one (PredRNN v2's decoupling,
PhyDNet's moment constraint, TAU's differential divergence). The models advance round-robin,
``--eval-every`` seconds each per round, so that they share the machine's state. Each one's clock
counts only its own training steps, not the scoring, in CPU seconds of the process: with one
thread (``--threads 1``) that is the wall time the steps take on an idle core, and other work on
the machine (a second benchmark process, tests) does not shrink a model's budget.

    python benchmarks/bench_zoo.py --seconds 360 --eval-every 60 --threads 1 \\
        --json benchmarks/results/zoo.json --plot docs/img/zoo_time_to_quality.png \\
        --state runs/bench_zoo_state.pt

``--models`` picks a subset (several processes can share the zoo); ``--state FILE`` saves every
model after each round and resumes from it; ``--table A.json B.json ...`` prints the combined
table (seeds of one model averaged) and, with ``--plot``, draws the runs of all of them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from predlearn.datamodules.moving_mnist import MovingMNISTDataModule, MovingMNISTStream
from predlearn.module import PredictiveModule

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import cpu_name
from bench_learning import baselines, evaluate

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "mmnist-small"


def zoo() -> list[str]:
    """Every model with a CPU-sized config, by config name."""
    return sorted(path.stem for path in CONFIGS.glob("*.yaml"))


def build_predictor(name: str, context: int) -> torch.nn.Module:
    """The predictor of ``configs/mmnist-small/<name>.yaml`` (what the CLI would build)."""
    config = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    spec = config["model"]["predictor"]  # type: ignore[index]
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(import_module(module_name), class_name)
    options = dict(spec.get("init_args", {}))
    if "context_frames" in inspect.signature(cls).parameters:
        options["context_frames"] = context  # the CLI links it from the data
    return cls(**options)


@dataclass
class Run:
    """One model's training state and what it measured."""

    name: str
    module: PredictiveModule
    optimizer: torch.optim.Optimizer
    parameters: int
    step: int = 0
    seconds: float = 0.0
    curve: list[dict[str, Any]] = field(default_factory=list)


def build_run(name: str, args: argparse.Namespace) -> Run:
    torch.manual_seed(args.seed)
    predictor = build_predictor(name, args.context)
    module = PredictiveModule(predictor, learning_rate=args.learning_rate, loss="l2",
                              metrics=("mse",), flush_denormal=True)
    module.setup("fit")
    optimizer = torch.optim.Adam(module.parameters(), lr=args.learning_rate)
    return Run(name, module, optimizer, sum(p.numel() for p in predictor.parameters()))


def train(run: Run, stream: MovingMNISTStream, args: argparse.Namespace, until: float) -> None:
    """Train ``run`` until its own training clock (CPU seconds of its steps) reaches ``until``."""
    run.module.train()
    while run.seconds < until:
        batch = stream.batch(0, run.step)  # generated from its index: the same for every model
        started = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss, _ = run.module.training_loss(batch, run.step)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.seconds += time.process_time() - started
        run.step += 1


def save_state(runs: list[Run], path: Path) -> None:
    state = {run.name: {"module": run.module.state_dict(), "optimizer": run.optimizer.state_dict(),
                        "step": run.step, "seconds": run.seconds, "curve": run.curve}
             for run in runs}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    torch.save(state, partial)
    partial.replace(path)


def load_state(runs: list[Run], path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=False)
    for run in runs:
        if run.name in state:
            saved = state[run.name]
            run.module.load_state_dict(saved["module"])
            run.optimizer.load_state_dict(saved["optimizer"])
            run.step, run.seconds, run.curve = saved["step"], saved["seconds"], saved["curve"]


def payload(runs: list[Run], reference: dict[str, float], args: argparse.Namespace
            ) -> dict[str, Any]:
    return {"machine": cpu_name(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "command": " ".join(sys.argv),
            "settings": {key: (str(value) if isinstance(value, Path) else value)
                         for key, value in vars(args).items()},
            "reference": reference, "seed": args.seed,
            "runs": {run.name: {"parameters": run.parameters, "steps": run.step,
                                "seconds": run.seconds, "curve": run.curve} for run in runs}}


def combined(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every model's runs over the result files (one per seed and process)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for name, run in result["runs"].items():
            runs.setdefault(name, []).append({**run, "seed": result["seed"]})
    return runs


def table(results: list[dict[str, Any]]) -> str:
    """A markdown table, best final MSE first; seeds of one model are averaged."""
    rows = []
    for name, runs in combined(results).items():
        finals = [run["curve"][-1] for run in runs]
        mse = sum(point["mse"] for point in finals) / len(finals)
        ssim = sum(point["ssim"] for point in finals) / len(finals)
        steps = sum(run["steps"] for run in runs) / len(runs)
        per_step = sum(run["seconds"] / max(run["steps"], 1) for run in runs) / len(runs)
        seeds = " / ".join(f"{point['mse']:.1f}" for point in finals) if len(runs) > 1 else ""
        row = (f"| `{name}` | {mse:.1f} | {seeds} | {ssim:.3f} | "
               f"{runs[0]['parameters'] / 1e3:,.0f} k | {per_step:.2f} | {steps:,.0f} |")
        rows.append((mse, row))
    header = ("| Model | MSE | MSE per seed | SSIM | parameters | s / step | steps |\n"
              "|---|---|---|---|---|---|---|")
    return "\n".join([header, *(row for _, row in sorted(rows))])


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """MSE against training minutes (one line per model and seed) and the final per-frame MSE."""
    import matplotlib

    from predlearn.visualize import new_figure, save_figure

    reference = results[0]["reference"]
    figure, axes = new_figure(1, 2, figsize=(13, 4.8))
    runs = combined(results)
    order = sorted(runs, key=lambda name: runs[name][0]["curve"][-1]["mse"])
    palette = matplotlib.colormaps["tab20"]
    colours = {name: palette(index % 20) for index, name in enumerate(order)}
    styles = {0: "-", 1: "--"}
    for name in order:
        for run in runs[name]:
            minutes = [point["seconds"] / 60 for point in run["curve"]]
            mse = [point["mse"] for point in run["curve"]]
            label = name if run["seed"] == runs[name][0]["seed"] else None
            axes[0].plot(minutes, mse, styles.get(run["seed"], ":"), marker=".",
                         color=colours[name], label=label)
        last = runs[name][0]["curve"][-1]["mse_per_step"]
        axes[1].plot(range(1, len(last) + 1), last, marker=".", color=colours[name], label=name)
    for axis in axes:
        axis.axhline(reference["all_black"], color="grey", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
    axes[0].set_xlabel("training minutes (each model's own steps; dashed: a second seed)")
    axes[0].set_ylabel("per-frame MSE on unseen digits (closed loop)")
    lowest = min(point["mse"] for run_list in runs.values() for run in run_list
                 for point in run["curve"])
    axes[0].set_ylim(lowest - 10, reference["all_black"] * 1.1)  # untrained outliers cut off
    axes[1].set_xlabel("predicted frame (at the end of the budget, first seed)")
    axes[1].set_ylabel("MSE of that frame")
    axes[1].legend(fontsize=7, ncol=2, title=f"all-black frames: {reference['all_black']:.0f} "
                   "(dotted)", title_fontsize=7)
    save_figure(figure, path, dpi=110)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=None, help="config names (default: all)")
    parser.add_argument("--seconds", type=float, default=360.0,
                        help="training seconds (CPU time of its steps) per model, the same for all")
    parser.add_argument("--eval-every", type=float, default=60.0,
                        help="score after every this many seconds of a model's training")
    parser.add_argument("--test-sequences", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=1e-3)  # paper §4
    parser.add_argument("--batch-size", type=int, default=8)  # paper §4
    parser.add_argument("--context", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnist-root", type=Path, default=Path("data/mnist"),
                        help="folder with t10k-images-idx3-ubyte.gz (no download)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--state", type=Path, default=None,
                        help="save after every round and resume from this file")
    parser.add_argument("--table", type=Path, nargs="+", default=None,
                        help="only combine these result files: print the table (and --plot)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        results = [json.loads(path.read_text()) for path in args.table]
        print(table(results))
        if args.plot is not None:
            plot(results, args.plot)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models or zoo()
    unknown = sorted(set(models) - set(zoo()))
    if unknown:
        raise SystemExit(f"bench_zoo: no config for {', '.join(unknown)} in {CONFIGS}; "
                         f"known: {', '.join(zoo())}")
    data = MovingMNISTDataModule(root=str(args.mnist_root), digits="mnist_test", download=False,
                                 num_test=args.test_sequences, num_val=1,
                                 context_frames=args.context, horizon=args.horizon)
    data.setup("test")
    test = torch.stack([data.test_set[i] for i in range(len(data.test_set))])
    reference = baselines(test, args)
    stream = MovingMNISTStream(data.pools().train, 10**9,
                               sequence_length=args.context + args.horizon, seed=args.seed,
                               batch_size=args.batch_size)
    runs = [build_run(name, args) for name in models]
    if args.state is not None and args.state.exists():
        load_state(runs, args.state)
    for run in runs:
        if not run.curve:
            run.curve.append({"step": 0, "seconds": 0.0, **evaluate(run.module, test, args)})
    while any(run.seconds < args.seconds for run in runs):
        for run in runs:
            if run.seconds >= args.seconds:
                continue
            train(run, stream, args, min(run.seconds + args.eval_every, args.seconds))
            run.curve.append({"step": run.step, "seconds": run.seconds,
                              **evaluate(run.module, test, args)})
            print(f"{run.name:14s} step {run.step:6d}  {run.seconds:6.0f} s  "
                  f"MSE {run.curve[-1]['mse']:6.1f}  SSIM {run.curve[-1]['ssim']:.3f}", flush=True)
        if args.state is not None:
            save_state(runs, args.state)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(payload(runs, reference, args), indent=1))
    result = payload(runs, reference, args)
    if args.json is not None:  # also when a resumed call finds every model at its budget
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    print(table([result]))
    if args.plot is not None:
        plot([result], args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
