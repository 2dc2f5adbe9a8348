"""The shipped model on another device: the same predictions as on the CPU, within rounding.

    python benchmarks/check_pretrained_device.py --device cuda --root data/mnist

Loads ``predlearn.load_pretrained(name)`` twice (CPU, ``--device``), predicts the first
``--sequences`` Moving MNIST-2 test sequences (the card's held-out digits 8,000-9,999) in fp32 on
both and in bf16 autocast on ``--device``, and prints the largest absolute pixel difference and
each one's per-frame MSE against the truth. Pixels are in [0, 1]; on an H200 fp32 predictions
agreed with the CPU's to 1.1e-3 (CUDA convolutions use TF32 by default) and bf16 ones to 1.1e-2,
with per-frame MSE equal to 0.03 (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from predlearn.datamodules import MovingMNISTDataModule
from predlearn.pretrained import load_pretrained


def per_frame_mse(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Squared error summed over a frame's pixels, averaged over frames and sequences."""
    return float((predictions.float() - targets.float()).pow(2).flatten(2).sum(-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="predrnn-mmnist2")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--root", default="data/mnist")
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    data = MovingMNISTDataModule(root=args.root, digits="mnist_test", download=False,
                                 num_digits=2, num_val=400, num_test=2000,
                                 batch_size=args.sequences)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    cpu_model = load_pretrained(args.name)
    observed, targets = cpu_model.split(batch, cpu_model.horizon)

    results: dict[str, float | str] = {"name": args.name, "sequences": len(batch)}
    with torch.inference_mode():
        start = time.perf_counter()
        on_cpu = cpu_model(observed)
        results["cpu_fp32_seconds"] = time.perf_counter() - start
        device_model = load_pretrained(args.name, map_location=args.device)
        observed_there = observed.to(args.device)
        device_model(observed_there)  # warm-up (kernel selection)
        for label, autocast in (("fp32", False), ("bf16", True)):
            with torch.autocast(device_type=torch.device(args.device).type,
                                dtype=torch.bfloat16, enabled=autocast):
                start = time.perf_counter()
                there = device_model(observed_there).float()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                results[f"{args.device}_{label}_seconds"] = time.perf_counter() - start
            there = there.cpu()
            results[f"max_abs_diff_{label}"] = float((there - on_cpu).abs().max())
            results[f"mse_{args.device}_{label}"] = per_frame_mse(there, targets)
    results["mse_cpu_fp32"] = per_frame_mse(on_cpu, targets)
    for key, value in results.items():
        print(f"{key:28s} {value}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
