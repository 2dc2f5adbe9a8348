"""PredRNN at the paper's sizes, one command: training time per 100 batches, inference time per
sequence, peak memory, efficiency against the bare convolutions, and data rate against step rate.

Workloads (PredRNN + ST-LSTM, batch 8, 10 -> 10 frames, closed loop, loss L1 + L2, Adam):

* ``mmnist``: Moving MNIST, 128 x 4, 5 x 5 filters, 64 x 64 frames (paper §4.1; the filter size is
  the authors' code's, the paper does not state it).
* ``mmnist-p4``: the same with ``patch_size=4`` (16 x 16 x 16 grid), as in the authors' code.
* ``radar``: radar echo, 2 x 128, 3 x 3 filters, 100 x 100 frames (paper §4.3; Table 2 reports
  117 s per 100 batches and 2,367 MB on a TITAN X).
* ``kth-p4``: KTH action frames, 128 x 4, 5 x 5 filters, 128 x 128 with patch 4 (32 x 32 x 16 grid,
  the authors' KTH set-up); with ``--horizon 20`` the paper's 10 -> 20 test rollout (§4.2), the
  long-horizon, large-frame case that activation checkpointing (``ckpt``) is for. No data rate.
* ``shipped``: the shipped model ``predrnn-mmnist2``, 3 x 48, 3 x 3 filters, 64 x 64, patch 4.
* ``tiny``: a seconds-long smoke configuration (used by the tests).

The training step is the product's: ``PredictiveModule.training_loss`` (the loss
``predlearn.module.sequence_loss``) and the optimizer of ``PredictiveModule.configure_optimizers``.

Variants are written as ``+``-joined tokens: ``fp32`` or ``bf16`` (autocast, as
``--trainer.precision=bf16-mixed``), ``textbook`` (the per-gate cells of ``benchmarks/reference_cells.py``
with the same weights instead of the fused cells), ``compile`` (``torch.compile`` of the predictor,
``PredictiveModule(compile=True)``),
``cl`` (``channels_last=True``) and ``ckpt`` (``checkpoint_steps=True``). Every variant of a
workload runs in its own fresh process; the parent drives them round-robin, one training
iteration each per round, so ratios between variants are measured side by side.

What each column is:

* train: seconds for one iteration (forward, loss, backward, Adam step) x 100, median [IQR].
* inference: one closed-loop forward of a batch in ``torch.inference_mode``, eval mode, divided by
  the batch size.
* peak memory: CUDA ``max_memory_allocated`` over the training iterations (total, and above the
  memory held before the first step). CPU: the peak of the tensor memory allocated during one
  training iteration (the last warm-up one) above what was allocated before it, from torch's
  profiler (``bench_common.peak_tensor_bytes``), and the process's peak resident set size. RSS is
  what the OS sees; with glibc's malloc it can be far above the tensors' needs (freed blocks are
  kept): preload jemalloc or tcmalloc (``LD_PRELOAD``) and it tracks them (docs/benchmarks.md).
* conv ceiling: every convolution call of one training step is recorded (module, input shape,
  whether the input needs a gradient); each distinct call is timed alone (forward and the
  backward the step needs: input gradient where required, weight and bias gradients), in the same
  precision and layout, and the times are summed over the calls. Efficiency = ceiling / step: the
  fraction of the step spent at the speed of the bare convolutions (1.0 would mean the cell's
  element-wise work, the rollout and the optimizer cost nothing). With ``ckpt`` the step runs
  every forward twice by design, which the ceiling does not count.
* conv GFLOP/s: the convolutions' arithmetic in one step (forward, weight gradient, and input
  gradient where needed, of the calls the ceiling times; recomputation not counted), as
  ``torch.utils.flop_counter.FlopCounterMode`` counts it (2 operations per multiply-add; biases
  not counted), divided by the step's time, and in brackets by the bare convolutions' time: how
  close the step, and the convolution library itself, come to the device's peak.
* data: batches per second of the workload's training loader (Moving MNIST: the on-the-fly
  stream over the bundled digits; radar: a generated prepared file in the real HDF5 layout),
  including the copy to the device, against the model's steps per second.

Examples::

    python benchmarks/bench_paper_sizes.py                              # GPU if present
    python benchmarks/bench_paper_sizes.py --device cpu --checkpoint-steps --iters 2
    python benchmarks/bench_paper_sizes.py --workloads radar --variants fp32 bf16 bf16+compile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bench_common

PAPER_TABLE2 = {"seconds_per_100": 117.0, "memory_mb": 2367.0}  # radar, PredRNN, TITAN X


@dataclass(frozen=True)
class Workload:
    title: str
    frame_size: tuple[int, int]
    hidden: tuple[int, ...]
    kernel: int
    patch: int
    data: str | None  # "mmnist" or "radar": which training loader the data rate measures


WORKLOADS = {
    "mmnist": Workload("Moving MNIST 128x4, k5, 64x64, P=1", (64, 64), (128,) * 4, 5, 1, "mmnist"),
    "mmnist-p4": Workload("Moving MNIST 128x4, k5, 64x64, P=4", (64, 64), (128,) * 4, 5, 4,
                          "mmnist"),
    "radar": Workload("radar 2x128, k3, 100x100, P=1", (100, 100), (128,) * 2, 3, 1, "radar"),
    "radar-p4": Workload("radar 2x128, k3, 100x100, P=4", (100, 100), (128,) * 2, 3, 4, "radar"),
    # KTH frames (paper §4.2) with the authors' patch 4; run with --horizon 20 for the test-time
    # 10 -> 20 rollout. No data rate: the KTH loader needs the videos.
    "kth-p4": Workload("KTH 128x4, k5, 128x128, P=4", (128, 128), (128,) * 4, 5, 4, None),
    # the shipped model predrnn-mmnist2 (configs/pretrained/predrnn-mmnist2.yaml)
    "shipped": Workload("shipped predrnn-mmnist2 3x48, k3, 64x64, P=4", (64, 64), (48,) * 3, 3, 4,
                        "mmnist"),
    "tiny": Workload("tiny 2x8, k3, 16x16, P=1", (16, 16), (8, 8), 3, 1, "mmnist"),
}
TOKENS = {"fp32", "bf16", "textbook", "compile", "cl", "ckpt"}


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str = "fp32"
    textbook: bool = False
    compile: bool = False
    channels_last: bool = False
    checkpoint_steps: bool = False


def parse_variant(text: str, checkpoint_all: bool = False) -> Variant:
    """``"bf16+compile"`` -> Variant(precision="bf16", compile=True)."""
    tokens = [token for token in text.lower().split("+") if token]
    unknown = set(tokens) - TOKENS
    if unknown or not tokens:
        raise ValueError(f"variant {text!r}: unknown token(s) {sorted(unknown)}; "
                         f"use {sorted(TOKENS)} joined by '+'")
    if {"fp32", "bf16"} <= set(tokens):
        raise ValueError(f"variant {text!r}: choose fp32 or bf16, not both")
    if "textbook" in tokens and "compile" in tokens:
        raise ValueError(f"variant {text!r}: textbook cells are an eager reference; no compile")
    checkpoint = "ckpt" in tokens or checkpoint_all
    name = "+".join(tokens) + ("+ckpt" if checkpoint and "ckpt" not in tokens else "")
    return Variant(name, "bf16" if "bf16" in tokens else "fp32", "textbook" in tokens,
                   "compile" in tokens, "cl" in tokens, checkpoint)


@dataclass
class Result:
    workload: str
    variant: Variant
    params: int = 0
    train: list[float] = field(default_factory=list)
    infer: list[float] = field(default_factory=list)
    memory: dict[str, float] = field(default_factory=dict)
    ceiling: float | None = None
    conv_calls: int = 0
    conv_flops: float = 0.0
    error: str | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["mmnist", "radar"],
                        choices=sorted(WORKLOADS))
    parser.add_argument("--variants", nargs="+", default=None,
                        help="default: fp32 textbook bf16 (cpu); fp32 textbook bf16 fp32+compile "
                             "bf16+compile (cuda). The first is the reference of the ratios.")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--batch-size", type=int, default=8)  # paper §4
    parser.add_argument("--context", type=int, default=10)  # paper §4.1, §4.3: 10 -> 10
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--iters", type=int, default=None,
                        help="timed training iterations per variant (default 20 cuda, 2 cpu)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations first (default 5 cuda, 1 cpu; compile: +2)")
    parser.add_argument("--infer-iters", type=int, default=None,
                        help="timed inference batches (default 20 cuda, 2 cpu)")
    parser.add_argument("--ceiling-reps", type=int, default=None,
                        help="timed repeats of each distinct convolution (default 10 cuda, 3 cpu)")
    parser.add_argument("--data-batches", type=int, default=100,
                        help="training-loader batches timed for the data rate")
    parser.add_argument("--checkpoint-steps", action="store_true",
                        help="add ckpt to every variant (needed for batch 8 at the paper's sizes "
                             "in 24 GiB of RAM)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    bench_common.add_denormal_option(parser)
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    args.device = bench_common.resolve_device(parser, args.device)
    cuda = args.device == "cuda"
    for name, gpu, cpu in (("iters", 20, 2), ("warmup", 5, 1), ("infer_iters", 20, 2),
                           ("ceiling_reps", 10, 3)):
        if getattr(args, name) is None:
            setattr(args, name, gpu if cuda else cpu)
    if args.variants is None:
        args.variants = (["fp32", "textbook", "bf16", "fp32+compile", "bf16+compile"] if cuda
                         else ["fp32", "textbook", "bf16"])
    try:
        args.variant_specs = [parse_variant(v, args.checkpoint_steps) for v in args.variants]
    except ValueError as error:
        parser.error(str(error))
    if min(args.iters, args.infer_iters, args.ceiling_reps, args.batch_size) < 1:
        parser.error("--iters, --infer-iters, --ceiling-reps and --batch-size must be >= 1")
    return args


# ---------------------------------------------------------------------------------------------
# Worker process: one (workload, variant)


def build_model(workload: Workload, variant: Variant, seed: int):
    """The production PredRNN, or its textbook twin with the same weights."""
    import torch

    import predlearn

    torch.manual_seed(seed)
    model = predlearn.create_model(
        "predrnn", frame_channels=1, frame_size=workload.frame_size,
        hidden_channels=list(workload.hidden), kernel_size=workload.kernel,
        patch_size=workload.patch, channels_last=variant.channels_last,
        checkpoint_steps=variant.checkpoint_steps,
    )
    if variant.textbook:
        reference_cells = bench_common.load_reference_cells()
        for index, cell in enumerate(model.cells):
            model.cells[index] = reference_cells.textbook_from_fused(cell)
        if variant.channels_last:
            model.to(memory_format=torch.channels_last)
    return model


def record_convolutions(model, run_forward) -> Counter:
    """Each distinct Conv2d call of one forward: (module, shape, needs grad, layout) -> count."""
    import torch
    from torch import nn

    calls: Counter = Counter()

    def hook(module, inputs, _output):
        x = inputs[0]
        layout = "cl" if (x.dim() == 4 and not x.is_contiguous()
                          and x.is_contiguous(memory_format=torch.channels_last)) else "nchw"
        calls[(module, tuple(x.shape), bool(x.requires_grad), layout)] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        run_forward()
    finally:
        for handle in handles:
            handle.remove()
    return calls


def counted_convolution_flops(run) -> int:
    """Floating-point operations of the convolutions ``run()`` performs, as
    ``torch.utils.flop_counter.FlopCounterMode`` counts them.

    Only the convolution operators of its per-operator breakdown (``get_flop_counts()``) are
    kept; matrix products (none in these models) are left out. A forward convolution counts
    2 x N x C_out x (output positions) x C_in / groups x (kernel area): a multiply and an add per
    weight and output element, biases not counted. Its backward (``convolution_backward``) counts
    as much for the weight gradient, and as much again for the input gradient where the input
    needs one. (Its weight-gradient count ignores ``groups``: no grouped convolutions here.)
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    per_operator = counter.get_flop_counts().get("Global", {})
    return sum(flops for operator, flops in per_operator.items() if "conv" in str(operator))


