"""A run's best validation: its per-step curves, and its checkpoint's weights put in a module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

if TYPE_CHECKING:
    from predlearn.module import PredictiveModule


@dataclass(frozen=True)
class Validation:
    """The per-step validation curves a run reports: those of its best checkpoint (with the
    step they were computed at), or, without one, of its last validation."""

    curves: dict[str, Tensor]
    step: int | None
    checkpoint: str | None = None  # the best checkpoint's file; None: the last validation

    def describe(self) -> str:
        if self.checkpoint:
            return f"best checkpoint (step {self.step})"
        return f"last validation (step {self.step})"


def _load(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by this run (tensors and plain values only), memory-mapped."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def best_validation(trainer: L.Trainer, pl_module: L.LightningModule) -> Validation | None:
    """The validation curves of the best checkpoint (kept in it by ``PredictiveModule``), or of
    the last validation when there is no best checkpoint (or it predates those records);
    None when no validation ran."""
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    if best and Path(best).is_file():
        record = _load(best).get("predlearn", {}).get("validation")
        if record:
            curves = {key: torch.tensor(values) for key, values in record["curves"].items()}
            return Validation(curves, record["step"], best)
    module = cast("PredictiveModule", pl_module)  # the module the command line pairs it with
    last = module.curves.get("val")
    if not last:
        return None
    return Validation(last, module.curve_steps.get("val"))


@contextmanager
def weights_of(pl_module: L.LightningModule, checkpoint: str | None) -> Iterator[None]:
    """The module with the weights of ``checkpoint`` inside the block, its own again after it
    (None: its own throughout)."""
    if checkpoint is None:
        yield
        return
    own = {key: value.detach().clone() for key, value in pl_module.state_dict().items()}
    pl_module.load_state_dict(_load(checkpoint)["state_dict"])
    try:
        yield
    finally:
        pl_module.load_state_dict(own)
