"""Your own NetCDF (``.nc``) and zarr (``.zarr``) files as frames, read through xarray.

An optional extra (``pip install "predlearn[xarray]"``): xarray with h5netcdf for NetCDF-4 and
zarr for zarr stores, without dask. Dimensions are mapped by their names (time, y, x, an
optional sequence dim and at most one channel dim), so no layout is needed. Values are read in
the file's units after xarray's CF decoding (``scale_factor``/``add_offset`` applied,
``_FillValue`` as NaN), and only the frames a window needs are read: xarray's lazy backend
arrays index the file itself. The open dataset never crosses a pickle; each process (a loader
worker) opens the file again on first use.

``time_runs`` and ``time_bounds`` turn the time coordinate into gap-free runs of frames and
into explicit per-split ranges (``--data.time_ranges``).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from lightning_utilities.core.imports import RequirementCache

from predlearn.datamodules.radar import gap_free_runs
from predlearn.errors import BadFileError, DataNotFoundError, OptionValueError, UsageError

__all__ = ["XARRAY_SUFFIXES", "Dims", "XarrayMissingError", "XarraySeries", "import_xarray",
           "map_dims", "time_bounds", "time_runs"]

XARRAY_SUFFIXES = (".nc", ".nc4", ".zarr")
TIME_NAMES = ("time", "t")
Y_NAMES = ("y", "lat", "latitude", "rows", "height")
X_NAMES = ("x", "lon", "longitude", "cols", "width")
SEQUENCE_NAMES = ("sequence", "sample", "member", "n")
SPLITS = ("train", "val", "test")
MISSING_EXTRA = 'reading .nc / .zarr files needs the xarray extra: pip install "predlearn[xarray]"'

#: xarray, an optional extra of predlearn (``pip install "predlearn[xarray]"``)
XARRAY = RequirementCache("xarray>=2024.6")


class XarrayMissingError(UsageError, ModuleNotFoundError):
    """xarray, or the engine that reads the file (h5netcdf, zarr), is not installed."""


def import_xarray(engine: str | None = None) -> Any:
    """The ``xarray`` module (with the module ``engine`` importable), or an error saying how to
    install the extra."""
    try:
        if not XARRAY:
            raise ImportError(XARRAY.message)
        xarray = importlib.import_module("xarray")
        if engine is not None:
            importlib.import_module(engine)
    except ImportError as error:
        raise XarrayMissingError(MISSING_EXTRA) from error
    return xarray


def _open(path: Path) -> Any:
    """The file as a lazy xarray Dataset (no dask: only what is indexed is read)."""
    zarr = path.is_dir() or path.suffix == ".zarr"
    xarray = import_xarray("zarr" if zarr else "h5netcdf")
    try:
        if zarr:
            with warnings.catch_warnings():  # a store without consolidated metadata is fine
                warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated")
                return xarray.open_dataset(path, engine="zarr", chunks=None, cache=False,
                                           decode_timedelta=False)
        return xarray.open_dataset(path, engine="h5netcdf", chunks=None, cache=False,
                                   decode_timedelta=False)
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = " ".join(str(error).split())  # one line
        raise BadFileError(f"{path}: cannot open it with xarray ({reason}); {_open_fix(path)}"
                           ) from error


def _open_fix(path: Path) -> str:
    if path.is_dir():
        return "a zarr store is a folder with zarr.json (v3) or .zgroup (v2) at its top"
    with open(path, "rb") as handle:
        if handle.read(3) == b"CDF":
            return "it is NetCDF-3, which h5netcdf does not read: convert it (nccopy -k nc4)"
    return "give a NetCDF-4 (.nc) file or a zarr (.zarr) store"


@dataclass(frozen=True)
class Dims:
    """The names of the dims of a variable that are time, y, x, sequence and channel."""

    time: str
    y: str
    x: str
    sequence: str | None = None
    channel: str | None = None


def _named(dims: Sequence[str], names: Sequence[str]) -> str | None:
    return next((dim for dim in dims if dim.lower() in names), None)


def _time_dim(dataset: Any, dims: Sequence[str]) -> str | None:
    named = _named(dims, TIME_NAMES)
    if named is not None:
        return named
    dated = [dim for dim in dims
             if dim in dataset.coords and np.issubdtype(dataset[dim].dtype, np.datetime64)]
    return dated[0] if len(dated) == 1 else None


def _has_frames(dataset: Any, name: str) -> bool:
    dims = list(dataset[name].dims)
    return None not in (_time_dim(dataset, dims), _named(dims, Y_NAMES), _named(dims, X_NAMES))


def map_dims(dataset: Any, variable: str, channel_dim: str | None, where: str,
             stacked: bool = False) -> Dims:
    """The dims of ``variable`` mapped by name; one line naming the dims and the fix if not."""
    dims = [str(dim) for dim in dataset[variable].dims]
    listed = f"{where}: variable {variable!r} has dims ({', '.join(dims)})"
    if channel_dim is not None and (stacked or channel_dim not in dims):
        why = ("several variables are stacked as channels, so no channel dim can be named"
               if stacked else f"{listed}, not {channel_dim!r}")
        raise OptionValueError("channel_dim", why, channel_dim)
    rest = [dim for dim in dims if dim != channel_dim]
    found = {"time": _time_dim(dataset, rest), "y": _named(rest, Y_NAMES),
             "x": _named(rest, X_NAMES)}
    missing = [axis for axis, dim in found.items() if dim is None]
    rest = [dim for dim in rest if dim not in found.values()]
    if missing:
        example = f"{{{rest[0]!r}: {missing[0]!r}}}" if rest else "{'old': 'x'}"
        raise BadFileError(f"{listed} and none is {' or '.join(missing)} ({_expected(missing)})"
                           f"; rename them (xarray: ds.rename({example})) or choose another "
                           "variable with --data.dataset")
    sequence = _named(rest, SEQUENCE_NAMES)
    rest = [dim for dim in rest if dim != sequence]
    if len(rest) > (1 if channel_dim is None and not stacked else 0):
        what = ("variables stacked as channels can have no other dim" if stacked else
                f"the channel dim is {channel_dim!r}" if channel_dim else
                "only one other dim can be the channels")
        raise BadFileError(f"{listed}: {', '.join(rest)} are not time, y, x or a sequence dim "
                           f"({', '.join(SEQUENCE_NAMES)}) and {what}; rename them (xarray: "
                           f"ds.rename({{{rest[-1]!r}: 'member'}})), drop them (ds.isel), or "
                           "choose another variable with --data.dataset")
    channel = channel_dim if channel_dim is not None else (rest[0] if rest else None)
    return Dims(found["time"], found["y"], found["x"], sequence, channel)  # type: ignore[arg-type]


def _expected(axes: Sequence[str]) -> str:
    names = {"time": (*TIME_NAMES, "or a datetime coordinate"), "y": Y_NAMES, "x": X_NAMES}
    return "; ".join(f"{axis}: {', '.join(names[axis])}" for axis in axes)


def _choose(dataset: Any, variable: str | None, where: str) -> tuple[str, ...]:
    """The variables to read: those named (comma-separated), or the only one with frames."""
    present = [str(name) for name in dataset.data_vars]
    if variable is None:
        candidates = [name for name in present if _has_frames(dataset, name)]
        if len(candidates) == 1:
            return (candidates[0],)
        if candidates:
            raise OptionValueError("dataset", f"{where} has several variables with time, y and "
                                   f"x dims: {', '.join(map(repr, candidates))}; choose one with "
                                   "--data.dataset", variable, owner="data")
        listed = ", ".join(f"{name}{tuple(map(str, dataset[name].dims))}" for name in present)
        raise BadFileError(f"{where}: no variable has time, y and x dims (it has "
                           f"{listed or 'no variables'}); rename the dims (xarray: ds.rename)")
    names = tuple(name.strip() for name in variable.split(",") if name.strip())
    unknown = [name for name in names if name not in present]
    if unknown or not names:
        raise OptionValueError("dataset", f"{where} has no variable "
                               f"{', '.join(map(repr, unknown)) or repr(variable)}; it has "
                               f"{', '.join(map(repr, present)) or 'none'}", variable,
                               owner="data")
    return names


class XarraySeries:
    """A variable of a NetCDF file or zarr store (or several, stacked as channels) as frames
    (C, H, W) by (sequence, time), read lazily: the frame source of the ``frames`` data module."""

    def __init__(self, path: str | Path, variable: str | None = None,
                 channel_dim: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DataNotFoundError(f"{self.path}: no such file or folder; give the path of a "
                                    "NetCDF file (.nc) or zarr store (.zarr) with --data.path")
        self._dataset: Any = None
        self._pid = os.getpid()
        dataset = self.dataset
        self.variables = _choose(dataset, variable, self.path.name)
        self.dims = map_dims(dataset, self.variables[0], channel_dim, self.path.name,
                             stacked=len(self.variables) > 1)
        for name in self.variables[1:]:
            self._check_same(name)
        first = dataset[self.variables[0]]
        sizes = {str(dim): int(size) for dim, size in zip(first.dims, first.shape)}
        self.sequences = sizes[self.dims.sequence] if self.dims.sequence else 1
        self.frames = sizes[self.dims.time]
        channels = sizes[self.dims.channel] if self.dims.channel else len(self.variables)
        self.frame_shape = (channels, sizes[self.dims.y], sizes[self.dims.x])
        self.dtype = np.result_type(*(dataset[name].dtype for name in self.variables))
        self.channel_names = self._channel_names()
        self.times = self._times()
        if self.times is not None:  # refused here, naming the file, rather than when split
            time_runs(self.times, self.frames, source=self.describe())

    @property
    def dataset(self) -> Any:
        """The open xarray Dataset of this process (opened again after a pickle or a fork)."""
        if self._dataset is None or self._pid != os.getpid():
            self._dataset, self._pid = _open(self.path), os.getpid()
        return self._dataset

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None}

    def close(self) -> None:
        """Close the file; the next read opens it again."""
        if self._dataset is not None and self._pid == os.getpid():
            self._dataset.close()
        self._dataset = None

    def describe(self) -> str:
        """The file and variable(s), for messages: ``radar.nc, variable 'dbz'``."""
        names = ", ".join(map(repr, self.variables))
        return f"{self.path.name}, variable{'s' if len(self.variables) > 1 else ''} {names}"

    def window(self, sequence: int, start: int, length: int) -> np.ndarray:
        """Frames ``start .. start + length`` of ``sequence`` as (length, C, H, W), in the file's
        units; only those frames are read."""
        if start < 0 or length < 1:
            raise IndexError(f"{self.describe()}: no window of {length} frames at {start}")
        index: dict[str, Any] = {self.dims.time: slice(start, start + length)}
        if self.dims.sequence:
            index[self.dims.sequence] = sequence
        elif sequence != 0:
            raise IndexError(f"{self.describe()} has one sequence; asked for sequence {sequence}")
        order = [dim for dim in (self.dims.time, self.dims.channel, self.dims.y, self.dims.x)
                 if dim]
        parts = [np.asarray(self.dataset[name].isel(index).transpose(*order).values)
                 for name in self.variables]
        block = np.concatenate(parts, axis=1) if self.dims.channel else np.stack(parts, axis=1)
        if len(block) != length:
            raise IndexError(f"{self.describe()}: frames {start}..{start + length} are outside "
                             f"its {self.frames} frames")
        return block.astype(self.dtype, copy=False)

    def _check_same(self, name: str) -> None:
        first, other = self.dataset[self.variables[0]], self.dataset[name]
        if set(first.dims) != set(other.dims):
            raise BadFileError(f"{self.path.name}: variables {self.variables[0]!r} "
                               f"{tuple(map(str, first.dims))} and {name!r} "
                               f"{tuple(map(str, other.dims))} have other dims and cannot be "
                               "stacked as channels; choose variables of the same dims")

    def _channel_names(self) -> tuple[str, ...]:
        channel = self.dims.channel
        if channel is None:
            return self.variables
        if channel not in self.dataset.coords:
            return tuple(f"{channel}{i}" for i in range(self.frame_shape[0]))
        values = np.asarray(self.dataset[channel].values).tolist()
        return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)

    def _times(self) -> np.ndarray | None:
        time = self.dims.time
        if time not in self.dataset.coords:
            return None
        values = np.asarray(self.dataset[time].values)
        if not np.issubdtype(values.dtype, np.datetime64):
            return None
        return values.astype("datetime64[ns]")


def _increasing(valid: np.ndarray, positions: np.ndarray, source: str | None) -> None:
    steps = np.diff(valid.astype(np.int64))
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i, j = positions[bad[0]], positions[bad[0] + 1]
        raise BadFileError(f"{source or 'the time coordinate'}: time goes backwards or repeats "
                           f"at frame {j} ({_text(valid[bad[0]])} at frame {i}, then "
                           f"{_text(valid[bad[0] + 1])}); sort the file by time (xarray: "
                           "ds.sortby('time'))")


def _text(instant: np.datetime64) -> str:
    return np.datetime_as_string(instant, unit="s")


def time_runs(times: np.ndarray | None, frames: int, *,
              source: str | None = None) -> list[tuple[int, int]]:
    """(start, stop) ranges of frames with no gap in time and no NaT. A gap is a step longer
    than 1.5 x the median step (as ``radar.gap_free_runs``); NaT frames belong to no run; no
    times: one run of all ``frames``. Times that go backwards or repeat raise BadFileError
    naming ``source``."""
    if times is None:
        return [(0, frames)] if frames else []
    times = np.asarray(times, dtype="datetime64[ns]")
    if len(times) != frames:
        raise ValueError(f"{len(times)} times for {frames} frames")
    positions = np.flatnonzero(~np.isnat(times))
    valid = times[positions]
    _increasing(valid, positions, source)
    runs = []
    for first, stop in gap_free_runs(valid.astype(np.int64)):
        chunk = positions[first:stop]  # split again where a NaT frame was left out
        breaks = np.flatnonzero(np.diff(chunk) > 1) + 1
        for part in np.split(chunk, breaks):
            runs.append((int(part[0]), int(part[-1]) + 1))
    return runs


def _instant(text: str, split: str, ranges: Any) -> np.datetime64:
    try:
        return np.datetime64(str(text).strip().removesuffix("Z"))
    except ValueError as error:
        raise OptionValueError("time_ranges", f"{split}: {text!r} is not an ISO date or time "
                               "(e.g. 2020-01-31 or 2020-01-31T12:00)", ranges,
                               owner="data") from error


def _end_of(instant: np.datetime64) -> np.ndarray:
    """The first instant after ``instant`` at its own precision (2020-06-30 -> 2020-07-01)."""
    unit = np.datetime_data(instant.dtype)[0]
    return (instant + np.ones((), dtype=f"timedelta64[{unit}]")).astype("datetime64[ns]")


def time_bounds(times: np.ndarray | None, ranges: Mapping[str, Sequence[str]], *,
                source: str | None = None) -> dict[str, tuple[int, int]]:
    """Frame index ranges [start, stop) of explicit time ranges per split (train, val, test).

    Each range is ``[first, last]`` in ISO text, both ends inclusive at the precision written:
    ``["2020-01-01", "2020-06-30"]`` takes every frame of 1 January to 30 June included, and
    ``["2020-01", "2020-06"]`` the same. Refused (``--data.time_ranges``): an unknown split, a
    range that selects no frame, overlapping ranges, or a file without a time coordinate.
    """
    def refuse(message: str) -> OptionValueError:
        return OptionValueError("time_ranges", message, dict(ranges), owner="data")

    if times is None:
        raise refuse(f"{source or 'the file'} has no datetime time coordinate, so its frames "
                     "cannot be chosen by time; split it by fraction instead")
    times = np.asarray(times, dtype="datetime64[ns]")
    bounds: dict[str, tuple[int, int]] = {}
    for split, pair in ranges.items():
        if split not in SPLITS:
            raise refuse(f"unknown split {split!r}; the splits are {', '.join(SPLITS)}")
        if isinstance(pair, str) or len(pair) != 2:
            raise refuse(f"{split}: give [first, last] (two ISO dates or times), not {pair!r}")
        first, last = (_instant(text, split, ranges) for text in pair)
        chosen = np.flatnonzero((times >= first.astype("datetime64[ns]"))
                                & (times < _end_of(last)))
        if not chosen.size:
            known = times[~np.isnat(times)]
            span = (f"its times run from {_text(known.min())} to {_text(known.max())}"
                    if known.size else "all its times are NaT")
            raise refuse(f"{split}: {pair[0]} .. {pair[1]} selects no frame of "
                         f"{source or 'the file'} ({span})")
        bounds[split] = (int(chosen[0]), int(chosen[-1]) + 1)
    ordered = sorted(bounds.items(), key=lambda item: item[1])
    for (name, (_, stop)), (other, (start, _)) in pairwise(ordered):
        if start < stop:
            raise refuse(f"the ranges of {name} and {other} overlap (frames {start}..{stop - 1}"
                         "); give ranges that do not share a frame")
    return bounds
