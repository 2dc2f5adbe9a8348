"""The values of your own data: their scale to what the model sees (and back to your units),
and the pixels that are missing (NaN, or a declared fill value).

Statistics are streamed over the training windows' frames, a chunk at a time, so a file far
larger than memory is scaled as a small one is; missing values take no part in them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from predlearn.datamodules.own_arrays import Windows
from predlearn.errors import BadFileError, OptionValueError

NORMALIZATIONS = ("minmax", "zscore", "none")
#: what a missing pixel becomes in what the model sees (docs/own-data.md, missing values)
MODEL_FILL = 0.0


def may_be_missing(dtype: np.dtype, fill_value: float | None) -> bool:
    """Whether data of ``dtype`` can hold missing pixels: floats (NaN), or any type with a
    declared fill value."""
    return fill_value is not None or np.issubdtype(dtype, np.floating)


def observed(frames: np.ndarray, fill_value: float | None) -> np.ndarray:
    """True where a pixel of ``frames`` was observed: finite, and not the fill value."""
    valid = np.isfinite(frames) if np.issubdtype(frames.dtype, np.floating) else (
        np.ones(frames.shape, bool))
    if fill_value is not None:
        valid &= frames != fill_value
    return valid


@dataclass(frozen=True)
class ValueScale:
    """The map of the file's values to what the model sees, per channel: ``(x - offset) /
    scale`` (min-max: into [0, 1]; z-score: mean 0, deviation 1; none: as they are), and back
    (``to_units``), so forecasts return in the user's units. ``unit_interval``: whether the
    model's values lie in [0, 1] (predictions are clamped to it)."""

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    unit_interval: bool = True
    #: values taken as they are for a model trained elsewhere: they must lie in [0, 1]
    checked: bool = False

    @staticmethod
    def _per_channel(values: tuple[float, ...]) -> np.ndarray:
        return np.asarray(values, np.float64).reshape(-1, 1, 1)  # broadcasts over (T, C, H, W)

    def to_model(self, frames: np.ndarray) -> np.ndarray:
        """(T, C, H, W) in the file's units -> float32 for the model."""
        return ((frames - self._per_channel(self.offset))
                / self._per_channel(self.scale)).astype(np.float32)

    def to_units(self, frames: np.ndarray) -> np.ndarray:
        """The model's (..., C, H, W) values back in the file's units (float64)."""
        return frames * self._per_channel(self.scale) + self._per_channel(self.offset)

    def as_dict(self) -> dict[str, Any]:
        """For a checkpoint (plain lists and a bool: no pickle needed)."""
        return {"offset": list(self.offset), "scale": list(self.scale),
                "unit_interval": self.unit_interval}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> ValueScale:
        return cls(tuple(float(v) for v in saved["offset"]),
                   tuple(float(v) for v in saved["scale"]), bool(saved["unit_interval"]))

    @classmethod
    def given(cls, value_range: Sequence[float], channels: int) -> ValueScale:
        """[low, high] -> [0, 1] in every channel."""
        if len(value_range) != 2 or not float(value_range[1]) > float(value_range[0]):
            raise OptionValueError("value_range", f"must be [low, high] with high > low; got "
                                   f"{list(value_range)}", value_range, owner="data")
        low, high = float(value_range[0]), float(value_range[1])
        return cls((low,) * channels, (high - low,) * channels)

    @classmethod
    def of(cls, normalize: str, value_range: Sequence[float] | None, series: Any,
           train: Windows, length: int, chunk: int = 256,
           fill_value: float | None = None) -> ValueScale:
        """The scale of ``normalize`` (or of a given ``value_range``: [low, high] -> [0, 1]),
        its statistics streamed over the training windows' frames of the frame source
        ``series``, ``chunk`` frames at a time (never the whole file in memory); missing values
        (NaN, ``fill_value``) are left out of them."""
        channels = series.frame_shape[0]
        if value_range is not None:
            return cls.given(value_range, channels)
        check_normalize(normalize)
        if normalize == "none":
            return cls((0.0,) * channels, (1.0,) * channels, unit_interval=False)
        stats = _ChannelStats(channels)
        for sequence, first, stop in _training_frames(train, length):
            for start in range(first, stop, chunk):
                stats.add(series.window(sequence, start, min(chunk, stop - start)), fill_value)
        if stats.count.min() == 0:
            raise BadFileError(f"{series.describe()}: the training split holds no observed value "
                               f"in some channel (counts per channel: {stats.count.tolist()})")
        if normalize == "minmax":
            spread = np.where(stats.high > stats.low, stats.high - stats.low, 1.0)
            return cls(tuple(stats.low.tolist()), tuple(spread.tolist()))
        mean = stats.total / stats.count
        deviation = np.sqrt(np.maximum(stats.squares / stats.count - mean ** 2, 0.0))
        return cls(tuple(mean.tolist()), tuple(np.where(deviation > 0, deviation, 1.0).tolist()),
                   unit_interval=False)


