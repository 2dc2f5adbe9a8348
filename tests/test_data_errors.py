"""Every class of bad input to the data side, per data module and reader: a corrupt file, a
truncated file, a missing file, a wrong shape and a nonsense value each end in a predlearn error
that names the file or option (issue 16); through the console script they are one line on stderr
with exit code 1 (data) or 2 (option). Outputs never overwrite inputs; damaged caches are
rebuilt; unfinished writes leave nothing that looks complete."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from kth_fixtures import ACTIONS, write_fake_kth
from mnist_fixtures import TEST_IMAGES, TEST_LABELS, write_fake_mnist
from PIL import Image
from radar_fixtures import (
    write_fmi_pgm,
    write_fmi_series,
    write_knmi_h5,
    write_odim_h5,
    write_prepared,
)

from predlearn.cli import main
from predlearn.datamodules import (
    FramesDataModule,
    KTHDataModule,
    MovingMNISTDataModule,
    RadarDataModule,
    sealed,
)
from predlearn.datamodules.idx import IDXFormatError, read_idx, write_idx
from predlearn.datamodules.mnist import load_digits
from predlearn.datamodules.radar_formats import read_frame
from predlearn.datamodules.radar_frame import RadarFormatError
from predlearn.datamodules.radar_prepare import prepare_radar
from predlearn.errors import (
    BadFileError,
    DataError,
    DataNotFoundError,
    OptionValueError,
    OutputError,
    PredlearnError,
)

FIT = ["--model=predrnn", "--model.predictor.hidden_channels=[2]",
       "--model.predictor.kernel_size=3", "--trainer.logger=false", "--trainer.max_steps=1",
       "--trainer.enable_progress_bar=false", "--figures.enabled=false"]


# --- helpers ----------------------------------------------------------------------------------


def refused(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    """Run the console script in-process; it must stop with one ``predlearn: error:`` line (the
    last one on stderr) and no traceback. Returns (exit code, that line)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("predlearn: error:")]
    assert len(errors) == 1, err
    assert err.rstrip().splitlines()[-1] == errors[0]
    assert "Traceback" not in err
    return int(stop.value.code), errors[0]


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def garble(path: Path) -> Path:
    path.write_bytes(b"this is not the file you are looking for\n" * 20)
    return path


def flip_byte(path: Path, dataset: str, first: int = 0) -> None:
    """Flip a byte in the middle of the stored chunk of ``dataset`` that holds entry ``first``
    (of a contiguous dataset: in the middle of its data), as a bit rot or a bad copy would."""
    with h5py.File(path, "r") as h5:
        data = h5[dataset]
        if data.chunks is None:
            offset, size = data.id.get_offset(), data.id.get_storage_size()
        else:
            info = data.id.get_chunk_info_by_coord((first,) + (0,) * (data.ndim - 1))
            offset, size = info.byte_offset, info.size
    with open(path, "r+b") as handle:
        handle.seek(offset + size // 2)
        byte = handle.read(1)
        handle.seek(offset + size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))


def unseal(path: Path) -> None:
    """Remove the completeness marker, as an unfinished build or an older predlearn leaves it."""
    with h5py.File(path, "a") as h5:
        del h5.attrs[sealed.MARKER]


def old_part(target: Path) -> Path:
    """A leftover of a write killed two hours ago, named as ``written_atomically`` names them."""
    part = target.parent / f".{target.name}.99999.0123abcd.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"half a file")
    two_hours_ago = time.time() - 7200
    os.utime(part, (two_hours_ago, two_hours_ago))
    return part


# --- IDX and MNIST ----------------------------------------------------------------------------


def test_idx_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="no such IDX file") as info:
        read_idx(tmp_path / "absent-idx1-ubyte")
    assert str(tmp_path / "absent-idx1-ubyte") in str(info.value)
    (tmp_path / "folder").mkdir()
    with pytest.raises(BadFileError, match="cannot read"):
        read_idx(tmp_path / "folder")


