"""Training-step time and peak memory of PredRNN with and without patching (``patch_size``).

Each configuration (model, patch size) lives in its own worker process, created fresh with the
``spawn`` start method. The parent drives the workers round-robin, one training iteration at a
time (P=1, P=4, P=1, P=4, ...), so that the noise of a shared machine falls on every configuration
alike, and the ratio of two configurations is measured side by side.

One timed iteration is: forward over ``context`` observed frames and ``horizon`` predicted frames
(closed loop), loss L1 + L2 against random targets, backward, and an Adam step (``zero_grad`` +
``step``; leave the step out with ``--no-optimizer-step``): the product's training step,
``PredictiveModule.training_loss`` and the optimizer of ``PredictiveModule.configure_optimizers``.

Peak memory, measured in each worker for its own configuration only:

* CUDA: ``torch.cuda.max_memory_allocated`` (the peak is reset after the model, optimizer and data
  are on the device; that baseline, ``torch.cuda.memory_allocated``, is reported too).
* CPU: the peak resident set size of the worker process, ``resource.getrusage(RUSAGE_SELF)
  .ru_maxrss``; reported as the total and as the increase over a baseline taken after imports,
  model, optimizer and data creation (the training-step memory: activations kept for backward,
  gradients, Adam state and the allocator's workspace).

Examples::

    python benchmarks/bench_predrnn.py                       # CPU, PredRNN 128x4, P=1 and P=4
    python benchmarks/bench_predrnn.py --device cuda --precision bf16
    python benchmarks/bench_predrnn.py --models convlstm predrnn_m predrnn --markdown
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import bench_common


@dataclass
class Config:
    model: str
    patch_size: int

    @property
    def label(self) -> str:
        return f"{self.model} P={self.patch_size}"


@dataclass
class Result:
    config: Config
    params: int = 0
    times: list[float] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["predrnn"],
                        help="registered model names (e.g. convlstm predrnn_m predrnn)")
    parser.add_argument("--patch-sizes", nargs="+", type=int, default=[1, 4],
                        help="patch sizes to compare; ratios are against the first")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed iterations per configuration (default: 20 cuda, 5 cpu)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations per configuration first (default: 5 cuda, 1 cpu)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--context", type=int, default=10, help="observed frames J")
    parser.add_argument("--horizon", type=int, default=10, help="predicted frames K")
    parser.add_argument("--frame-size", type=int, nargs=2, default=[64, 64],
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--frame-channels", type=int, default=1)
    parser.add_argument("--config-dir", default=None,
                        help="build each model from <dir>/<model>.yaml (e.g. configs/mmnist, "
                             "the paper sizes) instead of --hidden/--kernel-size")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128] * 4,
                        help="hidden channels per layer, bottom first")
    parser.add_argument("--kernel-size", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads in each worker (default: torch's own)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: torch.autocast around forward and loss")
    bench_common.add_denormal_option(parser)
    parser.add_argument("--no-optimizer-step", action="store_true",
                        help="time forward + backward only (no Adam zero_grad/step)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    args.device = bench_common.resolve_device(parser, args.device)
    if args.iters is None:
        args.iters = 20 if args.device == "cuda" else 5
    if args.warmup is None:
        args.warmup = 5 if args.device == "cuda" else 1
    if args.iters < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--iters and --batch-size must be at least 1, --warmup at least 0")
    return args


def model_arguments(config: Config, args: argparse.Namespace) -> dict:
    """Constructor arguments: from ``--config-dir`` (``<dir>/<model>.yaml``) or the flags."""
    if args.config_dir:
        from omegaconf import OmegaConf

        path = Path(args.config_dir) / f"{config.model}.yaml"
        predictor = OmegaConf.to_container(OmegaConf.load(path))["model"]["predictor"]
        kwargs = dict(predictor.get("init_args", {}))
        if config.patch_size != 1:
            kwargs["patch_size"] = config.patch_size
        args.frame_channels = kwargs.get("frame_channels", args.frame_channels)
        args.frame_size = list(kwargs.get("frame_size", args.frame_size))
        return kwargs
    return {
        "frame_channels": args.frame_channels,
        "frame_size": tuple(args.frame_size),
        "hidden_channels": list(args.hidden),
        "kernel_size": args.kernel_size,
        "patch_size": config.patch_size,
    }


def worker(config: Config, args: argparse.Namespace, conn) -> None:
    """Build one configuration and run one training iteration per "step" message."""
    try:
        import torch

        import predlearn
        from predlearn.module import PredictiveModule

        if args.threads:
            torch.set_num_threads(args.threads)
        bench_common.apply_denormal_mode(args)  # flushed unless --keep-denormals
        torch.manual_seed(args.seed)
        device = torch.device(args.device)
        model = predlearn.create_model(config.model, **model_arguments(config, args)).to(device)
        # The product's training step: loss L1 + L2 (paper §4), Adam at 1e-3 (paper §4).
        module = PredictiveModule(model, context_frames=args.context, horizon=args.horizon,
                                  metrics=())
        module.train()
        optimizer = module.configure_optimizers()
        shape = (args.batch_size, args.context, args.frame_channels, *args.frame_size)
        frames = torch.rand(shape, device=device)
        targets = torch.rand(
            (args.batch_size, args.horizon, args.frame_channels, *args.frame_size), device=device
        )
        batch = torch.cat([frames, targets], dim=1)  # (B, J + K, C, H, W), as the loaders give
        del frames, targets
        steps = 0
        params = sum(p.numel() for p in model.parameters())
        use_autocast = args.precision == "bf16"
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            baseline = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            baseline = bench_common.max_rss_bytes()

        def iteration() -> float:
            nonlocal steps
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
                loss, _ = module.training_loss(batch, steps)
            if not args.no_optimizer_step:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not args.no_optimizer_step:
                optimizer.step()
            else:
                model.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
            steps += 1
            return time.perf_counter() - start

        conn.send(("ready", params))
        while True:
            message = conn.recv()
            if message == "step":
                conn.send(("step", iteration()))
            elif message == "memory":
                if cuda:
                    peak = torch.cuda.max_memory_allocated()
                    memory = {"baseline": baseline, "peak": peak, "delta": peak - baseline}
                else:
                    peak = bench_common.max_rss_bytes()
                    memory = {"baseline": baseline, "peak": peak, "delta": peak - baseline}
                conn.send(("memory", memory))
            else:
                break
    except Exception:  # noqa: BLE001 -- any failure goes to the parent, which reports it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def start_worker(
    context, config: Config, args: argparse.Namespace
) -> bench_common.WorkerProcess:
    """One configuration's process; its record is ``.result``."""
    return bench_common.WorkerProcess(context, worker, (config, args), Result(config))


