"""Helpers shared by the tests."""

from __future__ import annotations

import lightning as L
import torch


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


class ThreadFlushProbe(L.Callback):
    """Records, at the first batch of each stage, whether the main thread and every intra-op
    thread flush denormals: ``seen[stage]`` is "flush", "keep" (none does) or "mixed"."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def _record(self, stage: str) -> None:
        from predlearn.denormals import (
            intraop_threads_flush_denormals,
            intraop_threads_keep_denormals,
        )

        if stage not in self.seen:
            self.seen[stage] = ("flush" if intraop_threads_flush_denormals() else
                                "keep" if intraop_threads_keep_denormals() else "mixed")

    def on_train_batch_start(self, *args, **kwargs) -> None:
        self._record("train")

    def on_validation_batch_start(self, *args, **kwargs) -> None:
        self._record("validation")

    def on_test_batch_start(self, *args, **kwargs) -> None:
        self._record("test")

    def on_predict_batch_start(self, *args, **kwargs) -> None:
        self._record("predict")

    class Dataset(torch.utils.data.Dataset):
        """One item: whether the thread that loads it (a loader worker's) flushes denormals."""

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> torch.Tensor:
            from predlearn.denormals import thread_flushes_denormals

            return torch.tensor(thread_flushes_denormals())