@pytest.fixture()
def mnist_root(tmp_path: Path) -> Path:
    return write_fake_mnist(tmp_path / "mnist", n_train=24, n_test=20)


def _mmnist(root: Path, **options) -> MovingMNISTDataModule:
    settings = {"root": str(root), "digits": "mnist_test", "num_val": 3, "num_test": 4,
                "train_sequences_per_epoch": 4, "batch_size": 2, "download": False, **options}
    return MovingMNISTDataModule(**settings)


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "wrong_shape"])
def test_mnist_bad_files_are_named(mnist_root, damage):
    images = mnist_root / f"{TEST_IMAGES}.gz"
    if damage == "corrupt":
        garble(images)
    elif damage == "truncated":
        truncate(images, 0.6)
    else:
        write_idx(images, np.zeros((20, 27, 27), np.uint8))
    with pytest.raises(BadFileError) as info:
        _mmnist(mnist_root).setup("test")
    assert str(images) in str(info.value)
    if damage == "wrong_shape":
        assert "(N, 28, 28)" in str(info.value) and "(20, 27, 27)" in str(info.value)
    else:
        assert isinstance(info.value, IDXFormatError)


def test_mnist_labels_of_another_file_and_too_few_digits(mnist_root):
    write_idx(mnist_root / f"{TEST_LABELS}.gz", np.zeros(7, np.uint8))
    with pytest.raises(BadFileError, match="do not belong together"):
        load_digits("mnist_test", mnist_root, download=False)
    write_idx(mnist_root / f"{TEST_IMAGES}.gz", np.zeros((1, 28, 28), np.uint8))
    write_idx(mnist_root / f"{TEST_LABELS}.gz", np.zeros(1, np.uint8))
    with pytest.raises(DataError, match="digit pool .* is empty"):
        load_digits("mnist_test", mnist_root, download=False)


def test_mnist_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        _mmnist(tmp_path / "empty").setup("test")
    assert str((tmp_path / "empty").resolve()) in str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


@pytest.mark.parametrize("option, value", [
    ("batch_size", 0), ("num_workers", -1), ("context_frames", 0), ("horizon", -2),
    ("num_digits", 0), ("test_num_digits", 0), ("num_test", 0), ("num_val", -1),
    ("train_sequences_per_epoch", 0), ("digits", "emnist"), ("overlap", "add"),
    ("batch_size", 2.5),
])
def test_mmnist_nonsense_values_name_the_option(tmp_path, option, value):
    with pytest.raises(OptionValueError) as info:
        _mmnist(tmp_path, **{option: value})
    assert info.value.option == option and str(info.value).startswith(f"{option}: ")


def test_mmnist_root_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionValueError, match="root: .* is a file"):
        _mmnist(tmp_path / "file")


# --- Moving MNIST caches ----------------------------------------------------------------------


def _bundled(root: Path) -> MovingMNISTDataModule:
    return _mmnist(root, digits="bundled")


def _test_set(module: MovingMNISTDataModule) -> torch.Tensor:
    module.setup("test")
    frames = torch.cat(list(module.test_dataloader()))
    module.teardown()
    return frames


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no_marker", "other_shape"])
def test_damaged_mmnist_cache_is_rebuilt_with_a_message(tmp_path, damage):
    first = _test_set(_bundled(tmp_path))
    path = _bundled(tmp_path).cache_path("test")
    if damage == "truncated":
        truncate(path)
    elif damage == "garbage":
        garble(path)
    elif damage == "no_marker":
        unseal(path)
    else:
        with h5py.File(path, "a") as h5:
            del h5["positions"]
            h5["positions"] = np.zeros((1, 1), np.int16)
    expected = {"truncated": "cannot be opened as HDF5", "garbage": "cannot be opened as HDF5",
                "no_marker": "no completeness marker", "other_shape": "'positions'"}[damage]
    with pytest.warns(UserWarning, match=f"rebuilding the cache .*{path.name}.*{expected}"):
        again = _test_set(_bundled(tmp_path))
    torch.testing.assert_close(again, first)
    assert sealed.problem(path) is None
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no parts left


