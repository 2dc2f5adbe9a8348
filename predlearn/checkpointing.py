"""``ValidatedCheckpoint``: step checkpoints ranked only by the validation of their own step."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn


class ValidatedCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose step checkpoints are ranked only by a fresh validation score.

    With ``every_n_train_steps=N`` and a ``monitor`` (predlearn's ``--checkpoint`` options),
    Lightning's own callback ranks the weights of step s by the last logged ``val/loss``, which
    may come from an earlier validation, and writes no ``last`` checkpoint before the first
    validation. Here, at every N-th step:

    - ``last`` is written;
    - when a validation runs right after that step, the weights are ranked by that validation's
      score, and the ranked checkpoint and ``last`` are written after it (so ``last`` holds the
      ranking, and a run resumed from it goes on exactly as an uninterrupted one; a run killed
      during that validation resumes from the ``last`` written before it, without its score);
    - the weights of step s are never ranked by another step's score;
    - the step a fit stops at (``trainer.should_stop``: its last step, marked by
      ``predlearn.final_validation``, a signal, ``max_time``, early stopping) is a checkpoint step
      in both modes: Lightning validates a stopping fit, that validation ranks the step, and
      ``last`` is written at the step and again after it (so it resumes mid-epoch exactly, not
      from an epoch end that never was).

    Validations at steps that are not checkpoint steps rank nothing (align
    ``--trainer.val_check_interval`` with ``every_n_train_steps``). On resume the ranking of the
    interrupted run is restored even when its folder changed (a new logger version), so the
    resumed run picks the same best checkpoint as an uninterrupted one. Without
    ``every_n_train_steps``, or without ``monitor``, it is ``ModelCheckpoint`` unchanged.
    """

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint``'s own key: checkpoints written by it (before this class) resume
        with their ranking and ``last`` path instead of starting a new one."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def _ranks_steps(self) -> bool:
        return self._every_n_train_steps >= 1 and self.monitor is not None

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        """Training for real: not a sanity check, a fast dev run, or a validate/test run."""
        return (not getattr(trainer, "fast_dev_run", False) and not trainer.sanity_checking
                and trainer.state.fn == "fit")

    def _stops(self, trainer: L.Trainer) -> bool:
        """The fit ends with this step (see the class docstring)."""
        return bool(trainer.should_stop) and self._fitting(trainer)

    def _is_checkpoint_step(self, trainer: L.Trainer) -> bool:
        return self._fitting(trainer) and (
            trainer.global_step % self._every_n_train_steps == 0 or bool(trainer.should_stop))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._ranks_steps():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if self._stops(trainer):
                self._save_last_if_missed(trainer)
            return
        if not self._is_checkpoint_step(trainer):
            return
        # Whether a validation follows is the fit loop's business (not public API), so `last`
        # is written now, and again after a validation of this step, with its ranking.
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._ranks_steps():
            if self._stops(trainer):
                self._rank_and_save_last(trainer)
                return
            super().on_validation_end(trainer, pl_module)
            if not self._should_save_on_train_epoch_end(trainer):
                self._save_last_if_missed(trainer)
            return
        if not trainer.sanity_checking:
            self._validated = True
        if self._is_checkpoint_step(trainer):
            self._rank_and_save_last(trainer)

    def _rank_and_save_last(self, trainer: L.Trainer) -> None:
        """Rank this step by the validation that just ran, then write ``last`` (holding the
        ranking)."""
        candidates = self._monitor_candidates(trainer)  # just logged by this validation
        if self.monitor is None or self.monitor in candidates:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def save_last_now(self, trainer: L.Trainer) -> None:
        """Write ``last`` now, out of schedule (the timed checkpoint of
        ``predlearn.preemption``): it ranks nothing and keeps no save of this step from
        happening (Lightning skips a step it believes saved)."""
        if not (self.save_last and self._fitting(trainer)):
            return
        saved = self._last_global_step_saved, self._last_checkpoint_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_global_step_saved, self._last_checkpoint_saved = saved

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._ranks_steps():
            super().on_train_epoch_end(trainer, pl_module)
            if self._should_save_on_train_epoch_end(trainer):
                self._save_last_if_missed(trainer)

    def _save_last_if_missed(self, trainer: L.Trainer) -> None:
        """Lightning writes `last` only when the same save also wrote a ranked checkpoint, so a
        run resumed from it would lose every step since its last improvement: write it anyway,
        after Lightning's own save at this point (which it would otherwise skip)."""
        if self.save_last and self._fitting(trainer) \
                and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        """A run resumed from this folder's ``last.ckpt`` goes on writing ``last.ckpt``. Lightning
        writes ``last-v1.ckpt`` beside it instead when the restored state names another file
        (the folder was moved or copied, or the file renamed), and the next resume from
        ``last.ckpt`` would silently go back to the old step."""
        if self.save_last and trainer.ckpt_path:
            own_last = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
            if os.path.realpath(trainer.ckpt_path) == os.path.realpath(own_last):
                self.last_model_path = own_last
        super()._save_last_checkpoint(trainer, monitor_candidates)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self._ranks_steps() and getattr(self, "_validated", False) \
                and not self.best_model_path:
            rank_zero_warn(
                f"checkpoint: no validation ran at a checkpoint step (every_n_train_steps="
                f"{self._every_n_train_steps}), so no checkpoint was ranked by {self.monitor}; "
                "make --trainer.val_check_interval a multiple of it "
                "(--trainer.check_val_every_n_epoch=null counts it in steps)")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The interrupted run's ranking, also when this run writes to another folder (a new
        logger version): its files stay where they are, since ``ModelCheckpoint`` never deletes
        a file outside its own folder."""
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            return
        self.best_model_path = state_dict["best_model_path"]
        for key in ("best_model_score", "best_k_models", "kth_best_model_path", "kth_value"):
            if key in state_dict:
                setattr(self, key, state_dict[key])
