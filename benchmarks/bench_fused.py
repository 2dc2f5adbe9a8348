"""Fused production cells against their textbook (per-gate) forms, inside a whole rollout.

For each configuration the script builds the production model (``predlearn.create_model``) and an
identical twin whose cells are replaced by the textbook cells of ``reference_cells.py`` (in this
folder) with the weights copied (``model.cells[i] = textbook``). The first warm-up forward of each
is compared (float32 tolerance), then both are timed side by side, interleaved round-robin in one
process (fused, textbook, fused, textbook, ...), so that the noise of a shared machine falls on
both.

One timed iteration: forward over ``context`` observed frames and ``horizon`` predicted frames
(closed loop), the product's training loss against random targets
(``predlearn.module.sequence_loss``: L1 + L2, paper §4), backward (no optimizer step). The bare
predictors are called, not ``PredictiveModule``: the cells are what is compared. The table gives
the median seconds per iteration (with the interquartile range) and the ratio textbook / fused.

Examples::

    python benchmarks/bench_fused.py                           # every size, CPU defaults
    python benchmarks/bench_fused.py --sizes mmnist-p4 radar --iters 5 --threads 2
    python benchmarks/bench_fused.py --context 10 --horizon 10  # the paper's 20-frame rollout
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import bench_common
import torch

import predlearn
from predlearn.module import sequence_loss


@dataclass(frozen=True)
class Size:
    model: str
    frame_size: tuple[int, int]
    hidden: tuple[int, ...]
    kernel: int
    patch: int
    batch: int
    context: int
    horizon: int
    note: str


SIZES = {
    # Moving MNIST, 128 x 4, kernel 5 (the authors' code): full 64x64 grid at batch 1 (batch 8
    # does not fit in 24 GiB at this size), and patch 4 (16x16x16 grid) at batch 8.
    "mmnist-b1": Size("predrnn", (64, 64), (128,) * 4, 5, 1, 1, 10, 10, "Moving MNIST"),
    "mmnist-p4": Size("predrnn", (64, 64), (128,) * 4, 5, 4, 8, 10, 10, "Moving MNIST"),
    # Radar echo (paper §4.3): 100x100 frames, 3x3 filters, 10 observed, 10 predicted.
    "radar": Size("predrnn", (100, 100), (128,) * 2, 3, 1, 8, 10, 10, "radar"),
    # The other two cells at the Moving MNIST patch-4 size.
    "convlstm-p4": Size("convlstm", (64, 64), (128,) * 4, 5, 4, 8, 10, 10, "Moving MNIST"),
    "predrnn_m-p4": Size("predrnn_m", (64, 64), (128,) * 4, 5, 4, 8, 10, 10, "Moving MNIST"),
    # A narrow stack (32 x 4) on the patch-4 grid: small convolutions, where per-call overhead
    # weighs more than arithmetic.
    "narrow-p4": Size("predrnn", (64, 64), (32,) * 4, 5, 4, 8, 10, 10, "Moving MNIST"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=list(SIZES),
                        help="configurations to run (default: all)")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per model")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's choice)")
    bench_common.add_denormal_option(parser)
    parser.add_argument("--context", type=int, default=None,
                        help="observed frames, overriding every size's own (paper: 10)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="predicted frames, overriding every size's own (paper: 10)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch, overriding every size's own")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build_pair(size: Size, reference_cells, seed: int):
    """The production model and its textbook-cell twin with the same weights."""
    kwargs = {"frame_channels": 1, "frame_size": size.frame_size,
              "hidden_channels": size.hidden, "kernel_size": size.kernel,
              "patch_size": size.patch}
    torch.manual_seed(seed)
    fused = predlearn.create_model(size.model, **kwargs)
    with torch.no_grad():  # peepholes start at zero; give every weight something to carry
        for parameter in fused.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    textbook = predlearn.create_model(size.model, **kwargs)
    textbook.load_state_dict(fused.state_dict())
    for index, cell in enumerate(fused.cells):
        textbook.cells[index] = reference_cells.textbook_from_fused(cell)
    return fused, textbook


def iteration(model, frames, targets, horizon: int) -> tuple[float, torch.Tensor]:
    """One forward + backward; returns (seconds, predictions)."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    predictions = model(frames, horizon=horizon)
    sequence_loss(predictions, targets).backward()
    return time.perf_counter() - start, predictions.detach()


def median_iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], 0.0
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), quartiles[2] - quartiles[0]


def run_size(name: str, size: Size, args: argparse.Namespace, reference_cells) -> dict:
    context = args.context or size.context
    horizon = args.horizon or size.horizon
    batch = args.batch_size or size.batch
    fused, textbook = build_pair(size, reference_cells, args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    frames = torch.rand(batch, context, 1, *size.frame_size, generator=generator)
    targets = torch.rand(batch, horizon, 1, *size.frame_size, generator=generator)
    models = {"fused": fused, "textbook": textbook}
    times: dict[str, list[float]] = {key: [] for key in models}
    max_diff = None
    for step in range(args.warmup + args.iters):
        outputs, seconds = {}, {}
        for key, model in models.items():  # round-robin: fused, textbook, fused, ...
            seconds[key], outputs[key] = iteration(model, frames, targets, horizon)
            if step >= args.warmup:
                times[key].append(seconds[key])
        if step == 0:
            torch.testing.assert_close(outputs["textbook"], outputs["fused"],
                                       rtol=1e-4, atol=1e-5)
            max_diff = (outputs["textbook"] - outputs["fused"]).abs().max().item()
        kind = "warm-up" if step < args.warmup else "timed"
        print(f"  {name} {kind} {step}: " + ", ".join(
            f"{key} {seconds[key]:.2f}s" for key in models), file=sys.stderr, flush=True)
    fused_med, fused_iqr = median_iqr(times["fused"])
    tb_med, tb_iqr = median_iqr(times["textbook"])
    label = (f"{size.model} {size.note} {'x'.join(map(str, size.hidden))}, "
             f"{size.frame_size[0]}x{size.frame_size[1]}, k{size.kernel}, P={size.patch}, "
             f"B={batch}, T={context}+{horizon}")
    return {"label": label, "fused": (fused_med, fused_iqr), "textbook": (tb_med, tb_iqr),
            "ratio": tb_med / fused_med, "max_diff": max_diff}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_common.apply_denormal_mode(args)  # flushed unless --keep-denormals
    reference_cells = bench_common.load_reference_cells()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, iters {args.iters}, "
          f"warmup {args.warmup}", file=sys.stderr)
    rows = []
    for name in args.sizes:
        rows.append(run_size(name, SIZES[name], args, reference_cells))
    print("| configuration | fused s/iter (IQR) | textbook s/iter (IQR) | textbook / fused "
          "| max abs diff |")
    print("|---|---|---|---|---|")
    for row in rows:
        (fm, fi), (tm, ti) = row["fused"], row["textbook"]
        print(f"| {row['label']} | {fm:.3f} ({fi:.3f}) | {tm:.3f} ({ti:.3f}) "
              f"| {row['ratio']:.2f} | {row['max_diff']:.1e} |")


if __name__ == "__main__":
    main()
