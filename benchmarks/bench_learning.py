"""Time to quality: one small PredRNN trained with each training recipe, side by side in one run.

Every recipe trains the same model (same size, same initial weights, the same training batches in
the same order) on Moving MNIST-2 made from MNIST test digits 0-6,999, and is scored every
``--eval-every`` steps on one fixed set of sequences made from digits 8,000-9,999 (closed loop, as
at test time): per-frame MSE (the paper's convention, docs/metrics.md) and SSIM over the 10
predicted frames. The recipes advance round-robin, ``--eval-every`` steps each per round, so that
they share the machine's state; each one's clock counts only its own training steps (not the
scoring). A recipe stops at ``--steps`` steps or ``--seconds`` seconds of training, whichever comes
first: equal steps with ``--seconds 0``, equal wall time with a large ``--steps``.

Recipes (``--recipes``; schedules scaled to ``--steps`` in the proportions of the authors' 80,000
iterations: scheduled sampling reaches 0 at 62.5 %, reverse scheduled sampling moves between
31.25 % and 62.5 %):

- ``paper``: L1 + L2 over the K predicted frames, closed loop, Adam 1e-3 (paper §4).
- ``l2``: MSE alone (the authors' released code) over the K predicted frames.
- ``all-frames``: MSE over all J + K - 1 next-frame predictions (the authors' code).
- ``scheduled-sampling``: all-frames + scheduled sampling from 1 down to 0 (PredRNN's code).
- ``reverse-sampling``: all-frames + reverse scheduled sampling (PredRNN v2).
- ``reverse-input``: all-frames + each batch also played backwards (twice the cost per step).
- ``onecycle``: all-frames + OneCycleLR up to 3e-3 and down over ``--steps``.
- ``predrnn_v2``: PredRNN v2 (decoupling loss, beta 0.1) + reverse sampling + all-frames.

    python benchmarks/bench_learning.py --steps 3000 --eval-every 250 \\
        --json benchmarks/results/learning.json --plot docs/img/learning.png

``--state FILE`` saves every recipe's weights, optimiser and curve after each round and resumes
from it, so a long comparison can run over several sessions.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import predlearn
from predlearn.datamodules.moving_mnist import MovingMNISTDataModule, MovingMNISTStream
from predlearn.metrics import SequenceMetrics
from predlearn.module import PredictiveModule
from predlearn.sampling import ReverseScheduledSampling, ScheduledSampling

sys.path.insert(0, str(Path(__file__).parent))
from bench_common import cpu_name

PAPER_ITERATIONS = 80_000  # paper §4 and the authors' scripts


def recipe(name: str, steps: int) -> tuple[str, dict[str, Any]]:
    """(model name, PredictiveModule options) of a recipe, schedules scaled to ``steps``."""
    scale = steps / PAPER_ITERATIONS
    all_frames = {"loss": "l2", "loss_frames": "all"}
    start = round(25_000 * scale)
    reverse = {"sampling": ReverseScheduledSampling(
        start, max(start + 1, round(50_000 * scale)), max(1.0, 2_500 * scale))}
    stop = max(1, round(50_000 * scale))
    recipes = {
        "paper": ("predrnn", {"loss": "l1+l2"}),
        "l2": ("predrnn", {"loss": "l2"}),
        "all-frames": ("predrnn", all_frames),
        "scheduled-sampling": ("predrnn", {**all_frames, "sampling": ScheduledSampling(
            1.0, 1.0 / stop, stop)}),
        "reverse-sampling": ("predrnn", {**all_frames, **reverse}),
        "reverse-input": ("predrnn", {**all_frames, "reverse_input": True}),
        "onecycle": ("predrnn", {**all_frames, "lr_scheduler": {
            "class_path": "torch.optim.lr_scheduler.OneCycleLR",
            "init_args": {"max_lr": 3e-3, "total_steps": steps}}}),
        "predrnn_v2": ("predrnn_v2", {**all_frames, **reverse}),
    }
    if name not in recipes:
        raise SystemExit(f"unknown recipe {name!r}; known: {', '.join(recipes)}")
    return recipes[name]


RECIPES = ("paper", "l2", "all-frames", "scheduled-sampling", "reverse-sampling",
           "reverse-input", "onecycle", "predrnn_v2")


@dataclass
class Run:
    """One recipe's model, optimiser and what it measured."""

    name: str
    module: PredictiveModule
    optimizer: torch.optim.Optimizer
    scheduler: Any
    step: int = 0
    seconds: float = 0.0
    curve: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False


