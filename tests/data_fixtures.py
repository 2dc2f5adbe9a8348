"""Tiny data of every registered data module, in its real file format, for the generic tests
(``tests/test_datamodules.py``). A new data module adds one entry here: a function that writes
its tiny files into a folder and returns the module's constructor arguments, and the frame shape
(C, H, W) its batches have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from kth_fixtures import ACTIONS, write_fake_kth
from mnist_fixtures import write_fake_mnist
from radar_fixtures import write_prepared


class TinyData(NamedTuple):
    init_args: dict[str, Any]
    frame: tuple[int, int, int]  # (C, H, W) of a batch's frames
    stages: tuple[str, ...]  # what it serves: "fit" (train + val), "test", "predict"


def _mmnist(folder: Path) -> TinyData:
    root = write_fake_mnist(folder / "mnist", n_train=30, n_test=10)
    return TinyData({"root": str(root), "download": False, "num_val": 2, "num_test": 2,
                     "batch_size": 2, "train_sequences_per_epoch": 4},
                    (1, 64, 64), ("fit", "test", "predict"))


def _kth(folder: Path) -> TinyData:
    root = write_fake_kth(folder / "kth")
    return TinyData({"root": str(root), "download": False, "actions": ACTIONS,
                     "train_persons": [1, 2], "val_persons": [3], "test_persons": [17],
                     "batch_size": 2}, (1, 128, 128), ("fit", "test", "predict"))


def _radar(folder: Path) -> TinyData:
    path = write_prepared(folder / "radar.h5", np.arange(100, dtype=np.int64) * 300, size=16)
    return TinyData({"path": str(path), "batch_size": 2, "train_fraction": 0.5,
                     "val_fraction": 0.25}, (1, 16, 16), ("fit", "test", "predict"))


def _frames(folder: Path) -> TinyData:
    path = folder / "frames.npy"  # 5 sequences of 24 frames: 3 train, 1 val, 1 test
    np.save(path, np.random.default_rng(0).integers(0, 256, (5, 24, 1, 16, 16), dtype=np.uint8))
    return TinyData({"path": str(path), "batch_size": 2, "val_fraction": 0.2,
                     "test_fraction": 0.2}, (1, 16, 16), ("fit", "test", "predict"))


TINY_DATA: dict[str, Callable[[Path], TinyData]] = {
    "frames": _frames,
    "kth": _kth,
    "mmnist": _mmnist,
    "radar": _radar,
}
