"""Every fit validates its last step: a fit that ends (``max_steps``, the last epoch) after
training steps since its last validation validates once more, inside the fit.

Without it a short fit that ends before its first validation leaves no best checkpoint, no
pictures and no curves (only Lightning's warning that ``val/loss`` was never logged), and a
longer one leaves its last steps unscored. ``FinalValidation`` marks the last step as a stop
(``trainer.should_stop``); Lightning's loop validates a stopping fit at that step
(``_TrainingEpochLoop._should_check_val_fx``), once, also where the schedule validates it
anyway, and the checkpoint callback ranks the step by that validation and writes ``last`` after
it (``predlearn.checkpointing``). A fit stopped by ``max_time`` or a signal
(``predlearn.preemption``) is already a stopping fit. Fits without validation
(``--trainer.limit_val_batches=0``) validate nothing.

Lightning 2.6.6 resumes a checkpoint written after a validation exactly only where its schedule
called for that validation. After one it did not (this module's, or any stopping fit's), its
count of stepped batches (the loggers' step) comes back one behind, and at an epoch's last batch
it trains one more batch as if the epoch went on, then starts the next epoch at the wrong batch.
So a checkpoint written during a stopping fit's validation is saved as written at the end of
its training step (the batch processed, not yet completed), which Lightning resumes exactly
whatever the schedule: it goes on with the next batch, without validating again.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


def is_last_step(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether the training batch ``batch_idx`` that just ended is the fit's last: it reached
    ``max_steps``, or it ends the last epoch (``max_epochs``)."""
    if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
        return True
    max_epochs = trainer.max_epochs
    ends_epoch = trainer.is_last_batch or batch_idx + 1 >= trainer.num_training_batches
    return (ends_epoch and max_epochs is not None and max_epochs != -1
            and trainer.current_epoch + 1 >= max_epochs)


class FinalValidation(Callback):
    """Marks a fit's last training step as a stop, so that Lightning validates it (see the
    module's docstring)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if not trainer.should_stop and is_last_step(trainer, batch_idx):
            trainer.should_stop = True

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if trainer.should_stop and trainer.validating and not trainer.sanity_checking \
                and trainer.state.fn == "fit":
            as_written_at_step_end(checkpoint)


def as_written_at_step_end(checkpoint: dict[str, Any]) -> None:
    """Mark a checkpoint written after its training batch completed (during a validation) as
    written when the batch was processed (``on_train_batch_end``); see the module's
    docstring."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
    for counts in (progress or {}).get("total", {}), (progress or {}).get("current", {}):
        if counts and counts["completed"] == counts["processed"] > 0:
            counts["completed"] -= 1


def final_validation_callbacks(config: Any) -> list[Callback]:
    """The ``FinalValidation`` callback every fit gets (``config``: LightningCLI's namespace)."""
    return [FinalValidation()]