def _call_flops(module, shape: tuple[int, ...], needs_grad: bool) -> int:
    """``counted_convolution_flops`` of one call, forward and backward, on a copy of the module
    on the meta device: shapes only, nothing computes."""
    import copy

    import torch

    probe = copy.deepcopy(module).to("meta")
    x = torch.empty(shape, device="meta", requires_grad=needs_grad)

    def run() -> None:
        out = probe(x)
        # .backward rather than autograd.grad, which FlopCounterMode's module tracker refuses
        # for a leaf input
        out.backward(torch.empty_like(out))

    return counted_convolution_flops(run)


def convolution_flops(calls: Counter) -> float:
    """Floating-point operations of the recorded convolutions in one training step.

    Each distinct call's forward and the backward the step needs (the weight gradient, and the
    input gradient where the input needs one), counted by ``FlopCounterMode``
    (``counted_convolution_flops``), times the number of such calls: the arithmetic of what
    ``time_convolutions`` times.
    """
    return float(sum(count * _call_flops(module, shape, needs_grad)
                     for (module, shape, needs_grad, _layout), count in calls.items()))


def time_convolutions(calls: Counter, device, autocast, reps: int, sync) -> float:
    """Sum over the recorded calls of the time of one forward + the backward the step needs."""
    import torch

    total = 0.0
    for (module, shape, needs_grad, layout), count in calls.items():
        x = torch.randn(shape, device=device)
        if layout == "cl":
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(needs_grad)
        wrt = [p for p in module.parameters() if p.requires_grad] + ([x] if needs_grad else [])
        with autocast():
            grad_out = torch.randn_like(module(x))
        times = []
        for rep in range(reps + 1):  # the first is a warm-up
            sync()
            start = time.perf_counter()
            with autocast():
                out = module(x)
            torch.autograd.grad(out, wrt, grad_out)
            sync()
            if rep:
                times.append(time.perf_counter() - start)
        total += count * statistics.median(times)
    return total


