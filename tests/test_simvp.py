"""SimVP (Gao et al., CVPR 2022; docs/models.md#simvp) with its IncepU (v1) and gSTA (v2)
translators: the outputs and gradients of OpenSTL's SimVP_Model (tests/reference/make_simvp.py
made the fixtures), blocks chained for a longer horizon, the recipes that do not apply refused,
option errors, OpenSTL's Moving MNIST sizes and a fit through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mnist_fixtures import write_fake_mnist

from predlearn.cli import run_cli
from predlearn.errors import OptionValueError
from predlearn.module import PredictiveModule
from predlearn.sampling import ReverseScheduledSampling, ScheduledSampling
from predlearn.zoo.simvp import SimVP, drop_path

REFERENCE = Path(__file__).parent / "reference"


def check_against(model: torch.nn.Module, entry: dict, frames: torch.Tensor, horizon: int,
                  loss_of=None) -> None:
    """``model``'s outputs and gradients (of the mean squared output, plus ``loss_of``) equal
    the reference's: within 1e-5, and within 1e-4 of each parameter's largest gradient."""
    model.zero_grad(set_to_none=True)
    outputs = model(frames, horizon)
    torch.testing.assert_close(outputs, entry["outputs"], rtol=0, atol=1e-5)
    loss = outputs.square().mean() + (0 if loss_of is None else loss_of(outputs))
    loss.backward()
    grads = dict(model.named_parameters())
    assert set(grads) == set(entry["grads"])
    for name, expected in entry["grads"].items():
        torch.testing.assert_close(grads[name].grad, expected, rtol=0, atol=1e-5, msg=name)
        scale = expected.abs().max()
        assert (grads[name].grad - expected).abs().max() <= 1e-4 * scale, name


def from_fixture(name: str, cls=SimVP) -> tuple[torch.nn.Module, dict]:
    record = torch.load(REFERENCE / f"{name}.pt")
    model = cls(**record["config"])
    model.load_state_dict(record["state_dict"])
    return model, record


@pytest.mark.parametrize("name", ["simvp_incepu", "simvp_gsta"])
def test_outputs_and_gradients_equal_openstl_in_eval_mode(name):
    """Eval: GroupNorm, BatchNorm's running statistics, dropout and drop path off; 4 -> 5
    frames, the second block predicted from the first as OpenSTL's SimVP.forward does."""
    model, record = from_fixture(name)
    assert model.config["init_args"] == {**model.config["init_args"], **record["config"]}
    check_against(model.eval(), record, record["frames"], record["horizon"])


def test_gsta_equals_openstl_in_training_mode():
    """Training: BatchNorm's batch statistics and drop path on (rates 0.01 .. 0.3), the same
    per-sample draws from the same seed as timm's DropPath."""
    model, record = from_fixture("simvp_gsta")
    torch.manual_seed(record["train"]["seed"])
    check_against(model.train(), record["train"], record["frames"], record["horizon"])


def tiny(translator: str = "incepu", frame=(1, 16, 16), context: int = 3, **kwargs) -> SimVP:
    torch.manual_seed(0)
    options = {**SimVP.tiny_config(), "translator": translator, **kwargs}
    return SimVP(context, frame[0], frame[1:], **options).double().eval()


@pytest.mark.parametrize("translator", ["incepu", "gsta"])
def test_a_longer_horizon_chains_blocks_and_a_shorter_one_cuts_the_block(translator):
    model = tiny(translator, frame=(3, 16, 24))
    frames = torch.rand(2, 3, 3, 16, 24, dtype=torch.float64)
    with torch.no_grad():
        first = model.predict_block(frames)
        second = model.predict_block(first)
        assert first.shape == (2, 3, 3, 16, 24)
        torch.testing.assert_close(model(frames, 2), first[:, :2])
        torch.testing.assert_close(model(frames, 5), torch.cat([first, second[:, :2]], 1))
    # each frame's prediction depends on every observed frame (the translator mixes them)
    frames.requires_grad_(True)
    (grad,) = torch.autograd.grad(model(frames, 3)[:, 0].sum(), frames)
    assert (grad.flatten(2).abs().sum(-1) > 0).all()


def test_tiny_config_runs_quickly_at_64x64():
    for translator in ("incepu", "gsta"):
        model = SimVP(translator=translator, **SimVP.tiny_config())
        assert sum(p.numel() for p in model.parameters()) < 50_000
        assert model(torch.rand(2, 10, 1, 64, 64), 10).shape == (2, 10, 1, 64, 64)


