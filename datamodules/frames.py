"""Your own frames, for ``predlearn predict``: a folder of PNG images or an NPY / HDF5 array.

Values are scaled by what the file says its range is, never by a guess: 8-bit images and uint8
arrays are divided by 255, 16-bit PNG images by 65535; float arrays must already lie in [0, 1].
Integer arrays of other types (a uint16 .npy, say) carry no range, so they are refused with a
message saying how to convert them, rather than divided by 255 as if they were 8-bit.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import TensorDataset

from predlearn.datamodules.base import SequenceDataModule
from predlearn.errors import BadFileError, DataNotFoundError, UsageError, require
from predlearn.paper import CONTEXT_FRAMES, HORIZON

IMAGE_SUFFIXES = (".png",)


class NoSuchDatasetError(BadFileError, KeyError):
    """An HDF5 file has no dataset of the name asked for (a ``KeyError`` too, as h5py's)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")  # how Pillow opens 16-bit gray PNG


def read_frames(path: str | Path, dataset: str = "frames") -> np.ndarray:
    """Sequences as float32 (N, T, C, H, W) in [0, 1] from a PNG folder, .npy or .h5 file.

    A folder of PNG images is one sequence in file-name order (gray or RGB, 8 or 16 bits; all
    of one size). Arrays may be (T, H, W), (T, C, H, W) or (N, T, C, H, W); uint8 values are
    divided by 255, float values must already lie in [0, 1] (and be finite). Raises
    ``DataNotFoundError`` for a missing path or a folder without PNG files, ``BadFileError``
    (naming the file) for one that cannot be read, has the wrong shape or values.
    """
    path = Path(path)
    if path.is_dir():
        names = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not names:
            raise DataNotFoundError(f"{path}: no PNG frames in this folder")
        images = [_read_png(p) for p in names]  # each (C, H, W) float32 in [0, 1]
        for name, image in zip(names, images, strict=True):
            if image.shape != images[0].shape:
                raise BadFileError(f"{name}: frame of shape {image.shape}, but {names[0].name} "
                                   f"is {images[0].shape}; every frame must have one size")
        return _normalise(np.stack(images), path)  # (T, C, H, W)
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file or folder")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise BadFileError(f"{path}: cannot read as a .npy array ({error}); it is damaged "
                               "or not a numpy array file") from error
    elif path.suffix in (".h5", ".hdf5"):
        try:
            with h5py.File(path, "r") as handle:
                if dataset not in handle or not isinstance(handle[dataset], h5py.Dataset):
                    raise NoSuchDatasetError(
                        f"{path}: no dataset {dataset!r} (it has: "
                        f"{', '.join(handle) or 'nothing'}); choose one with --data.dataset"
                    )
                array = handle[dataset][()]
        except OSError as error:
            raise BadFileError(f"{path}: cannot read as HDF5 ({error}); it is truncated, "
                               "damaged or not HDF5") from error
    else:
        raise BadFileError(f"{path}: expected a folder of PNG frames, a .npy or an .h5 file")
    return _normalise(np.asarray(array), path)


def _read_png(path: Path) -> np.ndarray:
    """One PNG image as float32 (C, H, W) in [0, 1], scaled by its own bit depth."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image: Image.Image = opened
            image.load()
            if image.mode in _SIXTEEN_BIT_MODES:
                pixels = np.asarray(image).astype(np.float32) / 65535.0
                if pixels.max(initial=0.0) > 1.0:  # mode "I" holding more than 16 bits
                    raise BadFileError(f"{path}: integer image with values above 65535; give "
                                       "8- or 16-bit PNG frames")
                return pixels[None]
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB" if "A" in image.mode or image.mode == "P" else "L")
            pixels = np.asarray(image).astype(np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadFileError(f"{path}: cannot read as a PNG image ({error}); it is damaged or "
                           "truncated") from error
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _normalise(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim == 4:
        array = array[None]
    if array.ndim != 5 or 0 in array.shape:
        raise BadFileError(
            f"{path}: frames must be (T, H, W), (T, C, H, W) or (N, T, C, H, W) with no empty "
            f"axis; got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise BadFileError(
            f"{path}: frames of type {array.dtype}; give uint8 (divided by 255) or floats in "
            "[0, 1] (for other integers, divide by their maximum first): the range of "
            f"{array.dtype} values is not known"
        )
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise BadFileError(f"{path}: frames hold NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise BadFileError(
            f"{path}: float frames must lie in [0, 1]; found values in [{low:.3g}, {high:.3g}]"
        )
    return array


class FramesDataModule(SequenceDataModule):
    """Sequences of your own for ``predlearn predict``: the last ``context_frames`` of each.

    Args:
        path: a folder of PNG frames (one sequence, file-name order), or a .npy / .h5 array
            (T, H, W), (T, C, H, W) or (N, T, C, H, W); uint8 or floats in [0, 1] (see the
            module docstring for 16-bit data).
        dataset: the dataset name inside an .h5 file.
        batch_size: sequences per batch.
        context_frames: observed frames the model takes (the model's own J).
        horizon: frames to predict.
    """

    def __init__(self, path: str, dataset: str = "frames", batch_size: int = 8,
                 context_frames: int = CONTEXT_FRAMES, horizon: int = HORIZON) -> None:
        super().__init__(batch_size=batch_size, context_frames=context_frames, horizon=horizon)
        require(bool(str(path).strip()), "path",
                "give a folder of PNG frames or a .npy / .h5 file", path)
        require(bool(dataset), "dataset", "give the name of the dataset in the .h5 file",
                dataset)
        self.path = path
        self.dataset = dataset
        self.sequences: torch.Tensor | None = None
        self._array: np.ndarray | None = None  # read once: for the frame shape, then setup

    def frame_shape(self) -> tuple[int, int, int]:
        if self._array is None:
            self._array = read_frames(self.path, self.dataset)
        channels, height, width = self._array.shape[2:]
        return (channels, height, width)

    def setup(self, stage: str | None = None) -> None:
        if self.sequences is not None:
            return
        array = self._array if self._array is not None else read_frames(self.path, self.dataset)
        if array.shape[1] < self.context_frames:
            raise BadFileError(
                f"{self.path}: the model observes {self.context_frames} frames; the data has only "
                f"{array.shape[1]} per sequence"
            )
        self.sequences = torch.from_numpy(array[:, -self.context_frames:].copy())

    def train_dataloader(self):
        raise UsageError(
            "the frames data module holds sequences to predict from, not training data: use "
            "`predlearn predict --data=frames --data.path=... --ckpt_path=...`; to train, give a "
            "data set (`predlearn list` shows them)"
        )

    def predict_dataloader(self):
        if self.sequences is None:
            self.setup("predict")
        return self._loader(TensorDataset(self.sequences))
