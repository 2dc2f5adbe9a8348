"""Your own data (``--data=frames``) for every command, on small generated files in the real
formats: windows and splits, scales back to the file's units, missing values as masks, the
checkpoint's scale, the forecast file, and two DDP processes against one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from support import quiet_trainer

import predlearn
from predlearn.cli import run_cli
from predlearn.datamodules.frames import FramesDataModule
from predlearn.errors import BadFileError, OptionValueError
from predlearn.module import PredictiveModule

QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false"]
SHORT = ["--data.context_frames=4", "--data.horizon=3"]


def wave(frames: int = 60, size: int = 16, channels: int | None = None) -> np.ndarray:
    """A moving pattern in made-up units (about 15 .. 25), float32 (T[, C], H, W)."""
    t = np.arange(frames)[:, None, None]
    y, x = np.arange(size)[None, :, None], np.arange(size)[None, None, :]
    series = (np.sin((x + t) / 3.0) + np.cos(y / 4.0)).astype(np.float32) * 5 + 20
    if channels is None:
        return series
    return np.stack([series * (c + 1) for c in range(channels)], axis=1)


def module_for(path: Path, **options) -> FramesDataModule:
    settings = {"context_frames": 4, "horizon": 3, "batch_size": 4, **options}
    return FramesDataModule(str(path), **settings)


def test_a_series_trains_in_windows_scaled_by_the_training_split(tmp_path):
    data = wave(60)
    data[48:] += 100.0  # the test period's values must not shape the scale
    np.save(tmp_path / "s.npy", data)
    module = module_for(tmp_path / "s.npy", stride=2, val_fraction=0.1, test_fraction=0.2)
    assert module.frame_shape() == (1, 16, 16) and module.masked  # floats can hold NaN
    module.setup("fit")
    frames, valid = next(iter(module.train_dataloader()))
    assert frames.shape == (4, 7, 1, 16, 16) and valid.dtype == torch.bool and valid.all()
    train = data[:42]  # frames [0, 42) train: 60 * (1 - 0.2 - 0.1)
    assert module.scale.offset == pytest.approx((train.min(),))
    assert module.scale.scale == pytest.approx((train.max() - train.min(),))
    test_frames, _ = next(iter(module.test_dataloader()))
    start = int(module._splits["test"].start[0])
    expected = (data[start:start + 7] - train.min()) / (train.max() - train.min())
    np.testing.assert_allclose(test_frames[0, :, 0].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert module.value_bounds == (0.0, 1.0)


def test_missing_pixels_become_a_mask_and_missing_frames_start_no_window(tmp_path):
    data = wave(30)
    data[5, :2, :3] = np.nan  # a few missing pixels
    data[10] = np.nan  # a whole frame missing
    np.save(tmp_path / "gaps.npy", data)
    module = module_for(tmp_path / "gaps.npy", val_fraction=0.0, test_fraction=0.0)
    module.setup("fit")
    starts = module._splits["train"].start.tolist()
    assert 10 not in starts and 10 - 6 not in starts  # frame 10 neither starts nor ends one
    assert 5 in starts and 7 in starts  # it may lie inside a window
    frames, valid = module._dataset("train", 7)[starts.index(5)]
    assert not valid[0, 0, :2, :3].any() and valid[0, 0, 2:].all()
    assert (frames[0, 0, :2, :3] == 0).all() and torch.isfinite(frames).all()
    assert not valid[5].any() and (frames[5] == 0).all()  # frame 10 inside the window at 5


def test_a_declared_fill_value_is_missing_too_and_integers_are_min_max_scaled(tmp_path):
    data = np.arange(30 * 4 * 4, dtype=np.int16).reshape(30, 4, 4)
    data[0, 0, 0] = -999  # where the minimum (0) was
    np.save(tmp_path / "ints.npy", data)
    module = module_for(tmp_path / "ints.npy", fill_value=-999, val_fraction=0.0,
                        test_fraction=0.0)
    module.setup("fit")
    assert module.masked
    assert module.scale.offset == (1.0,)  # the fill value takes no part in the statistics
    _, valid = module._dataset("train", 7)[0]
    assert not valid[0, 0, 0, 0] and valid.sum() == 7 * 16 - 1
    plain = module_for(tmp_path / "ints.npy", val_fraction=0.0, test_fraction=0.0)
    plain.setup("fit")
    assert not plain.masked and plain.scale.offset == (-999.0,)  # integers without a fill


def test_eight_bit_data_is_divided_by_255_and_zscore_is_unbounded(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (2, 12, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "seqs.npy", data)
    module = module_for(tmp_path / "seqs.npy")  # 5 axes: NTCHW
    assert module.frame_shape() == (3, 8, 8) and not module.masked
    assert module.scale.offset == (0.0,) * 3 and module.scale.scale == (255.0,) * 3
    z = module_for(tmp_path / "seqs.npy", normalize="zscore", val_fraction=0.0,
                   test_fraction=0.5)
    z.setup("fit")
    train = data[0].astype(np.float64)  # sequence 0 trains, sequence 1 tests
    np.testing.assert_allclose(z.scale.offset, train.mean(axis=(0, 2, 3)), rtol=1e-6)
    assert z.value_bounds is None


def test_png_frames_are_one_series_scaled_by_their_bit_depth(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(9):
        Image.fromarray(np.full((8, 8), 1000 * t, np.uint16)).save(folder / f"f{t:02d}.png")
    module = module_for(folder, val_fraction=0.0, test_fraction=0.0)
    assert module.frame_shape() == (1, 8, 8) and module.scale.scale == (65535.0,)
    module.setup("fit")
    frames = module._dataset("train", 7)[1]
    np.testing.assert_allclose(frames[:, 0, 0, 0].numpy(), np.arange(1, 8) * 1000 / 65535,
                               rtol=1e-6)


def test_splits_without_a_window_and_bad_options_are_one_line(tmp_path):
    np.save(tmp_path / "short.npy", wave(20))
    module = module_for(tmp_path / "short.npy", val_fraction=0.1, test_fraction=0.2)
    module.setup("fit")
    with pytest.raises(BadFileError, match=r"the val split got 2 frames of 20 frames and no "
                       r"window of 7 usable frames"):
        module.val_dataloader()
    np.save(tmp_path / "four.npy", np.zeros((2, 20, 8, 8), np.float32))
    with pytest.raises(OptionValueError, match="NTHW .* or --data.layout=TCHW") as error:
        module_for(tmp_path / "four.npy").frame_shape()
    assert error.value.as_typed().option == "--data.layout"
    for option, value in (("normalize", "robust"), ("predict_windows", "all"), ("stride", 0),
                          ("value_range", [2, 1]), ("test_fraction", 1.5)):
        with pytest.raises(OptionValueError) as error:
            module_for(tmp_path / "four.npy", **{option: value})
        assert error.value.option == option
    with pytest.raises(OptionValueError, match="has 1 channels; got 2 names"):
        module_for(tmp_path / "short.npy", channel_names=["a", "b"]).frame_shape()


def test_a_model_trained_elsewhere_takes_float_frames_in_zero_one_only(tmp_path):
    np.save(tmp_path / "big.npy", wave(12))
    module = module_for(tmp_path / "big.npy")
    module.setup("predict")
    with pytest.raises(BadFileError, match=r"big.npy: float frames must lie in \[0, 1\] for a "
                       r"model that was not trained on this data"):
        module.predict_dataset()[0]
    np.save(tmp_path / "wide.npy", wave(40).astype(np.uint16))
    module = module_for(tmp_path / "wide.npy")
    module.setup("test")
    with pytest.raises(OptionValueError, match="value_range"):
        module.test_dataloader()


def test_the_checkpoint_keeps_the_scale_for_test_and_predict(tmp_path):
    np.save(tmp_path / "s.npy", wave(40))
    trained = module_for(tmp_path / "s.npy")
    trained.setup("fit")
    np.save(tmp_path / "other.npy", wave(40) * 3)  # other values: the training scale stays
    later = module_for(tmp_path / "other.npy")
    later.load_state_dict(trained.state_dict())
    later.setup("test")
    assert later.scale == trained.scale
    np.save(tmp_path / "two.npy", wave(40, channels=2))
    with pytest.raises(BadFileError, match="had 1 channels"):
        module_for(tmp_path / "two.npy", layout="TCHW").load_state_dict(trained.state_dict())


def persistence_forecast(tmp_path: Path, data_path: Path, *extra: str) -> Path:
    out = tmp_path / "out"
    run_cli(["predict", "--model=persistence", "--data=frames", f"--data.path={data_path}",
             *SHORT, "--data.normalize=minmax", f"--predictions.output_path={out / 'p.h5'}",
             f"--trainer.default_root_dir={tmp_path}", *QUIET, *extra])
    return out


def test_predict_writes_the_forecast_back_in_the_files_units_and_layout(tmp_path):
    """Persistence repeats the last observed frame: its forecast in the file's units must be
    that frame, exactly up to float32 rounding, in the input's layout."""
    data = wave(30, channels=2).transpose(1, 0, 2, 3)  # C T H W
    np.save(tmp_path / "c.npy", data)
    out = persistence_forecast(tmp_path, tmp_path / "c.npy", "--data.layout=CTHW")
    forecast = np.load(out / "forecast.npy")
    assert forecast.shape == (1, 2, 3, 16, 16)  # N C T H W: the input's layout, N first
    for lead in range(3):
        np.testing.assert_allclose(forecast[0, :, lead], data[:, -1], rtol=1e-5)
    described = json.loads((out / "forecast.json").read_text())
    assert described["layout"] == "NCTHW"
    assert described["origins"] == [{"sequence": 0, "last_observed_frame": 29}]


