"""Helpers shared by the benchmark scripts (``benchmarks`` is a folder of scripts, not a package).

A script run as ``python benchmarks/<name>.py`` has this folder on ``sys.path``, so
``import bench_common`` works from every script, and from the spawned worker processes too.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import resource
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def max_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile), linear interpolation between samples."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0], ordered[0], ordered[0]
    q1, median, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return q1, median, q3


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (falls back to ``platform``)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: str, threads: int | None = None) -> list[str]:
    """Lines naming the CPU, the GPU (on CUDA), and the software versions."""
    import torch

    lines = [
        f"cpu: {cpu_name()}, {os.cpu_count()} logical cores",
        (f"torch {torch.__version__}, python {platform.python_version()}, "
         f"threads: {threads or torch.get_num_threads()}"),
    ]
    if device == "cuda" and torch.cuda.is_available():
        lines.append(f"gpu: {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, "
                     f"cuDNN {torch.backends.cudnn.version()}")
    return lines


def load_textbook_module():
    """``textbook_cells.py`` of this folder, imported once under a private module name."""
    name = "predlearn_bench_textbook_cells"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "textbook_cells.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
