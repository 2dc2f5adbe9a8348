"""Where the time of one training step goes: the top operators by self time (torch.profiler).

The step is the product's: ``PredictiveModule.training_loss`` (loss L1 + L2, paper §4) and the
backward pass (no optimizer step).

    python benchmarks/profile_step.py --model predrnn --patch-size 4 --batch-size 8
    python benchmarks/profile_step.py --device cuda --precision bf16 --hidden 128 128 \
        --kernel-size 3 --patch-size 1 --frame-size 100      # radar, on a GPU
"""

from __future__ import annotations

import argparse

import bench_common
import torch
from torch.profiler import ProfilerActivity, profile

import predlearn
from predlearn.module import PredictiveModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="predrnn")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128] * 4)
    parser.add_argument("--kernel-size", type=int, default=5)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--frame-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    bench_common.add_denormal_option(parser)
    args = parser.parse_args()
    bench_common.apply_denormal_mode(args)  # flushed unless --keep-denormals
    device = torch.device(bench_common.resolve_device(parser, args.device))

    torch.manual_seed(0)
    model = predlearn.create_model(args.model, frame_size=(args.frame_size,) * 2,
                                   hidden_channels=args.hidden, kernel_size=args.kernel_size,
                                   patch_size=args.patch_size).to(device)
    module = PredictiveModule(model, context_frames=10, horizon=10, metrics=())
    module.train()
    # 10 observed + 10 target frames, as the data modules give them
    batch = torch.rand(args.batch_size, 20, 1, args.frame_size, args.frame_size, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss, _ = module.training_loss(batch, 0)
        model.zero_grad(set_to_none=True)
        loss.backward()

    step()  # warm-up
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    print(f"{args.model} {'x'.join(map(str, args.hidden))}, k{args.kernel_size}, "
          f"P={args.patch_size}, {args.frame_size}x{args.frame_size}, batch {args.batch_size}, "
          f"{args.precision}, 10 -> 10, forward + backward, {torch.get_num_threads()} threads")
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort_by, row_limit=args.rows))


if __name__ == "__main__":
    main()
