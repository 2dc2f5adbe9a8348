"""Own NetCDF and zarr files read through xarray (predlearn.datamodules.own_xarray) and forecasts
written back (own_forecast_xarray), on small files generated here in the real formats: dims
mapped by name, CF decoding, channels, sequences, pickles, refusals, time runs and ranges."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import xarray as xr

from predlearn.datamodules.own_forecast_xarray import write_forecast_xarray
from predlearn.datamodules.own_xarray import XarraySeries, time_bounds, time_runs
from predlearn.errors import (
    BadFileError,
    DataNotFoundError,
    OptionValueError,
    OutputError,
    UsageError,
)

STEP = np.timedelta64(5, "m")
START = np.datetime64("2020-01-01T00:00", "ns")


def times(count: int = 12) -> np.ndarray:
    return START + np.arange(count) * STEP


def values(*shape: int) -> np.ndarray:
    return np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)


def frames_dataset(**variables) -> xr.Dataset:
    """A (time=12, y=6, x=7) dataset of ``variables`` (name -> (dims, data)) with coordinates."""
    coords = {"time": times(), "y": ("y", np.linspace(50, 55, 6), {"units": "degrees_north"}),
              "x": ("x", np.arange(7.0) * 2, {"units": "km"})}
    return xr.Dataset(variables, coords=coords)


def save(dataset: xr.Dataset, path, zarr_format: int = 3):
    if path.suffix == ".zarr":
        dataset.to_zarr(path, consolidated=False, zarr_format=zarr_format)
    else:
        dataset.to_netcdf(path, engine="h5netcdf")
    return path


@pytest.fixture(params=[".nc", ".zarr"])
def suffix(request) -> str:
    return request.param


@pytest.fixture
def dbz(tmp_path, suffix):
    data = values(12, 6, 7)
    dataset = frames_dataset(dbz=(("time", "y", "x"), data, {"units": "dBZ"}))
    return save(dataset, tmp_path / f"radar{suffix}"), data


def test_a_file_round_trips_with_its_shape_names_and_times(dbz):
    path, data = dbz
    series = XarraySeries(path)
    assert (series.sequences, series.frames, series.frame_shape) == (1, 12, (1, 6, 7))
    assert series.channel_names == ("dbz",) and series.dtype == np.float32
    assert series.times.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(series.times, times())
    np.testing.assert_array_equal(series.window(0, 3, 4), data[3:7, None])
    assert series.describe() == f"{path.name}, variable 'dbz'"


def test_cf_packed_integers_read_as_floats_with_nan_at_the_fill(tmp_path):
    data = np.round(values(12, 6, 7) * 50, 1)
    data[2, 1, 1] = np.nan
    dataset = frames_dataset(rain=(("time", "y", "x"), data))
    dataset.rain.encoding = {"dtype": "int16", "scale_factor": 0.1, "add_offset": 5.0,
                             "_FillValue": -32768}
    path = save(dataset, tmp_path / "packed.nc")
    with xr.open_dataset(path, engine="h5netcdf", mask_and_scale=False) as raw:
        assert raw.rain.dtype == np.int16
    series = XarraySeries(path)
    assert np.issubdtype(series.dtype, np.floating)
    window = series.window(0, 1, 3)
    assert np.isnan(window[1, 0, 1, 1]) and np.isnan(window).sum() == 1
    np.testing.assert_allclose(window[:, 0], data[1:4], atol=1e-6)


def test_a_channel_dim_and_stacked_variables_both_give_channels(tmp_path, suffix):
    ir, wv = values(12, 6, 7), values(12, 6, 7) + 1
    banded = frames_dataset(bt=(("time", "band", "y", "x"), np.stack([ir, wv], axis=1)))
    banded = banded.assign_coords(band=["ir", "wv"])  # zarr 2: strings have no zarr 3 spec yet
    series = XarraySeries(save(banded, tmp_path / f"banded{suffix}", zarr_format=2))
    assert series.frame_shape == (2, 6, 7) and series.channel_names == ("ir", "wv")
    np.testing.assert_array_equal(series.window(0, 2, 3), np.stack([ir, wv], axis=1)[2:5])

    # channels last in the file, and the channel dim named explicitly
    last = frames_dataset(bt=(("time", "y", "x", "level"), np.stack([ir, wv], axis=-1)))
    series = XarraySeries(save(last, tmp_path / f"last{suffix}"), channel_dim="level")
    assert series.channel_names == ("level0", "level1")
    np.testing.assert_array_equal(series.window(0, 2, 3), np.stack([ir, wv], axis=1)[2:5])

    pair = frames_dataset(ir108=(("time", "y", "x"), ir), wv062=(("x", "y", "time"), wv.T))
    series = XarraySeries(save(pair, tmp_path / f"pair{suffix}"), variable="ir108, wv062")
    assert series.frame_shape == (2, 6, 7) and series.channel_names == ("ir108", "wv062")
    np.testing.assert_array_equal(series.window(0, 5, 2), np.stack([ir, wv], axis=1)[5:7])
    assert series.describe().endswith("variables 'ir108', 'wv062'")


def test_a_sequence_dim_gives_sequences(tmp_path, suffix):
    data = values(3, 12, 6, 7)
    dataset = frames_dataset(sst=(("member", "time", "lat", "lon"), data))
    series = XarraySeries(save(dataset, tmp_path / f"ens{suffix}"))
    assert (series.sequences, series.frames, series.frame_shape) == (3, 12, (1, 6, 7))
    np.testing.assert_array_equal(series.window(2, 4, 5), data[2, 4:9, None])
    with pytest.raises(IndexError):
        series.window(0, 10, 5)


def test_a_pickled_series_has_no_open_dataset_and_reads_the_same(dbz):
    path, data = dbz
    series = XarraySeries(path)
    copy = pickle.loads(pickle.dumps(series))
    assert copy._dataset is None and series._dataset is not None
    np.testing.assert_array_equal(copy.window(0, 3, 4), series.window(0, 3, 4))
    assert copy._dataset is not None
    series.close()
    np.testing.assert_array_equal(series.window(0, 0, 2), data[:2, None])


def test_variables_are_chosen_or_refused_by_name(tmp_path):
    data = values(12, 6, 7)
    two = frames_dataset(a=(("time", "y", "x"), data), b=(("time", "y", "x"), data),
                         mask=(("y", "x"), data[0]))
    path = save(two, tmp_path / "two.nc")
    with pytest.raises(OptionValueError, match="several variables.*'a', 'b'.*--data.dataset"):
        XarraySeries(path)
    with pytest.raises(OptionValueError, match="no variable 'rain'; it has 'a', 'b', 'mask'"):
        XarraySeries(path, variable="rain")
    assert XarraySeries(path, variable="b").channel_names == ("b",)


def test_dims_that_cannot_be_mapped_are_named(tmp_path):
    data = values(12, 2, 3, 6, 7)
    dataset = frames_dataset(v=(("time", "band", "level", "y", "x"), data))
    with pytest.raises(BadFileError, match=r"dims \(time, band, level, y, x\): band, level"):
        XarraySeries(save(dataset, tmp_path / "five.nc"))
    with pytest.raises(BadFileError, match="level are not time.*the channel dim is 'band'"):
        XarraySeries(tmp_path / "five.nc", channel_dim="band")
    with pytest.raises(OptionValueError, match="channel_dim: five.nc.*not 'member'"):
        XarraySeries(tmp_path / "five.nc", channel_dim="member")
    no_x = xr.Dataset({"v": (("time", "y", "col"), values(12, 6, 7))})
    with pytest.raises(BadFileError, match=r"no variable has time, y and x.*v\('time', 'y'"):
        XarraySeries(save(no_x, tmp_path / "nox.nc"))
    with pytest.raises(BadFileError, match="none is x"):
        XarraySeries(tmp_path / "nox.nc", variable="v")


def test_missing_and_bad_files_are_refused_naming_them(tmp_path):
    with pytest.raises(DataNotFoundError, match="nothing.nc: no such file"):
        XarraySeries(tmp_path / "nothing.nc")
    (tmp_path / "junk.nc").write_bytes(b"not a netcdf file")
    with pytest.raises(BadFileError, match="junk.nc: cannot open it"):
        XarraySeries(tmp_path / "junk.nc")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(BadFileError, match="empty.zarr: cannot open it.*zarr store is a folder"):
        XarraySeries(tmp_path / "empty.zarr")


def test_without_the_extra_the_refusal_names_it(dbz, monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(UsageError) as caught:
        XarraySeries(dbz[0])
    message = str(caught.value)
    assert "\n" not in message and 'pip install "predlearn[xarray]"' in message
    assert isinstance(caught.value, ModuleNotFoundError)


def test_time_runs_split_at_gaps_and_nat():
    stamps = np.delete(times(13), 5)  # frame 5 of 13 missing: a 10-minute step
    assert time_runs(stamps, 12) == [(0, 5), (5, 12)]
    stamps[8] = np.datetime64("NaT")
    assert time_runs(stamps, 12) == [(0, 5), (5, 8), (9, 12)]
    assert time_runs(None, 7) == [(0, 7)]
    backwards = times(6)[[0, 1, 3, 2, 4, 5]]
    with pytest.raises(BadFileError, match="radar.nc: time goes backwards.*frame 3"):
        time_runs(backwards, 6, source="radar.nc")


def test_a_file_whose_time_goes_backwards_is_refused_when_opened(tmp_path):
    dataset = frames_dataset(dbz=(("time", "y", "x"), values(12, 6, 7)))
    shuffled = save(dataset.isel(time=[0, 1, 2, 4, 3, *range(5, 12)]), tmp_path / "mixed.nc")
    with pytest.raises(BadFileError, match="mixed.nc, variable 'dbz': time goes backwards.*sortby"):
        XarraySeries(shuffled)


def test_time_bounds_turn_ranges_into_frames_and_refuse_bad_ones():
    stamps = START + np.arange(48) * np.timedelta64(1, "h")  # 2 days, hourly
    ranges = {"train": ["2020-01-01T00:00", "2020-01-01T20:00"],
              "val": ["2020-01-01T21", "2020-01-01T23"], "test": ["2020-01-02", "2020-01-02"]}
    assert time_bounds(stamps, ranges) == {"train": (0, 21), "val": (21, 24), "test": (24, 48)}

    def refused(ranges, match, stamps=stamps):
        with pytest.raises(OptionValueError, match=match) as caught:
            time_bounds(stamps, ranges, source="radar.nc")
        assert str(caught.value.as_typed()).startswith("--data.time_ranges: ")

    refused({"training": ["2020-01-01", "2020-01-02"]}, "unknown split 'training'")
    refused({"val": ["2021-01-01", "2021-02-01"]}, "val: .* selects no frame of radar.nc")
    refused({"train": ["2020-01-01", "2020-01-01T12"], "val": ["2020-01-01T12", "2020-01-02"]},
            "train and val overlap")
    refused({"train": ["January", "2020-01-02"]}, "'January' is not an ISO date")
    refused({"train": ["2020-01-01", "2020-01-02"]}, "radar.nc has no datetime time", None)


@pytest.mark.parametrize("output", ["forecast.nc", "forecast.zarr"])
def test_a_forecast_is_written_like_its_input(tmp_path, dbz, output):
    path, _ = dbz
    series = XarraySeries(path)
    forecast = values(2, 3, 1, 6, 7)
    origins = [(0, 4), (0, 8)]
    written = write_forecast_xarray(tmp_path / output, forecast, series, origins, STEP)
    assert written == tmp_path / output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, output])
    with xr.open_dataset(written, engine="zarr" if output.endswith("zarr") else "h5netcdf",
                         decode_timedelta=True) as result:
        assert result.dbz.dims == ("forecast", "lead_time", "y", "x")
        assert result.dbz.attrs["units"] == "dBZ"
        np.testing.assert_array_equal(result.dbz.values, forecast[:, :, 0])
        np.testing.assert_array_equal(result.lead_time.values, STEP * np.arange(1, 4))
        np.testing.assert_array_equal(result.issue_time.values, times()[[4, 8]])
        np.testing.assert_array_equal(result.origin_index.values, [4, 8])
        np.testing.assert_array_equal(result.sequence.values, [0, 0])
        source = series.dataset
        for axis in ("y", "x"):
            np.testing.assert_array_equal(result[axis].values, source[axis].values)
            assert result[axis].attrs["units"] == source[axis].attrs["units"]
    # written again over the old one, and never over its input
    write_forecast_xarray(tmp_path / output, forecast * 2, series, origins, STEP)
    with pytest.raises(OutputError, match="also an input"):
        write_forecast_xarray(path, forecast, series, origins, STEP)


def test_a_forecast_keeps_the_channel_dim_or_the_stacked_variables(tmp_path):
    ir, wv = values(12, 6, 7), values(12, 6, 7)
    banded = frames_dataset(bt=(("time", "band", "y", "x"), np.stack([ir, wv], axis=1)))
    banded = save(banded.assign_coords(band=["ir", "wv"]), tmp_path / "banded.nc")
    pair = save(frames_dataset(ir108=(("time", "y", "x"), ir), wv062=(("time", "y", "x"), wv)),
                tmp_path / "pair.nc")
    forecast = values(1, 2, 2, 6, 7)
    out = write_forecast_xarray(tmp_path / "b.nc", forecast, XarraySeries(banded), [(0, 3)], None)
    with xr.open_dataset(out, engine="h5netcdf") as result:
        assert result.bt.dims == ("forecast", "lead_time", "band", "y", "x")
        assert list(result.band.values) == ["ir", "wv"]
        np.testing.assert_array_equal(result.lead_time.values, [1, 2])
        np.testing.assert_array_equal(result.bt.values, forecast)
    series = XarraySeries(pair, variable="ir108,wv062")
    out = write_forecast_xarray(tmp_path / "p.zarr", forecast, series, [(0, 3)], STEP)
    with xr.open_dataset(out, engine="zarr") as result:
        np.testing.assert_array_equal(result.wv062.values, forecast[:, :, 1])
        assert result.ir108.dims == ("forecast", "lead_time", "y", "x")