def test_predict_on_hdf5_sequences_writes_hdf5_with_the_origins(tmp_path):
    data = np.random.default_rng(0).random((3, 9, 2, 8, 8)).astype(np.float32) * 50
    with h5py.File(tmp_path / "sst.h5", "w") as handle:
        handle["sst"] = data
    # min-max of the training sequences would clamp sequence 2's larger values: a given range
    out = persistence_forecast(tmp_path, tmp_path / "sst.h5", "--data.dataset=sst",
                               "--data.channel_names=[day,night]", "--data.value_range=[0,50]")
    with h5py.File(out / "forecast.h5") as handle:
        forecast = handle["sst"][()]
        assert handle["origins"][()].tolist() == [[0, 8], [1, 8], [2, 8]]
        assert list(handle["sst"].attrs["channels"]) == ["day", "night"]
    np.testing.assert_allclose(forecast[:, 1], data[:, -1], rtol=1e-5)
    assert (out / "predictions" / "seq_0000" / "step_01_night.png").is_file()


@pytest.mark.slow
def test_fit_test_predict_on_a_series_through_the_command_line(tmp_path, caplog):
    data = wave(60)
    data[20, :4, :4] = np.nan
    np.save(tmp_path / "s.npy", data)
    common = ["--data=frames", f"--data.path={tmp_path / 's.npy'}", *SHORT, *QUIET,
              "--data.val_fraction=0.2"]
    cli = run_cli(["fit", "--model=predrnn", "--model.predictor.hidden_channels=[4]",
                   "--model.predictor.kernel_size=3", *common, "--data.stride=3",
                   "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path}"])
    checkpoint = cli.trainer.checkpoint_callback.last_model_path
    saved = torch.load(checkpoint, weights_only=True)["FramesDataModule"]["value_scale"]
    assert saved["offset"] == pytest.approx([float(np.nanmin(data[:36]))])  # train: 60% of 60
    run_cli(["test", *common, f"--ckpt_path={checkpoint}",
             f"--trainer.default_root_dir={tmp_path}"])
    out = tmp_path / "predicted"
    run_cli(["predict", *common, f"--ckpt_path={checkpoint}",
             f"--predictions.output_path={out / 'p.h5'}"])
    assert f"wrote the forecast in the data's units to {out / 'forecast.npy'}" in caplog.text
    with h5py.File(out / "p.h5") as handle:
        scaled = handle["predictions"][()]
    forecast = np.load(out / "forecast.npy")
    np.testing.assert_allclose(forecast, scaled[:, :, 0] * saved["scale"][0] + saved["offset"][0],
                               rtol=1e-5)


