"""The checkpoint hooks of ``PredictiveModule``: reading every predlearn version's files
safely, remembering the step of loaded weights, keeping the validation curves in the file."""

from __future__ import annotations

import io
from typing import Any

import lightning as L
import torch


class CheckpointHooks(L.LightningModule):
    """Mixed into ``PredictiveModule`` (its ``curves``, ``curve_steps`` and ``trained_steps``)."""

    curves: dict[str, dict[str, torch.Tensor]]
    curve_steps: dict[str, int]
    trained_steps: int | None

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]  # Lightning's is a restricted classmethod
            cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
            strict: bool | None = None, **kwargs: Any) -> Any:
        """Lightning's, for the checkpoints of every predlearn version: the file is read safely
        and its settings upgraded first (``predlearn.checkpoint_files.read_checkpoint``)."""
        from predlearn.checkpoint_files import read_checkpoint

        checkpoint = read_checkpoint(checkpoint_path, needs_predictor="predictor" not in kwargs)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        buffer.seek(0)
        return super().load_from_checkpoint(buffer, map_location, hparams_file, strict, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the training step of the loaded weights (``trained_steps``): a test or
        predict run starts at step 0, but its pictures name the step its weights come from."""
        self.trained_steps = int(checkpoint.get("global_step", 0))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the latest validation's per-step curves in the checkpoint (``predlearn`` ->
        ``validation``: its step and curves), so that a run reports the curves of its best
        checkpoint, also after a resume (``predlearn.best_validation.best_validation``)."""
        curves = self.curves.get("val")
        if curves:
            checkpoint.setdefault("predlearn", {})["validation"] = {
                "step": self.curve_steps["val"],
                "curves": {key: [float(v) for v in curve] for key, curve in curves.items()}}
