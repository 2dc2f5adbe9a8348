"""The shared rollout: shapes, the zigzag memory route, closed loop, teacher forcing, sampling.

Built through the registry (``predlearn.create_model``) for the three recurrent-cell predictors
of Table 1: ConvLSTM (paper §2.2, eq. 2), PredRNN-M (§3.1, eq. 3) and PredRNN (§3.2, eq. 4).
What every registered model must do in closed loop and with a teacher mask (targets never fed
without it, its own predictions fed back, the truth fed exactly where the mask is true) is tested
once for all of them in tests/test_models.py; here are the properties of the recurrent stack's
loop beyond that (a prediction equals a one-step prediction after the same inputs).
"""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from torch import Tensor

from predlearn import create_model
from predlearn.sampling import ScheduledSampling

NAMES = ("convlstm", "predrnn_m", "predrnn")
ZIGZAG = ("predrnn_m", "predrnn")
FRAME = (1, 8, 8)
BATCH, CONTEXT, HORIZON = 2, 3, 4


def build(name: str, hidden=(4, 4, 4), seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = create_model(name, frame_channels=FRAME[0], frame_size=FRAME[1:],
                         hidden_channels=list(hidden), kernel_size=3, **kwargs)
    return model.double().eval()


def clip(batch: int = BATCH, length: int = CONTEXT, seed: int = 1, shape=FRAME) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, length, *shape, generator=generator, dtype=torch.float64)


def copy_states(states: dict) -> dict:
    """``step`` rebinds list items and ``states["m"]``; a copy of the lists keeps the old ones."""
    return {"h": list(states["h"]), "c": list(states["c"]), "m": states["m"]}


# ---------------------------------------------------------------------------------------------
# Shapes and argument checks


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("horizon", [1, 2, 5])
def test_output_shape(name, horizon):
    model = build(name)
    with torch.no_grad():
        out = model(clip(), horizon)
    assert out.shape == (BATCH, horizon, *FRAME)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("hidden", "patch_size"), [((4, 6, 4), 1), ((4, 4, 4), 2),
                                                    ((3, 5, 2), 2)])
def test_output_shape_with_patches_and_layer_widths(name, hidden, patch_size):
    model = build(name, hidden=hidden, patch_size=patch_size)
    assert model.grid == (8 // patch_size, 8 // patch_size)
    states = model.init_states(BATCH, clip())
    assert [tuple(h.shape) for h in states["h"]] == [(BATCH, w, *model.grid) for w in hidden]
    with torch.no_grad():
        out = model(clip(length=2), 3)
    assert out.shape == (BATCH, 3, *FRAME)


def test_single_observed_frame_is_enough():
    with torch.no_grad():
        assert build("predrnn")(clip(length=1), 2).shape == (BATCH, 2, *FRAME)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 6, 8), (2, 8, 8), (1, 8, 16)])
def test_frame_size_mismatch_names_the_shapes(name, shape):
    model = build(name)
    with pytest.raises(ValueError, match=re.escape(f"(C, H, W) = (1, 8, 8); got {shape}")):
        model(clip(shape=shape), 2)


@pytest.mark.parametrize("name", NAMES)
def test_patch_size_must_divide_the_frame(name):
    with pytest.raises(ValueError, match="patch_size 3 must divide the frame size 8x8"):
        build(name, patch_size=3)


def test_frames_must_be_five_dimensional():
    with pytest.raises(ValueError, match=r"\(batch, time, channels, height, width\).*\(2, 1, 8, 8\)"):
        build("predrnn")(clip()[:, 0], 2)


def test_horizon_must_be_positive():
    with pytest.raises(ValueError, match="horizon must be at least 1; got 0"):
        build("predrnn")(clip(), 0)


@pytest.mark.parametrize("mask_shape", [(BATCH, HORIZON), (BATCH,), (1, HORIZON - 1)])
def test_teacher_mask_shape_is_checked(mask_shape):
    model = build("predrnn")
    targets = clip(length=HORIZON, seed=2)
    mask = torch.ones(mask_shape, dtype=torch.bool)
    expected = rf"\(batch, horizon - 1\) = \({BATCH}, {HORIZON - 1}\)"
    with pytest.raises(ValueError, match=expected):
        model(clip(), HORIZON, targets=targets, teacher_mask=mask)


def test_teacher_mask_without_targets_is_rejected():
    mask = torch.ones(BATCH, HORIZON - 1, dtype=torch.bool)
    with pytest.raises(ValueError, match="teacher_mask needs targets"):
        build("predrnn")(clip(), HORIZON, teacher_mask=mask)