def test_a_damaged_chunk_of_a_cache_is_reported_when_read(tmp_path):
    module = _bundled(tmp_path)
    module.setup("test")
    path = module.cache_path("test")
    module.teardown()
    flip_byte(path, "frames", first=2)
    damaged = _bundled(tmp_path)
    damaged.setup("test")  # the cheap check reads the first and last sequences only
    dataset = damaged.test_set
    assert dataset is not None
    dataset[0]
    with pytest.raises(BadFileError, match="Delete it and run again") as info:
        dataset[2]
    assert str(path) in str(info.value)


def test_cache_build_cleans_old_parts_and_reports_an_unwritable_folder(tmp_path):
    module = _bundled(tmp_path / "a")
    stale = old_part(module.cache_path("test"))
    module.setup("test")
    assert not stale.exists()
    blocked = tmp_path / "b"
    blocked.mkdir()
    (blocked / "cache").write_text("a file where the cache folder should be")
    with pytest.raises(OutputError, match="cache"):
        _bundled(blocked).setup("test")


# --- KTH --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kth_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_kth(tmp_path_factory.mktemp("kth"))


@pytest.fixture()
def kth_root(kth_original: Path, tmp_path: Path) -> Path:
    root = tmp_path / "kth"
    shutil.copytree(kth_original, root, ignore=shutil.ignore_patterns("cache"))
    return root


def _kth(root: Path, **options) -> KTHDataModule:
    settings = {"root": str(root), "download": False, "actions": ACTIONS, "train_persons": [1, 2],
                "val_persons": [3], "test_persons": [17], "batch_size": 2, **options}
    return KTHDataModule(**settings)


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_kth_bad_video_is_named(kth_root, damage):
    avi = kth_root / "running" / "person02_running_d1_uncomp.avi"
    garble(avi) if damage == "corrupt" else truncate(avi)
    with pytest.raises(BadFileError) as info:
        _kth(kth_root).setup("fit")
    assert str(avi) in str(info.value) and "download it again" in str(info.value)


def test_kth_bad_archive_and_annotation_file_are_named(kth_root):
    garble(kth_root / "walking.zip")
    with pytest.raises(BadFileError, match="walking.zip is not a readable zip archive"):
        _kth(kth_root).setup("fit")
    (kth_root / "walking.zip").unlink()
    garble(kth_root / "00sequences.txt")
    with pytest.raises(BadFileError, match="00sequences.txt: no line"):
        _kth(kth_root, actions=["running"]).setup("fit")


def test_kth_frames_of_different_sizes_are_a_wrong_shape(kth_root):
    folder = kth_root / "boxing" / "person02_boxing_d1_uncomp"
    Image.fromarray(np.zeros((60, 80), np.uint8)).save(folder / "image0002.png")
    with pytest.raises(BadFileError, match="different sizes") as info:
        _kth(kth_root).setup("fit")
    assert str(folder) in str(info.value)


def test_kth_partial_set_of_clips_is_refused_naming_them(kth_root):
    (kth_root / "running" / "person17_running_d1_uncomp.avi").unlink()
    (kth_root / "running" / "person01_running_d1_uncomp.avi").unlink()
    with pytest.raises(DataNotFoundError) as info:
        _kth(kth_root).setup("fit")
    message = str(info.value)
    assert "person01_running_d1" in message and "person17_running_d1" in message
    assert "2 of the" in message and "allow_missing_clips" in message
    module = _kth(kth_root, allow_missing_clips=True)
    with pytest.warns(UserWarning, match="person01_running_d1, person17_running_d1; using"):
        module.setup("fit")
    assert len(module.train_set) > 0
    batch = next(iter(module.train_dataloader()))
    assert batch.shape[1:] == (20, 1, 128, 128)


