"""Your own data: train, validate, test and predict on a PNG folder, ``.npy`` / HDF5 arrays, or
(with the xarray extra) NetCDF and zarr, of any size (docs/own-data.md).

Nothing is loaded whole: arrays are memory-mapped or read by slices, so a window reads only its
own frames. A long series is cut into windows of ``context_frames + horizon`` frames (never
across a gap in its time coordinate) and split in time, the test period last; sequences (an N
axis) are split whole. Values are scaled for the model by ``own_values.ValueScale`` (statistics
of the training split only, kept in the checkpoint), and ``predict`` writes its forecast back in
the file's units. Missing pixels (NaN, or ``fill_value``) reach the model as 0 with a mask that
the loss and the metrics skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from predlearn.datamodules.base import (
    ArrayShuffle,
    SequenceDataModule,
    distributed,
    require_positive_int,
)
from predlearn.datamodules.own_arrays import (
    ArraySeries,
    Splits,
    Windows,
    array_files,
    resolve_layout,
    split_windows,
)
from predlearn.datamodules.own_png import IMAGE_SUFFIXES, PngSeries
from predlearn.datamodules.own_values import (
    MODEL_FILL,
    ValueScale,
    check_normalize,
    may_be_missing,
    observed,
    usable_frames,
)
from predlearn.datamodules.own_xarray import XARRAY_SUFFIXES
from predlearn.errors import BadFileError, OptionValueError, require
from predlearn.paper import CONTEXT_FRAMES, HORIZON

PREDICT_WINDOWS = ("last", "test")


def open_source(path: str, dataset: str | None, layout: str | None) -> Any:
    """The frame source ``path`` names: a PNG folder, NetCDF / zarr (xarray), or ``.npy`` /
    HDF5 files (one, a folder of them, or a glob) in ``layout``."""
    location = Path(path).expanduser()
    if location.suffix in XARRAY_SUFFIXES:
        if layout is not None:
            raise OptionValueError("layout", f"{location} is read by its dimension names (time, "
                                   "y, x, a channel dimension); leave --data.layout out",
                                   layout, owner="data")
        from predlearn.datamodules.own_xarray import XarraySeries

        return XarraySeries(location, dataset)
    if location.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in location.iterdir()):
        return PngSeries(location)
    files = array_files(location, dataset or "frames")
    return ArraySeries(files, resolve_layout(layout, len(files[0].shape), str(location)))


class OwnWindows(Dataset):
    """Windows of a frame source as the model sees them: float32 (T, C, H, W) scaled, missing
    pixels at ``MODEL_FILL``; with ``masked``, items are (frames, observed) pairs."""

    def __init__(self, source: Any, windows: Windows, length: int, scale: ValueScale,
                 fill_value: float | None, masked: bool) -> None:
        self.source, self.windows, self.length = source, windows, length
        self.scale, self.fill_value, self.masked = scale, fill_value, masked

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        raw = self.source.window(int(self.windows.sequence[index]),
                                 int(self.windows.start[index]), self.length)
        frames = self.scale.to_model(raw)
        if self.scale.checked:
            self._check_unit_interval(frames)
        if not self.masked:
            return torch.from_numpy(frames)
        valid = observed(raw, self.fill_value)
        frames[~valid] = MODEL_FILL
        return torch.from_numpy(frames), torch.from_numpy(valid)

    def _check_unit_interval(self, frames: np.ndarray) -> None:
        finite = frames[np.isfinite(frames)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise BadFileError(
                f"{self.source.describe()}: float frames must lie in [0, 1] for a model that was "
                f"not trained on this data; found values in [{finite.min():.3g}, "
                f"{finite.max():.3g}]: give --data.value_range=[low,high] (or "
                "--data.normalize=minmax)")


class FramesDataModule(SequenceDataModule):
    """Your own frames, for every command (docs/own-data.md).

    Args:
        path: a folder of PNG frames (one series, file-name order); a ``.npy`` or HDF5 file, a
            folder of them or a glob (one data set, in name order); a NetCDF ``.nc`` file or a
            zarr ``.zarr`` store (``pip install "predlearn[xarray]"``).
        dataset: the HDF5 dataset (default ``frames``), or the NetCDF / zarr variable (several,
            comma-separated, become channels; default: the only one with time, y and x).
        layout: the axes of an array, letters of N (sequences), T, C, H, W: ``THW``, ``NTHW``,
            ``TCHW``, ``NTCHW``; 3 and 5 axes default to ``THW`` and ``NTCHW``, 4 must be given.
        stride: frames between the starts of consecutive windows of a series.
        val_fraction: the part of the series (or of the sequences) before the test period that
            validates.
        test_fraction: the last part of the series (or the last sequences), for testing.
        time_ranges: for NetCDF / zarr with a time coordinate: ``{train: [first, last], val:
            [...], test: [...]}`` (ISO times) instead of the fractions.
        normalize: ``minmax`` (into [0, 1]), ``zscore`` or ``none`` (values used as they are).
            None: 8-bit data and PNG frames are divided by their format's maximum, other data
            min-max scaled; a checkpoint trained on this kind of data brings its own scale.
        value_range: ``[low, high]`` of the values, mapped to [0, 1] (instead of statistics).
        fill_value: a value that marks a missing pixel (NaN always does).
        channel_names: names of the channels in metrics and pictures (default: the file's).
        predict_windows: what ``predict`` forecasts from: ``last`` (the last context_frames of
            each sequence, or of the series: the future after the data) or ``test`` (every
            test window's observed part).
        batch_size, num_workers, context_frames, horizon, test_horizon: as every data module.
    """

    def __init__(
        self,
        path: str,
        dataset: str | None = None,
        layout: str | None = None,
        stride: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        time_ranges: dict[str, list[str]] | None = None,
        normalize: str | None = None,
        value_range: list[float] | None = None,
        fill_value: float | None = None,
        channel_names: list[str] | None = None,
        predict_windows: str = "last",
        batch_size: int = 8,
        num_workers: int = 0,
        context_frames: int = CONTEXT_FRAMES,
        horizon: int = HORIZON,
        test_horizon: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers,
                         context_frames=context_frames, horizon=horizon,
                         test_horizon=test_horizon)
        require(bool(str(path).strip()), "path", "give a folder of PNG frames, a .npy / .h5 / .nc "
                "file, a .zarr store, a folder of arrays or a glob", path)
        require(dataset is None or bool(str(dataset).strip()), "dataset",
                "give the name of the dataset (HDF5) or variable (NetCDF, zarr)", dataset)
        require_positive_int("stride", stride)
        if normalize is not None:
            check_normalize(normalize)
        require(predict_windows in PREDICT_WINDOWS, "predict_windows",
                f"must be one of {', '.join(PREDICT_WINDOWS)}; got {predict_windows!r}",
                predict_windows)
        if value_range is not None:
            ValueScale.given(value_range, 1)  # checks it
        split_windows(1, 10, 1, 1, val_fraction, test_fraction)  # checks the fractions
        self.path, self.dataset, self.layout, self.stride = path, dataset, layout, stride
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.time_ranges, self.normalize, self.value_range = time_ranges, normalize, value_range
        self.fill_value, self.given_channel_names = fill_value, channel_names
        self.predict_windows = predict_windows
        self._source: Any = None
        self._splits: Splits | None = None
        self._scale: ValueScale | None = None  # from a checkpoint, or computed when first needed
        self._stage: str | None = None

    # --- the file ------------------------------------------------------------------------------

    @property
    def source(self) -> Any:
        """The frame source (opened once; only its header is read)."""
        if self._source is None:
            self._source = open_source(self.path, self.dataset, self.layout)
            names = self.given_channel_names
            if names is not None and len(names) != self._source.frame_shape[0]:
                raise OptionValueError("channel_names", f"{self._source.describe()} has "
                                       f"{self._source.frame_shape[0]} channels; got "
                                       f"{len(names)} names", names, owner="data")
        return self._source

    def frame_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.source.frame_shape
        return (int(channels), int(height), int(width))

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The channels' names, for per-channel metrics and pictures."""
        return tuple(self.given_channel_names or self.source.channel_names)

    @property
    def masked(self) -> bool:
        """Whether batches carry a mask of observed pixels (data that can miss some)."""
        return may_be_missing(self.source.dtype, self.fill_value)

    @property
    def value_bounds(self) -> tuple[float, float] | None:
        """The range of the model's values (predictions are clamped to it), None if unbounded
        (z-scored data, or values used as they are)."""
        return (0.0, 1.0) if self.scale.unit_interval else None

    # --- splits and scale ------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        self._stage = stage
        if stage == "predict" and self.predict_windows == "last":
            return  # the last frames of each sequence: no splits needed
        if self._splits is None:
            self._splits = self._split()

    def _split(self) -> Splits:
        source = self.source
        runs = bounds = None
        if source.times is not None:
            from predlearn.datamodules.own_xarray import time_bounds, time_runs

            runs = time_runs(source.times, source.frames, source=source.describe())
            if self.time_ranges:
                bounds = time_bounds(source.times, self.time_ranges, source=source.describe())
        elif self.time_ranges:
            raise OptionValueError("time_ranges", f"{source.describe()} has no time coordinate; "
                                   "split it with val_fraction / test_fraction", self.time_ranges,
                                   owner="data")
        usable = (usable_frames(source, self.fill_value)
                  if may_be_missing(source.dtype, self.fill_value) else None)
        splits = split_windows(source.sequences, source.frames, self.sequence_length,
                               self.stride, self.val_fraction, self.test_fraction,
                               test_length=self.test_sequence_length, runs=runs, bounds=bounds,
                               usable=usable)
        rank_zero_info(f"predlearn: {source.describe()}: windows train {len(splits['train'])}, "
                       f"val {len(splits['val'])}, test {len(splits['test'])} "
                       f"({splits.unit} split {splits.sizes['train']} / {splits.sizes['val']} / "
                       f"{splits.sizes['test']})")
        return splits

    @property
    def scale(self) -> ValueScale:
        """The map to the model's values: a given range, the format's range (8-bit data), the
        checkpoint's, or statistics of the training windows (computed once, when first
        needed)."""
        if self._scale is None:
            self._scale = self._choose_scale()
        return self._scale

    def _choose_scale(self) -> ValueScale:
        source, channels = self.source, self.source.frame_shape[0]
        if self.value_range is not None:
            return ValueScale.given(self.value_range, channels)
        if self.normalize is None:
            if isinstance(source, PngSeries):
                return ValueScale.given(source.value_range, channels)
            if source.dtype == np.uint8:
                return ValueScale.given((0, 255), channels)
        normalize = self.normalize or "minmax"
        if normalize == "none":
            return ValueScale.of("none", None, source, Windows(np.zeros(0), np.zeros(0)), 1)
        if self._stage not in (None, "fit") and self.normalize is None:
            if np.issubdtype(source.dtype, np.floating):
                # a model trained on predlearn's data sets, in [0, 1]: so must these values be
                return ValueScale((0.0,) * channels, (1.0,) * channels, checked=True)
            raise OptionValueError(
                "normalize", f"{source.describe()} holds {source.dtype} values and the "
                "checkpoint has no scale for them (it was not trained on your own data): give "
                "--data.value_range=[low,high], or --data.normalize=none if they lie in [0, 1]",
                None, owner="data")
        splits = self._splits if self._splits is not None else self._split()
        train = splits.require("train", self.sequence_length)
        return ValueScale.of(normalize, None, source, train, self.sequence_length,
                             fill_value=self.fill_value)

    def state_dict(self) -> dict[str, Any]:
        """Kept in the checkpoint: the scale, so that test and predict see what training saw
        and forecasts go back to the same units."""
        return {"value_scale": self.scale.as_dict(), "channel_names": list(self.channel_names)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        scale = ValueScale.from_dict(state_dict["value_scale"])
        channels = self.source.frame_shape[0]
        if len(scale.offset) != channels:
            raise BadFileError(f"the checkpoint's data had {len(scale.offset)} channels; "
                               f"{self.source.describe()} has {channels}")
        if self.value_range is None and self.normalize is None:
            self._scale = scale

    def restore_data_state(self, checkpoint_path: str | Path) -> None:
        """Read this module's state from a checkpoint before anything runs (the command line
        calls it, so that the model's metrics see the checkpoint's scale from the start)."""
        if not Path(checkpoint_path).is_file():
            return
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True,
                                mmap=True)
        state = checkpoint.get(type(self).__qualname__)
        if state:
            self.load_state_dict(state)

    def test_windows(self) -> tuple[list[int], list[int], int]:
        """Each test window's sequence (0 for one series) and first frame, in dataset order,
        and the test windows' length (``SequenceDataModule.test_windows``): windows of one
        sequence overlap, those of different sequences do not."""
        if self._splits is None:
            self._splits = self._split()  # not setup(): that would set the stage
        length = self.test_sequence_length
        windows = self._splits.require("test", length)
        return ([int(n) for n in windows.sequence], [int(s) for s in windows.start], length)

    # --- loaders ---------------------------------------------------------------------------------

    def _dataset(self, name: str, length: int) -> OwnWindows:
        if self._splits is None:
            self.setup(name if name != "train" else "fit")
        assert self._splits is not None
        windows = self._splits.require(name, length)
        return OwnWindows(self.source, windows, length, self.scale, self.fill_value, self.masked)

    def train_dataloader(self) -> DataLoader:
        windows = self._dataset("train", self.sequence_length)
        if distributed():  # Lightning's distributed sampler gives each rank its share
            return self._loader(windows, shuffle=True)
        # millions of windows of a long series: their order as an array, not a list of ints
        return self._loader(windows, sampler=ArrayShuffle(len(windows)))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_fraction == 0 and self.time_ranges is None:
            return []  # no validation asked for
        return self._loader(self._dataset("val", self.sequence_length))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test", self.test_sequence_length))

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset())

    def predict_dataset(self) -> OwnWindows:
        """The windows ``predict`` forecasts from (``predict_windows``)."""
        source = self.source
        if self.predict_windows == "test":
            return self._dataset("test", self.test_sequence_length)
        if source.frames < self.context_frames:
            raise BadFileError(f"{source.describe()}: the model observes {self.context_frames} "
                               f"frames; the data has only {source.frames} per sequence")
        count = source.sequences
        windows = Windows(np.arange(count, dtype=np.int64),
                          np.full(count, source.frames - self.context_frames, np.int64))
        return OwnWindows(source, windows, self.context_frames, self.scale, self.fill_value,
                          self.masked)

    def forecast_origins(self) -> list[tuple[int, int]]:
        """(sequence, last observed frame) of each forecast ``predict`` makes, in order."""
        windows = self.predict_dataset().windows
        return [(int(n), int(s) + self.context_frames - 1)
                for n, s in zip(windows.sequence, windows.start, strict=True)]

    def write_forecast(self, predictions: np.ndarray, path: str | Path | None,
                       folder: Path) -> Path:
        """Write ``predict``'s (N, K, C, H, W) predictions in the file's units, in its format
        family (``own_forecast``); ``path`` None: ``forecast.<suffix>`` in ``folder``."""
        from predlearn.datamodules.own_forecast import write_forecast

        return write_forecast(self.source, self.scale.to_units(predictions),
                              self.forecast_origins(), path, folder, self.channel_names)

