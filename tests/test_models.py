"""Every registered model (Table 1's, the extensions, installed plugins): the same interface,
any channel count and frame size, gradients, and `predlearn fit --model=NAME --data=mmnist` on
the command line. The list comes from the registry, the sizes from each model's tiny_config."""

from __future__ import annotations

import pytest
import torch
from mnist_fixtures import write_fake_mnist
from support import TINY_MODELS, trainable_models

import predlearn
from predlearn.cli import run_cli
from predlearn.paper import TABLE1


def test_every_table1_model_is_registered():
    assert set(TABLE1) <= set(predlearn.list_models())


def test_every_registered_model_gives_a_tiny_config():
    missing = sorted(set(predlearn.list_models()) - set(TINY_MODELS))
    assert not missing, (f"registered models without a tiny_config() classmethod (needed by the "
                         f"generic tests): {missing}")


def test_the_stack_takes_any_registered_cell_and_named_models_keep_theirs(tmp_path):
    stack = predlearn.create_model("stack", cell="conv_lstm", **TINY_MODELS["convlstm"])
    named = predlearn.create_model("convlstm", **TINY_MODELS["convlstm"])
    assert type(stack.cells[0]) is type(named.cells[0])
    assert stack.config["init_args"]["cell"] == "conv_lstm"
    stack.load_state_dict(named.state_dict())  # the same parameters: the same model
    frames = torch.rand(1, 3, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(stack(frames, 2), named(frames, 2))
    with pytest.raises(ValueError, match="name the cell of the stack.*st_lstm"):
        predlearn.create_model("stack", hidden_channels=[4])
    root = write_fake_mnist(tmp_path / "mnist", n_train=30, n_test=10)
    cli = run_cli(["fit", "--model=stack", "--model.cell=conv_lstm", "--model.predictor.patch_size=4",
                   "--model.predictor.hidden_channels=[4]", "--data=mmnist", f"--data.root={root}",
                   "--data.download=false", "--data.num_val=2", "--data.num_test=2",
                   "--data.batch_size=2", "--data.train_sequences_per_epoch=4",
                   "--trainer.max_steps=1", "--trainer.logger=false",
                   f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
                   "--figures.enabled=false"])
    assert type(cli.model.predictor.cells[0]).__name__ == "ConvLSTMCell"
    with pytest.raises(ValueError, match="built of 'st_lstm' cells.*--model=stack"):
        predlearn.create_model("predrnn", cell="conv_lstm", hidden_channels=[4])


@pytest.mark.parametrize("frame", [(1, 64, 64), (3, 128, 128)], ids=["64x64x1", "128x128x3"])
@pytest.mark.parametrize("name", trainable_models())
def test_shapes_and_gradients(name, frame):
    torch.manual_seed(0)
    model = predlearn.create_model(name, frame_channels=frame[0], frame_size=frame[1:],
                                   **TINY_MODELS[name])
    frames = torch.rand(2, 3, *frame)
    rollout = model.rollout(frames, 4)  # forward's outputs, with any training term of the model
    predictions = rollout.outputs
    assert predictions.shape == (2, 4, *frame)
    assert torch.equal(model.eval()(frames, 4), model(frames, 4))  # eval: deterministic
    model.train()
    targets = torch.rand_like(predictions)
    loss = (predictions - targets).abs().mean() + (predictions - targets).square().mean()
    if rollout.auxiliary_loss is not None:  # e.g. PredRNN v2's decoupling loss
        loss = loss + rollout.auxiliary_loss
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", trainable_models())
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