def test_kth_without_test_sequences_warns_at_fit_and_refuses_to_test(kth_root):
    module = _kth(kth_root, test_persons=[18])  # nobody's clips: no test windows
    with pytest.warns(UserWarning, match="no test windows.*--test_after_fit"):
        module.setup("fit")
    with pytest.raises(DataError, match="no test windows .*persons \\[18\\]"):
        module.setup("test")
    with pytest.raises(DataError, match="no training windows"):
        _kth(kth_root, train_persons=[20], val_persons=[]).setup("fit")


@pytest.mark.parametrize("option, value", [
    ("frame_size", 0), ("train_stride", -1), ("test_strides", [3]), ("test_strides", [3, 0]),
    ("test_strides", {"walking": 1}), ("actions", ["dancing"]), ("actions", []),
    ("trimmed_actions", ["dancing"]), ("train_persons", [0, 1]), ("test_persons", [26]),
    ("test_persons", [2]), ("batch_size", 0), ("test_horizon", 0),
])
def test_kth_nonsense_values_name_the_option(kth_root, option, value):
    with pytest.raises(OptionValueError) as info:
        _kth(kth_root, **{option: value})
    assert info.value.option == option and str(info.value).startswith(f"{option}: ")


def test_kth_missing_archives_say_what_to_put_where(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        _kth(tmp_path).setup("fit")
    assert "walking.zip" in str(info.value) and str(tmp_path) in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionValueError, match="root: .* is a file"):
        _kth(tmp_path / "file")


@pytest.mark.parametrize("damage", ["truncated", "no_marker"])
def test_damaged_kth_cache_is_rebuilt_with_a_message(kth_root, damage):
    module = _kth(kth_root)
    module.setup("test")
    first = torch.cat(list(module.test_dataloader()))
    module.teardown()
    path = module.cache_file
    assert path is not None
    truncate(path) if damage == "truncated" else unseal(path)
    again = _kth(kth_root)
    reason = "cannot be opened as HDF5" if damage == "truncated" else "no completeness marker"
    with pytest.warns(UserWarning, match=f"KTH: rebuilding the cache .*{reason}"):
        again.setup("test")
    torch.testing.assert_close(torch.cat(list(again.test_dataloader())), first)
    again.teardown()
    assert sealed.problem(path) is None


def test_a_damaged_chunk_of_the_kth_cache_is_reported_when_read(kth_root):
    module = _kth(kth_root)
    module.setup("test")
    module.teardown()
    assert module.cache_file is not None
    flip_byte(module.cache_file, "frames", first=16)  # the chunk of frames 16..31
    damaged = _kth(kth_root)
    damaged.setup("fit")  # the cheap check reads the first and last chunks only
    dataset = damaged.train_set
    assert dataset is not None and dataset.starts[0] == 0
    with pytest.raises(BadFileError, match="Delete it and run again") as info:
        dataset[0]  # frames 0..19 of the first clip
    assert str(module.cache_file) in str(info.value)


# --- radar readers ----------------------------------------------------------------------------


def _pgm(folder: Path, maxval: int = 255, stamp: str = "201609281445") -> Path:
    header = f"P5\n# obstime {stamp}\n4 3\n{maxval}\n".encode()
    width = 2 if maxval > 255 else 1
    return write_fmi_pgm(folder, np.zeros((3, 4 * width)), stamp, header=header)


@pytest.mark.parametrize("fmt", ["fmi_pgm", "knmi_h5", "odim_h5"])
@pytest.mark.parametrize("damage", ["corrupt", "truncated", "missing"])
def test_radar_readers_name_the_bad_file(tmp_path, fmt, damage):
    writers = {"fmi_pgm": lambda: write_fmi_pgm(tmp_path, np.zeros((30, 40)), "201609281445"),
               "knmi_h5": lambda: write_knmi_h5(tmp_path, np.zeros((30, 40)), "201008260005"),
               "odim_h5": lambda: write_odim_h5(tmp_path, np.zeros((30, 40)), "201808241815")}
    path = writers[fmt]()
    if damage == "corrupt":
        garble(path)
    elif damage == "truncated":
        truncate(path, 0.7)
    else:
        path.unlink()
    expected = DataNotFoundError if damage == "missing" else RadarFormatError
    with pytest.raises(expected) as info:
        read_frame(path)
    assert str(path) in str(info.value)