def worker(workload: Workload, variant: Variant, args: argparse.Namespace, conn) -> None:
    """Build one configuration; answer "train", "train_profiled", "infer", "ceiling" and
    "memory" requests."""
    try:
        import torch

        from predlearn.module import PredictiveModule

        if args.threads:
            torch.set_num_threads(args.threads)
        bench_common.apply_denormal_mode(args)  # flushed unless --keep-denormals
        device = torch.device(args.device)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # as Trainer(benchmark=True)
        eager = build_model(workload, variant, args.seed).to(device)
        # The product's training step: loss L1 + L2 (paper §4), Adam at 1e-3 (paper §4).
        module = PredictiveModule(eager, context_frames=args.context, horizon=args.horizon,
                                  compile=variant.compile, compile_backend=args.compile_backend,
                                  metrics=())
        optimizer = module.configure_optimizers()
        generator = torch.Generator().manual_seed(args.seed + 1)
        frames = torch.rand(args.batch_size, args.context, 1, *workload.frame_size,
                            generator=generator).to(device)
        targets = torch.rand(args.batch_size, args.horizon, 1, *workload.frame_size,
                             generator=generator).to(device)
        batch = torch.cat([frames, targets], dim=1)  # (B, J + K, 1, H, W), as the loaders give
        del targets
        use_bf16 = variant.precision == "bf16"
        steps = 0

        def autocast():
            return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize()

        if cuda:
            sync()
            baseline = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            baseline = bench_common.max_rss_bytes()

        def train() -> float:
            nonlocal steps
            module.train()
            sync()
            start = time.perf_counter()
            with autocast():  # as Lightning's bf16-mixed: around the whole training step
                loss, _ = module.training_loss(batch, steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sync()
            steps += 1
            return time.perf_counter() - start

        tensor_peak: list[int] = []

        def train_profiled() -> float:
            """One training iteration whose peak CPU tensor memory is recorded (CPU only)."""
            if cuda:
                return train()
            seconds: list[float] = []
            tensor_peak.append(bench_common.peak_tensor_bytes(lambda: seconds.append(train())))
            return seconds[0]

        def infer() -> float:
            module.eval()
            sync()
            start = time.perf_counter()
            with torch.inference_mode(), autocast():
                module(frames, args.horizon)
            sync()
            return (time.perf_counter() - start) / args.batch_size

        def memory() -> dict[str, float]:
            peak = torch.cuda.max_memory_allocated() if cuda else bench_common.max_rss_bytes()
            record = {"peak": peak, "baseline": baseline, "delta": peak - baseline}
            if tensor_peak:
                record["tensors"] = max(tensor_peak)
            return record

        def ceiling() -> tuple[float, int, float]:
            module.train()

            def forward() -> None:
                with autocast():
                    eager(frames, args.horizon)

            calls = record_convolutions(eager, forward)
            seconds = time_convolutions(calls, device, autocast, args.ceiling_reps, sync)
            return seconds, sum(calls.values()), convolution_flops(calls)

        handlers = {"train": train, "train_profiled": train_profiled, "infer": infer,
                    "memory": memory, "ceiling": ceiling}
        conn.send(("ready", sum(p.numel() for p in eager.parameters())))
        while True:
            message = conn.recv()
            if message not in handlers:
                break
            conn.send((message, handlers[message]()))
    except Exception:  # noqa: BLE001 -- every failure is reported to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def start_worker(
    context, workload_name: str, variant: Variant, args
) -> bench_common.WorkerProcess:
    """One (workload, variant) process; its record is ``.result``."""
    return bench_common.WorkerProcess(context, worker, (WORKLOADS[workload_name], variant, args),
                                      Result(workload_name, variant))


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_workload(name: str, args: argparse.Namespace) -> list[Result]:
    """All variants of one workload, round-robin; the workers live only for this workload."""
    context = mp.get_context("spawn")
    workers = [start_worker(context, name, variant, args) for variant in args.variant_specs]
    try:
        for w in workers:
            w.wait_ready()
        for index in range(args.warmup + args.iters):
            timed = index >= args.warmup
            for w in workers:
                # torch.compile compiles (and may recompile once) in its first calls.
                repeats = 3 if index == 0 and w.result.variant.compile else 1
                for repeat in range(repeats):
                    # The last warm-up iteration also records the peak CPU tensor memory.
                    profiled = index == args.warmup - 1 and repeat == repeats - 1
                    seconds = w.request("train_profiled" if profiled else "train")
                if seconds is None:
                    continue
                if timed:
                    w.result.train.append(seconds)
                log(f"[{name} {w.result.variant.name}] {'timed' if timed else 'warm-up'} "
                    f"train {index + 1}/{args.warmup + args.iters}: {seconds:.3f} s")
        for w in workers:
            if args.warmup == 0:  # no warm-up iteration to record the tensor memory in
                w.request("train_profiled")
            memory = w.request("memory")
            if memory is not None:
                w.result.memory = memory
        for index in range(args.infer_iters + 1):  # the first is a warm-up
            for w in workers:
                seconds = w.request("infer")
                if seconds is not None and index:
                    w.result.infer.append(seconds)
        for w in workers:
            if w.result.variant.textbook or w.result.error:
                continue
            log(f"[{name} {w.result.variant.name}] timing the bare convolutions")
            answer = w.request("ceiling")
            if answer is not None:
                w.result.ceiling, w.result.conv_calls, w.result.conv_flops = answer
    finally:
        for w in workers:
            w.stop()
    return [w.result for w in workers]


