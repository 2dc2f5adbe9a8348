"""Your own frames, for ``predlearn predict``: a folder of PNG images or an NPY / HDF5 array."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import TensorDataset

from predlearn.datamodules.base import SequenceDataModule

IMAGE_SUFFIXES = (".png",)


def read_frames(path: str | Path, dataset: str = "frames") -> np.ndarray:
    """Sequences as float32 (N, T, C, H, W) in [0, 1] from a PNG folder, .npy or .h5 file.

    A folder of PNG images is one sequence in file-name order (gray or RGB). Arrays may be
    (T, H, W), (T, C, H, W) or (N, T, C, H, W); uint8 values are divided by 255, float values
    must already lie in [0, 1].
    """
    path = Path(path)
    if path.is_dir():
        names = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not names:
            raise FileNotFoundError(f"{path}: no PNG frames in this folder")
        array = np.stack([_read_png(p) for p in names])  # (T, C, H, W)
    elif path.suffix == ".npy":
        array = np.load(path)
    elif path.suffix in (".h5", ".hdf5"):
        with h5py.File(path, "r") as handle:
            if dataset not in handle:
                raise KeyError(f"{path}: no dataset {dataset!r} (it has: {', '.join(handle)})")
            array = handle[dataset][()]
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    else:
        raise ValueError(f"{path}: expected a folder of PNG frames, a .npy or an .h5 file")
    return _normalise(array, path)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        image: Image.Image = opened
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB" if "A" in image.mode or image.mode == "P" else "L")
        pixels = np.asarray(image)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _normalise(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim == 4:
        array = array[None]
    if array.ndim != 5:
        raise ValueError(
            f"{path}: frames must be (T, H, W), (T, C, H, W) or (N, T, C, H, W); got shape "
            f"{array.shape}"
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{path}: float frames must lie in [0, 1]; found values in [{low:.3g}, {high:.3g}]"
        )
    return array


class FramesDataModule(SequenceDataModule):
    """Sequences of your own for ``predlearn predict``: the last ``context_frames`` of each.

    Args:
        path: a folder of PNG frames (one sequence, file-name order), or a .npy / .h5 array
            (T, H, W), (T, C, H, W) or (N, T, C, H, W); uint8 or floats in [0, 1].
        dataset: the dataset name inside an .h5 file.
        batch_size: sequences per batch.
        context_frames: observed frames the model takes (the model's own J).
        horizon: frames to predict.
    """

    def __init__(self, path: str, dataset: str = "frames", batch_size: int = 8,
                 context_frames: int = 10, horizon: int = 10) -> None:
        super().__init__(batch_size=batch_size, context_frames=context_frames, horizon=horizon)
        self.path = path
        self.dataset = dataset
        self.sequences: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        array = read_frames(self.path, self.dataset)
        if array.shape[1] < self.context_frames:
            raise ValueError(
                f"{self.path}: the model observes {self.context_frames} frames; the data has only "
                f"{array.shape[1]} per sequence"
            )
        self.sequences = torch.from_numpy(array[:, -self.context_frames:].copy())

    def train_dataloader(self):
        raise ValueError(
            "the frames data module holds sequences to predict from, not training data: use "
            "`predlearn predict --data=frames --data.path=... --ckpt_path=...`; to train, give a "
            "data set (`predlearn list` shows them)"
        )

    def predict_dataloader(self):
        if self.sequences is None:
            self.setup("predict")
        return self._loader(TensorDataset(self.sequences))
