"""Your own arrays, read lazily: ``.npy`` files memory-mapped, HDF5 datasets opened once per
process, many files of one kind as one array; their axes named by a layout; the windows a model
trains on, split by time (one series) or by sequence.

Only the frames a window needs are read, so an archive far larger than memory trains as a small
one does. Values stay in the file's units here; scaling them is ``own_values.ValueScale``'s job.
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
    if Path(text).is_dir() and not names:
        raise DataNotFoundError(f"{text}: no PNG frames and no .npy / .h5 files in this folder")
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
            raise BadFileError(f"{source} has {ndim} axes; frames need 3 to 5 (e.g. THW, NTHW, "
                               "TCHW, NTCHW, named by --data.layout)")
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


@dataclass(frozen=True)
class Splits:
    """The train, val and test windows, with what each split got (for the messages)."""

    windows: dict[str, Windows]
    sizes: dict[str, int]  # frames (one series) or sequences per split
    unit: str  # "frames" or "sequences"
    frames: int  # frames per sequence (or of the series)

    def __getitem__(self, name: str) -> Windows:
        return self.windows[name]

    def require(self, name: str, length: int) -> Windows:
        """The windows of split ``name``, or a ``BadFileError`` saying how many frames it got
        and how many one window needs."""
        windows = self.windows[name]
        if len(windows) == 0:
            fix = ("lower val_fraction / test_fraction or give more data" if name == "train"
                   else f"give more data, a larger {name}_fraction or shorter windows")
            raise BadFileError(
                f"the {name} split got {self.sizes[name]} {self.unit} of {self.frames} frames "
                f"and no window of {length} usable frames (context_frames + horizon) fits in "
                f"it: {fix}")
        return windows


def _starts(runs: Sequence[tuple[int, int]], first: int, stop: int, length: int, stride: int,
            usable: np.ndarray | None) -> np.ndarray:
    """First frames of the windows of ``length`` frames inside ``[first, stop)`` and one run,
    every ``stride``; with ``usable``, a window starts and ends on a usable frame."""
    parts = []
    for a, b in runs:
        a, b = max(a, first), min(b, stop)
        if b - a >= length:
            parts.append(np.arange(a, b - length + 1, stride, dtype=np.int64))
    starts = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if usable is not None and len(starts):
        starts = starts[usable[starts] & usable[starts + length - 1]]
    return starts


def _fraction(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise OptionValueError(name, f"must lie in [0, 1); got {value}", value, owner="data")


def split_windows(sequences: int, frames: int, length: int, stride: int, val_fraction: float,
                  test_fraction: float, *, test_length: int | None = None,
                  runs: Sequence[tuple[int, int]] | None = None,
                  bounds: dict[str, tuple[int, int]] | None = None,
                  usable: np.ndarray | None = None) -> Splits:
    """The train, val and test windows (test windows of ``test_length`` frames), ``stride``
    apart. One series (``sequences == 1``) is split in time, the later part the test period
    (as the radar module splits it), or at the frame ``bounds`` given per split; no window
    crosses a split or leaves one of the gap-free ``runs``. Several sequences are split whole,
    in order. ``usable`` (sequences, frames): frames with an observed pixel; windows start and
    end on one. A split may come out empty: ``Splits.require`` refuses it when it is needed."""
    _fraction("val_fraction", val_fraction)
    _fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise OptionValueError("test_fraction", f"val_fraction + test_fraction must be below 1; "
                               f"got {val_fraction} + {test_fraction}", test_fraction,
                               owner="data")
    lengths = {"train": length, "val": length, "test": test_length or length}
    runs = list(runs) if runs is not None else [(0, frames)]
    if sequences == 1:
        if bounds is None:
            test_start = round(frames * (1 - test_fraction))
            val_start = round(frames * (1 - test_fraction - val_fraction))
            bounds = {"train": (0, val_start), "val": (val_start, test_start),
                      "test": (test_start, frames)}
        ok = None if usable is None else usable[0]
        windows, sizes = {}, {}
        for name, window_length in lengths.items():
            first, stop = bounds.get(name, (0, 0))
            starts = _starts(runs, first, stop, window_length, stride, ok)
            # one series: every window's sequence is 0 (a view, not 8 bytes a window)
            windows[name] = Windows(np.broadcast_to(np.int64(0), starts.shape), starts)
            sizes[name] = stop - first
        return Splits(windows, sizes, "frames", frames)
    test_first = round(sequences * (1 - test_fraction))
    val_first = round(sequences * (1 - test_fraction - val_fraction))
    ranges = {"train": range(val_first), "val": range(val_first, test_first),
              "test": range(test_first, sequences)}
    windows = {}
    for name, members in ranges.items():
        pairs = [(n, s) for n in members for s in _starts(
            runs, 0, frames, lengths[name], stride, None if usable is None else usable[n])]
        windows[name] = Windows(np.asarray([n for n, _ in pairs], np.int64),
                                np.asarray([s for _, s in pairs], np.int64))
    return Splits(windows, {name: len(r) for name, r in ranges.items()}, "sequences", frames)


class ArraySeries:
    """Many files of one kind as one array in a layout: frames (C, H, W) by (sequence, time),
    read lazily. Without N the files are one series joined in time; with N, their sequences
    follow each other.

    A frame source, as ``PngSeries`` and the xarray reader are: ``sequences``, ``frames`` (per
    sequence), ``frame_shape`` (C, H, W), ``dtype``, ``channel_names``, ``times`` (None, or a
    datetime64 per frame of a series), ``window(sequence, start, length)`` -> (length, C, H, W)
    in the file's units, and ``describe()``."""

    def __init__(self, files: Sequence[ArrayFile], layout: str) -> None:
        self.files, self.layout = list(files), layout
        if len(self.files) > 1 and layout[0] not in "NT":
            raise OptionValueError(
                "layout", f"several files are joined along their first axis, which must then be "
                f"N or T; got layout {layout}", layout, owner="data")
        first = self.files[0].shape
        if 0 in first:
            raise BadFileError(f"{self.files[0].path}: an array of shape {first}; frames need "
                               "no empty axis")
        self.lengths = [file.shape[0] for file in self.files]
        self.offsets = np.cumsum([0, *self.lengths])
        sizes = dict(zip(layout, first))
        sizes[layout[0]] = int(self.offsets[-1])
        self.sequences = sizes.get("N", 1)
        self.frames = sizes["T"]
        self.frame_shape = (sizes.get("C", 1), sizes["H"], sizes["W"])
        self.dtype = self.files[0].dtype
        self.channel_names = tuple(f"channel {c + 1}" for c in range(self.frame_shape[0]))
        self.times: np.ndarray | None = None  # plain arrays have no time coordinate

    def describe(self) -> str:
        """The file (or first and last file) and its array, for messages."""
        first = self.files[0]
        name = str(first.path) if len(self.files) == 1 else (
            f"{first.path} .. {self.files[-1].path.name} ({len(self.files)} files)")
        return name + (f", dataset {first.dataset!r}" if first.path.suffix != ".npy" else "")

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