# ---------------------------------------------------------------------------------------------
# Data rate


def write_synthetic_radar(path: Path, frames: int, size: tuple[int, int]) -> Path:
    """A prepared radar file (``predlearn prepare radar`` layout) of random uint8 frames."""
    import h5py
    import numpy as np

    from predlearn.datamodules.sealed import crc32, seal
    from predlearn.units import ValueMapping

    rng = np.random.default_rng(0)
    content = {"frames": rng.integers(0, 256, (frames, *size), dtype=np.uint8),
               "timestamps": 1_500_000_000 + 360 * np.arange(frames, dtype=np.int64)}  # 6 min
    with h5py.File(path, "w") as h5:
        for name, array in content.items():
            h5[name] = array
        # the value mapping `predlearn prepare radar` records by default; the radar data
        # module refuses a file without it
        mapping = ValueMapping()
        h5.attrs.update({"dbz_min": mapping.low, "dbz_max": mapping.high,
                         "zr_a": mapping.zr_a, "zr_b": mapping.zr_b})
        seal(h5, {name: crc32(array) for name, array in content.items()})  # written last
    return path


def training_loader(workload: Workload, args: argparse.Namespace, folder: Path):
    """The training loader the workload's data module gives, at the benchmark's batch size."""
    if workload.data == "radar":
        from predlearn.datamodules import RadarDataModule

        path = write_synthetic_radar(folder / "radar.h5", 1200, workload.frame_size)
        module = RadarDataModule(path=str(path), batch_size=args.batch_size,
                                 context_frames=args.context, horizon=args.horizon)
        module.setup("fit")
        return module.train_dataloader()
    from predlearn.datamodules.mnist import load_digits
    from predlearn.datamodules.moving_mnist import MovingMNISTStream
    from predlearn.datamodules.stream import ResumableStreamLoader

    stream = MovingMNISTStream(
        load_digits("bundled").train, args.data_batches * args.batch_size,
        sequence_length=args.context + args.horizon, batch_size=args.batch_size, rank=0,
        world_size=1,
    )
    return ResumableStreamLoader(stream, num_workers=0)


