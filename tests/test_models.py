"""Every model of Table 1: the same interface, any channel count and frame size, gradients,
and `predlearn fit --model=NAME --data=mmnist` on the command line."""

from __future__ import annotations

import pytest
import torch
from mnist_fixtures import write_fake_mnist
from support import TINY_MODELS

import predlearn
from predlearn.cli import run_cli
from predlearn.paper import TABLE1


def test_every_table1_model_is_registered_and_has_tiny_test_sizes():
    assert set(TABLE1) <= set(predlearn.list_models())
    assert set(TINY_MODELS) == set(TABLE1)


@pytest.mark.parametrize("frame", [(1, 64, 64), (3, 128, 128)], ids=["64x64x1", "128x128x3"])
@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_shapes_and_gradients(name, frame):
    torch.manual_seed(0)
    model = predlearn.create_model(name, frame_channels=frame[0], frame_size=frame[1:],
                                   **TINY_MODELS[name])
    frames = torch.rand(2, 3, *frame)
    predictions = model(frames, 4)
    assert predictions.shape == (2, 4, *frame)
    targets = torch.rand_like(predictions)
    loss = (predictions - targets).abs().mean() + (predictions - targets).square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_fit_by_registry_name_on_the_command_line(name, tmp_path):
    root = write_fake_mnist(tmp_path / "mnist", n_train=30, n_test=10)
    tiny = [f"--model.predictor.{key}={value}".replace(" ", "")
            for key, value in TINY_MODELS[name].items()]
    cli = run_cli(["fit", f"--model={name}", *tiny, "--data=mmnist", f"--data.root={root}",
                   "--data.download=false", "--data.num_val=2", "--data.num_test=2",
                   "--data.batch_size=2", "--data.train_sequences_per_epoch=4",
                   "--trainer.max_steps=2", "--trainer.logger=false",
                   f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
                   "--figures.enabled=false"])
    assert cli.trainer.global_step == 2
    assert predlearn.registry.MODELS.name_of(type(cli.model.predictor)) == name
    assert "val/mse_per_frame" in cli.trainer.callback_metrics
