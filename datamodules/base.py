"""The base of every predlearn data module: batches of (B, T, C, H, W) float frames in [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from predlearn import denormals
from predlearn.errors import BadFileError, DataNotFoundError, names_options_under, require
from predlearn.paper import CONTEXT_FRAMES, HORIZON, check_frame_counts


def is_whole_number(value: Any) -> bool:
    """Whether ``value`` is an int (numpy ints included, bools not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def require_positive_int(name: str, value: Any) -> None:
    """Raise ``OptionValueError(name, ...)`` unless ``value`` is an int >= 1."""
    require(is_whole_number(value) and value >= 1, name,
            f"must be a positive whole number; got {value!r}", value)


class SequenceDataModule(L.LightningDataModule):
    """Shared loader settings for sequence data sets.

    Every batch is a float tensor of shape (batch, context_frames + horizon, channels, height,
    width) with values in [0, 1]. Test and validation loaders never drop the last batch, so every
    held-out sequence is scored.

    Args:
        batch_size: sequences per batch (paper §4: 8).
        num_workers: loader worker processes.
        context_frames: observed frames J (paper §4.1: 10).
        horizon: predicted frames K in training and validation (paper §4.1: 10).
        test_horizon: predicted frames in test and predict batches; None means ``horizon``
            (KTH, paper §4.2: 20). The CLI passes it on to the model.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Name the options a data module refuses ``--data.<argument>``, in its constructor and
        when it prepares and sets up its data."""
        super().__init_subclass__(**kwargs)
        for method in ("__init__", "prepare_data", "setup"):
            if method in cls.__dict__:
                setattr(cls, method, names_options_under("data", cls.__dict__[method]))

    def __init__(
        self,
        batch_size: int = 8,  # paper §4: batch size 8
        num_workers: int = 0,
        context_frames: int = CONTEXT_FRAMES,
        horizon: int = HORIZON,
        test_horizon: int | None = None,
    ) -> None:
        super().__init__()
        require_positive_int("batch_size", batch_size)
        check_frame_counts(context_frames, horizon, test_horizon)
        require(is_whole_number(num_workers) and num_workers >= 0, "num_workers",
                f"must be a whole number >= 0; got {num_workers!r}", num_workers)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.context_frames = context_frames
        self.horizon = horizon
        self.test_horizon = test_horizon

    def frame_shape(self) -> tuple[int, int, int] | None:
        """(channels, height, width) of the frames, known before ``setup`` (it may read a
        file's header): the command line builds the model for it (``frame_channels``,
        ``frame_size``). None: not known; the command line then asks for it."""
        return None

    def test_windows(self) -> tuple[list[int], list[int], int] | None:
        """Where the test sequences were cut from, for the block bootstrap of the test scores'
        intervals (``predlearn.score_intervals.blocks_from_windows``): for each test item in
        dataset order, its series id and its first frame, and the window length (the test
        split's J + K frames). None here: the test sequences are independent (each its own
        block); data modules whose test sequences are overlapping windows of series say
        where."""
        return None

    @property
    def sequence_length(self) -> int:
        """Frames per training and validation sequence."""
        return self.context_frames + self.horizon

    @property
    def test_sequence_length(self) -> int:
        """Frames per test and predict sequence."""
        return self.context_frames + (self.test_horizon or self.horizon)

    def _loader(self, dataset: Dataset, shuffle: bool = False, **kwargs) -> DataLoader:
        """A loader in batches of ``batch_size`` that keeps the last, partial batch.

        Evaluation loaders (``shuffle=False``) in a distributed run give each rank every
        world-size-th sequence without padding: Lightning's default sampler would repeat
        sequences to even out the ranks, and they would be scored twice. ``sampler``: an order
        of the caller's (single process).
        """
        if self.num_workers > 0:  # workers flush denormals as the main thread does
            kwargs["worker_init_fn"] = denormals.worker_init_fn(kwargs.get("worker_init_fn"))
        sampler = kwargs.pop("sampler", None)  # a training order of the module's own
        if sampler is None and not shuffle and distributed():
            sampler = UnpaddedDistributedSampler(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
            **kwargs,
        )


class UnpaddedDistributedSampler(DistributedSampler):
    """Evaluation sampler of a distributed run: rank r reads items r, r + W, r + 2W, ... (W
    ranks), in order and without padding, so every item is scored exactly once.

    torch's ``DistributedSampler`` pads the ranks to equal length by repeating items; being one
    of its subclasses, this sampler is kept as it is by Lightning's loader set-up.
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.total_size = len(dataset)  # every item once, no padding
        self.num_samples = len(self._indices())

    def _indices(self) -> range:
        return range(self.rank, self.total_size, self.num_replicas)

    def __iter__(self):
        return iter(self._indices())


class ArrayShuffle(Sampler[int]):
    """A new random order of ``count`` items every epoch, kept as one int64 array: 8 bytes an
    item, where torch's ``RandomSampler`` holds a Python list of ints (about 45). It draws its
    seed from torch's generator, so ``seed_everything`` makes the order reproducible."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        for index in np.random.default_rng(seed).permutation(self.count):
            yield int(index)


def distributed() -> bool:
    """Whether this process is one of several of a distributed run."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class HDF5Backed(Dataset):
    """A dataset reading from one HDF5 file, opened lazily once per process.

    Loader workers each open their own handle: an open handle must not cross a process
    boundary, so it is dropped when the dataset is pickled.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._h5: h5py.File | None = None

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None:
            if not self.path.is_file():
                raise DataNotFoundError(f"{self.path}: the file is gone (deleted while in use?)")
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as error:
                raise BadFileError(f"{self.path}: cannot open as HDF5 ({error})") from error
        return self._h5

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None
        return state

    def close(self) -> None:
        """Close this process's handle, if open."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


class FrameWindows(Dataset):
    """Windows of ``length`` consecutive frames of a uint8 (N, H, W) array, at ``starts``.

    Items are float32 (length, 1, H, W) in [0, 1]; nothing is copied until an item is read.
    Subclasses provide ``frames`` (an in-memory array or an HDF5 dataset).
    """

    frames: Any

    def __init__(self, starts: Any, length: int) -> None:
        self.starts = np.asarray(starts, dtype=np.int64)
        self.length = length

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> torch.Tensor:
        start = int(self.starts[index])
        window = self.frames[start:start + self.length]
        return torch.from_numpy(np.divide(window[:, None], np.float32(255.0), dtype=np.float32))