def test_sixteen_bit_pgm_is_refused_not_divided_by_255(tmp_path):
    path = _pgm(tmp_path, maxval=4095)
    with pytest.raises(RadarFormatError, match="16-bit PGM with maxval 4095") as info:
        read_frame(path)
    assert str(path) in str(info.value) and "rather than rescaled" in str(info.value)
    with pytest.raises(RadarFormatError, match="8-bit PGM with maxval 100"):
        read_frame(_pgm(tmp_path, maxval=100, stamp="201609281450"))


def test_radar_wrong_shapes_and_attributes_are_named(tmp_path):
    knmi = write_knmi_h5(tmp_path, np.zeros((30, 40)), "201008260005", with_data=False)
    with h5py.File(knmi, "a") as h5:
        h5["image1/image_data"] = np.zeros((2, 30, 40), np.uint16)
    with pytest.raises(RadarFormatError, match="shape \\(2, 30, 40\\), expected 2-D"):
        read_frame(knmi)
    odim = write_odim_h5(tmp_path, np.zeros((30, 40)), "201808241815")
    with h5py.File(odim, "a") as h5:
        h5["dataset1/what"].attrs["gain"] = np.bytes_(b"not a number")
    with pytest.raises(RadarFormatError) as info:
        read_frame(odim)
    assert str(odim) in str(info.value)


@pytest.mark.parametrize("kind", ["PVOL", "SCAN", None])
def test_odim_polar_volumes_are_not_frames(tmp_path, kind):
    path = write_odim_h5(tmp_path, np.zeros((360, 250)), "201808241815", quantity="DBZH")
    with h5py.File(path, "a") as h5:
        if kind is None:
            del h5["what"].attrs["object"]
        else:
            h5["what"].attrs["object"] = np.bytes_(kind.encode())
    with pytest.raises(RadarFormatError, match="only images \\(object COMP or IMAGE\\)") as info:
        read_frame(path)
    assert str(path) in str(info.value)
    with pytest.raises(RadarFormatError, match="only images"):
        prepare_radar([path], tmp_path / "out.h5", progress=False)
    assert not (tmp_path / "out.h5").exists()


# --- prepare radar ----------------------------------------------------------------------------


def test_prepare_refuses_mixing_products_naming_both_files(tmp_path):
    rate = write_odim_h5(tmp_path, np.zeros((30, 40)), "201808241800", quantity="RATE")
    dbzh = write_odim_h5(tmp_path, np.zeros((30, 40)), "201808241815", quantity="DBZH")
    with pytest.raises(RadarFormatError, match="product DBZH .* is RATE") as info:
        prepare_radar([tmp_path], tmp_path / "out" / "radar.h5", progress=False)
    assert str(rate) in str(info.value) and str(dbzh) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_prepare_never_writes_over_a_source(tmp_path, capsys):
    files = write_fmi_series(tmp_path / "fmi", 3, shape=(20, 20))
    before = {path: path.read_bytes() for path in files}
    link = tmp_path / "link.pgm.gz"
    link.symlink_to(files[1])
    for out in (files[0], Path(os.path.relpath(files[2])), link):
        with pytest.raises(OutputError, match="is also an input"):
            prepare_radar([tmp_path / "fmi", link], out, progress=False)
    code, line = refused(capsys, ["prepare", "radar", str(tmp_path / "fmi"), "--out",
                                  str(files[0]), "--no-progress"])
    assert code == 1 and str(files[0]) in line and "choose another output" in line
    assert {path: path.read_bytes() for path in files} == before
    assert sorted(p.name for p in (tmp_path / "fmi").iterdir()) == sorted(p.name for p in files)


