"""Where the time of one training step goes: the top operators by self time (torch.profiler).

    python benchmarks/profile_step.py --model predrnn --patch-size 4 --batch-size 8
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import predlearn


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
    args = parser.parse_args()

    torch.manual_seed(0)
    model = predlearn.create_model(args.model, frame_size=(args.frame_size,) * 2,
                                   hidden_channels=args.hidden, kernel_size=args.kernel_size,
                                   patch_size=args.patch_size)
    frames = torch.rand(args.batch_size, 10, 1, args.frame_size, args.frame_size)
    targets = torch.rand(args.batch_size, 10, 1, args.frame_size, args.frame_size)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            predictions = model(frames, 10).float()
        loss = F.l1_loss(predictions, targets) + F.mse_loss(predictions, targets)
        model.zero_grad(set_to_none=True)
        loss.backward()

    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(f"{args.model} {'x'.join(map(str, args.hidden))}, k{args.kernel_size}, "
          f"P={args.patch_size}, {args.frame_size}x{args.frame_size}, batch {args.batch_size}, "
          f"{args.precision}, 10 -> 10, forward + backward, {torch.get_num_threads()} threads")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
