"""Moving MNIST's fixed validation and test sets, generated once into HDF5 caches.

A cache file's name encodes every option that changes its content (``cache_file_name``) and its
attributes record them with an md5 of the digit pool, so a cache is reused only when it holds
exactly the sequences asked for (``cache_is_valid``); otherwise it is built again, atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from predlearn.datamodules.base import HDF5Backed
from predlearn.datamodules.files import progress, written_atomically
from predlearn.datamodules.mmnist_render import (
    FRAME_SIZE,
    SPEED_RANGE,
    Overlap,
    generate_moving_mnist,
    to_tensor,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CachedSequences",
    "build_cached_sequences",
    "cache_file_name",
    "cache_is_valid",
    "digits_digest",
]

CACHE_FORMAT_VERSION = 1


def cache_file_name(
    split: str,
    source: str,
    num_digits: int,
    count: int,
    sequence_length: int,
    seed: int,
    speed_range: tuple[float, float] = SPEED_RANGE,
    overlap: Overlap = "max",
) -> str:
    """File name of a cached fixed set; it encodes every option that changes the content."""
    low, high = speed_range
    return (
        f"mmnist-v{CACHE_FORMAT_VERSION}-{split}-{source}-{num_digits}digits-{count}seq-"
        f"{sequence_length}frames-seed{seed}-speed{low:g}-{high:g}-{overlap}.h5"
    )


def build_cached_sequences(
    path: str | os.PathLike,
    digits: np.ndarray,
    count: int,
    num_digits: int,
    sequence_length: int,
    seed_entropy: list[int],
    attrs: dict[str, Any],
    overlap: Overlap = "max",
    speed_range: tuple[float, float] = SPEED_RANGE,
    chunk_size: int = 250,
) -> Path:
    """Generate ``count`` sequences into an HDF5 file (uint8, gzip, one chunk per sequence).

    Writes ``frames`` (count, T, 64, 64), ``digit_indices`` (count, D) and ``positions``
    (count, T, D, 2) plus ``attrs``, to a temporary file renamed into place at the end, so an
    interrupted build never leaves a file that looks complete.
    """
    path = Path(path)
    rng = np.random.default_rng(np.random.SeedSequence(seed_entropy))
    bar = progress(count, f"building {path.name}", unit="seq")
    try:
        with written_atomically(path) as tmp, h5py.File(tmp, "w") as h5:
            frames = h5.create_dataset(
                "frames", (count, sequence_length, FRAME_SIZE, FRAME_SIZE), dtype="u1",
                chunks=(1, sequence_length, FRAME_SIZE, FRAME_SIZE), compression="gzip",
                compression_opts=4,
            )
            indices = h5.create_dataset("digit_indices", (count, num_digits), dtype="i8")
            positions = h5.create_dataset(
                "positions", (count, sequence_length, num_digits, 2), dtype="i2"
            )
            for start in range(0, count, chunk_size):
                stop = min(start + chunk_size, count)
                batch, trajectories = generate_moving_mnist(
                    digits, stop - start, rng, num_digits, sequence_length,
                    speed_range=speed_range, overlap=overlap, return_trajectories=True,
                )
                frames[start:stop] = batch
                indices[start:stop] = trajectories.digit_indices
                positions[start:stop] = trajectories.pixel_positions
                bar.update(stop - start)
            h5.attrs.update(attrs)
    finally:
        bar.close()
    return path


def cache_is_valid(path: Path, attrs: dict[str, Any], shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a readable cache with exactly these attributes and frame shape."""
    try:
        with h5py.File(path, "r") as h5:
            stored = dict(h5.attrs)
            frames = h5["frames"]
            if frames.shape != shape or frames.dtype != np.uint8:
                return False
            frames[-1]  # reading the last sequence catches a file cut short
    except (OSError, KeyError, ValueError, RuntimeError):
        return False
    return all(key in stored and _same_value(stored[key]) == value for key, value in attrs.items())


class CachedSequences(HDF5Backed):
    """A fixed set of sequences read from an HDF5 cache; items are float32 (T, 1, 64, 64)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        with h5py.File(self.path, "r") as h5:
            self._length = int(h5["frames"].shape[0])
            self.attrs = {key: _same_value(value) for key, value in h5.attrs.items()}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} sequences")
        return to_tensor(self.h5["frames"][index])


def _same_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, int, float)."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


def digits_digest(digits: np.ndarray) -> str:
    """md5 of a digit pool, stored in a cache to tell which digits it was drawn from."""
    return hashlib.md5(np.ascontiguousarray(digits).tobytes()).hexdigest()