def check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise OptionValueError("normalize", f"must be one of {', '.join(NORMALIZATIONS)} (or "
                               f"give value_range); got {normalize!r}", normalize, owner="data")


def _training_frames(train: Windows, length: int) -> list[tuple[int, int, int]]:
    """(sequence, first frame, stop) of each run of frames the training windows cover, each
    frame once (vectorised: millions of windows of a long series take no Python loop)."""
    if len(train) == 0:
        return []
    order = np.lexsort((train.start, train.sequence))
    sequence, start = np.asarray(train.sequence)[order], np.asarray(train.start)[order]
    stop = start + length
    # positions on one line, sequences apart: a window opens a new run where it starts after
    # every earlier window (of its sequence: the others end before it) has ended
    apart = int(stop.max()) + 1
    reach = np.maximum.accumulate(sequence * apart + stop)
    firsts = np.flatnonzero(np.r_[True, (sequence * apart + start)[1:] > reach[:-1]])
    ends = np.maximum.reduceat(stop, firsts)
    return [(int(sequence[f]), int(start[f]), int(e)) for f, e in zip(firsts, ends, strict=True)]


class _ChannelStats:
    """Per-channel minimum, maximum, sum and sum of squares of observed values, in float64."""

    def __init__(self, channels: int) -> None:
        self.low = np.full(channels, np.inf)
        self.high = np.full(channels, -np.inf)
        self.total, self.squares = np.zeros(channels), np.zeros(channels)
        self.count = np.zeros(channels, np.int64)

    def add(self, frames: np.ndarray, fill_value: float | None = None) -> None:
        valid = np.moveaxis(observed(frames, fill_value), 1, 0).reshape(frames.shape[1], -1)
        values = np.moveaxis(np.asarray(frames, np.float64), 1, 0).reshape(frames.shape[1], -1)
        self.low = np.minimum(self.low, np.where(valid, values, np.inf).min(axis=1))
        self.high = np.maximum(self.high, np.where(valid, values, -np.inf).max(axis=1))
        clean = np.where(valid, values, 0.0)
        self.total += clean.sum(axis=1)
        self.squares += (clean ** 2).sum(axis=1)
        self.count += valid.sum(axis=1)


def usable_frames(series: Any, fill_value: float | None, chunk: int = 256,
                  show_progress: bool = True) -> np.ndarray:
    """(sequences, frames) bool: whether each frame has at least one observed pixel (frames all
    missing start and end no window), streamed ``chunk`` frames at a time with a progress bar."""
    from predlearn.datamodules.files import progress

    usable = np.ones((series.sequences, series.frames), bool)
    total = series.sequences * series.frames
    with progress(total, f"frames: finding missing frames of {series.describe()}", "frame",
                  disable=not show_progress or total < 10 * chunk) as bar:
        for sequence in range(series.sequences):
            for start in range(0, series.frames, chunk):
                block = series.window(sequence, start, min(chunk, series.frames - start))
                usable[sequence, start:start + len(block)] = (
                    observed(block, fill_value).reshape(len(block), -1).any(axis=1))
                bar.update(len(block))
    return usable
