"""``predlearn predict`` on your own frames: PNG folders and arrays in, HDF5, PNG and GIF out."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from mnist_fixtures import write_fake_mnist
from PIL import Image

from predlearn.cli import run_cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    root = write_fake_mnist(folder / "mnist", n_train=20, n_test=10)
    cli = run_cli(["fit", "--model=predrnn", "--model.predictor.hidden_channels=[4]",
                   "--model.predictor.kernel_size=3", "--model.predictor.patch_size=4",
                   "--data=mmnist", f"--data.root={root}", "--data.download=false",
                   "--data.num_val=2", "--data.num_test=2", "--data.batch_size=2",
                   "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
                   "--trainer.logger=false", f"--trainer.default_root_dir={folder}",
                   "--trainer.enable_progress_bar=false", "--figures.enabled=false"])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


def predict(checkpoint: Path, data: str, out: Path) -> np.ndarray:
    run_cli(["predict", "--data=frames", f"--data.path={data}", f"--ckpt_path={checkpoint}",
             f"--predictions.output_path={out}", "--trainer.logger=false",
             "--trainer.enable_progress_bar=false"])
    with h5py.File(out) as handle:
        return handle["predictions"][:]


@pytest.mark.slow
def test_predict_from_a_folder_of_png_frames(checkpoint, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for t in range(12):  # more frames than the model observes: the last 10 are used
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(
            frames / f"frame_{t:03d}.png")
    predictions = predict(checkpoint, str(frames), tmp_path / "out" / "predictions.h5")
    assert predictions.shape == (1, 10, 1, 64, 64)
    assert predictions.min() >= 0 and predictions.max() <= 1
    pngs = sorted((tmp_path / "out" / "predictions" / "seq_0000").glob("step_*.png"))
    assert len(pngs) == 10
    first = np.asarray(Image.open(pngs[0]), dtype=np.float32) / 255
    np.testing.assert_allclose(first, predictions[0, 0, 0], atol=1 / 255)
    with Image.open(tmp_path / "out" / "predictions" / "seq_0000.gif") as gif:
        assert gif.n_frames == 10


@pytest.mark.slow
def test_predict_from_an_array_of_sequences(checkpoint, tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (3, 10, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "seqs.npy", array[:, :, None])  # (N, T, C, H, W)
    predictions = predict(checkpoint, str(tmp_path / "seqs.npy"), tmp_path / "p.h5")
    assert predictions.shape == (3, 10, 1, 64, 64)