def data_rate(workload: Workload, args: argparse.Namespace) -> float:
    """Training-loader batches per second, including the copy to the device."""
    import torch

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        with contextlib.redirect_stdout(sys.stderr):  # the data module's notes; stdout: tables
            loader = training_loader(workload, args, Path(folder))
        batches = 0
        start = time.perf_counter()
        while batches < args.data_batches:
            for batch in loader:
                batch.to(device)
                batches += 1
                if batches == args.data_batches:
                    break
        if device.type == "cuda":
            torch.cuda.synchronize()
        return batches / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Report


def _fmt_iqr(values: list[float], scale: float, digits: int) -> str:
    q1, median, q3 = bench_common.quartiles(values)
    return f"{median * scale:.{digits}f} [{q1 * scale:.{digits}f}, {q3 * scale:.{digits}f}]"


def summarize(results: list[Result], rates: dict[str, float], args) -> dict:
    """Numbers for the tables (and the JSON file)."""
    rows = []
    for result in results:
        reference = next(r for r in results if r.workload == result.workload)
        row = {"workload": result.workload, "variant": result.variant.name,
               "params": result.params, "error": result.error}
        if result.train:
            step = statistics.median(result.train)
            row["train_s_per_100"] = 100 * step
            row["train_iqr"] = [100 * q for q in bench_common.quartiles(result.train)[::2]]
            row["steps_per_s"] = 1 / step
            if result is not reference and reference.train:
                paired = [a / b for a, b in zip(result.train, reference.train)]
                row["ratio_to_reference"] = statistics.median(paired)
            if result.ceiling is not None:
                row["ceiling_s_per_100"] = 100 * result.ceiling
                row["efficiency"] = result.ceiling / step
                row["conv_calls"] = result.conv_calls
                row["conv_tflop_per_step"] = result.conv_flops / 1e12
                row["step_conv_gflops"] = result.conv_flops / step / 1e9
                row["bare_conv_gflops"] = result.conv_flops / result.ceiling / 1e9
        if result.infer:
            row["infer_ms_per_sequence"] = 1000 * statistics.median(result.infer)
        if result.memory:
            row["peak_gib"] = result.memory["peak"] / 2**30
            row["peak_above_baseline_gib"] = result.memory["delta"] / 2**30
            if "tensors" in result.memory:
                row["peak_tensor_gib"] = result.memory["tensors"] / 2**30
        rows.append(row)
    textbook = {}
    for row in rows:
        variant = next(v for v in args.variant_specs if v.name == row["variant"])
        if variant.textbook and "ratio_to_reference" in row:
            textbook[row["workload"]] = row["ratio_to_reference"]
    return {"rows": rows, "data_batches_per_s": rates, "textbook_over_fused": textbook,
            "reference_variant": args.variant_specs[0].name}


