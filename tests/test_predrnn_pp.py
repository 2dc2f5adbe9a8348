"""PredRNN++ (Wang et al., ICML 2018; docs/models.md#predrnn): outputs and gradients equal to
OpenSTL's implementation (the fixture of tests/reference/make_predrnn_pp.py, loaded offline), the
Gradient Highway Unit against eq. 2, the highway's place in the stack, options and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from support import assert_gradients_equal
from torch import Tensor

from predlearn.errors import OptionValueError
from predlearn.predictor import build_predictor
from predlearn.zoo.cells.causal_lstm import CausalLSTMCell
from predlearn.zoo.predrnn_pp import GradientHighwayUnit, PredRNNpp

FIXTURE = Path(__file__).parent / "reference" / "predrnn_pp.pt"
ATOL = 1e-5


def rand(*shape: int, seed: int = 1) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def loaded(fixture: dict) -> PredRNNpp:
    model = PredRNNpp(**fixture["config"])
    model.load_state_dict(fixture["state_dict"], strict=True)
    return model


# ---------------------------------------------------------------------------------------------
# Against OpenSTL (openstl/models/predrnnpp_model.py, its closed-loop test path), float32


def test_outputs_and_gradients_equal_openstls(fixture):
    model = loaded(fixture)
    outputs = model(fixture["frames"], fixture["horizon"])
    torch.testing.assert_close(outputs, fixture["outputs"], rtol=0, atol=ATOL)
    outputs.square().sum().backward()
    assert_gradients_equal(model, fixture["grads"], ATOL)


def test_every_next_frame_prediction_equals_openstls(fixture):
    """OpenSTL predicts frames 2 .. J + K (its MSE covers them all): ``every_frame``."""
    rollout = loaded(fixture).rollout(fixture["frames"], fixture["horizon"], every_frame=True)
    torch.testing.assert_close(rollout.outputs, fixture["every_frame_outputs"], rtol=0, atol=ATOL)
    assert rollout.auxiliary_loss is None


def test_layer_normalised_cell_equals_openstls(fixture):
    case = fixture["layer_norm_cell"]
    cell = CausalLSTMCell(**case["options"])
    cell.load_state_dict(case["state_dict"], strict=True)
    outputs = cell(*case["inputs"])
    for ours, theirs in zip(outputs, case["outputs"]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=ATOL)
    sum(o.square().mean() for o in outputs).backward()
    assert_gradients_equal(cell, case["grads"], ATOL, every_parameter=False)


# ---------------------------------------------------------------------------------------------
# The Gradient Highway Unit (eq. 2) and its place between layers 1 and 2


def test_ghu_matches_equation_2():
    torch.manual_seed(0)
    unit = GradientHighwayUnit(3, 3, (5, 5)).double()
    with torch.no_grad():
        for p in unit.parameters():
            p.normal_(0, 0.5)
    x, z = rand(2, 3, 5, 5, seed=1), rand(2, 3, 5, 5, seed=2)
    wx, wz = unit.conv_x.weight, unit.conv_z.weight
    p = torch.tanh(F.conv2d(x, wx[:3], padding=1) + F.conv2d(z, wz[:3], padding=1))
    s = torch.sigmoid(F.conv2d(x, wx[3:], padding=1) + F.conv2d(z, wz[3:], padding=1))
    torch.testing.assert_close(unit(x, z), s * p + (1 - s) * z)


def test_ghu_starts_with_openstls_small_uniform_weights():
    unit = GradientHighwayUnit(8, 5, (4, 4))
    for conv in (unit.conv_x, unit.conv_z):
        assert conv.bias is None and conv.weight.abs().max() <= 1e-3


def test_the_second_layer_reads_the_highway_and_the_third_the_second_layer():
    """Layer 2's input is Z_t (what the GHU returns), layer 3's is H^2_t."""
    torch.manual_seed(0)
    model = PredRNNpp(frame_size=(8, 8), hidden_channels=[3, 3, 3], kernel_size=3, patch_size=2)
    seen: dict[int, Tensor] = {}
    for layer, cell in enumerate(model.cells):
        cell.register_forward_hook(lambda m, args, out, layer=layer: seen.update(
            {layer: args[0], 10 + layer: out[0]}))
    highway: list[Tensor] = []
    model.highway.register_forward_hook(lambda m, args, out: highway.append(out))
    with torch.no_grad():
        model(torch.rand(1, 2, 1, 8, 8), 1)
    assert torch.equal(seen[1], highway[-1]) and torch.equal(seen[2], seen[11])


def test_highway_state_carries_over_time():
    """Z_{t-1} enters the GHU: a second step's Z differs from one computed from zeros."""
    torch.manual_seed(0)
    model = PredRNNpp(frame_size=(8, 8), hidden_channels=[3, 3], kernel_size=3, patch_size=2)
    state = model.initial_state(torch.rand(1, 2, 1, 8, 8))
    assert state["z"].shape == (1, 3, 4, 4) and not state["z"].any()
    with torch.no_grad():
        for _ in range(2):
            _, state = model.transition(torch.rand(1, 1, 8, 8), state)
    assert state["z"].abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# The model's own behaviour: shapes, closed loop, options


