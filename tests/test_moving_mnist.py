"""Moving MNIST: generator properties, digit sources, caches and the data module end to end."""

from __future__ import annotations

import hashlib
import math
import warnings

import h5py
import numpy as np
import pytest
import torch
from mnist_fixtures import write_fake_mnist

import predlearn.datamodules.moving_mnist as mm
from predlearn.datamodules import MovingMNISTDataModule
from predlearn.datamodules import mnist as mnist_module
from predlearn.datamodules.mnist import ChecksumError, download_file, load_digits
from predlearn.datamodules.moving_mnist import (
    MovingMNISTStream,
    generate_moving_mnist,
    render_frames,
    sample_trajectories,
)
from predlearn.datamodules.stream import ResumableStreamLoader
from predlearn.registry import DATAMODULES

FOUR_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    return load_digits("bundled").train


def small_module(root, **kwargs) -> MovingMNISTDataModule:
    options = {
        "root": str(root), "digits": "mnist", "num_val": 6, "num_test": 11,
        "train_sequences_per_epoch": 10, "batch_size": 4, "download": False,
    }
    options.update(kwargs)
    return MovingMNISTDataModule(**options)


# --- generator -------------------------------------------------------------------------------


def test_speed_is_constant_and_in_paper_range():
    traj = sample_trajectories(np.random.default_rng(0), 500, num_digits=3, sequence_length=20)
    speed = np.linalg.norm(traj.velocities, axis=-1)  # (N, T, D)
    assert speed.min() >= 3.0 and speed.max() < 5.0
    np.testing.assert_allclose(speed, np.broadcast_to(speed[:, :1], speed.shape), rtol=1e-12)  # bounces keep the speed
    angle = np.arctan2(traj.velocities[:, 0, :, 0], traj.velocities[:, 0, :, 1]).ravel()
    # direction uniform on the circle: every quadrant gets a fair share of 1,500 draws
    counts = np.histogram(angle, bins=4, range=(-math.pi, math.pi))[0]
    assert counts.min() > 300


def test_digits_stay_inside_the_frame(pool):
    frames, traj = generate_moving_mnist(
        pool, 200, np.random.default_rng(1), num_digits=1, sequence_length=30,
        return_trajectories=True,
    )
    assert traj.positions.min() >= 0.0 and traj.positions.max() <= 64 - 28
    # one digit on an empty frame: no pixel is ever cut off
    digit_sums = pool[traj.digit_indices[:, 0]].reshape(200, -1).sum(axis=1)
    frame_sums = frames.reshape(200, 30, -1).sum(axis=2, dtype=np.int64)
    np.testing.assert_array_equal(frame_sums, np.repeat(digit_sums[:, None], 30, axis=1))


def test_bounce_reflects_position_and_reverses_velocity():
    traj = sample_trajectories(np.random.default_rng(2), 300, num_digits=2, sequence_length=40)
    limit = 64 - 28
    moved = traj.positions[:, :-1] + traj.velocities[:, :-1]
    below, above = moved < 0, moved > limit
    flipped = np.sign(traj.velocities[:, 1:]) != np.sign(traj.velocities[:, :-1])
    assert below.sum() > 50 and above.sum() > 50  # the check below is not vacuous
    np.testing.assert_array_equal(flipped, below | above)  # reversed exactly at an edge
    expected = np.where(below, -moved, np.where(above, 2 * limit - moved, moved))
    np.testing.assert_allclose(traj.positions[:, 1:], expected)
    np.testing.assert_allclose(traj.velocities[:, 1:][flipped], -traj.velocities[:, :-1][flipped])


def test_pixel_positions_are_rounded_float_positions(pool):
    frames, traj = generate_moving_mnist(
        pool, 20, np.random.default_rng(3), num_digits=2, return_trajectories=True
    )
    np.testing.assert_array_equal(traj.pixel_positions, np.rint(traj.positions))
    np.testing.assert_array_equal(
        frames, render_frames(pool[traj.digit_indices], traj.pixel_positions)
    )


