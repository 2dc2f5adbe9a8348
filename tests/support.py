"""Helpers shared by the tests."""

from __future__ import annotations

import lightning as L


def quiet_trainer(**kwargs) -> L.Trainer:
    """A CPU trainer without logger, checkpoints, progress bar or summary."""
    options = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
               "enable_model_summary": False, "accelerator": "cpu", "devices": 1}
    options.update(kwargs)
    return L.Trainer(**options)
