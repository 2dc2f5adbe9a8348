"""A fit whose training loss turns NaN or infinite stops at that step, its weights unchanged.

Without it, Lightning trains on to ``loss=nan`` without a word, and writes checkpoints of
weights that are NaN over the last good ones. ``FiniteLoss`` checks each step's loss before its
backward pass (one ``isfinite`` of one number: a single device sync per step; under DDP the
processes agree, so all stop together) and raises ``TrainingDivergedError`` naming the step,
the learning rate and what the batch held: the console script prints it in one line and exits
with 1. The step's gradients and optimizer update never happen, so the weights in memory and
every checkpoint on disk are still those of the steps before. A loss that stays finite while
its gradients overflow makes the next step's loss NaN; the checkpoint of those weights is
refused too (``on_save_checkpoint`` checks the weights of every checkpoint written, except
``--checkpoint.save_weights_only`` ones, which skip the callbacks' hook).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import Tensor

from predlearn.errors import TrainingDivergedError


class FiniteLoss(Callback):
    """Stops the fit at the first step whose training loss is not finite (see the module)."""

    def __init__(self) -> None:
        self._batch: Any = None
        self._saved_step: int | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._batch = batch  # kept (not copied) to say what it held if its loss is not finite

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batch = None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           loss: Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:  # every process stops at the same step, or none does
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise TrainingDivergedError(self._diverged(trainer, pl_module, loss))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        weights = {name: value for name, value in checkpoint.get("state_dict", {}).items()
                   if isinstance(value, Tensor) and value.is_floating_point() and value.numel()}
        finite = [torch.isfinite(value).all() for value in weights.values()]
        devices = {flag.device for flag in finite}  # one device sync per device and checkpoint
        if not all(bool(torch.stack([f for f in finite if f.device == device]).all())
                   for device in devices):
            broken = next(name for name, ok in zip(weights, finite, strict=True) if not ok)
            raise TrainingDivergedError(
                f"the weights are no longer finite after step {trainer.global_step} ({broken}), "
                f"although its loss was (an update overflowed): no checkpoint of them is "
                f"written{self._last_good(trainer)}. {_causes(trainer, pl_module, None)}")
        self._saved_step = trainer.global_step

    def _diverged(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> str:
        value = loss.detach().float().flatten()
        shown = "nan" if bool(torch.isnan(value).any()) else "infinite"
        step = trainer.global_step + 1
        epoch = f"epoch {trainer.current_epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx}"
        return (f"the training loss is {shown} at step {step} ({epoch}): the fit stopped before "
                f"that step changed the weights{self._last_good(trainer)}. "
                f"{_causes(trainer, pl_module, self._batch)}")

    def _last_good(self, trainer: L.Trainer) -> str:
        checkpoint = trainer.checkpoint_callback
        path = checkpoint.last_model_path or checkpoint.best_model_path if isinstance(
            checkpoint, ModelCheckpoint) else ""
        if not path:
            return "; no checkpoint was written before it"
        step = f" (step {self._saved_step})" if self._saved_step is not None else ""
        return f"; the last checkpoint, {path}{step}, holds finite weights"


def _causes(trainer: L.Trainer, pl_module: L.LightningModule, batch: Any) -> str:
    """The likely causes, most likely first: what the batch held (when known), the learning
    rate, the data's options."""
    found = []
    frames = batch[0] if isinstance(batch, (list, tuple)) else batch
    if isinstance(frames, Tensor) and frames.is_floating_point():
        if not bool(torch.isfinite(frames).all()):
            found.append("this batch holds NaN or infinite values")
        elif frames.numel():
            low, high = float(frames.min()), float(frames.max())
            if low < -0.5 or high > 1.5:
                found.append(f"this batch's values span [{low:.3g}, {high:.3g}], far outside "
                             "the [0, 1] the models expect")
    optimizers = getattr(trainer, "optimizers", None) or []
    lr = optimizers[0].param_groups[0].get("lr") if optimizers else None
    option = ("--optimizer.lr" if getattr(pl_module, "optimizer_config", None) is not None
              else "--model.learning_rate")
    found.append(f"a learning rate too high ({option}" + (f", now {lr:.3g}" if lr else "") + ")")
    data = getattr(trainer, "datamodule", None)  # set by the data connector, untyped
    source = getattr(data, "path", None) or getattr(data, "root", None)
    where = f" ({source})" if source else ""
    own = ("; own data: --data.normalize=minmax scales values into [0, 1], --data.fill_value "
           "marks missing ones" if hasattr(data, "fill_value") else "")
    found.append(f"data values outside [0, 1] or NaN{where}{own}")
    return "Likely causes: " + "; ".join(found)


def finite_loss_callbacks(config: Any) -> list[Callback]:
    """The callbacks of this module for a fit run with ``config``: ``FiniteLoss``, always."""
    return [FiniteLoss()]
