"""Shipped models by name: export, list, load, and ``--ckpt_path=NAME`` on the command line."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from mnist_fixtures import write_fake_mnist
from support import tiny_run

import predlearn
from predlearn import pretrained, pretrained_folder
from predlearn.cli import run_cli
from predlearn.cli_arguments import resolve_registry_names
from predlearn.pretrained_folder import checkpoint_of


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny PredRNN trained for two steps through the CLI: its last checkpoint and weights."""
    root = tmp_path_factory.mktemp("run")
    mnist = write_fake_mnist(tmp_path_factory.mktemp("mnist"), n_train=60, n_test=30)
    cli = run_cli(["fit", *tiny_run(mnist, root, "--trainer.max_steps=2",
                                    "--trainer.limit_val_batches=0", "--figures.enabled=false")])
    weights = {k: v.clone() for k, v in cli.model.state_dict().items()}
    return Path(cli.trainer.checkpoint_callback.last_model_path), weights


@pytest.fixture
def shipped(trained, tmp_path, monkeypatch) -> dict[str, torch.Tensor]:
    """The tiny model as the shipped model "tiny-predrnn" in a temporary weights folder."""
    monkeypatch.setattr(pretrained_folder, "SHIPPED_DIR", tmp_path / "weights")
    monkeypatch.setenv("PREDLEARN_CACHE", str(tmp_path / "cache"))
    checkpoint, weights = trained
    predlearn.save_pretrained(checkpoint, tmp_path / "weights" / "tiny-predrnn",
                              card="# tiny-predrnn\n", test_mse=123.4)
    return weights


@pytest.mark.slow
def test_export_keeps_what_prediction_needs_and_drops_the_optimiser(trained, tmp_path):
    checkpoint, _ = trained
    full = torch.load(checkpoint, weights_only=False)
    assert "optimizer_states" in full
    out = pretrained.export_checkpoint(checkpoint, tmp_path / "a.ckpt", seed=7)
    reduced = torch.load(out, weights_only=False)
    assert "optimizer_states" not in reduced and "loops" not in reduced
    assert reduced["predlearn"] == {"seed": 7}
    assert out.stat().st_size < checkpoint.stat().st_size
    assert not list(tmp_path.glob("*.part"))


def test_export_refuses_a_file_that_is_not_a_predlearn_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a Lightning checkpoint"):
        pretrained.export_checkpoint(tmp_path / "other.pt", tmp_path / "out.ckpt")
    assert not (tmp_path / "out.ckpt").exists()


@pytest.mark.slow
def test_list_and_load_a_shipped_model(shipped):
    assert predlearn.list_pretrained() == ["tiny-predrnn"]
    module = predlearn.load_pretrained("tiny-predrnn")
    assert not module.training and not module.predictor.training
    assert type(module.predictor).__name__ == "PredRNN"
    for name, value in shipped.items():
        torch.testing.assert_close(module.state_dict()[name], value)
    with torch.no_grad():
        out = module(torch.rand(1, 10, 1, 64, 64))
    assert out.shape == (1, 10, 1, 64, 64)
    assert pretrained.model_card("tiny-predrnn").startswith("# tiny-predrnn")


@pytest.mark.slow
def test_an_unknown_name_lists_the_shipped_ones(shipped):
    with pytest.raises(ValueError, match="no shipped model named 'tiny'; shipped: tiny-predrnn"):
        predlearn.load_pretrained("tiny")


@pytest.mark.slow
def test_ckpt_path_takes_a_shipped_name_and_leaves_paths_alone(shipped, tmp_path):
    path = str(checkpoint_of(pretrained_folder.SHIPPED_DIR / "tiny-predrnn"))  # in the cache
    assert resolve_registry_names(["predict", "--ckpt_path=tiny-predrnn"]) == [
        "predict", f"--ckpt_path={path}"]
    assert resolve_registry_names(["predict", "--ckpt_path", "tiny-predrnn"]) == [
        "predict", "--ckpt_path", path]
    for kept in ("best", "last", "missing-name", str(tmp_path)):
        assert resolve_registry_names([f"--ckpt_path={kept}"]) == [f"--ckpt_path={kept}"]