def build_run(name: str, args: argparse.Namespace, initial: dict[str, torch.Tensor]) -> Run:
    model_name, options = recipe(name, args.steps)
    torch.manual_seed(args.seed)
    predictor = predlearn.create_model(
        model_name, hidden_channels=args.hidden, kernel_size=args.kernel_size,
        patch_size=args.patch_size, cell_options={"forget_bias": 1.0})
    # The same initial weights for every recipe (predrnn_v2 adds its adapter on top).
    predictor.load_state_dict(initial, strict=False)
    module = PredictiveModule(predictor, learning_rate=args.learning_rate, metrics=("mse",),
                              flush_denormal=True, **options)
    module.setup("fit")
    configured = module.configure_optimizers()
    if isinstance(configured, dict):
        return Run(name, module, configured["optimizer"], configured["lr_scheduler"]["scheduler"])
    return Run(name, module, configured, None)


def autocast(args: argparse.Namespace):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")


def train(run: Run, stream: MovingMNISTStream, args: argparse.Namespace, until: int) -> None:
    """Train ``run`` up to step ``until`` (or its time budget), timing only the steps."""
    run.module.train()
    while run.step < until:
        if args.seconds and run.seconds >= args.seconds:
            run.done = True
            return
        batch = stream.batch(0, run.step)
        started = time.perf_counter()
        with autocast(args):
            loss, _ = run.module.training_loss(batch, run.step)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        if run.scheduler is not None:
            run.scheduler.step()
        run.seconds += time.perf_counter() - started
        run.step += 1
    run.done = run.step >= args.steps


@torch.no_grad()
def evaluate(module: PredictiveModule, test: torch.Tensor, args: argparse.Namespace
             ) -> dict[str, Any]:
    """Closed-loop per-frame MSE and SSIM on the fixed test set."""
    module.eval()
    metrics = SequenceMetrics(args.horizon, ("mse", "ssim"), prefix="test")
    for start in range(0, len(test), 16):
        batch = test[start:start + 16]
        frames, targets = batch[:, :args.context], batch[:, args.context:]
        with autocast(args):
            predictions = module(frames, args.horizon)
        metrics.update(predictions.float(), targets)
    curves = {key: value.tolist() for key, value in metrics.curves().items()}
    mse_key = next(key for key in curves if key.startswith("mse"))
    ssim_key = next(key for key in curves if key.startswith("ssim"))
    return {"mse": sum(curves[mse_key]) / args.horizon, "ssim": sum(curves[ssim_key]) / args.horizon,
            "mse_per_step": curves[mse_key]}


def baselines(test: torch.Tensor, args: argparse.Namespace) -> dict[str, float]:
    """Per-frame MSE of predicting black frames and of repeating the last observed frame."""
    targets = test[:, args.context:]
    last = test[:, args.context - 1:args.context].expand_as(targets)
    per_frame = targets[0, 0].numel()
    return {"all_black": float(targets.pow(2).mean() * per_frame),
            "repeat_last": float((last - targets).pow(2).mean() * per_frame)}


def first_reaching(curve: list[dict[str, Any]], target: float, key: str) -> float | None:
    for point in curve:
        if point["mse"] <= target:
            return point[key]
    return None


def render(runs: list[Run], reference: dict[str, float], args: argparse.Namespace) -> str:
    lines = [(f"# bench_learning: PredRNN {args.hidden} k{args.kernel_size} p{args.patch_size}, "
             f"{args.precision}, {torch.get_num_threads()} thread(s), {cpu_name()}"),
             (f"# test: {args.test_sequences} sequences; all-black MSE "
             f"{reference['all_black']:.1f}, repeat-last {reference['repeat_last']:.1f}"),
             f"{'recipe':20s} {'steps':>6s} {'train s':>8s} {'s/step':>7s} {'MSE':>7s} "
             f"{'best':>7s} {'SSIM':>6s}  " + "  ".join(f"MSE<={t:g} at (step, s)"
                                                       for t in args.targets)]
    for run in runs:
        if not run.curve:
            continue
        last, best = run.curve[-1], min(point["mse"] for point in run.curve)
        reached = []
        for target in args.targets:
            step = first_reaching(run.curve, target, "step")
            seconds = first_reaching(run.curve, target, "seconds")
            reached.append("-" if step is None else f"{step}, {seconds:.0f}")
        lines.append(f"{run.name:20s} {run.step:6d} {run.seconds:8.0f} "
                     f"{run.seconds / max(run.step, 1):7.2f} {last['mse']:7.1f} {best:7.1f} "
                     f"{last['ssim']:6.3f}  " + "  ".join(f"{r:>18s}" for r in reached))
    return "\n".join(lines)