def test_too_short_targets_are_rejected():
    mask = torch.ones(BATCH, HORIZON - 1, dtype=torch.bool)
    with pytest.raises(ValueError, match="targets must be"):
        build("predrnn")(clip(), HORIZON, targets=clip(length=HORIZON - 2), teacher_mask=mask)


# ---------------------------------------------------------------------------------------------
# Memory routing through the stack's public pieces (init_states / step / cells)


def capture_bottom_hidden(model, frame: Tensor, states: dict) -> Tensor:
    """Run one ``step`` and return the bottom layer's new hidden state (via a forward hook)."""
    captured = []
    handle = model.cells[0].register_forward_hook(lambda _m, _a, out: captured.append(out[0]))
    try:
        with torch.no_grad():
            model.step(frame, states)
    finally:
        handle.remove()
    assert len(captured) == 1
    return captured[0]


def two_frames():
    frames = clip(length=2, seed=3)
    return frames[:, 0], frames[:, 1]


@pytest.mark.parametrize("name", ZIGZAG)
@pytest.mark.parametrize("hidden", [(4, 4, 4), (4, 6, 5)])
def test_top_memory_at_t_minus_1_reaches_the_bottom_layer_at_t(name, hidden):
    """The zigzag (paper §3.1): M^0_t = M^L_{t-1} feeds the bottom layer."""
    model = build(name, hidden=hidden)
    first, second = two_frames()
    states = model.init_states(BATCH, first)
    with torch.no_grad():
        model.step(first, states)
    top_memory = states["m"]  # M^L_{t-1}
    assert top_memory.shape == (BATCH, hidden[-1], *model.grid)
    assert top_memory.abs().sum() > 0

    baseline = capture_bottom_hidden(model, second, copy_states(states))
    perturbed = copy_states(states)
    perturbed["m"] = top_memory + 0.5
    changed = capture_bottom_hidden(model, second, perturbed)
    assert not torch.allclose(baseline, changed)


@pytest.mark.parametrize("name", ZIGZAG)
def test_bottom_layer_receives_exactly_the_top_memory(name):
    """The M argument of the bottom cell at t is the top cell's M output at t-1."""
    model = build(name)
    first, second = two_frames()
    states = model.init_states(BATCH, first)
    top_outputs, bottom_inputs = [], []
    hooks = [
        model.cells[-1].register_forward_hook(lambda _m, _a, out: top_outputs.append(out)),
        model.cells[0].register_forward_pre_hook(lambda _m, args: bottom_inputs.append(args)),
    ]
    with torch.no_grad():
        model.step(first, states)
        model.step(second, states)
    for hook in hooks:
        hook.remove()
    # step 1: the bottom layer starts from a zero memory
    assert torch.equal(bottom_inputs[0][3], torch.zeros_like(bottom_inputs[0][3]))
    # step 2: M^0_t = M^L_{t-1}
    assert torch.equal(bottom_inputs[1][3], top_outputs[0][2])
    # and the step's exported memory is the top layer's M after the step
    assert torch.equal(states["m"], top_outputs[1][2])


def test_predrnn_m_bottom_hidden_input_is_the_top_hidden_at_t_minus_1():
    """Eq. 3: H^0_t = H^L_{t-1}, and the frame enters only the bottom layer."""
    model = build("predrnn_m")
    first, second = two_frames()
    states = model.init_states(BATCH, first)
    top_outputs, inputs = [], {i: [] for i in range(3)}
    hooks = [model.cells[-1].register_forward_hook(lambda _m, _a, out: top_outputs.append(out))]
    for layer, cell in enumerate(model.cells):
        hooks.append(cell.register_forward_pre_hook(
            lambda _m, args, layer=layer: inputs[layer].append(args)))
    with torch.no_grad():
        model.step(first, states)
        model.step(second, states)
    for hook in hooks:
        hook.remove()
    assert torch.equal(inputs[0][1][1], top_outputs[0][0])
    assert torch.equal(inputs[0][1][0], second)  # patch_size 1: the frame itself
    assert inputs[1][1][0] is None and inputs[2][1][0] is None


def test_convlstm_has_no_zigzag_memory_and_top_cell_state_stays_in_its_layer():
    """ConvLSTM: C^L_{t-1} does not reach the bottom layer at t; only the top layer."""
    model = build("convlstm")
    first, second = two_frames()
    states = model.init_states(BATCH, first)
    assert states["m"] is None
    with torch.no_grad():
        model.step(first, states)
    assert states["m"] is None

    baseline_states = copy_states(states)
    baseline_bottom = capture_bottom_hidden(model, second, baseline_states)
    perturbed = copy_states(states)
    perturbed["c"][-1] = states["c"][-1] + 0.5  # C^L_{t-1}
    perturbed_bottom = capture_bottom_hidden(model, second, perturbed)
    assert torch.equal(baseline_bottom, perturbed_bottom)
    # the perturbation is not inert: it changes the top layer at t
    assert not torch.allclose(baseline_states["h"][-1], perturbed["h"][-1])


