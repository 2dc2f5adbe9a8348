"""Your own arrays, read lazily: ``.npy`` files memory-mapped, HDF5 datasets opened once per
process, many files of one kind as one array; their axes named by a layout; the windows a model
trains on, split by time (one series) or by sequence.

Only the frames a window needs are read, so an archive far larger than memory trains as a small
one does. Values stay in the file's units here; scaling to [0, 1] is ``ValueScale``'s job.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from predlearn.errors import BadFileError, DataNotFoundError, OptionValueError

AXES = "NTCHW"
#: the layout of an array with this many axes when none is given (4 axes: ambiguous, refused)
DEFAULT_LAYOUTS = {3: "THW", 5: "NTCHW"}
ARRAY_SUFFIXES = (".npy", ".h5", ".hdf5")


class ArrayFile:
    """One array of one file, read by slices of its first axis: a memory-mapped ``.npy``, or
    an HDF5 dataset whose handle each process opens for itself (it never crosses a pickle)."""

    def __init__(self, path: Path, dataset: str = "frames") -> None:
        self.path, self.dataset = path, dataset
        self._array: Any = None
        array = self.array  # opens once here, to read the shape and refuse a bad file early
        self.shape: tuple[int, ...] = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)

    @property
    def array(self) -> Any:
        if self._array is None:
            self._array = _open(self.path, self.dataset)
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self.array[index])


def _open(path: Path, dataset: str) -> Any:
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise BadFileError(f"{path}: cannot read it as {path.suffix} ({error}); it is damaged "
                           "or of another format") from error
    if dataset not in handle or not isinstance(handle[dataset], h5py.Dataset):
        names = sorted(name for name, item in handle.items() if isinstance(item, h5py.Dataset))
        handle.close()
        raise OptionValueError("dataset", f"{path} has no dataset {dataset!r}; it has "
                               f"{', '.join(map(repr, names)) or 'none'}", dataset, owner="data")
    return handle[dataset]


def array_files(path: str | os.PathLike, dataset: str = "frames") -> list[ArrayFile]:
    """The files ``path`` names, in name order: one file, a folder of ``.npy``/HDF5 files, or a
    glob (``archive/*.h5``). Files of several kinds, or of different shapes past their first
    axis, are refused naming the first pair that differs."""
    text = str(path)
    if any(char in text for char in "*?["):
        names = sorted(Path(name) for name in glob.glob(text))
    elif Path(text).is_dir():
        names = sorted(p for p in Path(text).iterdir() if p.suffix in ARRAY_SUFFIXES)
    else:
        names = [Path(text)]
    if not names or not all(name.is_file() for name in names):
        raise DataNotFoundError(f"{text}: no such file, or no .npy / .h5 files there")
    kinds = {name.suffix.replace(".hdf5", ".h5") for name in names}
    if len(kinds) > 1 or not kinds <= {".npy", ".h5"}:
        raise BadFileError(f"{text}: give files of one kind (.npy or .h5); got "
                           f"{', '.join(sorted(kinds))}")
    files = [ArrayFile(name, dataset) for name in names]
    for file in files[1:]:
        if file.shape[1:] != files[0].shape[1:]:
            raise BadFileError(f"{file.path} holds an array of shape {file.shape}, but "
                               f"{files[0].path} one of {files[0].shape}: the files of one data "
                               "set must agree past their first axis")
    return files


def resolve_layout(layout: str | None, ndim: int, source: str) -> str:
    """The layout of an array of ``ndim`` axes: ``layout`` checked (letters of NTCHW, each once,
    T, H and W among them), or the default of ``ndim``; a 4-axis array without one is refused
    naming both readings."""
    if layout is None:
        if ndim == 4:
            raise OptionValueError(
                "layout", f"{source} has 4 axes: give --data.layout=NTHW (sequences of one-channel "
                "frames) or --data.layout=TCHW (one series of frames with channels)", None,
                owner="data")
        if ndim not in DEFAULT_LAYOUTS:
            raise OptionValueError("layout", f"{source} has {ndim} axes; frames need 3 to 5 "
                                   "(e.g. THW, NTHW, TCHW, NTCHW)", None, owner="data")
        return DEFAULT_LAYOUTS[ndim]
    text = layout.upper()
    if (len(text) != ndim or len(set(text)) != len(text) or not set(text) <= set(AXES)
            or not set("THW") <= set(text)):
        raise OptionValueError("layout", f"must name each of the {ndim} axes of {source} once "
                               f"with letters of {AXES}, T, H and W among them; got {layout!r}",
                               layout, owner="data")
    return text


@dataclass(frozen=True)
class Windows:
    """Where the windows of one split start: (sequence, first frame) pairs."""

    sequence: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def _starts(first: int, stop: int, length: int, stride: int) -> np.ndarray:
    return np.arange(first, max(first, stop - length + 1), stride, dtype=np.int64)


def split_windows(sequences: int, frames: int, length: int, stride: int, val_fraction: float,
                  test_fraction: float) -> dict[str, Windows]:
    """The train, val and test windows of ``length`` frames, ``stride`` apart. One series
    (``sequences == 1``) is split in time, the later part the test period (as the radar module
    splits it), no window crossing a split; several sequences are split whole, in order."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise OptionValueError(name, f"must lie in [0, 1); got {value}", value, owner="data")
    if val_fraction + test_fraction >= 1:
        raise OptionValueError("test_fraction", f"val_fraction + test_fraction must be below 1; "
                               f"got {val_fraction} + {test_fraction}", test_fraction,
                               owner="data")
    if sequences == 1:
        test_start = round(frames * (1 - test_fraction))
        val_start = round(frames * (1 - test_fraction - val_fraction))
        bounds = {"train": (0, val_start), "val": (val_start, test_start),
                  "test": (test_start, frames)}
        split = {name: Windows(np.zeros(len(s := _starts(a, b, length, stride)), np.int64), s)
                 for name, (a, b) in bounds.items()}
        unit, sizes = "frames", {name: b - a for name, (a, b) in bounds.items()}
    else:
        test_first = round(sequences * (1 - test_fraction))
        val_first = round(sequences * (1 - test_fraction - val_fraction))
        per = _starts(0, frames, length, stride)
        ranges = {"train": range(val_first), "val": range(val_first, test_first),
                  "test": range(test_first, sequences)}
        split = {name: Windows(np.repeat(np.asarray(r, np.int64), len(per)),
                               np.tile(per, len(r))) for name, r in ranges.items()}
        unit, sizes = "sequences", {name: len(r) for name, r in ranges.items()}
    for name, windows in split.items():
        wanted = {"val": val_fraction, "test": test_fraction}.get(name, 1.0)
        if wanted > 0 and len(windows) == 0:
            raise BadFileError(
                f"the {name} split got {sizes[name]} {unit} of {frames} frames, and one window "
                f"needs {length} (context_frames + horizon): give more data, a larger "
                f"{name}_fraction or shorter windows" if name != "train" else
                f"the train split got {sizes[name]} {unit} of {frames} frames, and one window "
                f"needs {length} (context_frames + horizon): lower val_fraction / "
                "test_fraction or give more data")
    return split


class ArraySeries:
    """Many files of one kind as one array in a layout: frames (C, H, W) by (sequence, time),
    read lazily. Without N the files are one series joined in time; with N, their sequences
    follow each other."""

    def __init__(self, files: Sequence[ArrayFile], layout: str) -> None:
        self.files, self.layout = list(files), layout
        if len(self.files) > 1 and layout[0] not in "NT":
            raise OptionValueError(
                "layout", f"several files are joined along their first axis, which must then be "
                f"N or T; got layout {layout}", layout, owner="data")
        first = self.files[0].shape
        self.lengths = [file.shape[0] for file in self.files]
        self.offsets = np.cumsum([0, *self.lengths])
        sizes = dict(zip(layout, first))
        sizes[layout[0]] = int(self.offsets[-1])
        self.sequences = sizes.get("N", 1)
        self.frames = sizes["T"]
        self.frame_shape = (sizes.get("C", 1), sizes["H"], sizes["W"])

    def window(self, sequence: int, start: int, length: int) -> np.ndarray:
        """Frames ``start .. start + length`` of ``sequence`` as (length, C, H, W)."""
        if "N" in self.layout:
            file, row = self._locate(sequence)
            index: list[Any] = [slice(None)] * len(self.layout)
            index[0] = row
            index[self.layout.index("T")] = slice(start, start + length)
            return self._frames(self.files[file][tuple(index)], self.layout.replace("N", ""))
        if self.layout[0] != "T":  # one file (checked when built), time on another axis
            index = [slice(None)] * len(self.layout)
            index[self.layout.index("T")] = slice(start, start + length)
            return self._frames(self.files[0][tuple(index)], self.layout)
        # one series joined in time: a window may span two files
        (first_file, first_row), (last_file, last_row) = (
            self._locate(start), self._locate(start + length - 1))
        parts = [self.files[f][(first_row if f == first_file else 0):
                               (last_row + 1 if f == last_file else None)]
                 for f in range(first_file, last_file + 1)]
        return self._frames(np.concatenate(parts), self.layout)

    def _locate(self, position: int) -> tuple[int, int]:
        file = int(np.searchsorted(self.offsets, position, side="right")) - 1
        return file, position - int(self.offsets[file])

    @staticmethod
    def _frames(block: np.ndarray, layout: str) -> np.ndarray:
        """A block in ``layout`` (no N) as (T, C, H, W)."""
        if "C" not in layout:
            block, layout = block[..., None], layout + "C"
        return np.transpose(block, [layout.index(axis) for axis in "TCHW"])


NORMALIZATIONS = ("minmax", "zscore", "none")


@dataclass(frozen=True)
class ValueScale:
    """The map of the file's values to what the model sees, per channel: ``(x - offset) /
    scale`` (min-max: into [0, 1]; z-score: mean 0, deviation 1; none: as they are), and back
    (``to_units``), so forecasts return in the user's units."""

    offset: tuple[float, ...]
    scale: tuple[float, ...]

    @staticmethod
    def _per_channel(values: tuple[float, ...]) -> np.ndarray:
        return np.asarray(values, np.float64).reshape(-1, 1, 1)  # broadcasts over (T, C, H, W)

    def to_model(self, frames: np.ndarray) -> np.ndarray:
        """(T, C, H, W) in the file's units -> float32 for the model."""
        return ((frames - self._per_channel(self.offset))
                / self._per_channel(self.scale)).astype(np.float32)

    def to_units(self, frames: np.ndarray) -> np.ndarray:
        """The model's (T, C, H, W) values back in the file's units (float64)."""
        return frames * self._per_channel(self.scale) + self._per_channel(self.offset)

    @classmethod
    def of(cls, normalize: str, value_range: Sequence[float] | None, series: ArraySeries,
           train: Windows, length: int, chunk: int = 256) -> ValueScale:
        """The scale of ``normalize`` (or of a given ``value_range``: [low, high] -> [0, 1]),
        its statistics streamed over the training windows' frames, ``chunk`` frames at a time
        (never the whole file in memory); NaN values are left out of them."""
        channels = series.frame_shape[0]
        if value_range is not None:
            low, high = (float(v) for v in value_range)
            if not high > low:
                raise OptionValueError("value_range", f"must be [low, high] with high > low; got "
                                       f"{list(value_range)}", value_range, owner="data")
            return cls((low,) * channels, (high - low,) * channels)
        if normalize not in NORMALIZATIONS:
            raise OptionValueError("normalize", f"must be one of {', '.join(NORMALIZATIONS)} (or "
                                   f"give value_range); got {normalize!r}", normalize, owner="data")
        if normalize == "none":
            return cls((0.0,) * channels, (1.0,) * channels)
        stats = _ChannelStats(channels)
        for sequence, first, stop in _training_frames(train, length):
            for start in range(first, stop, chunk):
                stats.add(series.window(sequence, start, min(chunk, stop - start)))
        if stats.count.min() == 0:
            raise BadFileError("the training split holds no finite value in some channel "
                               f"(counts per channel: {stats.count.tolist()})")
        if normalize == "minmax":
            spread = np.where(stats.high > stats.low, stats.high - stats.low, 1.0)
            return cls(tuple(stats.low.tolist()), tuple(spread.tolist()))
        mean = stats.total / stats.count
        deviation = np.sqrt(np.maximum(stats.squares / stats.count - mean ** 2, 0.0))
        return cls(tuple(mean.tolist()), tuple(np.where(deviation > 0, deviation, 1.0).tolist()))


def _training_frames(train: Windows, length: int) -> list[tuple[int, int, int]]:
    """(sequence, first frame, stop) of each run of frames the training windows cover, each
    frame once."""
    runs: list[tuple[int, int, int]] = []
    for sequence, start in sorted(zip(train.sequence.tolist(), train.start.tolist())):
        if runs and runs[-1][0] == sequence and start <= runs[-1][2]:
            runs[-1] = (sequence, runs[-1][1], max(runs[-1][2], start + length))
        else:
            runs.append((sequence, start, start + length))
    return runs


class _ChannelStats:
    """Per-channel minimum, maximum, sum and sum of squares of finite values, in float64."""

    def __init__(self, channels: int) -> None:
        self.low = np.full(channels, np.inf)
        self.high = np.full(channels, -np.inf)
        self.total, self.squares = np.zeros(channels), np.zeros(channels)
        self.count = np.zeros(channels, np.int64)

    def add(self, frames: np.ndarray) -> None:
        values = np.moveaxis(np.asarray(frames, np.float64), 1, 0).reshape(frames.shape[1], -1)
        finite = np.isfinite(values)
        self.low = np.minimum(self.low, np.where(finite, values, np.inf).min(axis=1))
        self.high = np.maximum(self.high, np.where(finite, values, -np.inf).max(axis=1))
        clean = np.where(finite, values, 0.0)
        self.total += clean.sum(axis=1)
        self.squares += (clean ** 2).sum(axis=1)
        self.count += finite.sum(axis=1)