def plot(runs: list[Run], reference: dict[str, float], path: Path) -> None:
    from predlearn.visualize import new_figure, save_figure

    figure, axes = new_figure(1, 2, figsize=(12, 4.5), sharey=True)
    for run in runs:
        steps = [p["step"] for p in run.curve]
        seconds = [p["seconds"] / 60 for p in run.curve]
        mse = [p["mse"] for p in run.curve]
        axes[0].plot(steps, mse, marker=".", label=run.name)
        axes[1].plot(seconds, mse, marker=".", label=run.name)
    for axis, label in zip(axes, ("training steps", "training minutes")):
        axis.axhline(reference["all_black"], color="grey", linestyle=":", linewidth=1,
                     label=f"all-black frames ({reference['all_black']:.0f})")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("per-frame MSE on unseen digits (closed loop)")
    axes[1].legend(fontsize=8, title=f"repeat last frame: {reference['repeat_last']:.0f}",
                   title_fontsize=8)
    top = max(reference["all_black"] * 1.3, 1.0)
    axes[0].set_ylim(0, top)
    save_figure(figure, path, dpi=110)


def save_state(runs: list[Run], path: Path) -> None:
    state = {run.name: {"module": run.module.state_dict(), "optimizer": run.optimizer.state_dict(),
                        "scheduler": None if run.scheduler is None else run.scheduler.state_dict(),
                        "step": run.step, "seconds": run.seconds, "curve": run.curve}
             for run in runs}
    partial = path.with_name(path.name + ".part")
    torch.save(state, partial)
    partial.replace(path)


def load_state(runs: list[Run], path: Path, args: argparse.Namespace) -> None:
    state = torch.load(path, map_location="cpu", weights_only=False)
    for run in runs:
        if run.name not in state:
            continue
        saved = state[run.name]
        run.module.load_state_dict(saved["module"])
        run.optimizer.load_state_dict(saved["optimizer"])
        if run.scheduler is not None and saved["scheduler"] is not None:
            run.scheduler.load_state_dict(saved["scheduler"])
        run.step, run.seconds, run.curve = saved["step"], saved["seconds"], saved["curve"]
        # done again only under this call's budget (a resumed call may give more steps)
        run.done = run.step >= args.steps or bool(args.seconds and run.seconds >= args.seconds)


def write_json(runs: list[Run], reference: dict[str, float], args: argparse.Namespace) -> None:
    payload = {"machine": cpu_name(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
               "command": " ".join(sys.argv),
               "settings": {key: (str(value) if isinstance(value, Path) else value)
                            for key, value in vars(args).items()},
               "reference": reference,
               "runs": {run.name: {"steps": run.step, "seconds": run.seconds,
                                   "curve": run.curve} for run in runs}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--steps", type=int, default=3000, help="training steps per recipe")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="training seconds per recipe (0: no limit)")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--test-sequences", type=int, default=200)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)  # paper §4
    parser.add_argument("--batch-size", type=int, default=8)  # paper §4
    parser.add_argument("--context", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnist-root", type=Path, default=Path("data/mnist"),
                        help="folder with t10k-images-idx3-ubyte.gz (no download)")
    parser.add_argument("--targets", type=float, nargs="+", default=[150.0, 120.0, 100.0],
                        help="report the first step and second each recipe reaches these MSEs")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--state", type=Path, default=None,
                        help="save after every round and resume from this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = MovingMNISTDataModule(root=str(args.mnist_root), digits="mnist_test", download=False,
                                 num_test=args.test_sequences, num_val=1,
                                 context_frames=args.context, horizon=args.horizon)
    data.setup("test")
    test = torch.stack([data.test_set[i] for i in range(len(data.test_set))])
    reference = baselines(test, args)
    stream = MovingMNISTStream(data.pools().train, args.batch_size * (args.steps + 1),
                               sequence_length=args.context + args.horizon, seed=args.seed,
                               batch_size=args.batch_size)
    torch.manual_seed(args.seed)
    initial = predlearn.create_model(
        "predrnn", hidden_channels=args.hidden, kernel_size=args.kernel_size,
        patch_size=args.patch_size).state_dict()
    runs = [build_run(name, args, copy.deepcopy(initial)) for name in args.recipes]
    if args.state is not None and args.state.exists():
        load_state(runs, args.state, args)
    for run in runs:
        if not run.curve:
            run.curve.append({"step": 0, "seconds": 0.0, **evaluate(run.module, test, args)})
    while not all(run.done for run in runs):
        for run in runs:
            if run.done:
                continue
            train(run, stream, args, min(run.step + args.eval_every, args.steps))
            if run.curve[-1]["step"] != run.step:
                run.curve.append({"step": run.step, "seconds": run.seconds,
                                  **evaluate(run.module, test, args)})
            print(f"{run.name:20s} step {run.step:6d}  {run.seconds:7.0f} s  "
                  f"MSE {run.curve[-1]['mse']:6.1f}  SSIM {run.curve[-1]['ssim']:.3f}", flush=True)
        if args.state is not None:
            save_state(runs, args.state)
        if args.json is not None:
            write_json(runs, reference, args)
        if args.plot is not None:
            plot(runs, reference, args.plot)
    print(render(runs, reference, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
