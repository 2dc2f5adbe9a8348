"""``RunFolder``: says where a run's files are, and leaves no run behind that never started.

The command line adds it to every run. At the start it prints the run's folder; at the end
(``report``, called by the command line once W&B has finished writing) the folder again with,
after a fit, the best and last checkpoints it kept (never for ``predict``, ``test`` or
``validate`` alone: those choose no checkpoint). A run that fails before its first step (a
missing data file, a refused option) ends its W&B run and removes what it made: the whole
folder when the run made it, else (a resumed run) only the files it added.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

WANDB_DIR = "wandb"


def _entries(folder: Path) -> set[Path]:
    """The entries of ``folder``, or none when it does not exist."""
    return set(folder.iterdir()) if folder.is_dir() else set()


def run_directory(trainer: L.Trainer) -> Path:
    """A run's folder, as ``trainer.log_dir`` gives it but without its broadcast (so that one
    process alone may ask): the folder predlearn chose for the run with W&B or without a logger
    (``predlearn.runs``), a CSV or TensorBoard logger's ``version_N``."""
    logger = trainer.logger
    if isinstance(logger, (CSVLogger, TensorBoardLogger)):
        return Path(logger.log_dir)
    if logger is not None and logger.save_dir:
        return Path(logger.save_dir)
    return Path(trainer.default_root_dir)


def finish_wandb(exit_code: int | None = None) -> None:
    """Finish the current W&B run, if one was started (its files are complete afterwards)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=exit_code)


class RunFolder(L.Callback):
    """Prints a run's folder at its start and end; removes the run when it fails before its
    first step (see the module's docstring).

    Args:
        folder: the run's folder (``trainer.log_dir``).
        config_name: the config file this run writes into it (None: none), removed with the
            rest when the run fails before its first step in a folder that existed before.
    """

    def __init__(self, folder: str | Path, config_name: str | None = None) -> None:
        self.folder = Path(folder)
        self.config_name = config_name
        self.existed = self.folder.exists()
        self.before = _entries(self.folder) | _entries(self.folder / WANDB_DIR)
        self.announced = False
        self.stepped = False
        self.fitted = False  # a fit ran (its checkpoints are this run's)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.state.fn == "fit":
            self.fitted = True
        if trainer.is_global_zero and not self.announced:
            print(f"predlearn: run folder {self.folder}", flush=True)
            self.announced = True

    def _stepped(self, trainer: L.Trainer) -> None:
        if not trainer.sanity_checking:
            self.stepped = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stepped(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stepped(trainer)

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stepped(trainer)

    def on_predict_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stepped(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if not trainer.is_global_zero:
            return
        finish_wandb(exit_code=1)
        if not self.stepped:
            self.remove()

    def remove(self) -> None:
        """Remove what this run made: its folder when it made it; in a folder that existed (a
        resumed run, predictions beside a chosen file) only its W&B run and config file."""
        if not self.folder.exists():
            return
        if not self.existed:
            shutil.rmtree(self.folder, ignore_errors=True)
            print(f"predlearn: removed the run folder {self.folder}: the run failed before its "
                  "first step", file=sys.stderr, flush=True)
            return
        wandb_dir = self.folder / WANDB_DIR
        made = [wandb_dir] if wandb_dir not in self.before else sorted(
            _entries(wandb_dir) - self.before)
        if self.config_name:
            made.append(self.folder / self.config_name)
        for entry in made:
            if entry in self.before or not (entry.exists() or entry.is_symlink()):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
        for link in _entries(wandb_dir):
            if link.is_symlink() and not link.exists():  # W&B's latest-run, pointing at it
                link.unlink()
        if made:
            print(f"predlearn: removed what this run added to {self.folder} ("
                  f"{', '.join(entry.name for entry in made)}): it failed before its first step",
                  file=sys.stderr, flush=True)

    def report(self, trainer: L.Trainer) -> str:
        """The lines printed at the end: the folder and, when a fit ran (also one tested after,
        ``--test_after_fit``), the best and last checkpoints it kept; ``predict``, ``test`` and
        ``validate`` alone print none (their checkpoint callback is of a fit that did not run)."""
        lines = [f"predlearn: run folder {self.folder}"]
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and (self.fitted or trainer.state.fn == "fit"):
            if checkpoint.best_model_path:
                score = checkpoint.best_model_score
                scored = f" ({checkpoint.monitor} {float(score):.6g})" if score is not None else ""
                lines.append(f"predlearn: best checkpoint{scored} {checkpoint.best_model_path}")
            if checkpoint.last_model_path:
                lines.append(f"predlearn: last checkpoint {checkpoint.last_model_path}")
        return "\n".join(lines)