def test_drop_path_rates_follow_openstl_and_are_off_in_eval():
    model = tiny("gsta", temporal_layers=4, drop_path=0.2)
    rates = [block.drop_path for block in model.translator.blocks]
    assert rates == pytest.approx([0.01, 0.073333, 0.136667, 0.2], abs=1e-6)
    assert [b.drop_path for b in tiny("gsta", temporal_layers=3).translator.blocks] == \
        pytest.approx([0.01, 0.005, 0.0])  # OpenSTL's rule at drop_path 0: 0.01 .. 0
    x = torch.ones(1000, 2, 1, 1)
    assert torch.equal(drop_path(x, 0.3, training=False), x)
    torch.manual_seed(0)
    dropped = drop_path(x, 0.3, training=True)
    assert torch.equal(dropped[:, 0], dropped[:, 1])  # one draw per sample
    kept = dropped[dropped != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.7))
    assert 0.25 < (dropped[:, 0] == 0).float().mean() < 0.35
    frames = torch.rand(2, 3, 1, 16, 16, dtype=torch.float64)
    assert torch.equal(model(frames, 3), model(frames, 3))  # eval: deterministic


def test_recipes_that_feed_single_frames_are_refused():
    model = tiny()
    for sampling in (ScheduledSampling(), ReverseScheduledSampling()):
        with pytest.raises(OptionValueError, match="predicts its frames at once"):
            PredictiveModule(model, sampling=sampling)
    with pytest.raises(OptionValueError, match="does not predict the observed frames"):
        PredictiveModule(model, loss_frames="all")
    with pytest.raises(OptionValueError, match="built for 3 observed frames; got 4"):
        model(torch.rand(1, 4, 1, 16, 16, dtype=torch.float64), 3)


@pytest.mark.parametrize(("options", "argument", "message"), [
    ({"translator": "swin"}, "translator", "must be one of 'incepu', 'gsta'"),
    ({"spatial_layers": 3}, "spatial_layers", "even"),
    ({"spatial_layers": 6}, "spatial_layers", "multiple of 8"),
    ({"spatial_channels": 3}, "spatial_channels", "even"),
    ({"temporal_layers": 1}, "temporal_layers", "at least 2"),
    ({"encoder_kernel_size": 4}, "encoder_kernel_size", "odd"),
    ({"inception_kernels": [3, 4]}, "inception_kernels", "odd"),
    ({"inception_groups": 8, "spatial_channels": 2}, "inception_groups", "divide"),
    ({"translator": "gsta", "mlp_ratio": 1.0}, "mlp_ratio", "above 1"),
    ({"translator": "gsta", "drop_path": 1.0}, "drop_path", r"\[0, 1\)"),
    ({"context_frames": 0}, "context_frames", "positive"),
])
def test_option_errors_name_the_argument(options, argument, message):
    arguments = {**SimVP.tiny_config(), "frame_size": (12, 12), "temporal_channels": 32,
                 "context_frames": 3, **options}
    with pytest.raises(OptionValueError, match=message) as error:
        SimVP(**arguments)
    assert error.value.as_typed().option == f"--model.predictor.{argument}"


@pytest.mark.parametrize(("translator", "parameters"), [("incepu", 57_946_113),
                                                        ("gsta", 46_769_665)])
def test_openstl_moving_mnist_sizes(translator, parameters):
    """configs/mmnist/simvp/SimVP_{IncepU,gSTA}.py: OpenSTL's SimVP_Model has exactly these
    (its table: 58.0M and 46.8M)."""
    with torch.device("meta"):
        model = SimVP(translator=translator)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model.context_frames == model.block_frames == 10


@pytest.mark.slow
def test_fit_on_the_command_line_is_built_for_the_datas_frames(tmp_path):
    root = write_fake_mnist(tmp_path / "mnist", n_train=30, n_test=10)
    tiny_options = [f"--model.predictor.{key}={value}".replace(" ", "")
                    for key, value in SimVP.tiny_config().items()]
    cli = run_cli(["fit", "--model.predictor=predlearn.zoo.simvp.SimVP", *tiny_options,
                   "--model.predictor.translator=gsta", "--model.loss=l2", "--data=mmnist",
                   f"--data.root={root}", "--data.download=false", "--data.num_val=2",
                   "--data.num_test=2", "--data.batch_size=2",
                   "--data.train_sequences_per_epoch=4", "--data.context_frames=4",
                   "--data.horizon=6", "--trainer.max_steps=2", "--trainer.logger=false",
                   f"--trainer.default_root_dir={tmp_path}",
                   "--trainer.enable_progress_bar=false", "--figures.enabled=false"])
    assert cli.model.predictor.context_frames == 4 and cli.trainer.global_step == 2
