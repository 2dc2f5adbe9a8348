"""Radar echo: readers, preparation, windows and splits, and a tiny end-to-end run."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from radar_fixtures import (
    NODATA,
    UNDETECT,
    epoch,
    write_fmi_pgm,
    write_fmi_series,
    write_knmi_h5,
    write_odim_h5,
    write_prepared,
)

from predlearn.datamodules.radar import (
    RadarDataModule,
    gap_free_runs,
    read_value_mapping,
    split_windows,
    window_starts,
)
from predlearn.datamodules.radar_fmi import read_fmi_pgm
from predlearn.datamodules.radar_formats import detect_format
from predlearn.datamodules.radar_frame import RadarFormatError
from predlearn.datamodules.radar_knmi import read_knmi_h5
from predlearn.datamodules.radar_odim import read_odim_h5
from predlearn.datamodules.radar_prepare import crop_and_resize, main, prepare_radar, to_unit
from predlearn.errors import BadFileError, DataError, OptionValueError


def dbz_to_unit(dbz: float) -> float:
    return min(max(dbz / 70.0, 0.0), 1.0)  # default range 0..70 dBZ


# --- readers and mapping ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fmi_pgm_values_mapping_and_time(tmp_path, gz):
    pixels = np.zeros((30, 40), np.uint8)
    pixels[0, :6] = [0, 64, 120, 134, 204, 255]  # -32, 0, 28, 35, 70 dBZ, no data
    pixels[1, 0] = 250  # 93 dBZ, above the range
    path = write_fmi_pgm(tmp_path, pixels, "201609281445", gz=gz)
    assert detect_format(path) == "fmi_pgm"
    frame = read_fmi_pgm(path)
    assert frame.values.shape == (30, 40) and frame.quantity == "dBZ"
    np.testing.assert_allclose(frame.values[0, :5], [-32.0, 0.0, 28.0, 35.0, 70.0])
    assert np.isnan(frame.values[0, 5])
    assert frame.timestamp == epoch("201609281445")
    unit = to_unit(frame)
    np.testing.assert_allclose(unit[0, :5], [0.0, 0.0, 0.4, 0.5, 1.0])
    assert unit[1, 0] == 1.0 and np.isnan(unit[0, 5])


def test_fmi_time_from_the_name_when_the_header_has_none(tmp_path):
    path = write_fmi_pgm(tmp_path, np.zeros((3, 4)), "201705091050", obstime=False)
    assert read_fmi_pgm(path).timestamp == epoch("201705091050")


def test_knmi_mm_per_5_min_to_rate_to_dbz(tmp_path):
    raw = np.zeros((30, 40), np.uint16)
    raw[0, :3] = [100, 0, 65535]  # 1.00 mm in 5 min = 12 mm/h; 0 mm; missing
    path = write_knmi_h5(tmp_path, raw, "201008260005")
    assert detect_format(path) == "knmi_h5"
    frame = read_knmi_h5(path)
    assert frame.quantity == "mm/h" and frame.timestamp == epoch("201008260005")
    np.testing.assert_allclose(frame.values[0, :2], [12.0, 0.0])
    assert np.isnan(frame.values[0, 2])
    unit = to_unit(frame)
    dbz = 10 * math.log10(200 * 12.0**1.6)  # Marshall-Palmer: 40.28 dBZ
    assert unit[0, 0] == pytest.approx(dbz_to_unit(dbz)) == pytest.approx(0.57543, abs=1e-4)
    assert unit[0, 1] == 0.0 and np.isnan(unit[0, 2])


def test_odim_gain_offset_nodata_and_undetect(tmp_path):
    data = np.full((30, 40), 3.0)
    data[0, :3] = [UNDETECT, NODATA, 19.0]
    path = write_odim_h5(tmp_path, data, "201808241815", gain=0.5, offset=1.0)
    assert detect_format(path) == "odim_h5"
    frame = read_odim_h5(path)
    assert frame.timestamp == epoch("201808241815")  # root what/date + what/time
    assert frame.values[0, 0] == 0.0 and np.isnan(frame.values[0, 1])  # no rain vs missing
    assert frame.values[0, 2] == 10.5 and frame.values[1, 1] == 2.5
    unit = to_unit(frame)
    expected = dbz_to_unit(10 * math.log10(200 * 2.5**1.6))
    assert unit[0, 0] == 0.0 and np.isnan(unit[0, 1]) and unit[1, 1] == pytest.approx(expected)


def test_odim_reflectivity_quantity(tmp_path):
    data = np.full((4, 4), 35.0)
    data[0, 0] = UNDETECT
    unit = to_unit(read_odim_h5(write_odim_h5(tmp_path, data, "201808241800", quantity="DBZH")))
    assert unit[0, 0] == 0.0 and unit[1, 1] == pytest.approx(0.5)


# --- crop, resize, no data ----------------------------------------------------------------------


def test_centre_square_area_mean_and_nodata():
    unit = np.zeros((40, 30))
    unit[:5] = 1.0  # above the centre square (rows 5..34): dropped
    unit[5, 0] = 0.9  # block (0, 0) = rows 5..7, cols 0..2: mean 0.1
    unit[5:8, 3:6] = np.nan  # block (0, 1): no data, filled with 0.6
    image, valid = crop_and_resize(unit, size=10, nodata_value=0.6)
    assert image.shape == (10, 10) and image.dtype == np.float32
    assert image[0, 0] == pytest.approx(0.1) and image[0, 1] == pytest.approx(0.6)
    assert image.max() == pytest.approx(0.6)
    assert valid == pytest.approx(1 - 9 / 900)


def test_crop_box():
    unit = np.arange(40 * 30, dtype=np.float64).reshape(40, 30) / 1200
    image, valid = crop_and_resize(unit, size=10, crop=(10, 5, 30, 25))  # 20 x 20 -> 2 x 2 blocks
    assert image[0, 0] == pytest.approx(unit[10:12, 5:7].mean())
    assert image[9, 9] == pytest.approx(unit[28:30, 23:25].mean()) and valid == 1.0
    with pytest.raises(ValueError, match="not inside"):
        crop_and_resize(unit, size=10, crop=(0, 0, 50, 10))


# --- preparation --------------------------------------------------------------------------------


def test_prepare_writes_sorted_frames_times_and_attributes(tmp_path):
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    pixels = np.full((30, 40), 120, np.uint8)  # 28 dBZ -> 0.4 -> 102
    pixels[:, 5:10] = 255  # no data in the first 5 columns of the centre square (cols 5..34)
    write_fmi_pgm(src / "b", pixels, "201609281450", gz=False)
    write_fmi_pgm(src, pixels, "201609281445")
    (src / "MD5SUMS").write_text("not a radar file\n")
    out = tmp_path / "radar.h5"
    main([str(src), "--out", str(out), "--size", "10", "--no-progress"])
    with h5py.File(out) as h5:
        frames, stamps = h5["frames"][()], h5["timestamps"][()]
        assert frames.dtype == np.uint8 and frames.shape == (2, 10, 10)
        assert h5["frames"].compression == "gzip"
        assert stamps.tolist() == [epoch("201609281445"), epoch("201609281450")]
        np.testing.assert_allclose(h5["valid_fraction"][()], 25 / 30)
        assert h5.attrs["source_format"] == "fmi_pgm" and h5.attrs["size"] == 10
        assert (h5.attrs["dbz_min"], h5.attrs["dbz_max"]) == (0.0, 70.0)
        assert list(h5.attrs["square"]) == [0, 5, 30, 35]
        assert [Path(name.decode()).parent.name for name in h5["source_files"][()]] == ["src", "b"]
    assert frames[0, 5, 5] == 102 and frames[0, 0, 0] == 0  # nodata_value 0
    # column block 1 of the centre square (columns 3..5 of 30) is 2/3 no data (filled with 0)
    assert frames[0, 0, 1] == round(255 * 0.4 / 3)


def test_duplicate_times_are_rejected_naming_both_files(tmp_path):
    a = write_fmi_pgm(tmp_path, np.zeros((3, 4)), "201609281445")
    b = write_fmi_pgm(tmp_path, np.zeros((3, 4)), "201609281445", name="copy.pgm")
    with pytest.raises(ValueError, match="duplicate time") as error:
        prepare_radar([a, b], tmp_path / "out.h5", size=2, progress=False)
    assert a.name in str(error.value) and b.name in str(error.value)


def test_bad_files_are_named(tmp_path):
    bad = write_fmi_pgm(tmp_path, np.zeros((3, 4)), "201609281445",
                        header=b"P5\n# obstime 201609281445\nfour 3\n255\n")
    with pytest.raises(RadarFormatError, match="bad PGM header") as error:
        prepare_radar([bad], tmp_path / "out.h5", progress=False)
    assert str(bad) in str(error.value)
    knmi = write_knmi_h5(tmp_path, np.zeros((3, 4)), "201008260000", with_data=False)
    with pytest.raises(RadarFormatError, match="image1/image_data") as error:
        read_knmi_h5(knmi)
    assert str(knmi) in str(error.value)
    odim = write_odim_h5(tmp_path, np.zeros((3, 4)), "201808241800", with_data=False)
    with pytest.raises(RadarFormatError, match="dataset1/data1/data"):
        prepare_radar([odim], tmp_path / "out.h5", progress=False)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(RadarFormatError, match="unknown format") as error:
        detect_format(text)
    assert str(text) in str(error.value)


def test_mixed_formats_are_rejected(tmp_path):
    fmi = write_fmi_pgm(tmp_path, np.zeros((3, 4)), "201609281445")
    knmi = write_knmi_h5(tmp_path, np.zeros((3, 4)), "201609281450")
    with pytest.raises(RadarFormatError, match="one format") as error:
        prepare_radar([fmi, knmi], tmp_path / "out.h5", progress=False)
    assert str(knmi) in str(error.value)


def test_cli_error_exits_with_the_message(tmp_path, capsys):
    from predlearn.cli import main as predlearn_main

    with pytest.raises(SystemExit) as stop:
        predlearn_main(["prepare", "radar", str(tmp_path / "missing"), "--out",
                        str(tmp_path / "o.h5")])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.startswith("predlearn: error: ") and "missing" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- windows and splits -------------------------------------------------------------------------


def five_minute_stamps(count: int, gap_after: int | None = None, gap: int = 3600) -> np.ndarray:
    stamps = np.arange(count, dtype=np.int64) * 300
    if gap_after is not None:
        stamps[gap_after:] += gap
    return stamps


def test_gaps_and_window_counts():
    stamps = five_minute_stamps(100, gap_after=45)
    assert gap_free_runs(stamps) == [(0, 45), (45, 100)]
    assert len(window_starts(gap_free_runs(stamps), 20)) == 26 + 36
    # a 10-minute step is a gap for the inferred 5-minute interval, not with max_gap_minutes=15
    stamps = five_minute_stamps(30, gap_after=10, gap=300)
    assert gap_free_runs(stamps) == [(0, 10), (10, 30)]
    assert gap_free_runs(stamps, max_gap_minutes=15) == [(0, 30)]


def test_time_split_and_stride():
    stamps = five_minute_stamps(100, gap_after=45)
    # test from frame 70, validation from frame 45: train [0,45), val [45,70), test [70,100)
    splits = split_windows(stamps, 0.7, 0.25, 20)
    assert (splits.val_start, splits.test_start) == (45, 70)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (26, 6, 11)
    assert splits.train.max() + 20 <= 45 and splits.val.min() >= 45
    assert splits.val.max() + 20 <= 70 and splits.test.min() >= 70
    strided = split_windows(stamps, 0.7, 0.25, 20, stride=3)
    assert strided.train.tolist() == list(range(0, 25, 3))
    assert (len(strided.val), len(strided.test)) == (2, 4)


def test_datamodule_batches_and_boundaries(tmp_path, capsys):
    path = write_prepared(tmp_path / "r.h5", five_minute_stamps(100, gap_after=45))
    dm = RadarDataModule(str(path), train_fraction=0.7, val_fraction=0.25, batch_size=4)
    dm.setup("fit")
    assert "train 26, val 6, test 11" in capsys.readouterr().out
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 20, 1, 8, 8) and batch.dtype == torch.float32
    firsts = {}
    for name, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader()),
                         ("test", dm.test_dataloader())):
        frames = torch.cat(list(loader))[:, :, 0, 0, 0] * 255  # frame i holds the value i
        index = frames.round().long()
        assert (index[:, 1:] - index[:, :-1] == 1).all()  # consecutive, never across the gap
        firsts[name] = index
    assert firsts["train"].max() < 45 and firsts["val"].min() >= 45
    assert firsts["val"].max() < 70 <= firsts["test"].min()
    assert len(dm.predict_dataloader().dataset) == 11


def test_datamodule_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="predlearn prepare radar"):
        RadarDataModule(str(tmp_path / "none.h5")).setup("fit")
    # a file of `prepare radar` whose writing stopped before the marker: make it again
    unfinished = write_prepared(tmp_path / "unfinished.h5", five_minute_stamps(30), sealed=False)
    with pytest.raises(BadFileError, match="not a complete file of `predlearn prepare radar`: "
                       "it has no completeness marker.*make it again with `predlearn prepare "
                       "radar SOURCE... --out"):
        RadarDataModule(str(unfinished)).setup("fit")
    short = write_prepared(tmp_path / "short.h5", five_minute_stamps(30, gap_after=15))
    with pytest.raises(DataError, match="at least 20 consecutive frames.*has 15"):
        RadarDataModule(str(short)).setup("fit")


def not_prepared(path: Path) -> str:
    return (f"{path}: not a file of `predlearn prepare radar` (which converts FMI, KNMI and OPERA "
            f"ODIM products); for your own arrays use --data=frames --data.path={path} "
            "(docs/own-data.md)")


def test_a_file_of_your_own_is_pointed_to_the_frames_data(tmp_path):
    plain = tmp_path / "mine.h5"  # your own frames (T, C, H, W) and times, no attribute
    with h5py.File(plain, "w") as h5:
        h5["frames"] = np.zeros((30, 2, 8, 8), np.float32)
        h5["timestamps"] = five_minute_stamps(30)
    for read in (lambda: RadarDataModule(str(plain)).setup("fit"),
                 lambda: RadarDataModule(str(plain)).frame_shape(),
                 lambda: read_value_mapping(plain)):
        with pytest.raises(BadFileError) as error:
            read()
        assert str(error.value) == not_prepared(plain)
    array = tmp_path / "mine.npy"
    np.save(array, np.zeros((30, 8, 8), np.uint8))
    with pytest.raises(BadFileError) as error:
        RadarDataModule(str(array)).setup("fit")
    assert str(error.value) == not_prepared(array)
    with pytest.raises(OptionValueError, match="is a folder.*--data=frames --data.path="):
        RadarDataModule(str(tmp_path))


def test_a_damaged_file_of_prepare_radar_is_made_again(tmp_path):
    path = write_prepared(tmp_path / "r.h5", five_minute_stamps(30))
    with h5py.File(path, "a") as h5:
        del h5["timestamps"]  # the marker stays: a file of `prepare radar`, damaged
        h5["timestamps"] = five_minute_stamps(30) + 1
    with pytest.raises(BadFileError, match="CRC-32.*damaged; make it again with `predlearn "
                       "prepare radar"):
        RadarDataModule(str(path)).setup("fit")
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(path.read_bytes()[:600])  # still starts as HDF5
    with pytest.raises(BadFileError, match="cannot be opened as HDF5.*make it again with "
                       "`predlearn prepare radar"):
        RadarDataModule(str(truncated)).setup("fit")


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_prepare_fit_and_test_end_to_end(tmp_path):
    from predlearn.cli import run_cli

    write_fmi_series(tmp_path / "fmi", 66, shape=(110, 100))
    path = tmp_path / "radar.h5"
    main([str(tmp_path / "fmi"), "--out", str(path), "--no-progress"])
    common = [
        "--model=predrnn",
        "--model.predictor.hidden_channels=[2]",
        "--model.predictor.kernel_size=3",
        "--model.predictor.patch_size=4",
        "--data=radar",  # the registry name
        f"--data.path={path}",
        "--data.train_fraction=0.6667",
        "--data.val_fraction=0.3333",
        "--data.batch_size=2",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--figures.enabled=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    cli = run_cli(["fit", *common, "--trainer.max_steps=2"])
    assert cli.trainer.global_step == 2
    checkpoint = cli.trainer.checkpoint_callback.last_model_path
    tested = run_cli(["test", *common, f"--ckpt_path={checkpoint}"])
    assert "test/mse_per_frame" in tested.trainer.callback_metrics


def test_prepare_through_the_predlearn_command(tmp_path, capsys):
    from predlearn.cli import main as predlearn_main

    write_fmi_series(tmp_path / "fmi", 3, shape=(40, 30))
    out = tmp_path / "radar.h5"
    predlearn_main(["prepare", "radar", str(tmp_path / "fmi"), "--out", str(out),
                    "--no-progress"])
    with h5py.File(out) as handle:
        assert handle["frames"].shape == (3, 100, 100)
    with pytest.raises(SystemExit) as exit_info:
        predlearn_main(["prepare", "kittens"])
    assert exit_info.value.code == 2 and "radar" in capsys.readouterr().err