def test_shapes_gradients_and_closed_loop():
    torch.manual_seed(0)
    model = PredRNNpp(**PredRNNpp.tiny_config()).double()
    frames = rand(2, 3, 1, 64, 64)
    outputs = model(frames, 4)
    assert outputs.shape == (2, 4, 1, 64, 64)
    outputs.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        free = model(frames, 4)
        forced = model(frames, 4, targets=free.clone(), teacher_mask=torch.ones(2, 3, dtype=bool))
    torch.testing.assert_close(forced, free)


def test_the_openstl_setup_has_openstls_parameters_less_its_unused_convolution():
    """OpenSTL's 38,584,320 (its table: 38.6M) less 4 x 819,200 of ``conv_o``, built in every
    cell but never used in its forward."""
    model = PredRNNpp()
    assert sum(p.numel() for p in model.parameters()) == 38_584_320 - 4 * 819_200
    assert model.head.bias is None and model.patch_size == 4 and model.cells[0].forget_bias == 1.0


def test_forget_bias_and_layer_norm_reach_every_cell_and_the_highway():
    torch.manual_seed(0)
    model = PredRNNpp(frame_size=(8, 8), hidden_channels=[3, 3], kernel_size=3, patch_size=2,
                      layer_norm=True, cell_options={"forget_bias": 0.0})
    assert all(cell.norms is not None and cell.forget_bias == 0.0 for cell in model.cells)
    assert model.highway.norms is not None
    assert model(torch.rand(1, 2, 1, 8, 8), 2).shape == (1, 2, 1, 8, 8)


def test_checkpointing_channels_last_and_unequal_widths():
    torch.manual_seed(0)
    options = {"frame_size": (8, 8), "hidden_channels": [4, 3, 2], "kernel_size": 3,
               "patch_size": 2}
    plain = PredRNNpp(**options)
    frames = torch.rand(2, 2, 1, 8, 8)
    for extra in ({"checkpoint_steps": True}, {"channels_last": True}):
        other = PredRNNpp(**options, **extra)
        other.load_state_dict(plain.state_dict())
        torch.testing.assert_close(other.train()(frames, 3), plain.train()(frames, 3))
    other = PredRNNpp(**options, checkpoint_steps=True)
    other.load_state_dict(plain.state_dict())
    other.train()(frames, 3).sum().backward()
    plain.zero_grad()
    plain(frames, 3).sum().backward()
    for (name, a), b in zip(other.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=lambda m, name=name: f"{name}: {m}")


def test_config_rebuilds_the_model():
    model = PredRNNpp(**PredRNNpp.tiny_config())
    again = build_predictor(model.config)
    assert type(again) is PredRNNpp and again.config == model.config
    again.load_state_dict(model.state_dict())


@pytest.mark.parametrize(("options", "option"), [
    ({"hidden_channels": [4]}, "hidden_channels"),
    ({"cell_options": {"layer_norm": True}}, "cell_options"),
    ({"cell": "st_lstm"}, "cell"),
    ({"kernel_size": 4}, "kernel_size"),
    ({"patch_size": 3}, "patch_size"),
    ({"frame_channels": 0}, "frame_channels"),
])
def test_refused_options_are_named(options, option):
    arguments = {"hidden_channels": [2, 2], "kernel_size": 3, **options}
    with pytest.raises(OptionValueError) as info:
        PredRNNpp(frame_size=(8, 8), **arguments)
    assert info.value.option == option
