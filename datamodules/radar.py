"""Radar echo (paper §4.3): 20-frame sliding windows over a time series of 100 x 100 radar frames.

The file comes from ``predlearn prepare radar`` (``predlearn.datamodules.radar_prepare``): dataset
``frames`` uint8 (N, H, W) = round(255 x) and ``timestamps`` int64 seconds, strictly increasing.
The file must carry the completeness marker that ``prepare radar`` writes last, with the CRC-32 of
its datasets (``predlearn.datamodules.sealed``), checked when the file is read; frames that are not
uint8 are refused, never divided by 255 as if they were. A file of ``prepare radar`` without the
marker (unfinished, damaged, or from a predlearn before the marker) is refused with a message
saying to run ``predlearn prepare radar`` again; a file that ``prepare radar`` did not write at
all (none of its attributes: your own frames) is refused saying to read it with
``--data=frames``.
The series is split in time: train, then validation (the end of the training period, for
checkpoint selection), then test (the last ``1 - train_fraction`` of the frames). A window is
``context_frames + horizon`` consecutive frames that lie inside one split and never span a gap
in time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import h5py
import numpy as np
from torch.utils.data import DataLoader

from predlearn.datamodules import sealed
from predlearn.datamodules.base import FrameWindows, SequenceDataModule, require_positive_int
from predlearn.errors import BadFileError, DataError, DataNotFoundError, require
from predlearn.paper import CONTEXT_FRAMES, HORIZON
from predlearn.units import ScoringSettings, ValueMapping, check_scoring_options

__all__ = [
    "RadarDataModule",
    "RadarSplits",
    "RadarWindows",
    "gap_free_runs",
    "load_radar_file",
    "read_value_mapping",
    "split_windows",
    "window_starts",
]

GAP_FACTOR = 1.5  # a step longer than 1.5 x the nominal interval is a gap
#: attributes that every file of ``prepare radar`` has (with the completeness marker)
PREPARED_ATTRIBUTES = ("format_version", "source_format", "dbz_min", "dbz_max", "zr_a", "zr_b")
#: the HDF5 signature, at the start of the file or after a user block of 512 x 2^k bytes
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SIGNATURE_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)


def _looks_like_hdf5(path: Path) -> bool:
    """Whether ``path`` starts as an HDF5 file does (a truncated one still does)."""
    with path.open("rb") as handle:
        for offset in SIGNATURE_OFFSETS:
            handle.seek(offset)
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
    return False


def written_by_prepare(path: Path) -> bool:
    """Whether ``path`` is, or was meant to be, a file of ``prepare radar``: HDF5 (or what is
    left of one) with its completeness marker or any of its attributes. False for a file of
    your own (a plain HDF5 of frames, a .npy), which wants ``--data=frames``."""
    if not _looks_like_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as h5:
            names = set(h5.attrs)
    except OSError:  # truncated or damaged: it may have been one
        return True
    return bool(names & {sealed.MARKER, *PREPARED_ATTRIBUTES})


def not_prepared(path: Path) -> BadFileError:
    """The refusal of a file that ``prepare radar`` did not write, pointing to ``frames``."""
    return BadFileError(
        f"{path}: not a file of `predlearn prepare radar` (which converts FMI, KNMI and OPERA "
        f"ODIM products); for your own arrays use --data=frames --data.path={path} "
        "(docs/own-data.md)")


def load_radar_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` (N, H, W) uint8 and ``timestamps`` (N,) int64 of a prepared radar file.

    Raises ``DataNotFoundError`` for a missing file, ``BadFileError`` pointing to
    ``--data=frames`` for a file that ``prepare radar`` did not write (``written_by_prepare``),
    and ``BadFileError`` (naming the file and saying to run ``predlearn prepare radar`` again)
    for one of its files that is truncated or damaged (its completeness marker or CRC-32 does
    not match), lacks ``frames`` or ``timestamps``, or holds frames that are not uint8 (N, H,
    W) — 16-bit or float frames are refused, not rescaled — or times that do not increase.
    """
    path = Path(path)
    again = f"make it again with `predlearn prepare radar SOURCE... --out {path}`"
    if not path.is_file():
        raise DataNotFoundError(
            f"radar file {path} not found; make it with "
            f"`predlearn prepare radar SOURCE... --out {path}` (see docs/data.md, radar)"
        )
    reason = sealed.problem(path, required=("frames", "timestamps"))
    if reason is not None and not written_by_prepare(path):
        raise not_prepared(path)
    if reason is not None:
        raise BadFileError(f"{path}: not a complete file of `predlearn prepare radar`: {reason}; "
                           f"{again}")
    try:
        with h5py.File(path, "r") as h5:
            frames, stamps = h5["frames"][()], h5["timestamps"][()]
            reason = (sealed.checksum_problem(h5, "frames", frames)
                      or sealed.checksum_problem(h5, "timestamps", stamps))
    except OSError as error:
        raise BadFileError(f"{path}: cannot read ({error}); the file is damaged; {again}") \
            from error
    if reason is not None:
        raise BadFileError(f"{path}: {reason}; {again}")
    if frames.dtype != np.uint8:
        raise BadFileError(
            f"{path}: 'frames' are {frames.dtype}; a prepared radar file holds uint8 frames "
            f"(round(255 x), x in [0, 1]) and other types are not rescaled; {again}"
        )
    if frames.ndim != 3 or stamps.ndim != 1 or len(frames) != len(stamps):
        raise BadFileError(
            f"{path}: 'frames' {frames.shape} must be (N, H, W) with N = len('timestamps') "
            f"= {len(stamps)}; {again}"
        )
    if not np.issubdtype(stamps.dtype, np.integer):
        raise BadFileError(f"{path}: 'timestamps' are {stamps.dtype}, not whole seconds; {again}")
    stamps = stamps.astype(np.int64)
    if len(stamps) > 1 and np.any(np.diff(stamps) <= 0):
        raise BadFileError(f"{path}: 'timestamps' must be strictly increasing; {again}")
    return frames, stamps