def test_prepare_skips_its_previous_output_in_a_source_folder_and_old_parts(tmp_path):
    folder = tmp_path / "radar"
    write_fmi_series(folder, 4, shape=(20, 20))
    out = folder / "radar.h5"
    stale = old_part(out)
    prepare_radar([folder], out, size=10, progress=False)
    assert not stale.exists()
    first = out.read_bytes()
    prepare_radar([folder], out, size=10, progress=False)  # radar.h5 is in the folder now
    with h5py.File(out) as h5:
        assert h5["frames"].shape == (4, 10, 10)
    assert len(out.read_bytes()) == len(first)
    with pytest.raises(RadarFormatError, match="prepared radar file .* not a radar product"):
        prepare_radar([out, *sorted(folder.glob("*.gz"))], tmp_path / "other.h5", progress=False)


@pytest.mark.parametrize("argv, option", [
    (["--size", "0"], "--size"), (["--nodata-value", "2"], "--nodata-value"),
    (["--dbz-min", "50", "--dbz-max", "10"], "--dbz-min/--dbz-max"),
    (["--crop", "0", "0", "500", "500"], "--crop"),
])
def test_prepare_nonsense_options_exit_2_naming_the_option(tmp_path, capsys, argv, option):
    write_fmi_series(tmp_path / "fmi", 2, shape=(20, 20))
    code, line = refused(capsys, ["prepare", "radar", str(tmp_path / "fmi"), "--out",
                                  str(tmp_path / "o.h5"), "--no-progress", *argv])
    assert code == 2 and line.startswith(f"predlearn: error: {option}: ")
    assert not (tmp_path / "o.h5").exists()


# --- the radar data module --------------------------------------------------------------------


def _stamps(count: int = 60) -> np.ndarray:
    return np.arange(count, dtype=np.int64) * 300


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "no_marker", "flipped", "missing"])
def test_radar_file_damage_is_refused_saying_to_prepare_again(tmp_path, damage):
    path = write_prepared(tmp_path / "radar.h5", _stamps(), size=16)
    if damage == "corrupt":
        garble(path)
    elif damage == "truncated":
        truncate(path)
    elif damage == "no_marker":
        unseal(path)
    elif damage == "flipped":
        flip_byte(path, "frames")  # contiguous here: the CRC-32 finds it
    else:
        path.unlink()
    expected = DataNotFoundError if damage == "missing" else BadFileError
    with pytest.raises(expected) as info:
        RadarDataModule(str(path), train_fraction=0.5, val_fraction=0.2).setup("fit")
    assert str(path) in str(info.value) and "predlearn prepare radar" in str(info.value)


def test_radar_frames_that_are_not_8_bit_are_refused(tmp_path):
    frames = np.full((60, 16, 16), 1000, np.uint16)
    path = write_prepared(tmp_path / "radar16.h5", _stamps(), frames=frames)
    with pytest.raises(BadFileError, match="'frames' are uint16.*not rescaled") as info:
        RadarDataModule(str(path), train_fraction=0.5, val_fraction=0.2).setup("fit")
    assert str(path) in str(info.value)


def test_radar_wrong_shapes_are_named(tmp_path):
    flat = write_prepared(tmp_path / "flat.h5", _stamps(), frames=np.zeros((60, 256), np.uint8))
    with pytest.raises(BadFileError, match="must be \\(N, H, W\\)"):
        RadarDataModule(str(flat)).setup("fit")
    stamps = _stamps()
    stamps[5] = stamps[4]
    repeated = write_prepared(tmp_path / "repeated.h5", stamps)
    with pytest.raises(BadFileError, match="strictly increasing"):
        RadarDataModule(str(repeated)).setup("fit")


@pytest.mark.parametrize("option, value", [
    ("train_fraction", 1.5), ("train_fraction", 0.0), ("val_fraction", -0.1),
    ("val_fraction", 0.9), ("stride", 0), ("max_gap_minutes", 0), ("batch_size", -1),
    ("context_frames", 0),
])
def test_radar_nonsense_values_name_the_option(tmp_path, option, value):
    settings = {"train_fraction": 0.8, "val_fraction": 0.1, option: value}
    with pytest.raises(OptionValueError) as info:
        RadarDataModule(str(tmp_path / "radar.h5"), **settings)
    assert info.value.option == option and str(info.value).startswith(f"{option}: ")


