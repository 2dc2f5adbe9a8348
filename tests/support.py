"""Helpers shared by the tests."""

from __future__ import annotations

import lightning as L


def quiet_trainer(**kwargs) -> L.Trainer:
    """A CPU trainer without logger, checkpoints, progress bar or summary."""
    options = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
               "enable_model_summary": False, "accelerator": "cpu", "devices": 1}
    options.update(kwargs)
    return L.Trainer(**options)


# Tiny sizes of every built-in model, for tests that run them all (the paper sizes are in
# configs/mmnist/). Keys are registry names; values are constructor arguments.
TINY_MODELS: dict[str, dict] = {
    "fc_lstm": {"hidden_size": 8},
    "convlstm": {"hidden_channels": [4, 4], "kernel_size": 3},
    "cdna": {"widths": [2, 3, 2, 3, 4, 2, 3]},
    "dfn": {"encoder_channels": [3, 4, 3, 4], "hidden_channels": 5,
            "decoder_channels": [4, 3, 4, 3], "head_channels": 4},
    "vpn_baseline": {"encoder_channels": 2, "dilations": [1, 2], "lstm_channels": 4,
                     "decoder_channels": 2, "decoder_blocks": 1},
    "predrnn_m": {"hidden_channels": [4, 4], "kernel_size": 3},
    "predrnn": {"hidden_channels": [4, 4], "kernel_size": 3},
}
