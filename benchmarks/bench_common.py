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
REFERENCE_CELLS = HERE / "reference_cells.py"


def max_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def resolve_device(parser, requested: str | None) -> str:
    """``--device``: cuda when available if not given; a clear error if cuda is asked for and
    torch sees no CUDA device (instead of a traceback from deep in torch)."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda: torch {torch.__version__} sees no CUDA device")
    return requested


def peak_tensor_bytes(run) -> int:
    """Peak CPU tensor memory while ``run()`` executes, above what was allocated before it.

    The CPU counterpart of CUDA's ``max_memory_allocated``: torch's profiler
    (``torch.profiler.profile(profile_memory=True)``) records every CPU tensor allocation and free
    made while it runs, and the peak of their running sum is what the tensors needed at the
    busiest moment. The records are read from the trace that the public ``export_chrome_trace``
    writes (one ``[memory]`` event per allocation or free, its size in ``args.Bytes``, negative for
    a free), so the peak is exact to the allocation. (The per-operator ``events()`` /
    ``key_averages()`` keep only each operator's net memory, which misses the temporaries inside
    an operator.) Frees of tensors allocated before ``run()`` are not recorded. The process's
    resident set size says what the OS saw, which with glibc's malloc can be several times more
    (freed blocks are kept, docs/benchmarks.md).
    """
    import json
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        run()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        profiler.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    changes = sorted(  # a stable sort: records of the same instant keep the trace's order
        ((float(event["ts"]), event["args"]["Bytes"]) for event in events
         if event.get("name") == "[memory]" and event.get("args", {}).get("Device Type") == 0),
        key=lambda change: change[0],
    )  # Device Type 0: CPU (c10::DeviceType)
    live = peak = 0
    for _time, nbytes in changes:
        live += nbytes
        peak = max(peak, live)
    return peak


def allocator() -> str:
    """The C allocator the process runs with: a preloaded one (jemalloc, tcmalloc) or glibc's."""
    # ld.so accepts spaces or colons between the preloaded libraries.
    preload = [Path(item).name for item in os.environ.get("LD_PRELOAD", "").replace(":", " ").split()]
    return "LD_PRELOAD " + " ".join(preload) if preload else "glibc malloc"


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


def add_denormal_option(parser) -> None:
    """``--keep-denormals``: time with IEEE denormal floats instead of flushing them."""
    parser.add_argument(
        "--keep-denormals", action="store_true",
        help="compute with denormal floats (the IEEE default of a new process) instead of "
             "flushing them to zero as predlearn's training does; on some CPUs much slower "
             "after the first steps (bench_steady_state.py measures it)")


def apply_denormal_mode(args) -> None:
    """In a worker, before anything computes: the mode ``--keep-denormals`` chose."""
    from predlearn.denormals import set_flush_denormal

    set_flush_denormal(not getattr(args, "keep_denormals", False))


def describe_machine(device: str, threads: int | None = None,
                     keep_denormals: bool | None = None) -> list[str]:
    """Lines naming the CPU, the GPU (on CUDA), the software versions and the denormal mode."""
    import torch

    lines = [
        f"cpu: {cpu_name()}, {os.cpu_count()} logical cores",
        (f"torch {torch.__version__}, python {platform.python_version()}, "
         f"threads: {threads or torch.get_num_threads()}, allocator: {allocator()}"
         + ("" if keep_denormals is None else
            f", denormals: {'kept (IEEE)' if keep_denormals else 'flushed to zero'}")),
    ]
    if device == "cuda" and torch.cuda.is_available():
        lines.append(f"gpu: {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, "
                     f"cuDNN {torch.backends.cudnn.version()}")
    return lines


def load_reference_cells():
    """``reference_cells.py`` of this folder (the textbook per-gate cells, which
    tests/test_fused_cells.py also checks the fused cells against), imported once under a private
    module name."""
    name = "predlearn_reference_cells"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REFERENCE_CELLS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class WorkerProcess:
    """The parent's handle on a child process that answers requests over a pipe.

    ``target(*args, conn)`` runs in the child: it sends ``("ready", parameter_count)`` once built,
    then answers each request message with ``(message, value)``, or ``("error", traceback)``; any
    other message stops it. ``result`` is the configuration's record: its ``params`` is set when
    the child is ready and its ``error`` on a failure (an error reply, or the child dying, e.g.
    killed for lack of memory); after a failure requests return None, so one failed configuration
    does not stop the others.
    """

    def __init__(self, context, target, args: tuple, result) -> None:
        self.result = result
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(*args, child), daemon=True)
        self.process.start()
        child.close()

    def fail(self, message: str) -> None:
        self.result.error = message

    def wait_ready(self) -> None:
        params = self.receive("ready")
        if params is not None:
            self.result.params = params

    def receive(self, expect: str):
        try:
            kind, value = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(timeout=10)
            code = self.process.exitcode
            hint = " (killed: likely out of memory)" if code is not None and code < 0 else ""
            self.fail(f"worker exited with code {code}{hint}")
            return None
        if kind == "error":
            print(value, file=sys.stderr)
            self.fail(value.strip().splitlines()[-1])
            return None
        assert kind == expect, (kind, expect)
        return value

    def request(self, message: str):
        """Send ``message`` and return the answer's value (None once the worker has failed)."""
        if self.result.error is not None:
            return None
        try:
            self.conn.send(message)
        except (OSError, BrokenPipeError):
            pass  # the child is gone; receive() reports how it ended
        return self.receive(message)

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send("stop")
            except (OSError, BrokenPipeError):
                pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