def test_radar_path_that_is_a_folder(tmp_path):
    with pytest.raises(OptionValueError, match="path: .* is a folder"):
        RadarDataModule(str(tmp_path))


# --- frames (your own data) -------------------------------------------------------------------


def read_frames(path: Path, context_frames: int = 1) -> torch.Tensor:
    """What ``predict --data=frames`` reads of ``path`` for a model trained elsewhere: the last
    ``context_frames`` of each sequence, (N, T, C, H, W) as the model sees them."""
    module = FramesDataModule(str(path), context_frames=context_frames, horizon=1)
    module.setup("predict")
    items = [module.predict_dataset()[i] for i in range(len(module.predict_dataset()))]
    return torch.stack([item[0] if isinstance(item, tuple) else item for item in items])


def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("damage", ["corrupt_npy", "truncated_npy", "corrupt_h5",
                                    "truncated_png", "missing"])
def test_frames_bad_files_are_named(tmp_path, damage):
    if damage in ("corrupt_npy", "truncated_npy"):
        path = tmp_path / "frames.npy"
        np.save(path, np.zeros((12, 16, 16), np.uint8))
        garble(path) if damage == "corrupt_npy" else truncate(path)
    elif damage == "corrupt_h5":
        path = garble(tmp_path / "frames.h5")
    elif damage == "truncated_png":
        path = tmp_path / "frames"
        path.mkdir()
        for t in range(3):
            _png(path / f"f{t}.png", np.full((16, 16), 40 * t, np.uint8))
        truncate(path / "f1.png")
    else:
        path = tmp_path / "absent.npy"
    expected = DataNotFoundError if damage == "missing" else BadFileError
    with pytest.raises(expected) as info:
        read_frames(path)
    assert str(path) in str(info.value)


