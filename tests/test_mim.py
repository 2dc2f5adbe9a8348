"""MIM (Memory In Memory, Wang et al., CVPR 2019; docs/models.md#mim): outputs and gradients equal
to OpenSTL's implementation (the fixture of tests/reference/make_mim.py, loaded offline), one MIM
block step against its equations written out, the routing of the differences, the closed loop,
options and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from predlearn.errors import OptionValueError
from predlearn.predictor import build_predictor
from predlearn.zoo.cells.mim_block import MIMBlock
from predlearn.zoo.mim import MIM

FIXTURE = Path(__file__).parent / "reference" / "mim.pt"
ATOL = 1e-5
RELATIVE = 1e-4  # the gradients of a mean are small: also within this share of the largest


def rand(*shape: int, seed: int = 1) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (the peepholes start at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.rand(parameter.shape, generator=generator) * 0.8 - 0.4)
    return model


# ---------------------------------------------------------------------------------------------
# Against OpenSTL (openstl/models/mim_model.py, its closed-loop test path), float32


@pytest.mark.parametrize("variant", ["plain", "layer_norm"])
def test_outputs_and_gradients_equal_openstls(fixture, variant):
    """Every next-frame prediction (frames 2 .. J + K, which OpenSTL's MSE covers) and the
    gradients of mean(prediction^2) w.r.t. every parameter."""
    case = fixture if variant == "plain" else fixture["layer_norm"]
    model = MIM(**case["config"])
    model.load_state_dict(case["state_dict"], strict=True)
    outputs = model.rollout(case["frames"], case["horizon"], every_frame=True).outputs
    torch.testing.assert_close(outputs, case["outputs"], rtol=0, atol=ATOL)
    outputs.square().mean().backward()
    assert set(case["grads"]) == {name for name, _ in model.named_parameters()}
    largest = max(g.abs().max() for g in case["grads"].values())
    for name, parameter in model.named_parameters():
        expected = case["grads"][name]
        torch.testing.assert_close(parameter.grad, expected, rtol=0, atol=ATOL,
                                   msg=lambda m, name=name: f"{name}: {m}")
        assert (parameter.grad - expected).abs().max() <= RELATIVE * largest, name


# ---------------------------------------------------------------------------------------------
# The MIM block against its equations (OpenSTL's form; docs/models.md#mim), float64


def conv(weight: Tensor, x: Tensor, chunks: int) -> tuple[Tensor, ...]:
    return torch.chunk(F.conv2d(x, weight, padding=weight.shape[-1] // 2), chunks, dim=1)


def peephole_lstm(cell, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """MIM-N and MIM-S: a ConvLSTM with Hadamard peepholes, forget bias 1, no biases."""
    xg, xi, xf, xo = conv(cell.conv_x.weight, x, 4)
    hg, hi, hf, ho = conv(cell.conv_h.weight, h, 4)
    i = torch.sigmoid(xi + hi + cell.w_ci * c)
    f = torch.sigmoid(xf + hf + cell.w_cf * c + 1.0)
    c_new = f * c + i * torch.tanh(xg + hg)
    o = torch.sigmoid(xo + ho + cell.w_co * c_new)
    return o * torch.tanh(c_new), c_new


def test_block_step_follows_the_equations():
    block = randomised(MIMBlock(3, 4, kernel_size=3, spatial_size=(6, 6))).double()
    x, change = rand(2, 3, 6, 6, seed=1).double(), rand(2, 3, 6, 6, seed=2).double()
    h, c, m, d, n, s = (rand(2, 4, 6, 6, seed=k).double() - 0.5 for k in range(3, 9))
    h_new, c_new, m_new, (d_new, n_new), s_new = block(x, h, c, m, change, (d, n), s)

    d_ref, n_ref = peephole_lstm(block.nonstationary, change, d, n)  # MIM-N: D_t, N_t
    t_ref, s_ref = peephole_lstm(block.stationary, d_ref, c, s)  # MIM-S: T_t, S_t
    xg, xi, xf, xo = conv(block.conv_x.weight, x, 4)  # shared by both memories
    hg, hi, ho = conv(block.conv_h.weight, h, 3)
    mg, mi, mf, mo = conv(block.conv_m.weight, m, 4)
    c_ref = t_ref + torch.sigmoid(xi + hi) * torch.tanh(xg + hg)
    m_ref = (torch.sigmoid(xf + mf + 1.0) * m
             + torch.sigmoid(xi + mi) * torch.tanh(xg + mg))
    o = torch.sigmoid(xo + ho + mo)  # the old M, no C term (OpenSTL)
    h_ref = o * torch.tanh(F.conv2d(torch.cat([c_ref, m_ref], 1), block.conv_1x1.weight))
    for ours, ref in [(d_new, d_ref), (n_new, n_ref), (s_new, s_ref), (c_new, c_ref),
                      (m_new, m_ref), (h_new, h_ref)]:
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_without_a_difference_mim_n_keeps_its_state():
    block = randomised(MIMBlock(4, 4, kernel_size=3, spatial_size=(6, 6))).double()
    states = [rand(1, 4, 6, 6, seed=k).double() for k in range(6)]
    x, h, c, m, d, n = states
    _, _, _, (d_new, n_new), _ = block(x, h, c, m, None, (d, n), torch.zeros_like(d))
    assert torch.equal(d_new, d) and torch.equal(n_new, n)


# ---------------------------------------------------------------------------------------------
# The model


def tiny(**options) -> MIM:
    config = {"frame_size": (16, 16), "hidden_channels": [4, 4, 4], "kernel_size": 3,
              "patch_size": 4, **options}
    return randomised(MIM(**config))


def test_differences_start_at_the_second_step_and_cascade_up():
    model = tiny()
    frames = rand(2, 3, 1, 16, 16)
    state = model.initial_state(frames)
    _, state = model.transition(frames[:, 0], state)
    assert all(not d.any() and not n.any() for d, n in state["n"])  # no difference yet
    before = state["h"][0]
    _, after = model.transition(frames[:, 1], state)
    change = after["h"][0] - before  # H^1_t - H^1_{t-1}
    zeros = torch.zeros_like(change)
    first = model.blocks[0].nonstationary(change, zeros, zeros)
    second = model.blocks[1].nonstationary(first[0], zeros, zeros)  # fed the D below
    for ours, ref in zip(after["n"], [first, second], strict=True):
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert after["step"] == 2


def test_closed_loop_feeds_back_predictions():
    model = tiny()
    frames = rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        outputs = model(frames, 3)
        state = model.initial_state(frames)
        for t in range(3):
            prediction, state = model.transition(frames[:, t], state)
        expected = [prediction]
        for _ in range(2):
            prediction, state = model.transition(prediction, state)
            expected.append(prediction)
    assert outputs.shape == (2, 3, 1, 16, 16)
    torch.testing.assert_close(outputs, torch.stack(expected, 1), rtol=0, atol=1e-6)


def test_each_sequence_starts_afresh():
    """OpenSTL keeps S on the module between batches; here the states belong to the sequence:
    the same frames give the same predictions, alone or beside others."""
    model = tiny()
    frames = rand(3, 3, 1, 16, 16)
    with torch.no_grad():
        first, again, alone = model(frames, 2), model(frames, 2), model(frames[1:2], 2)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    torch.testing.assert_close(first[1:2], alone, rtol=0, atol=1e-6)


def test_detach_stationary_changes_the_gradients_only():
    frames = rand(2, 3, 1, 16, 16)
    results = []
    for detach in (True, False):
        model = tiny(detach_stationary=detach)
        outputs = model(frames, 3)
        outputs.square().mean().backward()
        results.append((outputs.detach(), model.blocks[0].stationary.w_cf.grad.clone()))
    (out_cut, grad_cut), (out_full, grad_full) = results
    torch.testing.assert_close(out_cut, out_full, rtol=0, atol=0)
    assert not torch.allclose(grad_cut, grad_full)  # S carries gradient across steps only then


def test_parameters_at_openstls_moving_mnist_set_up():
    """38,043,648 in OpenSTL (its 38.0M); less its MIM-Ns' unused 1 x 1 convolutions."""
    model = MIM()
    unused = 3 * 2 * 128 * 128
    assert sum(p.numel() for p in model.parameters()) == 38_043_648 - unused


def test_tiny_config_builds_and_rebuilds_from_its_config():
    model = MIM(**MIM.tiny_config())
    with torch.no_grad():
        assert model(rand(1, 2, 1, 64, 64), 2).shape == (1, 2, 1, 64, 64)
    again = build_predictor(model.config)
    assert isinstance(again, MIM) and again.config == model.config


@pytest.mark.parametrize(("options", "name"), [
    ({"hidden_channels": [8]}, "hidden_channels"),
    ({"hidden_channels": [8, 4]}, "hidden_channels"),
    ({"hidden_channels": [8, 0]}, "hidden_channels"),
    ({"patch_size": 3}, "patch_size"),
    ({"kernel_size": 4}, "kernel_size"),
    ({"frame_size": [16]}, "frame_size"),
    ({"frame_channels": 0}, "frame_channels"),
])
def test_options_are_checked(options, name):
    with pytest.raises(OptionValueError) as info:
        MIM(**{"frame_size": (16, 16), "hidden_channels": [4, 4], **options})
    assert info.value.option == name