@pytest.mark.slow
def test_predict_with_a_shipped_name_on_the_command_line(shipped, tmp_path):
    clip = np.random.default_rng(0).random((2, 10, 1, 64, 64), dtype=np.float32)
    with h5py.File(tmp_path / "clip.h5", "w") as handle:
        handle["frames"] = clip
    output = tmp_path / "predictions.h5"
    run_cli(["predict", "--ckpt_path=tiny-predrnn", "--data=frames",
             f"--data.path={tmp_path / 'clip.h5'}", f"--predictions.output_path={output}",
             "--trainer.logger=false", "--trainer.enable_progress_bar=false",
             f"--trainer.default_root_dir={tmp_path}"])
    with h5py.File(output) as handle:
        predictions = handle["predictions"][:]
    assert predictions.shape == (2, 10, 1, 64, 64)
    expected = predlearn.load_pretrained("tiny-predrnn")(torch.from_numpy(clip)).clamp(0, 1)
    np.testing.assert_allclose(predictions, expected.detach().numpy(), atol=1e-5)


@pytest.mark.slow
def test_test_figures_also_draw_the_shipped_model(shipped, tmp_path):
    mnist = write_fake_mnist(tmp_path / "mnist", n_train=60, n_test=30)
    cli = run_cli(["test", *tiny_run(mnist, tmp_path), "--figures.pretrained=tiny-predrnn",
                   "--ckpt_path=untrained"])
    folder = Path(cli.trainer.logger.log_dir)
    assert (folder / "test_predictions.png").stat().st_size > 1000
    assert (folder / "test_predictions_tiny-predrnn.png").stat().st_size > 1000


SHIPPED = "predrnn-mmnist2"


def test_the_shipped_predrnn_predicts_moving_digits_far_better_than_black_frames():
    """The real shipped file: listed, its card beside it, loads in eval mode, and its closed-loop
    predictions of fresh 2-digit sequences beat all-black frames by a wide margin at every
    predicted step (its card reports the held-out test scores; the bundled digits here are MNIST
    test digits 0-999, among its training digits, so this checks the file, not generalisation)."""
    from predlearn.datamodules.mmnist_render import generate_moving_mnist, to_tensor
    from predlearn.datamodules.mnist import load_digits

    assert SHIPPED in predlearn.list_pretrained()
    card = pretrained.model_card(SHIPPED)
    for fact in ("predlearn fit --config configs/pretrained/predrnn-mmnist2.yaml", "seed",
                 "wall time", "Test scores per predicted step"):
        assert fact in card
    module = predlearn.load_pretrained(SHIPPED)
    assert not module.training and module.context_frames == 10
    frames = to_tensor(generate_moving_mnist(load_digits("bundled").test, 16,
                                             np.random.default_rng(7), num_digits=2))
    with torch.no_grad():
        predicted = module(frames[:, :10], 10)
    truth = frames[:, 10:]
    assert predicted.shape == truth.shape and torch.isfinite(predicted).all()
    per_step = ((predicted - truth) ** 2).sum(dim=(2, 3, 4)).mean(dim=0)  # MSE per frame
    black = (truth ** 2).sum(dim=(2, 3, 4)).mean(dim=0)
    assert torch.all(per_step < 0.75 * black), (per_step, black)


def test_checkpoints_of_older_versions_are_upgraded():
    """Sampling flags and numbers of older checkpoints become one schedule; their scoring
    options (now the data module's) are left out."""
    from predlearn.checkpoint_files import upgrade_hparams
    from predlearn.sampling import ReverseScheduledSampling

    old = {"loss": "l2", "scheduled_sampling": True, "sampling_decay": 0.1, "sampling_stop": 10,
           "reverse_scheduled_sampling": False, "reverse_sampling_start": 5,
           "thresholds": [20.0], "threshold_unit": None, "fss_scales": [1], "power_spectrum": None}
    assert upgrade_hparams(old) == {"loss": "l2", "sampling": {
        "class_path": "predlearn.sampling.ScheduledSampling",
        "init_args": {"decay": 0.1, "stop": 10}}}
    # the shipped model was saved before the schedules were objects
    module = predlearn.load_pretrained("predrnn-mmnist2")
    assert isinstance(module.sampling, ReverseScheduledSampling)
    assert (module.sampling.start, module.sampling.end, module.sampling.alpha) == (3000, 8000, 1000)