class RecordingModule(PredictiveModule):
    """Writes a digest of every training window it receives to ``<folder>/rank<r>.txt``."""

    def __init__(self, predictor, folder: str) -> None:
        super().__init__(predictor, context_frames=4, horizon=3)
        self.folder = folder

    def training_step(self, batch, batch_idx):
        with open(f"{self.folder}/rank{self.global_rank}.txt", "a") as handle:
            handle.writelines(f"{hashlib.sha1(seq.numpy().tobytes()).hexdigest()}\n"
                              for seq in batch[0].cpu())
        return super().training_step(batch, batch_idx)


def own_setup(path: Path, folder: Path) -> tuple[PredictiveModule, FramesDataModule]:
    torch.manual_seed(0)
    predictor = predlearn.create_model("predrnn", hidden_channels=[4], kernel_size=3,
                                       frame_size=[16, 16])
    data = module_for(path, batch_size=2, stride=2, val_fraction=0.0, test_fraction=0.4,
                      normalize="minmax")
    return RecordingModule(predictor, str(folder)), data


@pytest.mark.slow
def test_two_ddp_processes_train_on_disjoint_windows_and_score_as_one(tmp_path):
    data = wave(50)
    data[30:, :3, :3] = np.nan  # masked pixels in the test period
    np.save(tmp_path / "s.npy", data)
    module, frames = own_setup(tmp_path / "s.npy", tmp_path)
    frames.setup("fit")
    assert len(frames._splits["train"]) == 12  # even: no window padded in
    quiet_trainer(strategy="ddp_spawn", devices=2, max_steps=3, limit_val_batches=0).fit(
        module, datamodule=frames)
    shares = [set((tmp_path / f"rank{r}.txt").read_text().split()) for r in (0, 1)]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    module, frames = own_setup(tmp_path / "s.npy", tmp_path)
    (single,) = quiet_trainer().test(module, datamodule=frames)
    module, frames = own_setup(tmp_path / "s.npy", tmp_path)
    (ddp,) = quiet_trainer(strategy="ddp_spawn", devices=2).test(module, datamodule=frames)
    assert set(ddp) == set(single)
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, rel=1e-5), key