def test_predrnn_top_memory_but_not_top_cell_state_reaches_the_bottom_layer():
    """PredRNN: C is horizontal (same layer), M zigzags from the top at t-1 to the bottom at t."""
    model = build("predrnn")
    first, second = two_frames()
    states = model.init_states(BATCH, first)
    with torch.no_grad():
        model.step(first, states)
    baseline = capture_bottom_hidden(model, second, copy_states(states))

    via_c = copy_states(states)
    via_c["c"][-1] = states["c"][-1] + 0.5
    assert torch.equal(capture_bottom_hidden(model, second, via_c), baseline)

    via_m = copy_states(states)
    via_m["m"] = states["m"] + 0.5
    assert not torch.allclose(capture_bottom_hidden(model, second, via_m), baseline)


@pytest.mark.parametrize("name", ZIGZAG)
def test_bottom_hidden_gradient_wrt_top_memory_is_nonzero(name):
    model = build(name)
    first, second = two_frames()
    states = model.init_states(BATCH, first)
    with torch.no_grad():
        model.step(first, states)
    top_memory = states["m"].clone().requires_grad_(True)
    states["m"] = top_memory
    bottom = []
    handle = model.cells[0].register_forward_hook(lambda _m, _a, out: bottom.append(out[0]))
    model.step(second, states)
    handle.remove()
    (grad,) = torch.autograd.grad(bottom[0].sum(), top_memory)
    assert grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# Closed loop and teacher forcing


@pytest.mark.parametrize("name", NAMES)
def test_closed_loop_feeds_back_its_own_predictions(name):
    """Prediction k equals a one-step prediction from the observed frames + predictions < k."""
    model = build(name)
    frames = clip()
    with torch.no_grad():
        predictions = model(frames, HORIZON)
        for k in range(HORIZON):
            one_step = model(torch.cat([frames, predictions[:, :k]], dim=1), 1)
            torch.testing.assert_close(one_step[:, 0], predictions[:, k])


@pytest.mark.parametrize("name", NAMES)
def test_samples_in_a_batch_are_independent(name):
    model = build(name)
    frames = clip()
    changed = frames.clone()
    changed[1] = clip(seed=7)[1]
    with torch.no_grad():
        a, b = model(frames, HORIZON), model(changed, HORIZON)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def target_gradients(model) -> list[Tensor]:
    """d predictions[:, k] / d targets for each k, with every step teacher-forced."""
    targets = clip(length=HORIZON, seed=6).requires_grad_(True)
    mask = torch.ones(BATCH, HORIZON - 1, dtype=torch.bool)
    predictions = model(clip(), HORIZON, targets=targets, teacher_mask=mask)
    return [torch.autograd.grad(predictions[:, k].sum(), targets, retain_graph=True)[0]
            for k in range(HORIZON)]


@pytest.mark.parametrize("name", NAMES)
def test_teacher_forcing_feeds_targets_k_into_prediction_k_plus_1(name):
    grads = target_gradients(build(name))
    for k, grad in enumerate(grads):
        # prediction k sees targets[:, :k] (truth of predictions 0..k-1; the earlier ones through
        # the recurrent state) and nothing later
        for j in range(HORIZON):
            used = grad[:, j].abs().sum() > 0
            assert used == (j < k), (k, j)


@pytest.mark.parametrize("name", NAMES)
def test_teacher_forced_output_equals_observing_the_truth(name):
    """With every step forced, prediction k is the one-step prediction after the observed frames
    followed by targets[:, :k]: the truth enters exactly like an observed frame."""
    model = build(name)
    frames, targets = clip(), clip(length=HORIZON, seed=6)
    mask = torch.ones(BATCH, HORIZON - 1, dtype=torch.bool)
    with torch.no_grad():
        forced = model(frames, HORIZON, targets=targets, teacher_mask=mask)
        # the last one: model(cat(frames, targets[:, :K-1]), 1) is the K-th forced prediction
        last = model(torch.cat([frames, targets[:, :HORIZON - 1]], dim=1), 1)
        torch.testing.assert_close(forced[:, -1], last[:, 0])
        for k in range(HORIZON):
            observed = model(torch.cat([frames, targets[:, :k]], dim=1), 1)
            torch.testing.assert_close(forced[:, k], observed[:, 0])
        # and differs from the closed loop (the model is not an identity of its input)
        assert not torch.allclose(forced[:, 1:], model(frames, HORIZON)[:, 1:])


