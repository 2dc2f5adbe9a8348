"""Preemption: a fit stopped by a signal ends at a step, with a checkpoint it resumes from.

SIGTERM (SLURM, Kubernetes), SIGINT (Ctrl-C) and SIGUSR1 (``#SBATCH --signal=USR1@...``)
during training set a flag. At the end of the training step (or of a validation) the ranks agree
on it, one small all-reduce per step, so that every rank stops at the same step even when one
alone was signalled; the fit then stops through Lightning (``trainer.should_stop``): Lightning
validates the step, and the checkpoint callback ranks it and writes ``last`` after that
validation (``predlearn.checkpointing``). The command line then prints one line naming the
checkpoint and the command that resumes it, and exits with 128 + the signal's number (143, 130,
138; ``stop_report``). A second Ctrl-C stops at once, as a first one did before (Lightning's
KeyboardInterrupt shutdown, no checkpoint). Every checkpoint of the fit is written atomically
(``AtomicCheckpointIO``), and ``last`` is also written every ``--checkpoint_every_minutes``, which
bounds what a kill -9 or a power loss can cost.

Lightning 2.6.6 alone: SIGTERM sets ``trainer.received_sigterm``, and its loops then raise
``SIGTERMException`` after the step (no checkpoint; the process exits with status 0), after a
DDP broadcast of the flag made inside the signal handler; SIGINT reaches ``Trainer.fit`` as a
KeyboardInterrupt (no checkpoint, status 1); SIGUSR1 kills the process, except under SLURM with
auto-requeue, where Lightning's handler saves ``hpc_ckpt_N.ckpt`` and requeues the job. The
handlers here are installed after Lightning's (its teardown restores those from before the fit)
and replace them for the signals above, except that Lightning's SLURM requeue handler on SIGUSR1
still runs first.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import Callback

#: the signals a scheduler or a terminal sends to stop a job
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))
#: ``--checkpoint_every_minutes`` by default
EVERY_MINUTES = 30.0


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that a kill or a power loss leaves either the old file or the new one:
    ``write`` fills a temporary file in the same folder, which is flushed to disk and then
    renamed over ``path`` (``os.replace``). Lightning stages its files in the system's temporary
    folder, often another file system on a cluster, where the final move is a plain copy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not a *.ckpt for "last"
    try:
        with temporary.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power loss once the folder is on disk
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    except OSError:
        pass
    finally:
        os.close(folder)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with each local file written by ``write_atomically``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(path, lambda handle: torch.save(checkpoint, handle))


class Preemption(Callback):
    """Stops a fit at the end of the step during which a signal came, and writes ``last`` every
    ``every_minutes`` of training (0: never); see the module's docstring.

    Attributes:
        received: the first signal this process received during training (None: none yet).
        stopped_by: the signal the fit stopped for, the same on every rank (None: not stopped).
        stop_step: the global step the fit stopped at.
    """

    def __init__(self, every_minutes: float = EVERY_MINUTES) -> None:
        self.every_seconds = 60.0 * every_minutes
        self.received: int | None = None
        self.stopped_by: int | None = None
        self.stop_step: int | None = None
        self._installed = False
        self._chained: dict[int, Callable[..., Any]] = {}
        self._last_write = time.monotonic()
        self._last_step = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # only Lightning's default writer is replaced (not async or sharded ones)
        if stage == "fit" and type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install(trainer)
        self._last_write = time.monotonic()
        self._last_step = trainer.global_step

    def install(self, trainer: Any) -> None:
        """Catch ``STOP_SIGNALS`` from now on (Lightning installed its handlers just before the
        fit's sanity check and training; its teardown restores those from before the fit)."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._installed = True
        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)
            if signum == getattr(signal, "SIGUSR1", None) and callable(previous):
                self._chained[signum] = previous  # Lightning's SLURM auto-requeue, or a user's
            signal.signal(signum, self._handle)
        # a SIGTERM that Lightning's handler took before this one was installed
        connector = getattr(trainer, "_signal_connector", None)
        if getattr(connector, "received_sigterm", False):
            connector.received_sigterm = False  # type: ignore[union-attr]
            self.received = self.received or signal.SIGTERM

    def _handle(self, signum: int, frame: Any) -> None:
        chained = self._chained.get(signum)
        if chained is not None:
            chained(signum, frame)
        if self.received is None:
            self.received = signum
        elif signum == signal.SIGINT:  # Ctrl-C again: stop now, without a checkpoint
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self._last_step:
            return  # accumulating gradients: not the end of a step
        self._last_step = trainer.global_step
        due = 0 < self.every_seconds <= time.monotonic() - self._last_write
        signum, due = self._agreed(trainer, due)
        if signum:
            self._stop(trainer, signum)
        elif due:
            self._last_write = time.monotonic()
            checkpoint = trainer.checkpoint_callback
            save_last_now = getattr(checkpoint, "save_last_now", None)
            if save_last_now is not None:
                save_last_now(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            signum, _ = self._agreed(trainer, False)
            if signum:
                self._stop(trainer, signum)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        signum, _ = self._agreed(trainer, False)  # a signal during the fit's last moments
        if signum and self.stopped_by is None:
            self.stopped_by, self.stop_step = signum, trainer.global_step

    def _agreed(self, trainer: L.Trainer, due: bool) -> tuple[int, bool]:
        """(the signal any rank received, 0 for none; whether any rank's timer is due)."""
        local = [self.received or 0, int(due)]
        if trainer.world_size > 1:
            values = torch.tensor(local, device=trainer.strategy.root_device)
            local = [int(v) for v in trainer.strategy.reduce(values, reduce_op="max").tolist()]
        return local[0], bool(local[1])

    def _stop(self, trainer: L.Trainer, signum: int) -> None:
        if self.stopped_by is not None:
            return
        self.stopped_by, self.stop_step = signum, trainer.global_step
        trainer.should_stop = True  # Lightning validates this step, then leaves the fit
        trainer.fit_loop.min_epochs = 0  # a signal stops before min_epochs or min_steps too
        trainer.fit_loop.epoch_loop.min_steps = None


def preemption_callbacks(config: Any) -> list[Callback]:
    """The ``Preemption`` callback of a fit run with ``config`` (LightningCLI's namespace)."""
    options = config.get("fit") or {}
    return [Preemption(float(options.get("checkpoint_every_minutes", EVERY_MINUTES)))]


def stopped_fit(trainer: L.Trainer) -> Preemption | None:
    """The trainer's ``Preemption`` callback when its fit was stopped by a signal, else None."""
    callbacks = getattr(trainer, "callbacks", [])
    return next((c for c in callbacks if isinstance(c, Preemption) and c.stopped_by), None)


def _shown(path: str | Path) -> str:
    """``path`` for a command line: relative to the working folder when inside it, quoted."""
    absolute = Path(os.path.abspath(path))
    try:
        shown = str(absolute.relative_to(Path.cwd()))
    except ValueError:
        shown = str(absolute)
    return shlex.quote(shown)


def stop_report(trainer: L.Trainer, config_file: str | Path) -> tuple[str, int] | None:
    """(the line a fit stopped by a signal ends with, its exit status 128 + the signal's
    number), or None for a fit that no signal stopped. ``config_file``: the settings this run
    saved in its folder, which the printed command resumes with."""
    stopped = stopped_fit(trainer)
    if stopped is None or stopped.stopped_by is None:
        return None
    head = f"predlearn: stopped by {signal.Signals(stopped.stopped_by).name} after step " \
           f"{stopped.stop_step}"
    code = 128 + stopped.stopped_by
    last = getattr(trainer.checkpoint_callback, "last_model_path", "")
    if not last or not Path(last).is_file():
        return f"{head}; no last checkpoint to resume from (--checkpoint.save_last=false)", code
    return (f"{head}; checkpoint {_shown(last)}; resume with: predlearn fit --config "
            f"{_shown(config_file)} --ckpt_path={_shown(last)}"), code
