"""Moving MNIST (paper §4.1; the bouncing-digits generator of Srivastava et al. 2015).

Training sequences are generated on the fly (an unbounded training set); the validation and test
sets are fixed, generated once from their own digit pools and cached in HDF5 files.

The layers: ``mmnist_render`` (trajectories and frames), ``mmnist_cache`` (the cached fixed
sets), ``mnist`` (the digit pools) and this module (the training stream and the Lightning data
module). The public names of the first two are importable from here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from predlearn.datamodules.base import SequenceDataModule, require_positive_int
from predlearn.datamodules.mmnist_cache import (
    CACHE_FORMAT_VERSION,
    CachedSequences,
    build_cached_sequences,
    cache_file_name,
    digits_digest,
    ensure_cached_sequences,
)
from predlearn.datamodules.mmnist_render import (
    FRAME_SIZE,
    SPEED_RANGE,
    Overlap,
    Trajectories,
    generate_moving_mnist,
    render_frames,
    sample_trajectories,
    to_tensor,
)
from predlearn.datamodules.mnist import DigitPools, DigitSource, load_digits
from predlearn.datamodules.stream import BatchStream, ResumableStreamLoader
from predlearn.errors import require
from predlearn.paper import CONTEXT_FRAMES, HORIZON

__all__ = [
    "CachedSequences",
    "MovingMNISTDataModule",
    "MovingMNISTStream",
    "Trajectories",
    "build_cached_sequences",
    "cache_file_name",
    "generate_moving_mnist",
    "render_frames",
    "sample_trajectories",
]

# Purpose tags mixed into the seeds so the three kinds of sequences never share a random stream.
_TRAIN_TAG, _VAL_TAG, _TEST_TAG = 0, 1, 2


class MovingMNISTStream(BatchStream):
    """Training sequences generated on the fly, in batches: every epoch draws fresh ones.

    Batch ``n`` of epoch ``e`` on rank ``r`` is generated from its own seed (seed, r, e, n)
    (``predlearn.datamodules.stream``), so a given seed reproduces the stream, every DDP rank draws
    different sequences, the result does not depend on the number of loader workers, and a
    resumed run continues with the very batch it would have drawn next.
    ``sequences_per_epoch`` is split over the ranks.

    Items are float32 batches (b, T, 1, 64, 64) in [0, 1].
    """

    def __init__(
        self,
        digits: np.ndarray,
        sequences_per_epoch: int,
        num_digits: int = 2,
        sequence_length: int = 20,
        seed: int = 0,
        batch_size: int = 8,
        overlap: Overlap = "max",
        speed_range: tuple[float, float] = SPEED_RANGE,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__(sequences_per_epoch, batch_size, seed, rank, world_size, tag=_TRAIN_TAG)
        self.digits = np.asarray(digits, dtype=np.uint8)
        self.num_digits = num_digits
        self.sequence_length = sequence_length
        self.overlap = overlap
        self.speed_range = speed_range

    def make_batch(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        frames = generate_moving_mnist(
            self.digits, count, rng, self.num_digits, self.sequence_length,
            speed_range=self.speed_range, overlap=self.overlap,
        )
        return to_tensor(frames)


class MovingMNISTDataModule(SequenceDataModule):
    """Moving MNIST, paper §4.1: 20-frame sequences (10 observed, 10 predicted) of 64 x 64 frames.

    Training sequences are generated on the fly from the training digits; the validation set
    (validation digits) and the test set (test digits, 5,000 sequences as in the paper) are fixed
    and cached in ``root/cache/``. The predict loader is the test set. Batches are float32
    (B, context_frames + horizon, 1, 64, 64) in [0, 1].

    Args:
        root: folder of the MNIST files; caches go to ``root/cache/``.
        digits: digit source: ``"mnist"`` (the paper: training digits from the MNIST training
            set, last 5,000 of them held out for validation; test digits from the test set;
            needs the four MNIST files), ``"mnist_test"`` (deviation: all digits from the test
            set, split 7,000 / 1,000 / 2,000 in file order; needs the two t10k files) or
            ``"bundled"`` (1,000 test digits shipped with predlearn, for offline demos).
        num_digits: digits per training and validation sequence (paper: 2, MNIST-2, or 3).
        test_num_digits: digits per test sequence; None means ``num_digits``. 3 with
            ``num_digits=2`` is the paper's transfer test (train on 2 digits, test on 3).
        num_test: sequences in the fixed test set (paper §4.1: 5,000).
        num_val: sequences in the fixed validation set.
        train_sequences_per_epoch: training sequences generated per epoch (over all ranks).
        seed: seed of the training stream (mixed with rank, worker and epoch).
        eval_seed: seed of the fixed validation and test sets; kept apart from ``seed`` so that
            runs with different training seeds are scored on the same sequences.
        overlap: how overlapping digits combine: ``"max"`` (pixel-wise maximum, as in
            Srivastava et al.) or ``"occlude"`` (later digits drawn over earlier ones).
        download: download missing MNIST files (md5-checked); when false, a missing file raises
            ``DataNotFoundError`` saying which files to put where.
        batch_size: sequences per batch (paper §4: 8).
        num_workers: loader worker processes.
        context_frames: observed frames (paper §4.1: 10).
        horizon: predicted frames (paper §4.1: 10).
    """

    def __init__(
        self,
        root: str = "data/mnist",
        digits: Literal["mnist", "mnist_test", "bundled"] = "mnist",
        num_digits: int = 2,  # paper §4.1: MNIST-2
        test_num_digits: int | None = None,
        num_test: int = 5000,  # paper §4.1: 5,000 test sequences
        num_val: int = 1000,
        train_sequences_per_epoch: int = 10000,
        seed: int = 0,
        eval_seed: int = 0,
        overlap: Literal["max", "occlude"] = "max",
        download: bool = True,
        batch_size: int = 8,  # paper §4: batch size 8
        num_workers: int = 0,
        context_frames: int = CONTEXT_FRAMES,  # paper §4.1: 10 input frames
        horizon: int = HORIZON,  # paper §4.1: 10 predicted frames
    ) -> None:
        super().__init__(batch_size, num_workers, context_frames, horizon)
        require(digits in ("mnist", "mnist_test", "bundled"), "digits",
                f"must be 'mnist', 'mnist_test' or 'bundled'; got {digits!r}", digits)
        positive = {
            "num_digits": num_digits,
            "num_test": num_test,
            "num_val": num_val,
            "train_sequences_per_epoch": train_sequences_per_epoch,
        }
        if test_num_digits is not None:
            positive["test_num_digits"] = test_num_digits
        for name, value in positive.items():
            require_positive_int(name, value)
        require(overlap in ("max", "occlude"), "overlap",
                f"must be 'max' or 'occlude'; got {overlap!r}", overlap)
        require(not Path(root).expanduser().is_file(), "root",
                f"{root} is a file; give the folder that holds (or will hold) the MNIST files",
                root)
        self.save_hyperparameters()
        self.root = Path(root)
        self.digits: DigitSource = digits
        self.num_digits = num_digits
        self.test_num_digits = num_digits if test_num_digits is None else test_num_digits
        self.num_test = num_test
        self.num_val = num_val
        self.train_sequences_per_epoch = train_sequences_per_epoch
        self.seed = seed
        self.eval_seed = eval_seed
        self.overlap: Overlap = overlap
        self.download = download
        self._pools: DigitPools | None = None
        self.train_set: MovingMNISTStream | None = None
        self.val_set: CachedSequences | None = None
        self.test_set: CachedSequences | None = None
        self._train_loader: ResumableStreamLoader | None = None

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def pools(self) -> DigitPools:
        """The digit pools (loaded once; downloads missing files when ``download`` is true)."""
        if self._pools is None:
            self._pools = load_digits(self.digits, self.root, self.download)
        return self._pools

    def cache_path(self, split: Literal["val", "test"]) -> Path:
        """The HDF5 cache file of the fixed validation or test set."""
        count, digits = (
            (self.num_val, self.num_digits) if split == "val"
            else (self.num_test, self.test_num_digits)
        )
        return self.cache_dir / cache_file_name(
            split, self.digits, digits, count, self.sequence_length, self.eval_seed,
            SPEED_RANGE, self.overlap,
        )

    def _ensure_cache(self, split: Literal["val", "test"]) -> Path:
        """Build the cached set of ``split`` unless a complete one with the same attributes
        exists; a damaged, unfinished or different one is rebuilt with a warning."""
        path = self.cache_path(split)
        count, num_digits, tag = (
            (self.num_val, self.num_digits, _VAL_TAG) if split == "val"
            else (self.num_test, self.test_num_digits, _TEST_TAG)
        )
        pool = self.pools().pool(split)
        attrs = {
            "format_version": CACHE_FORMAT_VERSION,
            "split": split,
            "digit_source": self.digits,
            "digits_md5": digits_digest(pool),
            "num_digits": num_digits,
            "count": count,
            "sequence_length": self.sequence_length,
            "frame_size": FRAME_SIZE,
            "eval_seed": self.eval_seed,
            "speed_min": SPEED_RANGE[0],
            "speed_max": SPEED_RANGE[1],
            "overlap": self.overlap,
        }
        shape = (count, self.sequence_length, FRAME_SIZE, FRAME_SIZE)
        return ensure_cached_sequences(path, attrs, shape, lambda: build_cached_sequences(
            path, pool, count, num_digits, self.sequence_length,
            [self.eval_seed, tag, num_digits, count], attrs, self.overlap,
        ))

    def prepare_data(self) -> None:
        """Download missing MNIST files and build the validation and test caches (rank 0)."""
        self._ensure_cache("val")
        self._ensure_cache("test")

    def frame_shape(self) -> tuple[int, int, int]:
        return (1, FRAME_SIZE, FRAME_SIZE)

    def setup(self, stage: str | None = None) -> None:
        """Create the datasets ``stage`` needs (building a missing cache if ``prepare_data``
        was not called)."""
        if stage in (None, "fit"):
            self.train_set = self._make_train_set()
        if stage in (None, "fit", "validate"):
            self.val_set = CachedSequences(self._ensure_cache("val"))
        if stage in (None, "test", "predict"):
            self.test_set = CachedSequences(self._ensure_cache("test"))

    def _make_train_set(self) -> MovingMNISTStream:
        rank = world_size = None
        if self.trainer is not None:
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
        return MovingMNISTStream(
            self.pools().train, self.train_sequences_per_epoch, self.num_digits,
            self.sequence_length, self.seed, self.batch_size, self.overlap,
            rank=rank, world_size=world_size,
        )

    def _require(self, dataset: Dataset | None, stage: str) -> Dataset:
        if dataset is None:
            self.setup(stage)
            dataset = {"fit": self.train_set, "validate": self.val_set}.get(stage, self.test_set)
        assert dataset is not None
        return dataset

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        self._train_loader = ResumableStreamLoader(
            self.train_set, count_consumed=True, num_workers=self.num_workers,
        )
        return self._train_loader

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count the training batches the trainer takes (the saved position for exact resume;
        Lightning calls this hook on each batch it is about to train on, after prefetching)."""
        if self.trainer is not None and self.trainer.training and self._train_loader is not None:
            self._train_loader.mark_consumed()
        return batch

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self._require(self.val_set, "validate"))

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self._require(self.test_set, "test"))

    def predict_dataloader(self) -> torch.utils.data.DataLoader:
        """The test set, in order."""
        return self._loader(self._require(self.test_set, "predict"))

    def teardown(self, stage: str | None = None) -> None:
        for dataset in (self.val_set, self.test_set):
            if dataset is not None:
                dataset.close()
