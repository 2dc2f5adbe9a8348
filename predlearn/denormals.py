"""Flush denormal floats to zero in every thread that computes (FTZ/DAZ on x86).

Why: float32 (and bfloat16) values below 2**-126 (about 1.2e-38) in magnitude are *denormal*.
Some CPUs compute with them in slow microcode; on a 2-core Intel Xeon a PredRNN training step went
from 24 s to more than 150 s once the backward pass and Adam's second moments began to produce
them (docs/benchmarks.md). Flushing them, denormal results to zero (FTZ) and denormal inputs read as
zero (DAZ), keeps every step at full speed.

The flag is per thread. ``torch.set_flush_denormal`` sets it in the calling thread only, and torch's
intra-op threads (an OpenMP pool) copy it from the thread that creates them, once, when they are
created: called after the first parallel operation it reaches the main thread alone.
:func:`set_flush_denormal` therefore also runs the setting on every thread of the pool, through the
OpenMP runtime torch has loaded, and then checks the result with a parallel operation on denormal
inputs.

What it changes numerically: only values whose magnitude is below about 1.2e-38 (float32,
bfloat16) or 2.2e-308 (float64), which become 0. Such values are far too small to matter to a
training step: a gradient of 1e-38 times a learning rate of 1e-3 is some 30 orders of magnitude
below the spacing of float32 numbers near any weight in use, and in Adam a second moment below
1e-38 adds less than 1e-17 to the denominator's epsilon of 1e-8.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import warnings
from pathlib import Path

import torch

# The bit pattern 0x00400000 is the float32 denormal 2**-127 (about 5.9e-39). Denormal inputs are
# made from bits, not from a Python float: with FTZ on, converting 5.9e-39 to float32 already
# gives 0, and the probe would test nothing.
_DENORMAL_BITS = 0x00400000
# torch splits element-wise work into chunks of at least this many elements (at::internal::
# GRAIN_SIZE); the probe gives every intra-op thread several chunks.
_GRAIN_SIZE = 32768
_OPENMP_LIBRARIES = ("libgomp", "libiomp5", "libomp")


def denormal_tensor(numel: int) -> torch.Tensor:
    """A float32 tensor of ``numel`` denormal values (2**-127 each)."""
    return torch.full((numel,), _DENORMAL_BITS, dtype=torch.int32).view(torch.float32)


def thread_flushes_denormals() -> bool:
    """Whether the calling thread flushes denormals (one element: no other thread involved)."""
    return bool((denormal_tensor(1) * 1.5).item() == 0.0)


def _parallel_probe() -> tuple[int, int]:
    """(nonzero results, elements) of a multiplication over denormal inputs large enough that
    torch splits it over all its intra-op threads: each thread that flushes leaves zeros in its
    chunk, each thread that does not leaves nonzero values."""
    numel = 4 * _GRAIN_SIZE * max(torch.get_num_threads(), 1)
    return int((denormal_tensor(numel) * 1.5).count_nonzero()), numel


def intraop_threads_flush_denormals() -> bool:
    """Whether the calling thread and *every* intra-op thread flush denormals."""
    return _parallel_probe()[0] == 0


def intraop_threads_keep_denormals() -> bool:
    """Whether no thread (calling or intra-op) flushes denormals: the IEEE default."""
    nonzero, numel = _parallel_probe()
    return nonzero == numel


def set_flush_denormal(enabled: bool = True) -> bool:
    """Flush denormals (``enabled=True``) or keep them (IEEE, the default of a new process) in
    the calling thread and in every intra-op thread of torch.

    Call it from the thread that runs the model (Lightning's main thread; ``PredictiveModule``
    does so in its ``setup`` hook). Returns True when every thread is in the requested state,
    checked with a parallel operation on denormal inputs; otherwise warns once, saying why, and
    returns False (e.g. a CPU without FTZ/DAZ, or an intra-op pool that cannot be reached).
    """
    if not torch.set_flush_denormal(enabled):
        if not enabled:
            return True  # no flush-to-zero mode on this CPU: denormals are kept everywhere
        _warn_once("this CPU has no flush-to-zero mode torch can set (torch.set_flush_denormal "
                   "returned False); denormal floats are computed as they are")
        return False
    if _all_threads_in_state(enabled):
        return True
    reached = _on_every_openmp_thread(lambda: torch.set_flush_denormal(enabled))
    if _all_threads_in_state(enabled):
        return True
    why = ("no OpenMP runtime was found in this process" if not reached
           else "the OpenMP runtime did not reach every intra-op thread")
    _warn_once(
        f"could not {'flush' if enabled else 'stop flushing'} denormals in torch's intra-op "
        f"threads ({why}); only the calling thread is set. Call "
        "predlearn.denormals.set_flush_denormal() before the first torch operation of the "
        "process, so that the threads inherit the setting when they are created."
    )
    return False


def _all_threads_in_state(enabled: bool) -> bool:
    return intraop_threads_flush_denormals() if enabled else intraop_threads_keep_denormals()


def _openmp_library() -> str | None:
    """The path of the OpenMP runtime loaded in this process (Linux: read /proc/self/maps)."""
    maps = Path("/proc/self/maps")
    if not sys.platform.startswith("linux") or not maps.exists():
        return None
    for line in maps.read_text().splitlines():
        path = line.split()[-1] if line.split() else ""
        if any(Path(path).name.startswith(name) for name in _OPENMP_LIBRARIES):
            return path
    return None


_PARALLEL_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _on_every_openmp_thread(action) -> bool:
    """Run ``action()`` once on each thread of the calling thread's OpenMP team of
    ``torch.get_num_threads()`` threads: the threads torch's parallel operations run on.

    Uses ``GOMP_parallel``, the entry point that GCC's libgomp defines and that LLVM's libomp and
    Intel's libiomp5 also export. Returns False when no such runtime is loaded.
    """
    path = _openmp_library()
    if path is None:
        return False
    try:
        runtime = ctypes.CDLL(path)  # the library already loaded: dlopen returns the same one
        gomp_parallel = runtime.GOMP_parallel
    except (OSError, AttributeError):
        return False
    gomp_parallel.argtypes = [_PARALLEL_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp_parallel.restype = None
    failures: list[BaseException] = []

    def body(_data) -> None:  # runs on each OpenMP thread; ctypes takes the GIL for it
        try:
            action()
        except BaseException as err:  # noqa: BLE001 -- it must not cross the C frames
            failures.append(err)

    callback = _PARALLEL_CALLBACK(body)
    gomp_parallel(callback, None, max(torch.get_num_threads(), 1), 0)  # ctypes releases the GIL
    return not failures


_warned: set[str] = set()
_warn_lock = threading.Lock()


def _warn_once(message: str) -> None:
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(f"predlearn: {message}", RuntimeWarning, stacklevel=3)


def worker_init_fn(then=None) -> FlushDenormalsInWorker:
    """A DataLoader ``worker_init_fn`` that gives workers the calling thread's denormal mode
    (then calls ``then(worker_id)`` if given). Build loaders after ``set_flush_denormal``:
    Lightning creates them after the ``setup`` hooks, so a ``PredictiveModule``'s mode carries
    over."""
    return FlushDenormalsInWorker(thread_flushes_denormals(), then)


class FlushDenormalsInWorker:
    """``worker_init_fn`` for DataLoader workers: set the parent's denormal mode in the worker.

    A worker made by ``fork`` inherits the mode of the forking thread, but one made by ``spawn``
    or ``forkserver`` (macOS; Linux from Python 3.14) starts with the IEEE default. Workers run
    torch with one thread, so the calling thread is all there is to set.
    """

    def __init__(self, flush: bool, then=None) -> None:
        self.flush = flush
        self.then = then

    def __call__(self, worker_id: int) -> None:
        torch.set_flush_denormal(self.flush)
        if self.then is not None:
            self.then(worker_id)
