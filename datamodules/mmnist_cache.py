"""Moving MNIST's fixed validation and test sets, generated once into HDF5 caches.

A cache file's name encodes every option that changes its content (``cache_file_name``) and its
attributes record them with an md5 of the digit pool, so a cache is reused only when it holds
exactly the sequences asked for (``cache_problem``); otherwise it is built again, atomically,
with a warning that says why. A cache carries a completeness marker written last
(``predlearn.datamodules.sealed``) and Fletcher-32 checksums on its chunks: a cache that is
truncated, damaged or was never finished (or was made by a predlearn without the marker) is
rebuilt when it is opened; a damaged chunk found later, while reading, is a ``BadFileError``
that says to delete the file.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from predlearn.datamodules import sealed
from predlearn.datamodules.base import HDF5Backed
from predlearn.datamodules.files import progress, remove_stale_parts
from predlearn.datamodules.mmnist_render import (
    FRAME_SIZE,
    SPEED_RANGE,
    Overlap,
    generate_moving_mnist,
    to_tensor,
)
from predlearn.errors import BadFileError, OutputError, PredlearnError
from predlearn.files import written_atomically

__all__ = [
    "CACHE_FORMAT_VERSION",
    "CachedSequences",
    "build_cached_sequences",
    "cache_file_name",
    "cache_is_valid",
    "cache_problem",
    "digits_digest",
    "ensure_cached_sequences",
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
    interrupted build never leaves a file that looks complete; the completeness marker
    (``sealed.seal``, with the CRC-32 of each dataset) is written last. Temporary files of
    builds killed long ago are deleted first.
    """
    path = Path(path)
    rng = np.random.default_rng(np.random.SeedSequence(seed_entropy))
    remove_stale_parts(path)
    bar = progress(count, f"building {path.name}", unit="seq")
    sums = sealed.Checksums()
    try:
        with written_atomically(path) as tmp, h5py.File(tmp, "w") as h5:
            frames = h5.create_dataset(
                "frames", (count, sequence_length, FRAME_SIZE, FRAME_SIZE), dtype="u1",
                chunks=(1, sequence_length, FRAME_SIZE, FRAME_SIZE), compression="gzip",
                compression_opts=4, fletcher32=True,
            )
            indices = h5.create_dataset("digit_indices", (count, num_digits), dtype="i8",
                                        fletcher32=True)
            positions = h5.create_dataset(
                "positions", (count, sequence_length, num_digits, 2), dtype="i2",
                fletcher32=True,
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
                sums.update("frames", batch)
                sums.update("digit_indices", np.asarray(trajectories.digit_indices, "i8"))
                sums.update("positions", np.asarray(trajectories.pixel_positions, "i2"))
                bar.update(stop - start)
            h5.attrs.update(attrs)
            sealed.seal(h5, sums)
    except PredlearnError:
        raise
    except OSError as error:  # the cache folder is not writable, the disk is full, ...
        raise OutputError(
            f"cannot write the Moving MNIST cache {path} ({error}); make {path.parent} "
            "writable, or give another --data.root"
        ) from error
    finally:
        bar.close()
    return path


def cache_problem(path: Path, attrs: dict[str, Any], shape: tuple[int, ...]) -> str | None:
    """Why ``path`` is not a complete cache with exactly these attributes and frame shape, or
    None when it is (the cheap checks of ``sealed.problem``, then the attributes)."""
    reason = sealed.problem(path, required=("frames", "digit_indices", "positions"))
    if reason is not None:
        return reason
    with h5py.File(path, "r") as h5:
        stored = dict(h5.attrs)
        frames = h5["frames"]
        if frames.shape != shape or frames.dtype != np.uint8:
            return f"it holds frames {frames.dtype} {frames.shape}, not uint8 {shape}"
    differ = [key for key, value in attrs.items()
              if key not in stored or _same_value(stored[key]) != value]
    if differ:
        return f"it was built with other settings ({', '.join(differ)})"
    return None


def cache_is_valid(path: Path, attrs: dict[str, Any], shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a complete cache with exactly these attributes and frame shape."""
    return cache_problem(path, attrs, shape) is None


def ensure_cached_sequences(path: Path, attrs: dict[str, Any], shape: tuple[int, ...],
                            build: Any) -> Path:
    """``path`` when it is a valid cache; otherwise ``build()`` it, warning why when a file was
    there (damaged, unfinished, or built with other settings)."""
    if path.exists():
        reason = cache_problem(path, attrs, shape)
        if reason is None:
            return path
        warnings.warn(f"Moving MNIST: rebuilding the cache {path}: {reason}", stacklevel=3)
    return build()


class CachedSequences(HDF5Backed):
    """A fixed set of sequences read from an HDF5 cache; items are float32 (T, 1, 64, 64)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        h5 = self.h5  # BadFileError / DataNotFoundError naming the file
        try:
            self._length = int(h5["frames"].shape[0])
            self.attrs = {key: _same_value(value) for key, value in h5.attrs.items()}
        except KeyError as error:
            raise BadFileError(f"{self.path}: not a Moving MNIST cache (no 'frames'); "
                               "delete it and run again to rebuild it") from error
        finally:
            self.close()

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} sequences")
        try:
            frames = self.h5["frames"][index]
        except OSError as error:  # a chunk failed its Fletcher-32 check, or the file shrank
            raise sealed.unreadable(self.path, error,
                                    "Delete it and run again: the cache will be rebuilt.") \
                from error
        return to_tensor(frames)


def _same_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, int, float)."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


def digits_digest(digits: np.ndarray) -> str:
    """md5 of a digit pool, stored in a cache to tell which digits it was drawn from."""
    return hashlib.md5(np.ascontiguousarray(digits).tobytes()).hexdigest()
