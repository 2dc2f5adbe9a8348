"""Moving MNIST (paper §4.1; the bouncing-digits generator of Srivastava et al. 2015).

Each sequence shows ``num_digits`` MNIST digits (28 x 28) moving in a 64 x 64 frame. A digit
starts at a uniformly random position fully inside the frame, moves with a direction uniform on
the unit circle and a speed uniform in [3, 5) pixels per frame, and bounces off the edges (the
position is reflected and the velocity component reversed), so it never leaves the frame. Positions
are floats; each frame pastes the digits at the rounded positions. Where digits overlap the frame
takes the pixel-wise maximum, as Srivastava et al.'s generator does: that is how digits occlude
each other here (``overlap="occlude"`` instead pastes later digits' strokes over earlier ones).

Training sequences are generated on the fly (an unbounded training set); the validation and test
sets are fixed, generated once from their own digit pools and cached in HDF5 files.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided
from torch.utils.data import Dataset

from predlearn.datamodules.base import HDF5Backed, SequenceDataModule
from predlearn.datamodules.files import progress, written_atomically
from predlearn.datamodules.mnist import DigitPools, DigitSource, load_digits, required_files
from predlearn.datamodules.stream import BatchStream, ResumableStreamLoader
from predlearn.registry import register_datamodule

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

Overlap = Literal["max", "occlude"]
DIGIT_SIZE = 28
FRAME_SIZE = 64  # paper §4.1: 64 x 64 frames
SPEED_RANGE = (3.0, 5.0)  # paper §4.1 (Srivastava et al.): speed uniform in [3, 5) px/frame
CACHE_FORMAT_VERSION = 1
# Purpose tags mixed into the seeds so the three kinds of sequences never share a random stream.
_TRAIN_TAG, _VAL_TAG, _TEST_TAG = 0, 1, 2


@dataclass(frozen=True)
class Trajectories:
    """Where the digits of ``N`` sequences are: arrays over (sequence, frame, digit, row/col).

    Attributes:
        positions: (N, T, D, 2) float top-left corner (row, column) of each digit in each frame.
        velocities: (N, T, D, 2) velocity that carries frame t to frame t + 1 (after any bounce
            at frame t), in pixels per frame.
        digit_indices: (N, D) index of each digit in the pool it was drawn from.
    """

    positions: np.ndarray
    velocities: np.ndarray
    digit_indices: np.ndarray

    @property
    def pixel_positions(self) -> np.ndarray:
        """(N, T, D, 2) int64 positions at which the digits are drawn (the rounded floats)."""
        return np.rint(self.positions).astype(np.int64)


def _check_geometry(frame_size: int, digit_size: int, speed_range: tuple[float, float]) -> int:
    limit = frame_size - digit_size
    if limit < 1:
        raise ValueError(f"frame_size {frame_size} must exceed the digit size {digit_size}")
    low, high = speed_range
    if not 0 <= low <= high <= limit:
        raise ValueError(
            f"speed_range {speed_range} must satisfy 0 <= low <= high <= {limit} (the free space), "
            "so that one reflection per step keeps a digit inside the frame"
        )
    return limit


def sample_trajectories(
    rng: np.random.Generator,
    num_sequences: int,
    num_digits: int = 2,
    sequence_length: int = 20,
    frame_size: int = FRAME_SIZE,
    digit_size: int = DIGIT_SIZE,
    speed_range: tuple[float, float] = SPEED_RANGE,
    pool_size: int | None = None,
) -> Trajectories:
    """Draw bouncing trajectories (and, with ``pool_size``, which digits) for ``num_sequences``.

    Random numbers are drawn in a fixed order (digit indices, start positions, directions,
    speeds), so a generator in a given state always gives the same trajectories.
    """
    limit = _check_geometry(frame_size, digit_size, speed_range)
    shape = (num_sequences, num_digits)
    indices = (
        rng.integers(0, pool_size, size=shape)
        if pool_size is not None
        else np.zeros(shape, dtype=np.int64)
    )
    position = rng.uniform(0.0, limit, size=(*shape, 2))
    angle = rng.uniform(0.0, 2.0 * math.pi, size=shape)
    speed = rng.uniform(speed_range[0], speed_range[1], size=shape)
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=-1) * speed[..., None]
    positions = np.empty((num_sequences, sequence_length, num_digits, 2))
    velocities = np.empty_like(positions)
    for t in range(sequence_length):
        if t > 0:
            position = position + velocity
            low, high = position < 0.0, position > limit
            position = np.where(low, -position, np.where(high, 2.0 * limit - position, position))
            velocity = np.where(low | high, -velocity, velocity)
        positions[:, t] = position
        velocities[:, t] = velocity
    return Trajectories(positions, velocities, indices)


def render_frames(
    digits: np.ndarray,
    pixel_positions: np.ndarray,
    frame_size: int = FRAME_SIZE,
    overlap: Overlap = "max",
) -> np.ndarray:
    """Paste digits (N, D, S, S) uint8 at integer top-left positions (N, T, D, 2) into frames.

    Returns uint8 frames (N, T, frame_size, frame_size). Overlapping digits combine by the
    pixel-wise maximum (``"max"``) or the later digit's nonzero pixels replace the earlier
    ones (``"occlude"``). Positions must keep every digit fully inside the frame.
    """
    if overlap not in ("max", "occlude"):
        raise ValueError(f"overlap must be 'max' or 'occlude', got {overlap!r}")
    digits = np.asarray(digits, dtype=np.uint8)
    num_sequences, num_digits, size = digits.shape[0], digits.shape[1], digits.shape[2]
    sequence_length = pixel_positions.shape[1]
    if pixel_positions.min(initial=0) < 0 or pixel_positions.max(initial=0) > frame_size - size:
        raise ValueError("a digit position lies outside the frame")
    frames = np.zeros((num_sequences, sequence_length, frame_size, frame_size), dtype=np.uint8)
    rows = np.arange(num_sequences)
    free = frame_size - size + 1
    for t in range(sequence_length):
        frame = frames[:, t]
        # A writeable view of every size x size window of every frame: windows[n, r, c] is the
        # patch whose top-left corner is (r, c) in frame n. Each sequence writes its own frame, so
        # the fancy-indexed writes below never collide.
        s0, s1, s2 = frame.strides
        windows = as_strided(
            frame, (num_sequences, free, free, size, size), (s0, s1, s2, s1, s2), writeable=True
        )
        for d in range(num_digits):
            r, c = pixel_positions[:, t, d, 0], pixel_positions[:, t, d, 1]
            patch = windows[rows, r, c]
            digit = digits[:, d]
            if overlap == "max":
                windows[rows, r, c] = np.maximum(patch, digit)
            else:
                windows[rows, r, c] = np.where(digit > 0, digit, patch)
    return frames


def generate_moving_mnist(
    digits: np.ndarray,
    num_sequences: int,
    rng: np.random.Generator,
    num_digits: int = 2,
    sequence_length: int = 20,
    frame_size: int = FRAME_SIZE,
    speed_range: tuple[float, float] = SPEED_RANGE,
    overlap: Overlap = "max",
    return_trajectories: bool = False,
) -> np.ndarray | tuple[np.ndarray, Trajectories]:
    """Generate Moving MNIST sequences from a pool of digits (M, 28, 28) uint8.

    Returns uint8 frames (num_sequences, sequence_length, frame_size, frame_size), and with
    ``return_trajectories`` also the ``Trajectories`` (positions, velocities, digit indices).
    Digits are drawn uniformly with replacement from the pool.
    """
    digits = np.asarray(digits)
    if digits.ndim != 3 or digits.shape[1] != digits.shape[2] or len(digits) == 0:
        raise ValueError(f"digits must be a non-empty (M, S, S) array, got shape {digits.shape}")
    if num_digits < 1 or sequence_length < 1 or num_sequences < 0:
        raise ValueError(
            f"need num_digits >= 1, sequence_length >= 1 and num_sequences >= 0; got "
            f"{num_digits}, {sequence_length}, {num_sequences}"
        )
    trajectories = sample_trajectories(
        rng, num_sequences, num_digits, sequence_length, frame_size, digits.shape[1],
        speed_range, pool_size=len(digits),
    )
    frames = render_frames(
        digits[trajectories.digit_indices], trajectories.pixel_positions, frame_size, overlap
    )
    return (frames, trajectories) if return_trajectories else frames


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., T, H, W) -> float32 (..., T, 1, H, W) in [0, 1].

    Converted in numpy: a torch element-wise op on such small tensors can cost milliseconds in
    thread-pool start-up when several intra-op threads are enabled.
    """
    scaled = np.divide(frames[..., None, :, :], np.float32(255.0), dtype=np.float32)
    return torch.from_numpy(scaled)


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
        return _to_tensor(frames)


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


