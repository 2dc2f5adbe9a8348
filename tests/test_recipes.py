"""Training recipes: the shared rollout's options, the loss over every frame, reverse scheduled
sampling, PredRNN v2's decoupling loss, time-reversed batches and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from support import TINY_MODELS, tiny_options, trainable_models
from torch import Tensor, nn

import predlearn
from predlearn.errors import OptionValueError
from predlearn.module import PredictiveModule
from predlearn.predictor import Predictor
from predlearn.sampling import ReverseScheduledSampling, ScheduledSampling
from predlearn.zoo import decoupling_loss

FRAME = (1, 16, 16)
J, K, B = 3, 4, 2


def clip(length: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(B, length, *FRAME, generator=generator, dtype=torch.float64)


def tiny(name: str, seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    options = tiny_options(name, J)
    if name in ("convlstm", "predrnn_m", "predrnn", "predrnn_v2"):
        options["patch_size"] = 2
    return predlearn.create_model(name, frame_size=FRAME[1:], **options).double().eval()


class Scale(Predictor):
    """Predicts the next frame as ``scale`` times the frame it is fed; records what it is fed."""

    def __init__(self, scale: float = 0.5) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))
        self.fed: list[Tensor] = []

    def initial_state(self, frames: Tensor) -> None:
        self.fed = []

    def transition(self, inputs, state, predict=True):
        self.fed.append(inputs.detach().clone())
        return inputs * self.scale, state


EVERY_FRAME_MODELS = [name for name in TINY_MODELS
                      if predlearn.registry.MODELS.get(name).predicts_every_frame]


# ---------------------------------------------------------------------------------------------
# One rollout for every model


@pytest.mark.parametrize("name", EVERY_FRAME_MODELS)
def test_every_frame_rollout_ends_with_the_closed_loop_predictions(name):
    model, frames = tiny(name), clip(J)
    with torch.no_grad():
        closed = model(frames, K)
        every = model.rollout(frames, K, every_frame=True).outputs
    assert every.shape == (B, J - 1 + K, *FRAME)
    torch.testing.assert_close(every[:, J - 1:], closed)


def test_every_frame_outputs_are_the_predictions_of_the_observed_frames():
    model, frames = tiny("predrnn"), clip(J)
    with torch.no_grad():
        every = model.rollout(frames, K, every_frame=True).outputs
        states = model.init_states(B, frames)
        first = model.step(frames[:, 0], states)  # the prediction of frame 2 from frame 1
        second = model.step(frames[:, 1], states)
    torch.testing.assert_close(every[:, 0], first)
    torch.testing.assert_close(every[:, 1], second)


def test_the_rollout_feeds_what_the_masks_say():
    model = Scale(0.5)
    frames, targets = clip(J), clip(K, seed=1)
    context_mask = torch.tensor([[True, False], [False, False]])
    teacher_mask = torch.tensor([[False, True, False], [True, True, True]])
    outputs = model.rollout(frames, K, targets=targets, teacher_mask=teacher_mask,
                            context_mask=context_mask, every_frame=True).outputs
    fed = torch.stack(model.fed, dim=1)  # inputs of the J + K - 1 steps
    assert fed.shape == (B, J + K - 1, *FRAME)
    expected = [
        [frames[0, 0], frames[0, 1], fed[0, 1] * 0.5, fed[0, 2] * 0.5, targets[0, 1],
         targets[0, 1] * 0.5],
        [frames[1, 0], fed[1, 0] * 0.5, fed[1, 1] * 0.5, targets[1, 0], targets[1, 1],
         targets[1, 2]],
    ]
    torch.testing.assert_close(fed, torch.stack([torch.stack(row) for row in expected]))
    torch.testing.assert_close(outputs.detach(), fed * 0.5)
    # sample 1 read only its first observed frame: the rest are its own predictions
    torch.testing.assert_close(fed[1, 2], frames[1, 0] * 0.25)


def test_masks_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"context_mask must be \(batch, context_frames - 1\)"):
        Scale().rollout(clip(J), K, context_mask=torch.ones(B, J, dtype=torch.bool))


def test_fc_lstm_reads_without_predicting_so_refuses_the_every_frame_recipes():
    model = tiny("fc_lstm")
    with pytest.raises(ValueError, match="does not predict the observed frames"):
        model.rollout(clip(J), K, every_frame=True)
    with pytest.raises(ValueError, match="loss_frames='all' does not apply"):
        PredictiveModule(model, loss_frames="all")
    with pytest.raises(OptionValueError, match="^sampling: .*ReverseScheduledSampling does not"):
        PredictiveModule(model, sampling=ReverseScheduledSampling())
    PredictiveModule(model, sampling=ScheduledSampling())  # feeds only predicted frames


def test_a_predictor_with_its_own_forward_keeps_working_but_refuses_every_frame():
    class Own(Predictor):
        def forward(self, frames, horizon, targets=None, teacher_mask=None):
            return frames[:, -1:].expand(-1, horizon, -1, -1, -1)

    frames = clip(J)
    torch.testing.assert_close(Own().rollout(frames, K).outputs, Own()(frames, K))
    with pytest.raises(ValueError, match="has its own forward, not the shared rollout"):
        Own().rollout(frames, K, every_frame=True)


def test_a_predictor_without_its_pieces_says_what_is_missing():
    with pytest.raises(NotImplementedError, match="neither initial_state/transition"):
        Predictor()(clip(J), K)


# ---------------------------------------------------------------------------------------------
# The loss over every frame


def test_loss_over_every_frame_against_a_hand_computed_value():
    frames = torch.tensor([1.0, 0.5, 0.0, 0.25, 1.0], dtype=torch.float64).view(1, 5, 1, 1, 1)
    batch = frames.expand(2, 5, 1, 1, 1).contiguous()
    for loss_frames, reference in (("all", frames[0, 1:]), ("predicted", frames[0, 2:])):
        module = PredictiveModule(Scale(0.5), context_frames=2, horizon=3, loss="l1+l2",
                                  loss_frames=loss_frames).double()
        module.log = lambda *args, **kwargs: None
        loss = module.training_step(batch, 0)
        # inputs: 1, 0.5 observed, then the closed loop feeds back 0.25, 0.125
        outputs = {"all": [0.5, 0.25, 0.125, 0.0625], "predicted": [0.25, 0.125, 0.0625]}
        errors = [o - r for o, r in zip(outputs[loss_frames], reference.flatten().tolist())]
        expected = (sum(abs(e) for e in errors) + sum(e * e for e in errors)) / len(errors)
        assert loss.item() == pytest.approx(expected), loss_frames


def test_loss_frames_is_checked():
    with pytest.raises(ValueError, match="loss_frames: must be one of 'predicted', 'all'"):
        PredictiveModule(Scale(), loss_frames="observed")


# ---------------------------------------------------------------------------------------------
# Reverse scheduled sampling (PredRNN v2)


@pytest.mark.parametrize(("step", "context", "target"), [
    (0, 0.5, 0.5),
    (24_999, 0.5, 0.5),
    (25_000, 0.5, 0.5),
    (27_500, 1 - 0.5 * math.exp(-1), 0.45),
    (37_500, 1 - 0.5 * math.exp(-5), 0.25),
    (49_999, 1 - 0.5 * math.exp(-24_999 / 2_500), 0.5 - 0.5 * 24_999 / 25_000),
    (50_000, 1.0, 0.0),
    (80_000, 1.0, 0.0),
])
def test_reverse_sampling_schedule_at_chosen_steps(step, context, target):
    schedule = ReverseScheduledSampling()  # the authors' Moving MNIST values
    assert schedule.context_probability(step) == pytest.approx(context, abs=1e-12)
    assert schedule.target_probability(step) == pytest.approx(target, abs=1e-12)


def test_reverse_sampling_masks_follow_the_probabilities():
    schedule = ReverseScheduledSampling(start=10, end=20, alpha=2.0)
    generator = torch.Generator().manual_seed(0)
    context, teacher = schedule.masks(12, 4000, 10, 10, generator=generator)
    assert context.shape == (4000, 9) and teacher.shape == (4000, 9)
    assert context.float().mean().item() == pytest.approx(1 - 0.5 * math.exp(-1), abs=0.01)
    assert teacher.float().mean().item() == pytest.approx(0.4, abs=0.01)
    context, teacher = schedule.masks(20, 50, 10, 10)
    assert context.all() and not teacher.any()  # from the end on: as at test time


def test_reverse_sampling_schedule_is_checked():
    with pytest.raises(OptionValueError, match=r"^end: must come after start \(5\); got 5") as error:
        ReverseScheduledSampling(start=5, end=5)
    assert error.value.as_typed().option == "--model.sampling.end"  # as on the command line
    with pytest.raises(OptionValueError, match="^alpha: must be positive"):
        ReverseScheduledSampling(alpha=0)


def test_a_schedule_is_kept_as_its_config_and_rebuilt_from_it():
    module = PredictiveModule(Scale(), sampling=ReverseScheduledSampling(1, 9, 2.0))
    assert module.hparams["sampling"] == {
        "class_path": "predlearn.sampling.ReverseScheduledSampling",
        "init_args": {"start": 1, "end": 9, "alpha": 2.0}}
    rebuilt = PredictiveModule(Scale(), sampling=module.hparams["sampling"]).sampling
    assert isinstance(rebuilt, ReverseScheduledSampling)
    assert (rebuilt.start, rebuilt.end, rebuilt.alpha) == (1, 9, 2.0)


def test_training_step_feeds_own_predictions_of_observed_frames_early_on():
    schedule = ReverseScheduledSampling(start=100, end=200)
    schedule.context_probability = lambda step: 0.0  # type: ignore[method-assign]
    schedule.target_probability = lambda step: 1.0  # type: ignore[method-assign]
    module = PredictiveModule(Scale(0.5), context_frames=J, horizon=K, sampling=schedule).double()
    module.log = lambda *args, **kwargs: None
    batch = clip(J + K)
    module.training_step(batch, 0)
    fed = torch.stack(module.predictor.fed, dim=1)
    torch.testing.assert_close(fed[:, 1], batch[:, 0] * 0.5)
    torch.testing.assert_close(fed[:, 2], batch[:, 0] * 0.25)
    torch.testing.assert_close(fed[:, J:], batch[:, J:J + K - 1])


# ---------------------------------------------------------------------------------------------
# PredRNN v2's decoupling loss


def test_decoupling_loss_against_a_hand_computation():
    adapter = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1))
    delta_c = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, 2, 1, 2)
    delta_m = torch.tensor([[[[1.0, 1.0]], [[0.0, -1.0]]]])
    # adapted: c -> channel 0 (1, 0), channel 1 (1, 2); m -> channel 0 (1, 1), channel 1 (1, 0)
    cos_0 = 1 / math.sqrt(2)  # (1, 0) . (1, 1) / (1 * sqrt 2)
    cos_1 = 1 / math.sqrt(5)  # (1, 2) . (1, 0) / (sqrt 5 * 1)
    expected = (cos_0 + cos_1) / 2
    assert decoupling_loss(delta_c, delta_m, adapter).item() == pytest.approx(expected)
    # orthogonal increments cost nothing; opposite ones as much as equal ones
    identity = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.ones_(identity.weight)
    a, b = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2), torch.tensor([0.0, 3.0]).view(1, 1, 1, 2)
    assert decoupling_loss(a, b, identity).item() == pytest.approx(0.0)
    assert decoupling_loss(a, -a, identity).item() == pytest.approx(1.0)


def test_predrnn_v2_adds_beta_times_the_mean_term_in_training_only():
    model = tiny("predrnn_v2").train()
    model.decouple_beta = 0.3
    frames = clip(J)
    rollout = model.rollout(frames, K)
    # recompute every layer's and step's term from the same rollout, by hand
    terms, states = [], model.init_states(B, frames)
    frame = frames[:, 0]
    for t in range(J + K - 1):
        prediction = model.step(frame, states)
        frame = frames[:, t + 1] if t + 1 < J else prediction
        terms += [decoupling_loss(dc, dm, model.adapter) for dc, dm in states["increments"]]
    assert len(terms) == 2 * (J + K - 1)  # two layers, every step
    expected = 0.3 * torch.stack(terms).mean()
    torch.testing.assert_close(rollout.auxiliary_loss, expected)
    rollout.auxiliary_loss.backward()
    assert model.adapter.weight.grad.abs().sum() > 0
    assert model.eval().rollout(frames, K).auxiliary_loss is None


def test_predrnn_v2_is_registered_and_needs_equal_widths():
    assert "predrnn_v2" in predlearn.list_models()
    with pytest.raises(ValueError, match="every layer needs the same width"):
        predlearn.create_model("predrnn_v2", hidden_channels=[4, 8])


def test_the_module_adds_the_auxiliary_loss():
    model = tiny("predrnn_v2").float().train()
    module = PredictiveModule(model, context_frames=J, horizon=K, loss="l2")
    logged = {}
    module.log = lambda key, value, **kwargs: logged.__setitem__(key, float(torch.as_tensor(value).detach()))
    module.training_step(clip(J + K).float(), 0)
    assert logged["train/loss"] == pytest.approx(
        logged["train/frame_loss"] + logged["train/auxiliary_loss"], rel=1e-6)
    assert logged["train/auxiliary_loss"] > 0


# ---------------------------------------------------------------------------------------------
# Time-reversed sequences


def test_reverse_input_adds_the_batch_played_backwards():
    module = PredictiveModule(Scale(), context_frames=J, horizon=K, reverse_input=True).double()
    module.log = lambda *args, **kwargs: None
    batch = clip(J + K)
    module.training_step(batch, 0)
    first_inputs = module.predictor.fed[0]
    assert first_inputs.shape[0] == 2 * B
    torch.testing.assert_close(first_inputs[:B], batch[:, 0])
    torch.testing.assert_close(first_inputs[B:], batch[:, -1])  # the last frame comes first


# ---------------------------------------------------------------------------------------------
# Optimiser and learning-rate schedule configs


def test_lr_scheduler_config_is_stepped_every_training_step():
    module = PredictiveModule(Scale(), lr_scheduler={
        "class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 2}})
    config = module.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.Adam)
    assert config["optimizer"].param_groups[0]["lr"] == 1e-3  # still the paper's Adam
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert config["lr_scheduler"]["interval"] == "step"
    plateau = PredictiveModule(Scale(), lr_scheduler={
        "class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau"}).configure_optimizers()
    assert plateau["lr_scheduler"]["monitor"] == "val/loss"
    assert plateau["lr_scheduler"]["interval"] == "epoch" and not plateau["lr_scheduler"]["strict"]


def test_optimizer_config_replaces_adam():
    module = PredictiveModule(Scale(), optimizer={
        "class_path": "torch.optim.SGD", "init_args": {"lr": 0.05}})
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.05


@pytest.mark.parametrize("name", trainable_models())
def test_every_recipe_trains_every_model(name):
    """One step of each model with all recipe options at once (fc_lstm: those that apply)."""
    cls = predlearn.registry.MODELS.get(name)
    every_frame, fed_back = cls.predicts_every_frame, cls.feeds_back_frames
    options = {"reverse_input": True, "lr_scheduler": {
        "class_path": "torch.optim.lr_scheduler.OneCycleLR",
        "init_args": {"max_lr": 0.01, "total_steps": 10}}}
    if every_frame:
        options.update(loss_frames="all", sampling=ReverseScheduledSampling(start=0, end=10))
    elif fed_back:  # a model that predicts its frames at once takes no sampling schedule
        options.update(sampling=ScheduledSampling())
    module = PredictiveModule(tiny(name).float().train(), context_frames=J, horizon=K, loss="l2",
                              **options)
    config = module.configure_optimizers()
    loss, logs = module.training_loss(clip(J + K).float(), 3)
    loss.backward()
    config["optimizer"].step()
    config["lr_scheduler"]["scheduler"].step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in module.predictor.parameters() if p.requires_grad)
    if fed_back:
        assert logs["train/teacher_forcing_prob"] == (pytest.approx(0.5 - 0.5 * 3 / 10)
                                                      if every_frame else 1.0 - 2e-5 * 3)
    else:
        assert "train/teacher_forcing_prob" not in logs


def test_predrnn_v2_cells_get_the_authors_forget_bias_unless_told_otherwise():
    assert all(cell.forget_bias == 1.0 for cell in tiny("predrnn_v2").cells)
    model = predlearn.create_model("predrnn_v2", hidden_channels=[4], kernel_size=3,
                                   cell_options={"forget_bias": 0.5})
    assert model.cells[0].forget_bias == 0.5
