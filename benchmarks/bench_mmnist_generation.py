"""How fast Moving MNIST training sequences are generated (sequences per second).

Measures, with the bundled digits (so it runs offline):
- the numpy generator alone (uint8 frames, chunks of 64 sequences, as the training stream draws),
- the training stream (``MovingMNISTStream``: generation plus conversion to float32 tensors),
- a DataLoader over the stream with batch size 8 and 0 or 2 worker processes,
for 2 and 3 digits, 20 frames of 64 x 64. Prints a Markdown table. Usage::

    python benchmarks/bench_mmnist_generation.py [--sequences 20000] [--loader-sequences 8000]

Each figure is the median of ``--repeats`` runs (default 3). The loader figures include starting
the worker processes, as an epoch does; with workers, moving float32 batches between processes
(about 2.6 MB per batch of 8) rather than generation limits the rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from predlearn.datamodules.mnist import load_digits
from predlearn.datamodules.moving_mnist import MovingMNISTStream, generate_moving_mnist
from predlearn.datamodules.stream import ResumableStreamLoader


def rate_generator(digits: np.ndarray, num_digits: int, count: int, chunk: int = 64) -> float:
    rng = np.random.default_rng(0)
    generate_moving_mnist(digits, chunk, rng, num_digits)  # warm up
    start = time.perf_counter()
    done = 0
    while done < count:
        generate_moving_mnist(digits, chunk, rng, num_digits)
        done += chunk
    return done / (time.perf_counter() - start)


def rate_stream(digits: np.ndarray, num_digits: int, count: int) -> float:
    stream = MovingMNISTStream(digits, count, num_digits=num_digits, batch_size=8, rank=0,
                               world_size=1)
    start = time.perf_counter()
    seen = sum(len(batch) for batch in stream)
    return seen / (time.perf_counter() - start)


def rate_loader(digits: np.ndarray, num_digits: int, count: int, workers: int) -> float:
    batch_size = 8  # paper §4
    stream = MovingMNISTStream(
        digits, count, num_digits=num_digits, batch_size=batch_size, rank=0, world_size=1
    )
    loader = ResumableStreamLoader(stream, num_workers=workers)  # what training uses
    start = time.perf_counter()  # includes starting the workers, as an epoch would
    seen = sum(len(batch) for batch in loader)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=20000, help="per generator measurement")
    parser.add_argument("--loader-sequences", type=int, default=8000, help="per loader run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is shown")
    args = parser.parse_args()

    def median(measure, *measure_args) -> float:
        return float(np.median([measure(*measure_args) for _ in range(args.repeats)]))

    torch.set_num_threads(1)
    digits = load_digits("bundled").train
    cpu = platform.processor() or platform.machine()
    print(
        f"Moving MNIST generation, 20 frames of 64 x 64, bundled digits; {cpu}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, numpy {np.__version__}"
    )
    print()
    print("| digits | generator (uint8) | stream (float32 tensors) | DataLoader, 0 workers "
          "| DataLoader, 2 workers |")
    print("|---|---|---|---|---|")
    for num_digits in (2, 3):
        row = [
            median(rate_generator, digits, num_digits, args.sequences),
            median(rate_stream, digits, num_digits, args.loader_sequences),
            median(rate_loader, digits, num_digits, args.loader_sequences, 0),
            median(rate_loader, digits, num_digits, args.loader_sequences, 2),
        ]
        print(f"| {num_digits} | " + " | ".join(f"{r:,.0f} seq/s" for r in row) + " |")


if __name__ == "__main__":
    main()