def test_same_seed_same_sequences_different_seed_different(pool):
    a = generate_moving_mnist(pool, 8, np.random.default_rng(7))
    b = generate_moving_mnist(pool, 8, np.random.default_rng(7))
    c = generate_moving_mnist(pool, 8, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (8, 20, 64, 64) and a.dtype == np.uint8


def test_overlap_by_maximum_on_a_hand_built_case():
    first = np.zeros((28, 28), np.uint8)
    first[10:20, 10:20] = 100  # frame rows/cols 10-19
    second = np.zeros((28, 28), np.uint8)
    second[5:15, 5:15] = 200  # drawn at (12, 12): frame rows/cols 17-26
    second[5:15, 6] = 50  # a faint stroke, frame column 18
    digits = np.stack([first, second])[None]  # (1 sequence, 2 digits, 28, 28)
    positions = np.array([[[[0, 0], [12, 12]]]])  # (1, 1 frame, 2 digits, 2)
    frame = render_frames(digits, positions)[0, 0]
    assert frame[18, 17] == 200  # both digits: the maximum
    assert frame[18, 18] == 100  # first (100) and the faint stroke (50): still the maximum
    assert frame[13, 13] == 100  # first digit under the second's empty background
    assert frame[24, 24] == 200 and frame[5, 5] == 0 and frame[30, 30] == 0
    occluded = render_frames(digits, positions, overlap="occlude")[0, 0]
    assert occluded[18, 18] == 50  # the later digit's stroke is drawn over the earlier one
    assert occluded[13, 13] == 100  # an empty background hides nothing
    assert (occluded != frame).sum() == 3  # only column 18, rows 17-19 differ


def test_render_rejects_positions_outside_the_frame():
    with pytest.raises(ValueError, match="outside"):
        render_frames(np.zeros((1, 1, 28, 28), np.uint8), np.array([[[[37, 0]]]]))


def test_speed_range_must_fit_the_frame():
    with pytest.raises(ValueError, match="speed_range"):
        sample_trajectories(np.random.default_rng(0), 1, speed_range=(3.0, 40.0))


# --- the training stream ---------------------------------------------------------------------


def _batches(loader_or_stream) -> list[torch.Tensor]:
    return list(loader_or_stream)


def test_stream_reproducible_and_distinct_across_ranks_and_epochs(pool):
    def make(rank):
        return MovingMNISTStream(pool, 16, seed=5, batch_size=4, rank=rank, world_size=2)

    rank0, again, rank1 = make(0), make(0), make(1)
    first = torch.cat(_batches(rank0))
    assert first.shape == (8, 20, 1, 64, 64) and first.dtype == torch.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    torch.testing.assert_close(first, torch.cat(_batches(again)))
    assert not torch.equal(first, torch.cat(_batches(rank1)))
    rank0.epoch = 1
    assert not torch.equal(first, torch.cat(_batches(rank0)))  # a new epoch draws new sequences
    rank0.epoch = 0
    torch.testing.assert_close(first, torch.cat(_batches(rank0)))
    flat = torch.cat([first, torch.cat(_batches(rank1))]).flatten(1)
    assert len(torch.unique(flat, dim=0)) == 16  # no sequence repeats across batches or ranks


def _loader(count: int, workers: int, batch_size: int = 4) -> ResumableStreamLoader:
    stream = MovingMNISTStream(
        load_digits("bundled").train, count, seed=0, batch_size=batch_size, rank=0, world_size=1
    )
    return ResumableStreamLoader(stream, num_workers=workers)


def test_stream_is_the_same_with_and_without_workers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns if more batches come than len() says
        serial, parallel = _batches(_loader(22, 0)), _batches(_loader(22, 2))
    assert [len(b) for b in serial] == [4, 4, 4, 4, 4, 2]  # the last batch is short
    assert len(parallel) == len(_loader(22, 2)) == math.ceil(22 / 4)
    for a, b in zip(serial, parallel, strict=True):
        torch.testing.assert_close(a, b)
    flat = torch.cat(serial).flatten(1)
    assert len(torch.unique(flat, dim=0)) == 22  # no two batches repeat a sequence


def test_stream_splits_sequences_over_ranks(pool):
    ranks = [MovingMNISTStream(pool, 7, batch_size=2, rank=r, world_size=3) for r in range(3)]
    assert [s.sequences_on_this_rank() for s in ranks] == [3, 2, 2]
    assert [len(s) for s in ranks] == [2, 1, 1]  # batches per epoch on each rank


def test_loader_resumes_mid_epoch_and_after_an_epoch():
    reference = _loader(20, 0)
    epochs = [_batches(reference), _batches(reference)]  # two uninterrupted epochs of 5 batches
    assert not torch.equal(epochs[0][0], epochs[1][0])
    first = _loader(20, 0)
    iterator = iter(first)
    for _ in range(3):
        next(iterator)
    state = first.state_dict()  # no trainer: the batches served so far
    assert state == {"epoch": 0, "batches_consumed": 3}
    resumed = _loader(20, 2)
    resumed.load_state_dict(state)
    rest = _batches(resumed)
    assert len(rest) == 2
    for a, b in zip(rest, epochs[0][3:], strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(_batches(resumed)[0], epochs[1][0])  # then the next epoch
    at_end = _loader(20, 0)
    at_end.load_state_dict({"epoch": 0, "batches_consumed": 5})  # saved at the epoch's end
    torch.testing.assert_close(_batches(at_end)[0], epochs[1][0])


# --- digit sources ---------------------------------------------------------------------------


def test_mnist_source_splits_and_extracted_files(tmp_path):
    write_fake_mnist(tmp_path / "gz", n_train=60, n_test=30, gzip=True)
    write_fake_mnist(tmp_path / "raw", n_train=60, n_test=30, gzip=False)
    gz = load_digits("mnist", tmp_path / "gz", download=False)
    raw = load_digits("mnist", tmp_path / "raw", download=False)
    assert (len(gz.train), len(gz.val), len(gz.test)) == (55, 5, 30)  # last 1/12 held out
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(gz.pool(split), raw.pool(split))
    test_only = load_digits("mnist_test", tmp_path / "gz", download=False)
    assert (len(test_only.train), len(test_only.val), len(test_only.test)) == (21, 3, 6)
    np.testing.assert_array_equal(test_only.test, gz.test[-6:])


def test_bundled_digits_offline_without_files(tmp_path):
    pools = load_digits("bundled", tmp_path / "nothing", download=False)
    assert (len(pools.train), len(pools.val), len(pools.test)) == (700, 100, 200)
    assert pools.train.dtype == np.uint8 and pools.train.shape[1:] == (28, 28)
    assert not (tmp_path / "nothing").exists()


def test_offline_message_names_the_four_files_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_digits("mnist", tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path.resolve()) in message
    for name in FOUR_FILES:
        assert name in message
    assert "--data.digits=bundled" in message
    assert "ossci-datasets" in message


def test_download_failure_gives_the_offline_message(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "MIRRORS", ((tmp_path / "empty").as_uri() + "/",))
    with pytest.raises(FileNotFoundError, match="download failed") as info:
        load_digits("mnist_test", tmp_path / "data", download=True)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


def test_download_checks_md5(tmp_path):
    source = write_fake_mnist(tmp_path / "mirror", n_train=12, n_test=12)
    name = "t10k-labels-idx1-ubyte.gz"
    good = hashlib.md5((source / name).read_bytes()).hexdigest()
    mirrors = ((tmp_path / "offline").as_uri() + "/", source.as_uri() + "/")
    target = download_file(name, good, tmp_path / "dest", mirrors=mirrors)
    assert target.read_bytes() == (source / name).read_bytes()
    official = mnist_module.MNIST_FILES[name]
    with pytest.raises(ChecksumError) as info:
        download_file(name, official, tmp_path / "dest2", mirrors=mirrors)
    assert name in str(info.value) and good in str(info.value) and official in str(info.value)
    assert list((tmp_path / "dest2").iterdir()) == []  # the bad download was deleted


def test_label_count_must_match_images(tmp_path):
    root = write_fake_mnist(tmp_path, n_train=24, n_test=12)
    write_fake_mnist(tmp_path / "other", n_train=24, n_test=10)
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (tmp_path / "other" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    )
    with pytest.raises(ValueError, match="do not belong together"):
        load_digits("mnist_test", root, download=False)


# --- the data module -------------------------------------------------------------------------


def test_registered_as_mmnist():
    assert DATAMODULES.get("mmnist") is MovingMNISTDataModule


def test_data_module_end_to_end_on_fake_files(tmp_path):
    dm = small_module(write_fake_mnist(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    for loader, count in (
        (dm.train_dataloader(), 10), (dm.val_dataloader(), 6), (dm.test_dataloader(), 11),
        (dm.predict_dataloader(), 11),
    ):
        batches = list(loader)
        assert all(b.shape[1:] == (20, 1, 64, 64) and b.dtype == torch.float32 for b in batches)
        assert batches[0].shape[0] == 4
        assert sum(len(b) for b in batches) == count  # the last partial batch is kept
        stacked = torch.cat(batches)
        assert stacked.min() >= 0.0 and stacked.max() <= 1.0 and stacked.max() > 0.5
    torch.testing.assert_close(torch.cat(list(dm.test_dataloader())),
                               torch.cat(list(dm.predict_dataloader())))
    dm.teardown()


def test_context_and_horizon_set_the_sequence_length(tmp_path):
    dm = small_module(tmp_path, digits="bundled", context_frames=3, horizon=5)
    dm.setup("validate")
    assert next(iter(dm.val_dataloader())).shape == (4, 8, 1, 64, 64)


def test_test_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    root = write_fake_mnist(tmp_path)
    dm = small_module(root)
    dm.setup("test")
    path = dm.cache_path("test")
    assert path.is_file() and path.parent == root / "cache"
    first = torch.cat(list(dm.test_dataloader()))
    mtime = path.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("the cache was regenerated")

    monkeypatch.setattr(mm, "build_cached_sequences", fail)
    monkeypatch.setattr(mm, "generate_moving_mnist", fail)
    again = small_module(root)
    again.setup("test")
    assert path.stat().st_mtime_ns == mtime
    torch.testing.assert_close(torch.cat(list(again.test_dataloader())), first)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_cache_name_encodes_options_and_rebuilds_when_corrupt(tmp_path):
    dm = small_module(tmp_path, digits="bundled")
    other = small_module(tmp_path, digits="bundled", overlap="occlude", eval_seed=3)
    assert dm.cache_path("test") != other.cache_path("test")
    name = dm.cache_path("test").name
    for part in ("test", "bundled", "2digits", "11seq", "20frames", "seed0", "speed3-5", "max"):
        assert part in name
    dm.setup("test")
    first = torch.cat(list(dm.test_dataloader()))
    dm.teardown()
    dm.cache_path("test").write_bytes(b"not an hdf5 file")
    rebuilt = small_module(tmp_path, digits="bundled")
    rebuilt.setup("test")
    torch.testing.assert_close(torch.cat(list(rebuilt.test_dataloader())), first)


def test_cache_with_different_attributes_is_rebuilt(tmp_path):
    dm = small_module(tmp_path, digits="bundled")
    dm.setup("validate")
    path = dm.cache_path("val")
    with h5py.File(path, "a") as h5:
        h5.attrs["digits_md5"] = "0" * 32  # as if made from other digits
    small_module(tmp_path, digits="bundled").setup("validate")
    with h5py.File(path, "r") as h5:
        assert h5.attrs["digits_md5"] != "0" * 32


def test_transfer_setting_three_test_digits_two_train_digits(tmp_path):
    dm = small_module(tmp_path, digits="bundled", test_num_digits=3)
    dm.setup("fit")
    dm.setup("test")
    assert dm.train_set.num_digits == 2
    pools = dm.pools()
    for split, digits, pool in (("val", 2, pools.val), ("test", 3, pools.test)):
        with h5py.File(dm.cache_path(split), "r") as h5:
            indices, positions, frames = (h5[k][...] for k in ("digit_indices", "positions",
                                                                  "frames"))
        assert indices.shape[1] == digits
        np.testing.assert_array_equal(frames, render_frames(pool[indices], positions))
    assert "3digits" in dm.cache_path("test").name and "2digits" in dm.cache_path("val").name


def test_bundled_data_module_works_offline(tmp_path):
    dm = small_module(tmp_path / "fresh", digits="bundled")
    dm.prepare_data()
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).shape == (4, 20, 1, 64, 64)


def test_missing_files_fail_in_prepare_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        small_module(tmp_path).prepare_data()


@pytest.mark.parametrize(
    "name, value",
    [("num_digits", 0), ("test_num_digits", 0), ("num_test", 0), ("num_val", 0),
     ("train_sequences_per_epoch", 0)],
)
def test_invalid_arguments_name_the_argument(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        small_module(tmp_path, **{name: value})


def test_invalid_source_and_overlap(tmp_path):
    with pytest.raises(ValueError, match="digits"):
        small_module(tmp_path, digits="emnist")
    with pytest.raises(ValueError, match="overlap"):
        small_module(tmp_path, overlap="add")


def test_trainer_fit_and_test(tmp_path):
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.seen = 0

        def _loss(self, batch):
            return ((batch[:, 10:] - self.scale * batch[:, 9:10]) ** 2).mean()

        def training_step(self, batch, _):
            return self._loss(batch)

        def validation_step(self, batch, _):
            self.log("val/loss", self._loss(batch))

        def test_step(self, batch, _):
            self.seen += len(batch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = small_module(tmp_path, digits="bundled")
    model = Tiny()
    trainer = L.Trainer(
        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    trainer.test(model, datamodule=dm, verbose=False)
    assert model.seen == 11
