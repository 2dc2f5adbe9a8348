"""Own arrays read lazily (predlearn.datamodules.own_arrays), on small generated files in the
real formats: .npy memory-mapped, HDF5 datasets, many files as one, layouts, windows and splits."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from predlearn.datamodules.own_arrays import (
    ArraySeries,
    array_files,
    resolve_layout,
    split_windows,
)
from predlearn.datamodules.own_values import ValueScale
from predlearn.errors import BadFileError, DataNotFoundError, OptionValueError


def series(frames: int = 30, height: int = 4, width: int = 5, channels: int | None = None):
    shape = (frames, height, width) if channels is None else (frames, channels, height, width)
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_an_npy_series_is_memory_mapped_and_windows_are_its_frames(tmp_path):
    data = series()
    np.save(tmp_path / "a.npy", data)
    (file,) = array_files(tmp_path / "a.npy")
    assert isinstance(file.array, np.memmap) and file.shape == (30, 4, 5)
    frames = ArraySeries([file], resolve_layout(None, 3, "a.npy"))
    assert (frames.sequences, frames.frames, frames.frame_shape) == (1, 30, (1, 4, 5))
    np.testing.assert_array_equal(frames.window(0, 7, 6), data[7:13, None])


def test_hdf5_datasets_are_named_and_opened_again_after_a_pickle(tmp_path):
    data = np.random.default_rng(0).random((3, 8, 2, 4, 4), dtype=np.float32)  # N T C H W
    with h5py.File(tmp_path / "s.h5", "w") as handle:
        handle["sst"] = data
        handle["mask"] = np.zeros(3)
    with pytest.raises(OptionValueError, match=r"has no dataset 'frames'; it has 'mask', 'sst'"):
        array_files(tmp_path / "s.h5")
    (file,) = array_files(tmp_path / "s.h5", "sst")
    copy = pickle.loads(pickle.dumps(file))  # a loader worker's copy opens its own handle
    assert copy._array is None
    frames = ArraySeries([copy], resolve_layout(None, 5, "s.h5"))
    np.testing.assert_array_equal(frames.window(2, 3, 4), data[2, 3:7])


def test_many_files_are_one_series_in_name_order_and_a_window_may_span_two(tmp_path):
    data = series(20, channels=3)  # T C H W
    np.save(tmp_path / "part-1.npy", data[:12])
    np.save(tmp_path / "part-2.npy", data[12:])
    for given in (tmp_path, tmp_path / "part-*.npy"):
        frames = ArraySeries(array_files(given), resolve_layout("TCHW", 4, "parts"))
        assert frames.frames == 20 and frames.frame_shape == (3, 4, 5)
        np.testing.assert_array_equal(frames.window(0, 9, 6), data[9:15])


def test_time_on_another_axis_than_the_first(tmp_path):
    data = series(10, channels=2).transpose(1, 0, 2, 3)  # C T H W
    np.save(tmp_path / "c.npy", data)
    frames = ArraySeries(array_files(tmp_path / "c.npy"), resolve_layout("cthw", 4, "c.npy"))
    np.testing.assert_array_equal(frames.window(0, 2, 3), data[:, 2:5].transpose(1, 0, 2, 3))


def test_layouts_that_cannot_be_read_are_refused_with_both_readings(tmp_path):
    with pytest.raises(OptionValueError, match=r"^layout: x.npy has 4 axes: give "
                       r"--data.layout=NTHW .* or --data.layout=TCHW") as error:
        resolve_layout(None, 4, "x.npy")
    assert error.value.as_typed().option == "--data.layout"
    for bad in ("NTHH", "TXHW", "NCHW", "THW"):
        with pytest.raises(OptionValueError, match="must name each of the 4 axes"):
            resolve_layout(bad, 4, "x.npy")
    with pytest.raises(BadFileError, match="has 2 axes; frames need 3 to 5"):
        resolve_layout(None, 2, "x.npy")


def test_files_that_do_not_fit_together_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", series(5))
    np.save(tmp_path / "b.npy", series(5, height=6))
    with pytest.raises(BadFileError, match=r"b.npy holds an array of shape \(5, 6, 5\), but "):
        array_files(tmp_path)
    with h5py.File(tmp_path / "c.h5", "w") as handle:
        handle["frames"] = series(5)
    with pytest.raises(BadFileError, match="files of one kind"):
        array_files(tmp_path / "*")
    with pytest.raises(DataNotFoundError, match="no such file"):
        array_files(tmp_path / "missing.npy")
    (tmp_path / "broken.npy").write_bytes(b"not an array")
    with pytest.raises(BadFileError, match="broken.npy: cannot read it as .npy"):
        array_files(tmp_path / "broken.npy")


def test_a_series_is_split_in_time_and_no_window_crosses_a_split():
    split = split_windows(1, 100, length=20, stride=5, val_fraction=0.2, test_fraction=0.2)
    # train frames [0, 60), val [60, 80), test [80, 100): the test period is the latest
    assert split["train"].start.tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert split["val"].start.tolist() == [60] and split["test"].start.tolist() == [80]
    assert split_windows(1, 100, 20, 5, 0.0, 0.2)["val"].start.tolist() == []  # none asked
    short = split_windows(1, 100, length=20, stride=5, val_fraction=0.1, test_fraction=0.2)
    with pytest.raises(BadFileError, match=r"the val split got 10 frames of 100 frames and no "
                       r"window of 20 usable frames \(context_frames \+ horizon\)"):
        short.require("val", 20)
    # test windows of their own length; gap-free runs and unusable frames bound the windows
    split = split_windows(1, 100, 20, 5, 0.2, 0.2, test_length=10, runs=[(0, 30), (35, 100)],
                          usable=np.arange(100)[None] != 45)
    assert split["train"].start.tolist() == [0, 5, 10, 35, 40]  # none across 30..35 or at 45
    assert split["test"].start.tolist() == [80, 85, 90]
    given = split_windows(1, 100, 20, 10, 0.0, 0.0, bounds={"train": (50, 100), "test": (0, 20)})
    assert given["train"].start.tolist() == [50, 60, 70, 80] and given["test"].start.tolist() == [0]


def test_sequences_are_split_whole_in_order():
    split = split_windows(10, 20, length=20, stride=1, val_fraction=0.2, test_fraction=0.2)
    assert split["train"].sequence.tolist() == [0, 1, 2, 3, 4, 5]
    assert split["val"].sequence.tolist() == [6, 7] and split["test"].sequence.tolist() == [8, 9]
    assert set(split["test"].start.tolist()) == {0}
    with pytest.raises(OptionValueError, match="val_fraction \\+ test_fraction must be below 1"):
        split_windows(10, 20, 20, 1, 0.5, 0.5)


def test_min_max_is_streamed_over_the_training_frames_only_and_goes_back(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(60, 2, 3, 3)).astype(np.float32) * [[[[2.0]], [[0.5]]]]
    data[50:] += 100.0  # the test period's values must not shape the scale
    data[3, 0, 0, 0] = np.nan  # a missing value is left out of the statistics
    np.save(tmp_path / "s.npy", data)
    frames = ArraySeries(array_files(tmp_path / "s.npy"), "TCHW")
    split = split_windows(1, 60, length=10, stride=4, val_fraction=0.0, test_fraction=1 / 6)
    scale = ValueScale.of("minmax", None, frames, split["train"], 10, chunk=7)
    covered = data[:10 + split["train"].start[-1]]  # the frames the training windows cover
    low = np.nanmin(covered, axis=(0, 2, 3))
    high = np.nanmax(covered, axis=(0, 2, 3))
    np.testing.assert_allclose(scale.offset, low, rtol=1e-6)
    np.testing.assert_allclose(scale.scale, high - low, rtol=1e-6)
    window = frames.window(0, 4, 10)
    seen = scale.to_model(window)
    assert np.nanmin(seen) >= 0 and np.nanmax(seen) <= 1 + 1e-6
    np.testing.assert_allclose(scale.to_units(seen), window, rtol=1e-5, atol=1e-5)  # round trip
    z = ValueScale.of("zscore", None, frames, split["train"], 10)
    np.testing.assert_allclose(z.offset, np.nanmean(covered, axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(z.scale, np.nanstd(covered, axis=(0, 2, 3)), rtol=1e-5)
    given = ValueScale.of("minmax", [0, 255], frames, split["train"], 10)
    assert given.offset == (0.0, 0.0) and given.scale == (255.0, 255.0)
    with pytest.raises(OptionValueError, match="normalize: must be one of minmax, zscore, none"):
        ValueScale.of("robust", None, frames, split["train"], 10)
    with pytest.raises(OptionValueError, match=r"value_range: must be \[low, high\]"):
        ValueScale.of("minmax", [1, 1], frames, split["train"], 10)


def test_the_frames_training_windows_cover_are_merged_into_runs():
    from predlearn.datamodules.own_arrays import Windows
    from predlearn.datamodules.own_values import _training_frames

    windows = Windows(np.array([1, 0, 0, 0, 1]), np.array([5, 20, 3, 0, 7]))
    # sequence 0: [0, 5) and [3, 8) overlap, [20, 25) apart; sequence 1: [5, 10) and [7, 12)
    assert _training_frames(windows, 5) == [(0, 0, 8), (0, 20, 25), (1, 5, 12)]
    assert _training_frames(Windows(np.zeros(0, np.int64), np.zeros(0, np.int64)), 5) == []
