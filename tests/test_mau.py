"""MAU (Motion-Aware Unit, Chang et al., NeurIPS 2021; docs/models.md#mau): outputs and
gradients equal to OpenSTL's implementation (the fixture of tests/reference/make_mau.py, loaded
offline), one MAU cell step against its equations written out, the window of past states the
state carries, the closed loop, options and their errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from support import assert_gradients_equal
from torch import Tensor

from predlearn.errors import OptionValueError
from predlearn.predictor import build_predictor
from predlearn.zoo.cells.mau_cell import MAUCell
from predlearn.zoo.mau import MAU

ROOT = Path(__file__).parents[1]
FIXTURE = ROOT / "tests" / "reference" / "mau.pt"
ATOL = 1e-5


def rand(*shape: int, seed: int = 1) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


# ---------------------------------------------------------------------------------------------
# Against OpenSTL (openstl/models/mau_model.py, its closed-loop test path), float32


@pytest.mark.parametrize("variant", ["normal", "recall"])
def test_outputs_and_gradients_equal_openstls(fixture, variant):
    """Every next-frame prediction (frames 2 .. J + K, which OpenSTL's MSE covers) and the
    gradients of mean(prediction^2) w.r.t. every parameter; ``recall``: 2-channel frames in
    2 x 2 patches, residual cells and the encoder-decoder skips."""
    case = fixture if variant == "normal" else fixture["recall"]
    model = MAU(**case["config"])
    model.load_state_dict(case["state_dict"], strict=True)
    outputs = model.rollout(case["frames"], case["horizon"], every_frame=True).outputs
    torch.testing.assert_close(outputs, case["outputs"], rtol=0, atol=ATOL)
    outputs.square().mean().backward()
    assert_gradients_equal(model, case["grads"], ATOL)


# ---------------------------------------------------------------------------------------------
# The MAU cell against its equations (docs/models.md#mau), float64


def conv_norm(module: torch.nn.Sequential, x: Tensor) -> Tensor:
    conv, norm = module[0], module[1]
    y = F.conv2d(x, conv.weight, conv.bias, padding=conv.weight.shape[-1] // 2)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    var = y.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    return (y - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


@pytest.mark.parametrize("residual", [False, True])
def test_the_cell_follows_its_equations(residual):
    torch.manual_seed(0)
    channels, size, tau = 3, (4, 5), 3
    cell = MAUCell(channels, 3, size, tau, residual=residual).double()
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    t, s = rand(2, channels, *size, seed=1), rand(2, channels, *size, seed=2)
    t_past = [rand(2, channels, *size, seed=10 + j) for j in range(tau)]
    s_past = [rand(2, channels, *size, seed=20 + j) for j in range(tau)]

    query = conv_norm(cell.spatial_query, s)
    d = channels * size[0] * size[1]
    scores = torch.stack([(s_j * query).flatten(1).sum(1) / math.sqrt(d) for s_j in s_past])
    alpha = scores.exp() / scores.exp().sum(0)  # (tau, B): softmax over the window
    attended = sum(alpha[j].view(-1, 1, 1, 1) * t_past[j] for j in range(tau))
    u_f = torch.sigmoid(conv_norm(cell.motion_gate, t))
    motion = u_f * t + (1 - u_f) * attended  # T^AMI
    t_g, t_t, t_s = torch.chunk(conv_norm(cell.temporal_fusion, motion), 3, dim=1)
    s_g, s_t, s_s = torch.chunk(conv_norm(cell.spatial_fusion, s), 3, dim=1)
    t_new = torch.sigmoid(t_g) * t_t + (1 - torch.sigmoid(t_g)) * s_t
    s_new = torch.sigmoid(s_g) * s_s + (1 - torch.sigmoid(s_g)) * t_s + (s if residual else 0)

    with torch.no_grad():
        torch.testing.assert_close(cell.attention(t, s, t_past, s_past), motion)
        got_t, got_s = cell(t, s, t_past, s_past)
    torch.testing.assert_close(got_t, t_new)
    torch.testing.assert_close(got_s, s_new)
    with pytest.raises(ValueError, match="tau=3"):
        cell(t, s, t_past[1:], s_past)


# ---------------------------------------------------------------------------------------------
# The model: state, closed loop, shapes


def tiny(**kwargs) -> MAU:
    torch.manual_seed(0)
    return MAU(frame_size=(16, 16), **{**MAU.tiny_config(), **kwargs}).double().eval()


def test_the_state_keeps_the_last_tau_temporal_states_and_spatial_inputs():
    model = tiny(tau=2)
    frames = rand(2, 3, 1, 16, 16)
    state = model.initial_state(frames)
    assert all(len(w) == 2 and not w[0].any() for w in state["t_past"] + state["s_past"])
    history = []
    with torch.no_grad():
        for step in range(3):
            prediction, state = model.transition(frames[:, step], state, predict=step == 2)
            history.append(state)
    assert prediction.shape == (2, 1, 16, 16)
    last, before = history[-1], history[-2]
    for layer in range(len(model.cells)):
        assert len(last["t_past"][layer]) == len(last["s_past"][layer]) == 2
        assert last["t_past"][layer][-1] is last["t"][layer]  # the newest T joins the window
        assert last["t_past"][layer][0] is before["t"][layer]  # the oldest one left it
    bottom = model.encode_frame(frames[:, 2])[-1]  # the bottom layer's spatial input
    torch.testing.assert_close(last["s_past"][0][-1], bottom)
    assert model.encode_frame(frames[:, 0])[-1].shape[-2:] == model.grid == (4, 4)


def test_closed_loop_shapes_and_its_own_predictions_fed_back():
    model = tiny(model_mode="recall", cell_mode="residual")
    frames = rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        free = model(frames, 4)
        every = model.rollout(frames, 4, every_frame=True).outputs
        forced = model(frames, 4, targets=free.clone(),
                       teacher_mask=torch.ones(2, 3, dtype=torch.bool))
    assert free.shape == (2, 4, 1, 16, 16) and every.shape == (2, 6, 1, 16, 16)
    torch.testing.assert_close(every[:, 2:], free)
    torch.testing.assert_close(forced, free)
    assert model.rollout(frames, 4).auxiliary_loss is None
    assert model.prediction_loss(free, free) is None


def test_tiny_config_trains_and_the_defaults_are_openstls():
    model = MAU(**MAU.tiny_config())
    frames = torch.rand(2, 3, 1, 64, 64)
    model(frames, 2).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    default = MAU()
    # OpenSTL reports 4.5M (its unused merge and conv_last_sr, 8,259 more, left out here)
    assert sum(p.numel() for p in default.parameters()) == 4_475_329
    assert default.grid == (16, 16) and len(default.encoders) == 3 and len(default.decoders) == 2
    config = yaml.safe_load((ROOT / "configs" / "mmnist-openstl" / "mau.yaml").read_text())
    built = build_predictor(config["model"]["predictor"])
    assert isinstance(built, MAU)
    assert built.config["init_args"] == default.config["init_args"]


@pytest.mark.parametrize(("option", "value"), [
    ("hidden_channels", [8, 4]),
    ("hidden_channels", []),
    ("sr_size", 3),
    ("sr_size", 0),
    ("frame_size", [20, 20]),  # not divisible by patch_size * sr_size = 8
    ("kernel_size", 4),
    ("tau", 0),
    ("patch_size", 0),
    ("cell_mode", "recall"),
    ("model_mode", "residual"),
])
def test_option_errors_name_the_argument(option, value):
    kwargs = {"patch_size": 2, "sr_size": 4, option: value}
    with pytest.raises(OptionValueError) as error:
        MAU(**kwargs)
    assert error.value.option == option