def render(summary: dict, results: list[Result], args) -> str:
    cuda = args.device == "cuda"
    memory_title = ("peak GPU memory GiB (above start)" if cuda
                    else "peak tensor memory GiB above start (process peak RSS GiB)")
    reference = summary["reference_variant"]
    lines = [
        (f"PredRNN, batch {args.batch_size}, {args.context} -> {args.horizon} frames, "
         f"L1 + L2, Adam; device {args.device}; {args.warmup} warm-up + {args.iters} timed "
         f"iterations per variant, round-robin; inference {args.infer_iters} batches; "
         f"convolutions {args.ceiling_reps} repeats each"),
        *bench_common.describe_machine(args.device, args.threads, args.keep_denormals),
        f"date: {time.strftime('%Y-%m-%d')}",
        "",
        (f"| workload | variant | train s / 100 batches, median [IQR] | time / {reference} "
         f"| inference ms / sequence | {memory_title} | conv ceiling s / 100 batches "
         "| efficiency (ceiling / step) | conv GFLOP/s: step (bare) |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r.workload, r.variant.name): r for r in results}
    for row in summary["rows"]:
        result = by_key[(row["workload"], row["variant"])]
        if row["error"] and not result.train:
            lines.append(f"| {row['workload']} | {row['variant']} | failed: {row['error']} "
                         "| | | | | | |")
            continue
        train = _fmt_iqr(result.train, 100, 1) if result.train else "n/a"
        ratio = (f"{row['ratio_to_reference']:.2f}" if "ratio_to_reference" in row
                 else ("1 (reference)" if result.train else "n/a"))
        infer = f"{row['infer_ms_per_sequence']:.1f}" if "infer_ms_per_sequence" in row else "n/a"
        if "peak_tensor_gib" in row:
            memory = f"{row['peak_tensor_gib']:.2f} ({row['peak_gib']:.2f})"
        elif "peak_gib" in row:
            memory = f"{row['peak_gib']:.2f} ({row['peak_above_baseline_gib']:.2f})"
        else:
            memory = "n/a"
        ceiling = f"{row['ceiling_s_per_100']:.1f}" if "ceiling_s_per_100" in row else "-"
        efficiency = f"{row['efficiency']:.2f}" if "efficiency" in row else "-"
        rate = (f"{row['step_conv_gflops']:.0f} ({row['bare_conv_gflops']:.0f})"
                if "step_conv_gflops" in row else "-")
        lines.append(f"| {row['workload']} | {row['variant']} | {train} | {ratio} | {infer} "
                     f"| {memory} | {ceiling} | {efficiency} | {rate} |")
    if summary["data_batches_per_s"]:  # kth-p4 alone has no loader to time
        lines += ["", ("| workload | training loader batches / s | model steps / s (variant) "
                       "| loader / model |"), "|---|---|---|---|"]
    for name, rate in summary["data_batches_per_s"].items():
        steps = [(row["steps_per_s"], row["variant"]) for row in summary["rows"]
                 if row["workload"] == name and "steps_per_s" in row]
        if not steps:
            lines.append(f"| {name} | {rate:.1f} | n/a | n/a |")
            continue
        fastest, variant = max(steps)
        lines.append(f"| {name} | {rate:.1f} | {fastest:.4g} ({variant}) | {rate / fastest:,.0f}x |")
    for name, ratio in summary["textbook_over_fused"].items():
        lines.append(f"\n{name}: textbook / fused time = {ratio:.2f} (median of paired rounds; "
                     "above 1: the fused cells are faster)")
    memory_key = "peak_gib" if cuda else "peak_tensor_gib"
    paper_setup = (args.batch_size, args.context, args.horizon) == (8, 10, 10)  # Table 2's
    radar = [row for row in summary["rows"] if row["workload"] == "radar" and memory_key in row
             and "train_s_per_100" in row] if paper_setup else []
    if radar:
        lines.append("\nradar against the paper's Table 2 (PredRNN on a TITAN X: 117 s / 100 "
                     "batches, 2,367 MB):")
        for row in radar:
            memory_mb = row[memory_key] * 2**30 / 2**20
            where = ("GPU memory allocated" if cuda
                     else "CPU tensors above the step's start: weights and Adam state not included")
            lines.append(f"  {row['variant']}: time x{row['train_s_per_100'] / 117.0:.2f}, "
                         f"memory x{memory_mb / PAPER_TABLE2['memory_mb']:.2f} ({where})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results: list[Result] = []
    rates: dict[str, float] = {}
    for name in args.workloads:
        log(f"== {name}: {WORKLOADS[name].title}")
        if WORKLOADS[name].data is not None:
            rates[name] = data_rate(WORKLOADS[name], args)
            log(f"[{name}] training loader: {rates[name]:.1f} batches/s")
        results += run_workload(name, args)
        # The table so far, in case a later workload is interrupted.
        log(render(summarize(results, rates, args), results, args))
    summary = summarize(results, rates, args)
    print(render(summary, results, args))
    print(f"\nwall time: {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(
            {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                      if k != "variant_specs"},
             "variants": [asdict(v) for v in args.variant_specs], **summary}, indent=2))
    return 1 if all(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