def radar_netcdf(path: Path, frames: int = 40) -> np.ndarray:
    """A NetCDF series of rain rate every 5 minutes, with one missing time step (a gap) after
    frame 19, NaN corners, and x / y coordinates in km."""
    xr = pytest.importorskip("xarray")
    times = np.datetime64("2024-06-01T00:00", "ns") + np.arange(frames + 1) * np.timedelta64(
        5, "m")
    times = np.delete(times, 20)  # the step after frame 19 is 10 minutes: a gap
    values = wave(frames)
    values[:, :2, :2] = np.nan
    xr.Dataset({"rain": (("time", "y", "x"), values, {"units": "mm/h"})},
               coords={"time": times, "y": np.arange(16) * 2.0, "x": np.arange(16) * 2.0}
               ).to_netcdf(path, engine="h5netcdf")
    return values


def test_netcdf_windows_never_cross_a_gap_and_time_ranges_split_it(tmp_path):
    values = radar_netcdf(tmp_path / "r.nc")
    module = module_for(tmp_path / "r.nc", val_fraction=0.0, test_fraction=0.0)
    assert module.frame_shape() == (1, 16, 16) and module.channel_names == ("rain",)
    module.setup("fit")
    starts = module._splits["train"].start.tolist()
    assert starts == [*range(14), *range(20, 34)]  # runs [0, 20) and [20, 40)
    frames, valid = module._dataset("train", 7)[0]
    assert not valid[:, 0, :2, :2].any() and valid[:, 0, 2:].all()
    assert frames[0, 0, 5, 5] == pytest.approx(
        (values[0, 5, 5] - np.nanmin(values)) / (np.nanmax(values) - np.nanmin(values)), rel=1e-5)
    ranged = module_for(tmp_path / "r.nc", time_ranges={
        "train": ["2024-06-01T00:00", "2024-06-01T01:30"],
        "test": ["2024-06-01T02:00", "2024-06-01T03:25"]})
    ranged.setup("fit")
    assert ranged._splits["train"].start.tolist() == list(range(13))  # frames 0 .. 18
    assert len(ranged._splits["val"]) == 0
    np.save(tmp_path / "plain.npy", values)
    with pytest.raises(OptionValueError, match="no time coordinate"):
        module_for(tmp_path / "plain.npy", time_ranges={"train": ["2024", "2025"]}).setup("fit")


def test_netcdf_forecast_has_the_inputs_coordinates_and_lead_times(tmp_path):
    xr = pytest.importorskip("xarray")
    values = radar_netcdf(tmp_path / "r.nc")
    out = persistence_forecast(tmp_path, tmp_path / "r.nc")
    forecast = xr.open_dataset(out / "forecast.nc")
    assert forecast["rain"].shape == (1, 3, 16, 16) and forecast["rain"].attrs["units"] == "mm/h"
    np.testing.assert_allclose(forecast["rain"][0, 2].values[2:, 2:], values[-1, 2:, 2:],
                               rtol=1e-5)
    assert list(forecast["lead_time"].values) == [np.timedelta64(m, "m") for m in (5, 10, 15)]
    assert forecast["issue_time"].values[0] == np.datetime64("2024-06-01T03:20", "ns")
    np.testing.assert_array_equal(forecast["x"].values, np.arange(16) * 2.0)


def test_loader_workers_open_their_own_hdf5_handles(tmp_path):
    data = np.random.default_rng(2).integers(0, 256, (30, 8, 8), dtype=np.uint8)
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        handle.create_dataset("frames", data=data, chunks=(4, 8, 8))
    module = module_for(tmp_path / "a.h5", num_workers=2, val_fraction=0.0, test_fraction=0.0)
    module.setup("fit")
    module.source.files[0].array  # the main process's handle stays its own  # noqa: B018
    seen = torch.cat([batch for batch in module.train_dataloader()])
    assert seen.shape == (24, 7, 1, 8, 8)
    firsts = sorted(round(float(window[0, 0, 0, 0]) * 255) for window in seen)
    assert firsts == sorted(int(data[start, 0, 0]) for start in range(24))


def test_training_order_is_an_array_shuffled_every_epoch_and_seeded_by_torch(tmp_path):
    from predlearn.datamodules.base import ArrayShuffle

    np.save(tmp_path / "s.npy", wave(40))
    module = module_for(tmp_path / "s.npy", val_fraction=0.0, test_fraction=0.0)
    module.setup("fit")
    sampler = module.train_dataloader().sampler
    assert isinstance(sampler, ArrayShuffle) and len(sampler) == 34
    torch.manual_seed(3)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(34)) and first != second  # every window once, reshuffled
    torch.manual_seed(3)
    assert list(sampler) == first  # seed_everything makes it reproducible