def run(args: argparse.Namespace) -> list[Result]:
    configs = [Config(m, p) for m in args.models for p in args.patch_sizes]
    context = mp.get_context("spawn")
    workers = [start_worker(context, config, args) for config in configs]
    for w in workers:  # the workers build their models in parallel
        w.wait_ready()
    total = args.warmup + args.iters
    try:
        for round_index in range(total):
            timed = round_index >= args.warmup
            for w in workers:  # round-robin: every configuration once per round
                seconds = w.request("step")
                if seconds is None:
                    continue
                if timed:
                    w.result.times.append(seconds)
                phase = "timed" if timed else "warm-up"
                print(f"[round {round_index + 1}/{total} {phase}] {w.result.config.label}: "
                      f"{seconds:.3f} s", file=sys.stderr, flush=True)
        for w in workers:
            memory = w.request("memory")
            if memory is not None:
                w.result.memory = memory
    finally:
        for w in workers:
            w.stop()
    return [w.result for w in workers]


def paired_ratios(result: Result, reference: Result) -> list[float]:
    """Per round: this configuration's time over the reference's (same round, side by side)."""
    return [a / b for a, b in zip(result.times, reference.times)]


def memory_method(args: argparse.Namespace) -> str:
    if args.device == "cuda":
        return ("torch.cuda.max_memory_allocated per worker process; delta = peak - allocated after "
                "model/optimizer/data creation")
    return ("peak RSS (getrusage ru_maxrss) of a fresh worker process per configuration; "
            "delta = peak - RSS after imports and model/optimizer/data creation")


def report(results: list[Result], args: argparse.Namespace) -> str:
    step = "forward + backward" + ("" if args.no_optimizer_step else " + Adam step")
    header = [
        (f"{', '.join(args.models)} {'x'.join(map(str, args.hidden))}, "
         f"{args.frame_size[0]}x{args.frame_size[1]}x{args.frame_channels} frames, "
         f"batch {args.batch_size}, {args.context} -> {args.horizon} frames, loss L1+L2, "
         f"kernel {args.kernel_size}"),
        (f"device {args.device}, precision {args.precision}, timed: {step}; "
         f"{args.warmup} warm-up + {args.iters} timed iterations per configuration, round-robin"),
        *bench_common.describe_machine(args.device, args.threads, args.keep_denormals),
        f"memory: {memory_method(args)}",
    ]
    gib = 2**30
    rows = []
    for result in results:
        reference = next(r for r in results if r.config.model == result.config.model)
        row = {"config": result.config.label, "params": f"{result.params:,}"}
        if result.times:
            q1, median, q3 = bench_common.quartiles(result.times)
            row["time"] = f"{median:.3f} [{q1:.3f}, {q3:.3f}]"
        else:
            row["time"] = result.error or "n/a"
        if result.memory:
            row["delta"] = f"{result.memory['delta'] / gib:.2f}"
            row["peak"] = f"{result.memory['peak'] / gib:.2f}"
        else:
            row["delta"] = row["peak"] = "n/a"
        if result is reference:
            row["ratio"] = "1 (reference)"
        elif result.times and reference.times:
            ratios = paired_ratios(result, reference)
            q1, median, q3 = bench_common.quartiles(ratios)
            speedup = statistics.median(reference.times) / statistics.median(result.times)
            row["ratio"] = f"{median:.3f} [{q1:.3f}, {q3:.3f}] (speed-up {speedup:.1f}x)"
        else:
            row["ratio"] = "n/a"
        rows.append(row)
    ref_patch = args.patch_sizes[0]
    columns = [
        ("config", "configuration"),
        ("params", "params"),
        ("time", "time/iter s, median [IQR]"),
        ("delta", "peak mem - baseline GiB"),
        ("peak", "peak mem total GiB"),
        ("ratio", f"time ratio vs P={ref_patch}, median of rounds [IQR]"),
    ]
    if args.markdown:
        lines = ["| " + " | ".join(title for _, title in columns) + " |",
                 "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(row[key] for key, _ in columns) + " |" for row in rows]
    else:
        widths = [max(len(title), *(len(row[key]) for row in rows)) for key, title in columns]
        lines = ["  ".join(title.ljust(w) for (_, title), w in zip(columns, widths))]
        lines += ["  ".join(row[key].ljust(w) for (key, _), w in zip(columns, widths))
                  for row in rows]
    per_iteration = []
    for result in results:
        if result.times:
            values = ", ".join(f"{t:.3f}" for t in result.times)
            per_iteration.append(f"{result.config.label} times (s): {values}")
    return "\n".join([*header, "", *lines, "", *per_iteration])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    results = run(args)
    print(report(results, args))
    print(f"\nwall time of the whole run: {time.perf_counter() - start:.0f} s")
    return 1 if all(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