def _cache_is_valid(path: Path, attrs: dict[str, Any], shape: tuple[int, ...]) -> bool:
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
        return _to_tensor(self.h5["frames"][index])


def _same_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, int, float)."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


def _digest(digits: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(digits).tobytes()).hexdigest()


@register_datamodule("mmnist")
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
            ``FileNotFoundError`` saying which files to put where.
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
        context_frames: int = 10,  # paper §4.1: 10 input frames
        horizon: int = 10,  # paper §4.1: 10 predicted frames
    ) -> None:
        super().__init__(batch_size, num_workers, context_frames, horizon)
        required_files(digits)  # validates the source name
        positive = {
            "num_digits": num_digits,
            "num_test": num_test,
            "num_val": num_val,
            "train_sequences_per_epoch": train_sequences_per_epoch,
        }
        if test_num_digits is not None:
            positive["test_num_digits"] = test_num_digits
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if overlap not in ("max", "occlude"):
            raise ValueError(f"overlap must be 'max' or 'occlude', got {overlap!r}")
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
        """Build the cached set of ``split`` unless a valid one (same attributes) exists."""
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
            "digits_md5": _digest(pool),
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
        if path.exists() and _cache_is_valid(path, attrs, shape):
            return path
        return build_cached_sequences(
            path, pool, count, num_digits, self.sequence_length,
            [self.eval_seed, tag, num_digits, count], attrs, self.overlap,
        )

    def prepare_data(self) -> None:
        """Download missing MNIST files and build the validation and test caches (rank 0)."""
        self._ensure_cache("val")
        self._ensure_cache("test")

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
        self._train_loader = ResumableStreamLoader(
            self._require(self.train_set, "fit"), count_consumed=True,
            num_workers=self.num_workers,
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
