"""Steady-state training speed: PredRNN's step time over many steps, with and without flushing
denormal floats, side by side in one run (predlearn, and optionally the authors' predrnn-pytorch).

Some CPUs compute on denormal floats (magnitude below about 1.2e-38) many times slower than on
normal ones. A training run produces them after its first steps (saturated gates in the forward
pass, their gradients in the backward pass), so a benchmark that times two steps can miss a
six-fold slowdown that every long run pays. This script trains each configuration for ``--steps``
steps (default 50) and reports, per configuration: the first step, the median of steps 2-5 ("first
steps"), the median of all steps, the median of the last tenth ("last decile"), and their ratio
last decile / first steps, which is about 1 when the step time stays flat. It also counts, after
each step, the denormal values in the gradients and in Adam's state.

Configurations are ``IMPLEMENTATION:VARIANT``, where VARIANT joins ``fp32`` or ``bf16`` (autocast,
as ``--trainer.precision=bf16-mixed``) with ``flush`` (``predlearn.denormals.set_flush_denormal``,
what ``PredictiveModule`` does by default) or ``keep`` (IEEE denormals, the default of a fresh
process), e.g. ``predlearn:fp32+flush authors:fp32+keep``. ``authors`` is the authors' PredRNN
(``core/models/predrnn.py`` of github.com/thuml/predrnn-pytorch), imported from the checkout given
by ``--authors-code``; its code is never part of predlearn. Every configuration gets its own fresh
process (so its denormal mode and thread pool are its own) and the parent drives them round-robin,
one step each per round: the ratios are measured side by side.

Both implementations train the same workload on the same batches, closed loop (no ground truth fed
after the observed frames), Adam at 1e-3, each with its own loss: predlearn L1 + L2 over the K
predicted frames (paper §4; its training step, ``PredictiveModule.training_loss`` and
``configure_optimizers``), the authors' code MSE over all J + K - 1 next-frame outputs (its
``forward`` computes it).

    python benchmarks/bench_steady_state.py --workload mmnist-p4 --steps 50 \\
        --configs predlearn:fp32+flush predlearn:fp32+keep predlearn:bf16+flush predlearn:bf16+keep
    python benchmarks/bench_steady_state.py --workload mmnist-p4 --steps 50 \\
        --authors-code ~/predrnn-pytorch --configs authors:fp32+flush authors:fp32+keep

Data: ``mmnist`` workloads train on Moving MNIST sequences made from the MNIST digits bundled with
predlearn (a new batch each step, the same batches for every configuration); the others on one
fixed batch of uniform random frames, as ``bench_paper_sizes.py`` does.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bench_common
from bench_paper_sizes import WORKLOADS, Workload, build_model
from bench_paper_sizes import Variant as SizesVariant

IMPLEMENTATIONS = ("predlearn", "authors")
FIRST_STEPS = slice(1, 5)  # steps 2-5: after the first step's one-time costs


@dataclass(frozen=True)
class Config:
    name: str
    implementation: str
    precision: str
    flush: bool


def parse_config(text: str) -> Config:
    """``"authors:bf16+keep"`` -> Config("authors:bf16+keep", "authors", "bf16", False)."""
    implementation, _, variant = text.partition(":")
    tokens = set(variant.lower().split("+")) - {""}
    precision = tokens & {"fp32", "bf16"}
    mode = tokens & {"flush", "keep"}
    if (implementation not in IMPLEMENTATIONS or len(precision) != 1 or len(mode) != 1
            or tokens - precision - mode):
        raise ValueError(
            f"configuration {text!r}: write IMPLEMENTATION:PRECISION+MODE with IMPLEMENTATION in "
            f"{list(IMPLEMENTATIONS)}, PRECISION fp32 or bf16, MODE flush or keep "
            "(e.g. predlearn:fp32+flush)")
    return Config(text, implementation, precision.pop(), mode.pop() == "flush")


@dataclass
class Result:
    config: Config
    params: int = 0
    seconds: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    denormals: list[int] = field(default_factory=list)
    census: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="mmnist-p4", choices=sorted(WORKLOADS))
    parser.add_argument("--configs", nargs="+",
                        default=["predlearn:fp32+flush", "predlearn:fp32+keep",
                                 "predlearn:bf16+flush", "predlearn:bf16+keep"])
    parser.add_argument("--steps", type=int, default=50, help="training steps per configuration")
    parser.add_argument("--batch-size", type=int, default=8)  # paper §4
    parser.add_argument("--context", type=int, default=10)  # paper §4.1: 10 -> 10
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-3)  # paper §4: Adam, 1e-3
    parser.add_argument("--checkpoint-steps", action="store_true",
                        help="predlearn: activation checkpointing per time step (less memory)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--authors-code", type=Path, default=None,
                        help="a checkout of github.com/thuml/predrnn-pytorch (for authors:...)")
    parser.add_argument("--census", action="store_true",
                        help="after the timed steps, one more step that counts the denormal "
                             "outputs of every torch operation (slow; not timed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write every step here")
    parser.add_argument("--plot", type=Path, default=None,
                        help="write a PNG of step time and denormal count against the step")
    args = parser.parse_args(argv)
    try:
        args.config_specs = [parse_config(text) for text in args.configs]
    except ValueError as error:
        parser.error(str(error))
    if min(args.steps, args.batch_size) < 1:
        parser.error("--steps and --batch-size must be >= 1")
    if any(c.implementation == "authors" for c in args.config_specs):
        model_file = (args.authors_code or Path("-")) / "core" / "models" / "predrnn.py"
        if not model_file.is_file():
            parser.error(f"authors:... configurations need --authors-code, a checkout of "
                         f"github.com/thuml/predrnn-pytorch; {model_file} does not exist")
    return args


# ---------------------------------------------------------------------------------------------
# Worker process: one configuration


def to_patches(frames, patch: int):
    """(B, T, C, H, W) -> (B, T, H/p, W/p, p*p*C): the authors' ``reshape_patch`` layout."""
    b, t, c, h, w = frames.shape
    x = frames.permute(0, 1, 3, 4, 2).reshape(b, t, h // patch, patch, w // patch, patch, c)
    return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(b, t, h // patch, w // patch, patch * patch * c)


def build_authors_model(workload: Workload, args: argparse.Namespace):
    """The authors' ``RNN`` (PredRNN v1) with their configuration fields, for this workload."""
    from types import SimpleNamespace

    import torch

    sys.path.insert(0, str(args.authors_code.resolve()))
    from core.models.predrnn import RNN  # the authors' code, from their checkout

    width = workload.frame_size[1]
    configs = SimpleNamespace(
        patch_size=workload.patch, img_channel=1, img_width=width, filter_size=workload.kernel,
        stride=1, layer_norm=0, device=torch.device("cpu"), reverse_scheduled_sampling=0,
        input_length=args.context, total_length=args.context + args.horizon,
    )
    torch.manual_seed(args.seed)
    return RNN(len(workload.hidden), list(workload.hidden), configs)


def batches(workload: Workload, args: argparse.Namespace):
    """``batch(step)``: (B, J + K, 1, H, W) in [0, 1], the same for every configuration."""
    import torch

    length = args.context + args.horizon
    if workload.data == "mmnist" and workload.frame_size == (64, 64):
        from predlearn.datamodules.mnist import load_digits
        from predlearn.datamodules.moving_mnist import MovingMNISTStream

        stream = MovingMNISTStream(load_digits("bundled").train, args.steps * args.batch_size,
                                   sequence_length=length, batch_size=args.batch_size,
                                   seed=args.seed, rank=0, world_size=1)
        return lambda step: stream.batch(0, step % len(stream))
    generator = torch.Generator().manual_seed(args.seed + 1)
    fixed = torch.rand(args.batch_size, length, 1, *workload.frame_size, generator=generator)
    return lambda step: fixed


def denormals_in(tensor) -> int:
    """How many denormal values a tensor holds (0 for anything but a floating-point tensor)."""
    import torch

    if not (isinstance(tensor, torch.Tensor) and tensor.is_floating_point()):
        return 0
    magnitude = tensor.detach().abs()
    return int(((magnitude < torch.finfo(torch.float32).tiny) & (magnitude > 0)).sum())


def count_denormals(optimizer) -> int:
    """Denormal float values in the gradients and in Adam's state."""
    return sum(denormals_in(tensor)
               for group in optimizer.param_groups for param in group["params"]
               for tensor in [param.grad, *optimizer.state.get(param, {}).values()])


def denormal_census(run_step) -> dict[str, int]:
    """Run one training step and count the denormal values in the output of every torch
    operation it runs (forward and backward), by operation: where the denormals come from."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: dict[str, int] = {}

    class Census(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                found = denormals_in(tensor)
                if found:
                    name = str(func.overloadpacket.__name__)
                    counts[name] = counts.get(name, 0) + found
            return out

    with Census():
        run_step()
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def worker(config: Config, workload: Workload, args: argparse.Namespace, conn) -> None:
    """Build one configuration; answer each "step" with (seconds, loss, denormal count)."""
    try:
        import torch

        from predlearn.denormals import set_flush_denormal
        from predlearn.module import PredictiveModule

        if args.threads:
            torch.set_num_threads(args.threads)
        # Set first and checked on every thread (predlearn.denormals); "keep" is the IEEE default.
        set_flush_denormal(config.flush)
        if config.implementation == "predlearn":
            model = build_model(workload, SizesVariant(config.name,
                                                       checkpoint_steps=args.checkpoint_steps),
                                args.seed)
            # predlearn's own training step: loss L1 + L2 (paper §4), Adam
            module = PredictiveModule(model, context_frames=args.context, horizon=args.horizon,
                                      learning_rate=args.learning_rate, metrics=())
            module.train()
            optimizer = module.configure_optimizers()
        else:
            model = build_authors_model(workload, args)
            optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
        batch_of = batches(workload, args)
        bf16 = config.precision == "bf16"
        frame_shape = (args.horizon - 1, *(s // workload.patch for s in workload.frame_size),
                       workload.patch ** 2)
        closed_loop = torch.zeros(args.batch_size, *frame_shape)  # the authors' mask_true

        def loss_of(batch, step: int):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                if config.implementation == "authors":
                    _, loss = model(to_patches(batch, workload.patch), closed_loop)
                    return loss.float()
                return module.training_loss(batch, step)[0]

        def train_step(batch, step: int) -> float:
            loss = loss_of(batch, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.item()

        conn.send(("ready", sum(p.numel() for p in model.parameters())))
        step = 0
        while (message := conn.recv()) in ("step", "census"):
            batch = batch_of(step)
            if message == "census":  # an extra step, not timed
                conn.send(("census", denormal_census(functools.partial(train_step, batch, step))))
                continue
            start = time.perf_counter()
            loss = train_step(batch, step)
            seconds = time.perf_counter() - start
            conn.send(("step", (seconds, loss, count_denormals(optimizer))))
            step += 1
    except Exception:  # noqa: BLE001 -- every failure is reported to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Parent: round-robin, summary, outputs


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> list[Result]:
    context = mp.get_context("spawn")
    workload = WORKLOADS[args.workload]
    workers = [bench_common.WorkerProcess(context, worker, (config, workload, args),
                                          Result(config)) for config in args.config_specs]
    try:
        for w in workers:
            w.wait_ready()
        for step in range(args.steps):
            for w in workers:
                answer = w.request("step")
                if answer is None:
                    continue
                seconds, loss, denormals = answer
                w.result.seconds.append(seconds)
                w.result.losses.append(loss)
                w.result.denormals.append(denormals)
                log(f"[{w.result.config.name}] step {step + 1}/{args.steps}: {seconds:.2f} s, "
                    f"loss {loss:.4f}, denormals in gradients and Adam state: {denormals}")
            write_json([w.result for w in workers], args)  # so far: a stopped run keeps its steps
        if args.census:
            for w in workers:
                log(f"[{w.result.config.name}] denormal census of one more step")
                w.result.census = w.request("census") or {}
    finally:
        for w in workers:
            w.stop()
    return [w.result for w in workers]


def summarize(result: Result) -> dict:
    """First step, first steps (2-5), median, last decile (median of the last tenth), ratio."""
    seconds = result.seconds
    if not seconds:
        return {}
    first_steps = statistics.median(seconds[FIRST_STEPS] or seconds[:1])
    last = statistics.median(seconds[-max(1, len(seconds) // 10):])
    return {
        "steps": len(seconds), "first": seconds[0], "first_steps": first_steps,
        "median": statistics.median(seconds), "last_decile": last,
        "ratio": last / first_steps, "max_denormals": max(result.denormals),
    }


def render(results: list[Result], args: argparse.Namespace) -> str:
    workload = WORKLOADS[args.workload]
    lines = [
        f"Steady state: {workload.title}, batch {args.batch_size}, {args.context} -> "
        f"{args.horizon}, Adam {args.learning_rate:g}, {args.steps} steps"
        + (", activation checkpointing (predlearn)" if args.checkpoint_steps else ""),
        *bench_common.describe_machine("cpu", args.threads),
        "",
        ("| configuration | params | steps | step 1 (s) | steps 2-5 (s) | median (s) | "
         "last decile (s) | last decile / steps 2-5 | most denormals |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        s = summarize(result)
        if not s:
            lines.append(f"| {result.config.name} | | | failed: {result.error} | | | | | |")
            continue
        lines.append(
            f"| {result.config.name} | {result.params:,} | {s['steps']} | {s['first']:.2f} | "
            f"{s['first_steps']:.2f} | {s['median']:.2f} | {s['last_decile']:.2f} | "
            f"{s['ratio']:.2f} | {s['max_denormals']:,} |")
    if args.census:
        lines += ["", ("Denormal values output by each operation in one more training step "
                       "(forward and backward; the largest five):"), ""]
        for result in results:
            top = ", ".join(f"{op} {n:,}" for op, n in list(result.census.items())[:5])
            total = sum(result.census.values())
            lines.append(f"- {result.config.name}: {total:,} in all" + (f" ({top})" if top else ""))
    return "\n".join(lines)


def write_json(results: list[Result], args: argparse.Namespace) -> None:
    if not args.json:
        return
    args.json.parent.mkdir(parents=True, exist_ok=True)
    partial = args.json.with_name(args.json.name + ".part")
    partial.write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(args).items() if k != "config_specs"},
        "machine": bench_common.describe_machine("cpu", args.threads),
        "results": [{**asdict(r), "summary": summarize(r)} for r in results],
    }, indent=1))
    partial.replace(args.json)


def plot(results: list[Result], path: Path, title: str) -> None:
    from predlearn.visualize import new_figure, save_figure

    figure, (times, counts) = new_figure(2, 1, figsize=(8, 6), sharex=True)
    for result in results:
        steps = range(1, len(result.seconds) + 1)
        style = "-" if result.config.flush else "--"
        times.plot(steps, result.seconds, style, label=result.config.name)
        counts.plot(steps, result.denormals, style, label=result.config.name)
    times.set_ylabel("step time (s)")
    times.set_ylim(bottom=0)
    times.set_title(title, fontsize=9)
    times.legend(fontsize=8)
    counts.set_yscale("symlog", linthresh=1)
    counts.set_ylim(bottom=0)
    counts.set_ylabel("denormals left in\ngradients + Adam state")
    counts.set_xlabel("training step")
    save_figure(figure, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    table = render(results, args)
    print(table)
    write_json(results, args)
    if args.plot:
        plot(results, args.plot, table.splitlines()[0])
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