def read_value_mapping(path: str | os.PathLike) -> ValueMapping:
    """The [0, 1] <-> dBZ mapping and the Z-R relation a prepared radar file records (its
    ``dbz_min``, ``dbz_max``, ``zr_a``, ``zr_b`` attributes), so that scores convert back to
    physical units. A file that ``prepare radar`` did not write is refused pointing to
    ``--data=frames``."""
    path = Path(path)
    if not written_by_prepare(path):
        raise not_prepared(path)
    with h5py.File(path, "r") as h5:
        attrs = dict(h5.attrs)
    try:
        return ValueMapping.from_radar_attrs(attrs)
    except KeyError as error:
        raise BadFileError(
            f"{path}: no value mapping (attribute {error.args[0]!r} missing); make it again with "
            f"`predlearn prepare radar SOURCE... --out {path}`") from None
    except ValueError as error:
        raise BadFileError(f"{path}: its value mapping is not usable: {error}") from None


def gap_free_runs(
    timestamps: np.ndarray, max_gap_minutes: float | None = None
) -> list[tuple[int, int]]:
    """(start, stop) index ranges of the runs of frames with no gap in time between them.

    A gap is a step longer than ``max_gap_minutes``, or with None longer than 1.5 x the median
    step (the nominal interval).
    """
    count = len(timestamps)
    if count < 2:
        return [(0, count)] if count else []
    # int64 steps (numpy's stubs would type the diff of int64 values as timedelta64)
    steps: np.ndarray = np.diff(np.asarray(timestamps, dtype=np.int64))
    limit = GAP_FACTOR * float(np.median(steps)) if max_gap_minutes is None else (
        60.0 * max_gap_minutes
    )
    breaks = np.flatnonzero(steps > limit) + 1
    edges = [0, *breaks.tolist(), count]
    return list(pairwise(edges))


def window_starts(runs: list[tuple[int, int]], length: int, stride: int = 1) -> np.ndarray:
    """First frames of the windows of ``length`` frames inside the runs, every ``stride``."""
    starts = [np.arange(a, b - length + 1, stride) for a, b in runs if b - a >= length]
    return np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)


