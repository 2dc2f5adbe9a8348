"""Every registered model (Table 1's, the extensions, installed plugins): the same interface,
any channel count and frame size, gradients, the closed loop and the teacher mask (through
``forward(frames, horizon, targets, teacher_mask)``, so models with their own ``forward`` are
covered too), and `predlearn fit --model=NAME --data=mmnist` on the command line. The list comes
from the registry, the sizes from each model's tiny_config."""

from __future__ import annotations

import pytest
import torch
from mnist_fixtures import write_fake_mnist
from support import TINY_MODELS, tiny_options, trainable_models

import predlearn
from predlearn.cli import run_cli
from predlearn.errors import OptionValueError
from predlearn.paper import TABLE1
from predlearn.registry import MODELS

BATCH, CONTEXT, HORIZON = 2, 3, 4


def test_every_table1_model_is_registered():
    assert set(TABLE1) <= set(predlearn.list_models())


def test_every_registered_model_gives_a_tiny_config():
    missing = sorted(set(predlearn.list_models()) - set(TINY_MODELS))
    assert not missing, (f"registered models without a tiny_config() classmethod (needed by the "
                         f"generic tests): {missing}")


@pytest.mark.slow
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
                                   **tiny_options(name, CONTEXT))
    frames = torch.rand(2, CONTEXT, *frame)
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


# ---------------------------------------------------------------------------------------------
# Closed loop and teacher mask (docs/models.md#the-predictor-interface): after the observed frames
# a predictor feeds back its own predictions (paper §1.2, "we predict sequence from sequence");
# only where teacher_mask[b, k] is true does it feed targets[b, k] instead (scheduled sampling, an
# extension).


def tiny_model(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The tiny ``name`` in float64 and eval mode, and the frame (C, H, W) it was built for (its
    default; the baselines without a frame size take 1 x 64 x 64)."""
    torch.manual_seed(0)
    model = predlearn.create_model(name, **tiny_options(name, CONTEXT)).double().eval()
    frame = (getattr(model, "frame_channels", 1), *getattr(model, "frame_size", (64, 64)))
    return model, frame


def seeded(model: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
    """``model(*args, **kwargs)`` from seed 0: a stochastic model (steps, an ensemble baseline
    that draws its forecast) gives the same forecast again for the same inputs."""
    torch.manual_seed(0)
    return model(*args, **kwargs)


def clip(frame: tuple[int, ...], length: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(BATCH, length, *frame, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_without_teacher_forcing_the_targets_change_nothing(name):
    """Closed loop: targets without a mask, or with a mask that is false everywhere, are never
    fed (far-out-of-range targets would show in the predictions if they were)."""
    model, frame = tiny_model(name)
    frames = clip(frame, CONTEXT, seed=1)
    garbage = torch.full((BATCH, HORIZON, *frame), 1e3, dtype=torch.float64)
    never = torch.zeros(BATCH, HORIZON - 1, dtype=torch.bool)
    with torch.no_grad():
        reference = seeded(model, frames, HORIZON)
        unmasked = seeded(model, frames, HORIZON, targets=garbage)
        masked_off = seeded(model, frames, HORIZON, targets=garbage, teacher_mask=never)
    assert reference.shape == (BATCH, HORIZON, *frame)
    torch.testing.assert_close(unmasked, reference, rtol=0, atol=0)
    torch.testing.assert_close(masked_off, reference, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_closed_loop_feeds_back_the_models_own_predictions(name):
    """Teacher-forcing every step with the model's own closed-loop predictions as the "truth"
    changes nothing: what the closed loop feeds after prediction k is prediction k. (With
    ``test_the_teacher_mask_feeds_the_truth_where_true_and_only_there``, which shows that the
    fed frame matters, a model that fed anything else, e.g. the last observed frame, fails.)"""
    model, frame = tiny_model(name)
    frames = clip(frame, CONTEXT, seed=1)
    always = torch.ones(BATCH, HORIZON - 1, dtype=torch.bool)
    if not model.feeds_back_frames:  # it predicts its frames at once: nothing to feed back
        with pytest.raises(OptionValueError, match="scheduled sampling does not apply"):
            model(frames, HORIZON, targets=clip(frame, HORIZON, seed=2), teacher_mask=always)
        return
    with torch.no_grad():
        free = seeded(model, frames, HORIZON)
        forced_with_its_own = seeded(model, frames, HORIZON, targets=free.clone(),
                                     teacher_mask=always)
    torch.testing.assert_close(forced_with_its_own, free)


@pytest.mark.parametrize("name", [name for name in trainable_models()  # models fed one frame
                                  if getattr(MODELS.get(name), "feeds_back_frames", True)])
def test_the_teacher_mask_feeds_the_truth_where_true_and_only_there(name):
    """Per sample and per step: prediction k reads targets[b, j] only if teacher_mask[b, j] and
    j < k, and prediction j + 1 does read targets[b, j] where teacher_mask[b, j] is true.
    A model that ignored the mask (always or never feeding the truth) or that fed the truth one
    step early or late fails; the gradients are exactly zero for targets never fed."""
    model, frame = tiny_model(name)
    frames = clip(frame, CONTEXT, seed=1)
    targets = clip(frame, HORIZON, seed=2).requires_grad_(True)
    mask = torch.tensor([[True, False, True], [False, True, False]])  # (BATCH, HORIZON - 1)
    fed = torch.cat([mask, torch.zeros(BATCH, 1, dtype=torch.bool)], dim=1)  # targets[:, -1]: never
    predictions = model(frames, HORIZON, targets=targets, teacher_mask=mask)
    assert predictions.shape == (BATCH, HORIZON, *frame)
    for k in range(HORIZON):
        (grad,) = torch.autograd.grad(predictions[:, k].sum(), targets, retain_graph=True)
        read = grad.flatten(2).abs().sum(-1) > 0  # (BATCH, HORIZON): which targets[b, j] it read
        for b in range(BATCH):
            for j in range(HORIZON):
                if not (fed[b, j] and j < k):
                    assert not read[b, j], (f"prediction {k} of sample {b} read targets[{b}, {j}]"
                                            f" (teacher_mask {mask[b].tolist()})")
            if k > 0 and fed[b, k - 1]:
                assert read[b, k - 1], (f"prediction {k} of sample {b} ignored targets[{b}, "
                                        f"{k - 1}] although the teacher mask is true there")


@pytest.mark.slow
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