@pytest.mark.parametrize("name", NAMES)
def test_teacher_mask_is_per_sample_and_per_step(name):
    model = build(name)
    frames, targets = clip(), clip(length=HORIZON, seed=6)
    mask = torch.zeros(BATCH, HORIZON - 1, dtype=torch.bool)
    mask[0, :] = True  # sample 0 fully teacher-forced, sample 1 closed loop
    mask[1, 1] = True  # ... except that sample 1 sees the truth after its 2nd prediction
    with torch.no_grad():
        mixed = model(frames, HORIZON, targets=targets, teacher_mask=mask)
        forced = model(frames, HORIZON, targets=targets,
                       teacher_mask=torch.ones_like(mask))
        free = model(frames, HORIZON)
        # sample 1: predictions 0, 1 closed loop; prediction 2 after the truth targets[1, 1]
        history = torch.cat([frames[1:], free[1:, :1], targets[1:, 1:2]], dim=1)
        after_truth = model(history, 1)
    torch.testing.assert_close(mixed[0], forced[0])
    torch.testing.assert_close(mixed[1, :2], free[1, :2])
    torch.testing.assert_close(mixed[1, 2], after_truth[0, 0])


# ---------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    # widths differ so that the memory adapters (1x1 convolutions) are in the graph too
    model = build(name, hidden=(4, 6, 4)).train()
    frames, targets = clip(), clip(length=HORIZON, seed=6)
    predictions = model(frames, HORIZON)
    loss = (predictions - targets).abs().mean() + (predictions - targets).pow(2).mean()
    loss.backward()
    parameters = dict(model.named_parameters())
    if name in ZIGZAG:
        assert any(n.startswith("memory_adapters") for n in parameters)
    for n, parameter in parameters.items():
        assert parameter.grad is not None, n
        assert parameter.grad.abs().sum() > 0, n


# ---------------------------------------------------------------------------------------------
# Scheduled sampling (not in the paper: an option as in the authors' released code, 1.0, -2e-5
# per iteration, 0 from 50,000; docs/models.md#options, `scheduled_sampling`)


def test_scheduled_sampling_defaults_follow_the_authors_code():
    schedule = ScheduledSampling()
    assert schedule.probability(0) == 1.0
    for step in (1, 1000, 25_000, 49_999):
        assert schedule.probability(step) == pytest.approx(1.0 - 2e-5 * step)
    assert schedule.probability(49_999) > 0
    assert schedule.probability(50_000) == 0.0
    assert schedule.probability(80_000) == 0.0


def test_scheduled_sampling_decays_by_decay_per_step_and_never_goes_negative():
    schedule = ScheduledSampling(start=1.0, decay=0.1, stop=100)
    values = [schedule.probability(step) for step in range(120)]
    assert values[0] == 1.0
    for step in range(1, 10):
        assert values[step - 1] - values[step] == pytest.approx(0.1)
    assert all(v >= 0.0 for v in values)
    assert all(v == 0.0 for v in values[10:])
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_scheduled_sampling_stop_cuts_off_early():
    schedule = ScheduledSampling(start=1.0, decay=0.01, stop=20)
    assert schedule.probability(19) == pytest.approx(0.81)
    assert schedule.probability(20) == 0.0


@pytest.mark.parametrize("step", [0, 30, 65, 100])
def test_scheduled_sampling_masks(step):
    schedule = ScheduledSampling(start=1.0, decay=0.01, stop=100)
    generator = torch.Generator().manual_seed(step)
    mask = schedule.mask(step, batch=500, horizon=11, generator=generator)
    assert mask.shape == (500, 10)
    assert mask.dtype == torch.bool
    p = schedule.probability(step)
    # 5000 Bernoulli draws: 5 standard deviations at most 0.036
    assert abs(mask.double().mean().item() - p) < 0.036
    if p in (0.0, 1.0):
        assert mask.all() if p == 1.0 else not mask.any()


def test_scheduled_sampling_mask_fits_the_predictor():
    schedule = ScheduledSampling(start=1.0, decay=0.02, stop=100)
    mask = schedule.mask(25, batch=BATCH, horizon=HORIZON)
    with torch.no_grad():
        out = build("predrnn")(clip(), HORIZON, targets=clip(length=HORIZON), teacher_mask=mask)
    assert out.shape == (BATCH, HORIZON, *FRAME)


@pytest.mark.parametrize(("start", "decay", "stop", "named"), [
    (1.5, 0.1, 10, "start"), (-0.1, 0.1, 10, "start"), (1.0, -1.0, 10, "decay"),
    (1.0, 0.1, -1, "stop")])
def test_scheduled_sampling_rejects_bad_arguments_naming_them(start, decay, stop, named):
    with pytest.raises(ValueError, match=rf"^{named}: must .*; got -?[0-9.]+$"):
        ScheduledSampling(start=start, decay=decay, stop=stop)
