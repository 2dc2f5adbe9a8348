"""What an exception raised while a run runs means, as a predlearn error of one line.

``predlearn.cli.main``, the console script's one error boundary, asks ``runtime_error`` about
whatever escapes ``fit | validate | test | predict``; ``_build`` of ``predlearn.lightning_cli``
asks ``lightning_option_error`` (a setting refused is a usage error, for Python callers too):

- a trainer or callback setting Lightning refuses (its ``MisconfigurationException``; the
  ``ValueError``, ``TypeError`` or ``ImportError`` its own code raises about a setting): an
  ``OptionValueError`` naming ``--trainer.<option>`` (``--checkpoint.<option>``, ...) and what
  it allows (``predlearn.refused_settings``);
- out of memory (``torch.OutOfMemoryError``, the CPU allocator's "can't allocate memory",
  ``MemoryError``): ``NotEnoughMemoryError`` naming the options that need less;
- the processes of a DDP run that cannot form their group (torch.distributed's errors, gloo and
  NCCL failures): ``DistributedSetupError`` naming the variable or option to check;
- a full disk or quota, a read-only or forbidden folder (``OSError`` ENOSPC, EDQUOT, EROFS,
  EACCES): ``DiskFullError`` or ``OutputError`` naming the file and where else to write.

Anything else gives None and keeps its traceback: a bug must stay visible. The exception is all
the boundary gets, so the run's objects (the trainer, the callback that refused, the file being
written) are read off its traceback's frames.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from predlearn.errors import (
    DataError,
    DiskFullError,
    DistributedSetupError,
    NotEnoughMemoryError,
    OutputError,
    PredlearnError,
)
from predlearn.refused_settings import lightning_option_error, traceback_frames

__all__ = ["disk_error", "distributed_error", "lightning_option_error", "memory_error",
           "runtime_error"]

_WRITE_FUNCTIONS = re.compile(r"save|write|dump|mkdir|copy|move|rename|replace|link|touch")
_PATH_NAMES = ("filepath", "filename", "fname", "file_path", "output_path", "path", "urlpath",
               "f")


def runtime_error(error: BaseException) -> PredlearnError | None:
    """``error`` (or an error it was raised from) as a predlearn error, or None for anything
    this module does not know (the error then keeps its traceback)."""
    loaded = set(sys.modules)  # what was never imported raised nothing: not imported here
    explainers: list[Callable[[BaseException], PredlearnError | None]] = [memory_error,
                                                                          disk_error]
    if "torch.distributed" in loaded:
        explainers.append(distributed_error)
    if "lightning" in loaded:
        explainers.append(lightning_option_error)
    for current in _causes(error):
        for explain in explainers:
            found = explain(current)
            if found is not None:
                return found
    return None


def memory_error(error: BaseException) -> NotEnoughMemoryError | None:
    """Out of GPU or CPU memory, with the options of this run that need less."""
    torch = sys.modules.get("torch")
    text = str(error)
    device = torch is not None and isinstance(error, torch.OutOfMemoryError)
    if device or (isinstance(error, RuntimeError) and "out of memory" in text.lower()):
        where = "GPU memory" if device or re.search("CUDA|MPS|GPU", text) else "memory"
    elif isinstance(error, MemoryError) or "can't allocate memory" in text:
        where = "CPU memory"
    else:
        return None
    size = re.search(r"(?:[Tt]ried to allocate|Unable to allocate) ([\d.]+ ?[KMGTP]i?B)", text)
    in_bytes = re.search(r"allocate (\d+) bytes", text)
    asked = size.group(1) if size else _in_units(int(in_bytes.group(1))) if in_bytes else None
    frames = traceback_frames(error)
    trainer = _trainer(frames) if "lightning" in sys.modules else None
    hints = [f"a smaller --data.batch_size{_now(trainer, 'datamodule', 'batch_size')}"]
    precision = str(getattr(trainer, "precision", ""))
    if "16" not in precision:
        hints.append("--trainer.precision=bf16-mixed" + (f" (now {precision})" if precision else ""))
    predictor = getattr(getattr(trainer, "lightning_module", None), "predictor", None)
    if trainer is None or (_training(frames)
                           and getattr(predictor, "checkpoint_steps", None) is False):
        hints.append("activation checkpointing, --model.predictor.checkpoint_steps=true"
                     + (" (the recurrent stack models)" if trainer is None else ""))
    tried = f" (it tried to allocate {asked} more)" if asked else ""
    listed = ", ".join(hints[:-1]) + (", or " if len(hints) > 1 else "") + hints[-1]
    return NotEnoughMemoryError(f"out of {where}{tried}; to need less, use {listed}")


def distributed_error(error: BaseException) -> DistributedSetupError | None:
    """A DDP process group that cannot start or talk, with the variable or option to check."""
    import torch.distributed as dist

    text = _one_line(str(error))
    in_torch_distributed = any(os.sep + os.path.join("torch", "distributed") in
                               frame.f_code.co_filename for frame in traceback_frames(error))
    if not (isinstance(error, getattr(dist, "DistError", ())) or (
            isinstance(error, (RuntimeError, ValueError)) and in_torch_distributed
            and re.search(r"gloo|nccl|rendezvous|environment variable|Distributed package",
                          text, re.IGNORECASE))):
        return None
    address = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = os.environ.get("MASTER_PORT", "?")
    target = re.search(r"connect to \(([^,]+), (\d+)\)", text)
    listening = re.search(r"port: (\d+)", text)
    if target:
        address, port = target.groups()
    elif listening:
        port = listening.group(1)
    if "EADDRINUSE" in text or "address already in use" in text:
        hint = (f"port {port} (MASTER_PORT) is already in use on this machine, by another run "
                "or program: set MASTER_PORT to a free port, or end the other run")
    elif target or "failed to connect" in text or "Connection refused" in text:
        hint = (f"this process cannot reach rank 0 at MASTER_ADDR={address}, MASTER_PORT="
                f"{port}: MASTER_ADDR must name the first node, reachable from here; start "
                "rank 0 with the same MASTER_PORT, and let no firewall block it")
    elif "waiting for clients" in text:
        joined = re.search(r"(\d+)/(\d+) clients joined", text)
        counts = f" ({joined.group(1)} of {joined.group(2)} processes joined)" if joined else ""
        hint = (f"not every process joined rank 0 at {address}:{port}{counts}: start every "
                "node with the same MASTER_ADDR, MASTER_PORT and --trainer.num_nodes, and "
                "NODE_RANK 0 .. num_nodes - 1 (--trainer.num_nodes x --trainer.devices "
                "processes in all)")
    elif "Unable to find address for" in text:
        name = text.rpartition("Unable to find address for:")[2].strip()
        hint = (f"GLOO_SOCKET_IFNAME={name} names no network interface of this machine: "
                "set it to one that `ip addr` lists, or unset it")
    elif "doesn't have NCCL" in text:
        hint = ("this torch has no NCCL (no GPUs): leave --trainer.accelerator=cpu (gloo), "
                "or install a CUDA build of torch")
    elif "environment variable" in text:
        variable = re.search(r"environment variable (\w+)", text)
        hint = (f"{variable.group(1) if variable else 'a variable'} is not set: a job launcher "
                "(torchrun, srun) sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK; set "
                "them, or start the run with one")
    elif "nccl" in text.lower():
        hint = (f"NCCL failed ({text}): run again with NCCL_DEBUG=INFO to see why; check "
                "NCCL_SOCKET_IFNAME and that every GPU is visible (CUDA_VISIBLE_DEVICES)")
    else:
        hint = (f"{text}; check MASTER_ADDR ({address}), MASTER_PORT ({port}), WORLD_SIZE, "
                "NODE_RANK, GLOO_SOCKET_IFNAME and --trainer.num_nodes, --trainer.devices")
    return DistributedSetupError(f"the DDP processes cannot start: {hint}")


def disk_error(error: BaseException) -> PredlearnError | None:
    """A full disk or quota, a read-only or forbidden folder, naming the file and what to do."""
    code = _errno(error)
    if code not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        return None
    frames = traceback_frames(error)
    path = getattr(error, "filename", None)
    if not path or re.match(r"^\..*\.tmp$|^tmp\w+$", os.path.basename(str(path))):
        path = _path_on(frames) or path  # the file a temporary one was to become
    name = str(path) if path else "a file (--debug shows which)"
    writing = code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) or not (
        path and os.path.isfile(path)) or any(
        _WRITE_FUNCTIONS.search(frame.f_code.co_name) for frame in frames)
    if not writing:
        return DataError(f"no permission to read {name}: make it readable, or copy it where "
                         "you may read it")
    elsewhere = _elsewhere(str(path or ""))
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left" if code == errno.ENOSPC else "the disk quota is used up"
        return DiskFullError(f"{what} on the disk while writing {name}: free space there, or "
                             f"{elsewhere}")
    problem = "is on a read-only file system" if code == errno.EROFS else "may not be written"
    return OutputError(f"{name} {problem}: {elsewhere}")


def _elsewhere(path: str) -> str:
    """Where else an output can go, by the kind of file."""
    if path.endswith(".ckpt"):
        return "choose a writable folder with --checkpoint.dirpath (or --trainer.default_root_dir)"
    if path.endswith((".h5", ".hdf5")):
        return "choose another --predictions.output_path"
    pictures = " (--figures.enabled=false writes no pictures)" if path.endswith(
        (".png", ".gif", ".pdf", ".svg")) else ""
    return f"write the run elsewhere with --trainer.default_root_dir{pictures}"


def _errno(error: BaseException) -> int | None:
    """The errno of an ``OSError``, or the one its message names (re-raised from a loader worker
    or by h5py, it is only in the text)."""
    if isinstance(error, OSError) and error.errno:
        return error.errno
    if not isinstance(error, (OSError, RuntimeError)):
        return None
    text = str(error)
    named = re.search(r"\[Errno (\d+)\]|errno = (\d+)", text)
    if named:
        return int(named.group(1) or named.group(2))
    for code, words in ((errno.ENOSPC, "No space left on device"),
                        (errno.EDQUOT, "Disk quota exceeded"),
                        (errno.EROFS, "Read-only file system"),
                        (errno.ENOSPC, "file write failed")):
        if words in text:
            return code
    return None


def _trainer(frames: list[FrameType]) -> Any:
    """The Trainer of the run, from the frames of its error (None outside one)."""
    from lightning.pytorch import Trainer

    for frame in frames:
        for name in ("self", "trainer"):
            if isinstance(frame.f_locals.get(name), Trainer):
                return frame.f_locals[name]
    return None


def _in_units(size: int) -> str:
    """A number of bytes in the largest binary unit it has at least one of (as torch says)."""
    power = max((p for p in range(6) if size >= 1024 ** p), default=0)
    return f"{size / 1024 ** power:.2f} {('B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB')[power]}"


def _training(frames: list[FrameType]) -> bool:
    """Whether the error came from a training step (not a validation, even one within a fit):
    the innermost loop on the frames is the training loop."""
    from lightning.pytorch.loops import _EvaluationLoop, _PredictionLoop, _TrainingEpochLoop

    loops = (_TrainingEpochLoop, _EvaluationLoop, _PredictionLoop)
    loop = next((frame.f_locals["self"] for frame in frames
                 if isinstance(frame.f_locals.get("self"), loops)), None)
    return isinstance(loop, _TrainingEpochLoop)


def _now(trainer: Any, part: str, attribute: str) -> str:
    value = getattr(getattr(trainer, part, None), attribute, None)
    return f" (now {value})" if value is not None else ""


def _path_on(frames: list[FrameType]) -> str | None:
    """The file a failed write was writing: the innermost frame's local that names a path."""
    for frame in frames:
        for name in _PATH_NAMES:
            value = frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)) and str(value):
                return os.fspath(value)  # type: ignore[arg-type]
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it was raised from (``raise ... from``), in turn."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _one_line(text: str) -> str:
    return " ".join(text.split())