def test_frames_wrong_shapes_types_and_values(tmp_path):
    cases = {
        "flat.npy": (np.zeros((12, 16), np.uint8), "has 2 axes; frames need 3 to 5"),
        "empty.npy": (np.zeros((0, 16, 16), np.uint8), "no empty axis"),
        "big.npy": (np.full((12, 16, 16), 3.0, np.float32), "must lie in \\[0, 1\\]"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(BadFileError, match=message) as info:
            read_frames(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    # 16-bit integers declare no range: a model trained elsewhere needs it given
    np.save(tmp_path / "sixteen.npy", np.zeros((12, 16, 16), np.uint16))
    with pytest.raises(OptionValueError, match="holds uint16 values .* --data.value_range"):
        read_frames(tmp_path / "sixteen.npy")
    folder = tmp_path / "sizes"
    folder.mkdir()
    _png(folder / "a.png", np.zeros((16, 16), np.uint8))
    _png(folder / "b.png", np.zeros((8, 16), np.uint8))
    with pytest.raises(BadFileError, match="b.png: frame of shape \\(1, 8, 16\\)"):
        read_frames(folder)
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["video"] = np.zeros((12, 16, 16), np.uint8)
    with pytest.raises(OptionValueError, match="has no dataset 'frames'; it has 'video'") as info:
        read_frames(tmp_path / "other.h5")
    assert info.value.as_typed().option == "--data.dataset"


def test_sixteen_bit_png_is_scaled_by_its_own_range(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    for t, value in enumerate((0, 32768, 65535)):
        Image.fromarray(np.full((8, 8), value, np.uint16)).save(folder / f"f{t}.png")
    frames = read_frames(folder, context_frames=3)
    assert frames.shape == (1, 3, 1, 8, 8)
    np.testing.assert_allclose(frames[0, :, 0, 0, 0], [0.0, 32768 / 65535, 1.0], rtol=1e-6)


@pytest.mark.parametrize("option, value", [("batch_size", 0), ("context_frames", 0),
                                           ("path", ""), ("dataset", "")])
def test_frames_nonsense_values_name_the_option(tmp_path, option, value):
    settings = {"path": str(tmp_path), option: value}
    with pytest.raises(OptionValueError) as info:
        FramesDataModule(**settings)
    assert info.value.option == option


def test_written_atomically_refuses_a_folder_as_output(tmp_path):
    from predlearn.files import written_atomically

    with pytest.raises(OutputError, match="is a folder"), written_atomically(tmp_path):
        pass


# --- through the console script: one line, exit 1 (data) or 2 (option) ---------------------


def test_cli_moving_mnist(tmp_path, capsys, mnist_root):
    garble(mnist_root / f"{TEST_IMAGES}.gz")
    common = ["fit", *FIT, "--data=mmnist", f"--data.root={mnist_root}",
              "--data.digits=mnist_test", "--data.download=false",
              f"--trainer.default_root_dir={tmp_path}"]
    code, line = refused(capsys, common)
    assert code == 1 and f"{TEST_IMAGES}.gz" in line
    code, line = refused(capsys, [*common, "--data.num_digits=0"])
    assert code == 2 and "--data.num_digits" in line


def test_cli_kth(tmp_path, capsys, kth_root):
    (kth_root / "running" / "person17_running_d1_uncomp.avi").unlink()
    common = ["fit", *FIT, "--data=kth", f"--data.root={kth_root}", "--data.download=false",
              f"--data.actions=[{','.join(ACTIONS)}]", "--data.train_persons=[1,2]",
              "--data.val_persons=[3]", "--data.test_persons=[17]",
              f"--trainer.default_root_dir={tmp_path}"]
    code, line = refused(capsys, common)
    assert code == 1 and "person17_running_d1" in line and "allow_missing_clips" in line
    code, line = refused(capsys, [*common, "--data.test_strides=[3,0]"])
    assert code == 2 and "--data.test_strides" in line


def test_cli_kth_test_without_test_sequences(tmp_path, capsys, kth_root):
    code, line = refused(capsys, [
        "test", *FIT, "--ckpt_path=untrained", "--data=kth", f"--data.root={kth_root}",
        "--data.download=false", f"--data.actions=[{','.join(ACTIONS)}]",
        "--data.train_persons=[1,2]", "--data.val_persons=[3]", "--data.test_persons=[18]",
        f"--trainer.default_root_dir={tmp_path}"])
    assert code == 1 and "no test windows" in line


def test_cli_radar(tmp_path, capsys):
    write_fmi_series(tmp_path / "fmi", 24, shape=(20, 20))
    path = prepare_radar([tmp_path / "fmi"], tmp_path / "radar.h5", size=16, progress=False)
    flip_byte(path, "frames")  # a chunk with a Fletcher-32 checksum
    common = ["fit", *FIT, "--data=radar", f"--data.path={path}",
              f"--trainer.default_root_dir={tmp_path}"]
    code, line = refused(capsys, common)
    assert code == 1 and str(path) in line and "predlearn prepare radar" in line
    code, line = refused(capsys, [*common, "--data.train_fraction=2"])
    assert code == 2 and "--data.train_fraction" in line


def test_cli_frames(tmp_path, capsys):
    path = garble(tmp_path / "frames.npy")
    common = ["predict", *FIT, "--ckpt_path=untrained", "--data=frames",
              f"--data.path={path}", f"--trainer.default_root_dir={tmp_path}",
              f"--predictions.output_path={tmp_path / 'out.h5'}"]
    code, line = refused(capsys, common)
    assert code == 1 and str(path) in line
    code, line = refused(capsys, [*common, "--data.batch_size=0"])
    assert code == 2 and "--data.batch_size" in line
    assert not (tmp_path / "out.h5").exists()


def test_every_data_refusal_is_a_predlearn_error():
    """The classes the data side raises are the framework's, so the console script catches
    them; and the built-in classes callers may catch still match."""
    assert issubclass(IDXFormatError, BadFileError) and issubclass(RadarFormatError, ValueError)
    assert issubclass(DataNotFoundError, FileNotFoundError)
    for cls in (IDXFormatError, RadarFormatError, DataError, OptionValueError, OutputError):
        assert issubclass(cls, PredlearnError)