@dataclass(frozen=True)
class RadarSplits:
    """Window starts of each split and the boundaries (frame index, timestamp) between them."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    val_start: int
    test_start: int
    longest_run: int


def split_windows(
    timestamps: np.ndarray,
    train_fraction: float,
    val_fraction: float,
    length: int,
    test_length: int | None = None,
    stride: int = 1,
    max_gap_minutes: float | None = None,
) -> RadarSplits:
    """Split frames in time (train | val | test) and place windows inside each part's runs.

    ``test_start = round(train_fraction * N)`` and ``val_start = round((train_fraction -
    val_fraction) * N)`` (frame indices): train frames are [0, val_start), validation
    [val_start, test_start), test [test_start, N).
    """
    require(isinstance(train_fraction, (int, float)) and 0.0 < train_fraction <= 1.0,
            "train_fraction", f"must be in (0, 1]; got {train_fraction!r}", train_fraction)
    require(isinstance(val_fraction, (int, float)) and 0.0 <= val_fraction < train_fraction,
            "val_fraction", f"must be in [0, train_fraction = {train_fraction}); got "
            f"{val_fraction!r}", val_fraction)
    require_positive_int("stride", stride)
    count = len(timestamps)
    test_start = round(train_fraction * count)
    val_start = round((train_fraction - val_fraction) * count)
    runs = gap_free_runs(timestamps, max_gap_minutes)

    def clip(lo: int, hi: int) -> list[tuple[int, int]]:
        return [(max(a, lo), min(b, hi)) for a, b in runs if min(b, hi) > max(a, lo)]

    return RadarSplits(
        train=window_starts(clip(0, val_start), length, stride),
        val=window_starts(clip(val_start, test_start), length, stride),
        test=window_starts(clip(test_start, count), test_length or length, stride),
        val_start=val_start,
        test_start=test_start,
        longest_run=max((b - a for a, b in runs), default=0),
    )


class RadarWindows(FrameWindows):
    """Windows of a radar series; items are float32 (length, 1, H, W) in [0, 1]."""

    def __init__(self, frames: np.ndarray, starts: np.ndarray, length: int) -> None:
        super().__init__(starts, length)
        self.frames = frames


class RadarDataModule(SequenceDataModule):
    """Radar echo, paper §4.3: sliding 20-frame windows (10 -> 10) of 100 x 100 radar frames.

    Batches are float32 (B, context_frames + horizon, 1, H, W) in [0, 1]. The predict loader is
    the test set.

    Args:
        path: HDF5 file from ``predlearn prepare radar``.
        train_fraction: frames before the test period (paper §4.3: 7,800 of 9,600 windows).
        val_fraction: frames, as a fraction of all frames, at the end of the training period held
            out for validation (checkpoint selection); the paper reports no validation split.
            0: no validation (for series too short to spare one; the last checkpoint is tested).
        stride: frames between the starts of consecutive windows (1: every window).
        max_gap_minutes: a longer step between frames is a gap no window spans; None: 1.5 x the
            median step.
        thresholds: event thresholds of the nowcasting scores (CSI, POD, FAR, HSS, ETS, FSS), in
            ``threshold_unit``; None: 20, 30, 40 dBZ (1, 5, 10 mm/h).
        threshold_unit: "dBZ" or "mm/h" (through the file's Z-R relation); None: dBZ.
        fss_scales: neighbourhood sizes (odd, in pixels) of the fractions skill score.
        power_spectrum: at test time, accumulate the radially averaged power spectra of the
            predictions and the observations per lead time (a figure with the test figures).
        batch_size, num_workers, context_frames, horizon, test_horizon: see
            ``SequenceDataModule``.
    """

    def __init__(
        self,
        path: str = "data/radar/radar.h5",
        train_fraction: float = 7800 / 9600,  # paper §4.3: 7,800 train / 1,800 test
        val_fraction: float = 0.05,
        stride: int = 1,
        max_gap_minutes: float | None = None,
        thresholds: Sequence[float] | None = None,
        threshold_unit: str | None = None,
        fss_scales: Sequence[int] = (1, 5, 9),
        power_spectrum: bool = True,
        batch_size: int = 8,  # paper §4: batch size 8
        num_workers: int = 0,
        context_frames: int = CONTEXT_FRAMES,  # paper §4.3: 10 -> 10
        horizon: int = HORIZON,
        test_horizon: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, context_frames, horizon, test_horizon)
        require(max_gap_minutes is None or max_gap_minutes > 0, "max_gap_minutes",
                f"must be positive (or None: 1.5 x the median step); got {max_gap_minutes!r}",
                max_gap_minutes)
        require(not Path(path).expanduser().is_dir(), "path",
                f"{path} is a folder; give the HDF5 file that `predlearn prepare radar` wrote "
                f"(for a folder of your own frames: --data=frames --data.path={path}, "
                "docs/own-data.md)", path)
        check_scoring_options(thresholds, threshold_unit, fss_scales)
        self.save_hyperparameters()
        self.path = Path(path)
        self.scoring_options = (thresholds, threshold_unit, tuple(fss_scales))
        self.power_spectrum = power_spectrum
        #: the nowcasting scores' settings (``predlearn.units.ScoringSettings``), once set up
        self.scoring: ScoringSettings | None = None
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.stride = stride
        self.max_gap_minutes = max_gap_minutes
        split_windows(np.arange(2), train_fraction, val_fraction, 1, stride=stride)  # validates
        self.splits: RadarSplits | None = None
        self.timestamps: np.ndarray | None = None
        self._frames: np.ndarray | None = None
        #: the file's [0, 1] <-> dBZ mapping (``setup`` reads it): scores in physical units
        self.value_mapping: ValueMapping | None = None
        self.frame_size: tuple[int, ...] | None = None
        #: metrics of a model left at ``metrics: null``: the paper's MSE, PSNR, SSIM and the
        #: nowcasting scores in dBZ (``categorical``, ``fss``)
        self.default_metrics = ("mse", "psnr", "ssim", "categorical", "fss")

    def frame_shape(self) -> tuple[int, int, int]:
        """One channel of the file's (H, W) frames, from its header."""
        if self.frame_size is None:
            try:
                with h5py.File(self.path, "r") as h5:
                    shape = tuple(h5["frames"].shape[1:])
            except (OSError, KeyError):
                shape = ()
            if len(shape) == 2 and written_by_prepare(self.path):
                self.frame_size = shape
            else:  # missing, damaged or not of `prepare radar`: setup says what to do
                self.setup()
        assert self.frame_size is not None
        height, width = self.frame_size
        return (1, height, width)

    def setup(self, stage: str | None = None) -> None:
        """Read the file, place the windows and print their counts."""
        if self.splits is not None:
            return
        frames, stamps = load_radar_file(self.path)
        length = max(self.sequence_length, self.test_sequence_length)
        splits = split_windows(
            stamps, self.train_fraction, self.val_fraction, self.sequence_length,
            self.test_sequence_length, self.stride, self.max_gap_minutes,
        )
        if splits.longest_run < length:
            raise DataError(
                f"radar windows need at least {length} consecutive frames; the longest gap-free "
                f"run in {self.path} has {splits.longest_run}: prepare more frames, or lower "
                "context_frames / horizon (or raise max_gap_minutes)"
            )
        for name, starts in (("train", splits.train), ("val", splits.val),
                             ("test", splits.test)):
            if len(starts) == 0 and not (name == "val" and self.val_fraction == 0):
                raise DataError(
                    f"{self.path}: no {name} window of {length} frames (train frames "
                    f"[0, {splits.val_start}), val [{splits.val_start}, {splits.test_start}), "
                    f"test [{splits.test_start}, {len(stamps)}) after gaps); adjust "
                    "train_fraction / val_fraction"
                )
        print(
            f"radar {self.path}: {len(stamps)} frames; windows train {len(splits.train)}, "
            f"val {len(splits.val)}, test {len(splits.test)} (stride {self.stride})",
            flush=True,
        )
        self.value_mapping = read_value_mapping(self.path)
        self.scoring = ScoringSettings.of(self.value_mapping, *self.scoring_options)
        self.frame_size = tuple(frames.shape[1:])
        self._frames, self.timestamps, self.splits = frames, stamps, splits

    @property
    def frame_minutes(self) -> float | None:
        """The nominal time between frames in minutes (the median step), once set up."""
        if self.timestamps is None or len(self.timestamps) < 2:
            return None
        return float(np.median(np.diff(self.timestamps))) / 60.0

    def _windows(self, split: str) -> RadarWindows:
        if self.splits is None:
            self.setup()
        assert self.splits is not None and self._frames is not None
        length = self.test_sequence_length if split == "test" else self.sequence_length
        return RadarWindows(self._frames, getattr(self.splits, split), length)

    def test_windows(self) -> tuple[list[int], list[int], int]:
        """The test windows as one series (0) at their first frames in the file (windows on
        either side of a gap share none), and their length (``test_windows`` of the base)."""
        if self.splits is None:
            self.setup()
        assert self.splits is not None
        starts = self.splits.test.tolist()
        return [0] * len(starts), starts, self.test_sequence_length

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._windows("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The validation windows; none (an empty list: Lightning skips validation) with
        ``val_fraction=0``."""
        if self.val_fraction == 0:
            return []
        return self._loader(self._windows("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._windows("test"))

    def predict_dataloader(self) -> DataLoader:
        """The test windows, in time order."""
        return self._loader(self._windows("test"))
