"""E3D-LSTM (Wang et al., ICLR 2019; docs/models.md#e3d-lstm): outputs and gradients equal to
OpenSTL's implementation (the fixture of tests/reference/make_e3d_lstm.py, loaded offline), the
paper variant's cell against its equations written out here, the state the shared rollout
carries (input window, C history, zigzag M), options and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from support import assert_gradients_equal
from torch import Tensor

from predlearn.errors import OptionValueError
from predlearn.predictor import build_predictor
from predlearn.zoo.cells.eidetic_lstm import EideticLSTMCell
from predlearn.zoo.e3d_lstm import E3DLSTM

FIXTURE = Path(__file__).parent / "reference" / "e3d_lstm.pt"
ATOL = 1e-5
SMALL = {"frame_size": (16, 16), "hidden_channels": [3, 3], "kernel_size": 3, "patch_size": 4}


def rand(*shape: int, seed: int = 1) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def loaded(fixture: dict) -> E3DLSTM:
    model = E3DLSTM(**fixture["config"])
    model.load_state_dict(fixture["state_dict"], strict=True)
    return model


def small(seed: int = 0, **options) -> E3DLSTM:
    torch.manual_seed(seed)
    return E3DLSTM(**{**SMALL, **options}).double()


# ---------------------------------------------------------------------------------------------
# Against OpenSTL (openstl/models/e3dlstm_model.py, its closed-loop test path), float32


def test_outputs_and_gradients_equal_openstls(fixture):
    model = loaded(fixture)
    assert fixture["config"]["variant"] == "openstl"
    outputs = model(fixture["frames"], fixture["horizon"])
    torch.testing.assert_close(outputs, fixture["outputs"], rtol=0, atol=ATOL)
    outputs.square().mean().backward()
    assert_gradients_equal(model, fixture["grads"], ATOL)


def test_every_next_frame_prediction_equals_openstls(fixture):
    """OpenSTL predicts frames 2 .. J + K (its loss covers them all): ``every_frame``."""
    rollout = loaded(fixture).rollout(fixture["frames"], fixture["horizon"], every_frame=True)
    torch.testing.assert_close(rollout.outputs, fixture["every_frame_outputs"], rtol=0, atol=ATOL)
    assert rollout.auxiliary_loss is None


def test_layer_normalised_cell_equals_openstls(fixture):
    case = fixture["layer_norm_cell"]
    cell = EideticLSTMCell(**case["options"])
    cell.load_state_dict(case["state_dict"], strict=True)
    h, c, _ = cell(*case["inputs"], case["history"])
    for ours, theirs in zip((h, c), case["outputs"]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=ATOL)
    (h.square().mean() + c.square().mean()).backward()
    assert_gradients_equal(cell, case["grads"], ATOL, every_parameter=False)


def test_openstls_memory_never_moves_and_its_m_weights_learn_nothing(fixture):
    """OpenSTL's cells return the M they were given: every layer sees the initial zeros, so the
    M-convolutions' gradients are zero (the stored reference gradients too)."""
    assert all(fixture["grads"][f"cells.{layer}.conv_m.conv.weight"].abs().max() == 0
               for layer in range(len(fixture["config"]["hidden_channels"])))
    model = small(variant="openstl")
    frames = rand(1, 2, 1, 16, 16)
    state = model.initial_state(frames)
    _, state = model.transition(frames[:, 0], state)
    out, _ = model.transition(frames[:, 1], {**state})
    noisy, _ = model.transition(frames[:, 1], {**state, "m": state["m"] + rand(*state["m"].shape)})
    assert torch.equal(out, noisy)


# ---------------------------------------------------------------------------------------------
# The paper variant's cell, against the equations (paper §3.2) written out gate by gate


def window_conv(module: torch.nn.Module, v: Tensor, gate: int, width: int) -> Tensor:
    """Gate ``gate`` of a stacked convolution: no temporal padding, its one output step repeated
    over the window of 2."""
    conv = module.conv
    weight = conv.weight[gate * width:(gate + 1) * width]
    bias = None if conv.bias is None else conv.bias[gate * width:(gate + 1) * width]
    out = F.conv3d(v, weight, bias, padding=(0, weight.shape[3] // 2, weight.shape[4] // 2))
    return out.expand(-1, -1, v.shape[2], -1, -1)


def rows(v: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B, T*H*W, C): one row per position."""
    return v.permute(0, 2, 3, 4, 1).flatten(1, 3)


def equation_step(cell: EideticLSTMCell, x, h, c, m, history):
    n = cell.hidden_channels

    def gate(source: str, value: Tensor, index: int) -> Tensor:
        return window_conv(getattr(cell, f"conv_{source}"), value, index, n)

    g = torch.tanh(gate("x", x, 0) + gate("h", h, 0))
    i = torch.sigmoid(gate("x", x, 1) + gate("h", h, 1))
    r = torch.sigmoid(gate("x", x, 2) + gate("h", h, 2))
    memory = torch.cat([rows(past) for past in history], dim=1)
    weights = torch.softmax(rows(r) @ memory.transpose(1, 2), dim=-1)
    recalled = (weights @ memory).unflatten(1, r.shape[2:]).permute(0, 4, 1, 2, 3)
    c_new = i * g + F.layer_norm(c + recalled, c.shape[1:], cell.norm_c.weight, cell.norm_c.bias)
    g_m = torch.tanh(gate("x", x, 3) + gate("m", m, 0))
    i_m = torch.sigmoid(gate("x", x, 4) + gate("m", m, 1))
    f_m = torch.sigmoid(gate("x", x, 5) + gate("m", m, 2) + 1.0)
    m_new = i_m * g_m + f_m * m
    o = torch.sigmoid(gate("x", x, 6) + gate("h", h, 3) + gate("co", c_new, 0)
                      + gate("mo", m_new, 0))
    h_new = o * torch.tanh(F.conv3d(torch.cat([c_new, m_new], dim=1), cell.conv_1x1.conv.weight))
    return h_new, c_new, m_new


def test_paper_cell_matches_the_equations():
    torch.manual_seed(0)
    cell = EideticLSTMCell(5, 4, window_length=2, kernel_size=3, spatial_size=(4, 4)).double()
    with torch.no_grad():
        cell.conv_x.conv.bias.normal_()
        cell.norm_c.weight.normal_()
        cell.norm_c.bias.normal_()
    x = rand(2, 5, 2, 4, 4, seed=1)
    h, c, m = (rand(2, 4, 2, 4, 4, seed=s) for s in (2, 3, 4))
    history = [rand(2, 4, 2, 4, 4, seed=s) for s in (5, 6, 7)]
    for ours, expected in zip(cell(x, h, c, m, history), equation_step(cell, x, h, c, m, history)):
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


def test_openstl_cell_differs_in_gates_rows_and_biases():
    paper = EideticLSTMCell(5, 4, kernel_size=3, spatial_size=(4, 4))
    openstl = EideticLSTMCell(5, 4, kernel_size=3, spatial_size=(4, 4), variant="openstl")
    assert paper.conv_x.conv.bias is not None and openstl.conv_x.conv.bias is None
    assert paper.conv_m.conv.out_channels == 12 and openstl.conv_m.conv.out_channels == 16


# ---------------------------------------------------------------------------------------------
# The state the shared rollout carries


def test_the_state_holds_the_input_window_and_the_c_history():
    model = small(recall_window=None)
    frames = rand(2, 4, 1, 16, 16)
    state = model.initial_state(frames)
    assert [w.abs().max().item() for w in state["window"]] == [0.0]  # zeros before frame 1
    for t in range(4):
        _, state = model.transition(frames[:, t], state)
        assert len(state["window"]) == 1 and torch.equal(state["window"][0],
                                                         model.to_grid(frames[:, t]))
        assert [len(history) for history in state["history"]] == [t + 1, t + 1]
        assert state["h"][0].shape == (2, 3, 2, 4, 4)  # (B, width, window, H/p, W/p)


def test_the_prediction_reads_the_previous_input_through_the_window():
    model = small()
    frames = rand(1, 2, 1, 16, 16)
    state = model.initial_state(frames)
    out, _ = model.transition(frames[:, 1], state)
    other, _ = model.transition(frames[:, 1], {**state, "window": [model.to_grid(frames[:, 0])]})
    assert not torch.allclose(out, other)


def test_recall_window_keeps_the_last_states_only():
    frames = rand(2, 4, 1, 16, 16)
    capped = small(recall_window=2)
    state = capped.initial_state(frames)
    for t in range(4):
        _, state = capped.transition(frames[:, t], state)
        assert [len(history) for history in state["history"]] == [min(t + 1, 2)] * 2
    every = small()
    with torch.no_grad():
        assert not torch.allclose(capped(frames, 3), every(frames, 3))
        assert torch.equal(small(recall_window=6)(frames, 3), every(frames, 3))


def test_zigzag_memory_goes_from_the_top_layer_to_the_bottom_at_the_next_step():
    model = small()
    frames = rand(1, 2, 1, 16, 16)
    state = model.initial_state(frames)
    _, state = model.transition(frames[:, 0], state)
    _, clean = model.transition(frames[:, 1], {**state})
    _, noisy = model.transition(frames[:, 1], {**state, "m": state["m"] + 1})
    assert not torch.allclose(clean["h"][0], noisy["h"][0])  # the bottom layer at t
    assert not torch.equal(state["m"], torch.zeros_like(state["m"]))  # a new M was kept


def test_closed_loop_feeds_back_predictions():
    model = small()
    frames = rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        outputs = model(frames, 3)
        state = model.initial_state(frames)
        for t in range(3):
            prediction, state = model.transition(frames[:, t], state)
        fed = [prediction]
        for _ in range(2):
            prediction, state = model.transition(prediction, state)
            fed.append(prediction)
    torch.testing.assert_close(outputs, torch.stack(fed, dim=1), rtol=0, atol=0)


def test_shapes_gradients_channels_and_longer_windows():
    model = E3DLSTM(frame_channels=3, frame_size=(16, 8), hidden_channels=[4, 4, 4],
                    kernel_size=3, patch_size=2, window_length=3, temporal_kernel_size=2,
                    layer_norm=True)
    frames = torch.rand(2, 3, 3, 16, 8)
    rollout = model.rollout(frames, 2, every_frame=True)
    assert rollout.outputs.shape == (2, 4, 3, 16, 8)
    rollout.outputs.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_openstl_setup_parameters():
    """128 x 4, patch 4 at 64 x 64: OpenSTL's own model counts 51,347,456 parameters (its table
    says 51.0M); the paper variant adds 7 x 128 x 4 x-biases and drops the 4 unused W_mm."""
    assert sum(p.numel() for p in E3DLSTM(variant="openstl").parameters()) == 51_347_456
    assert sum(p.numel() for p in E3DLSTM().parameters()) == 51_347_456 + 3_584 - 4 * 819_200


def test_tiny_config_builds_and_the_config_rebuilds_the_model():
    tiny = E3DLSTM(**E3DLSTM.tiny_config())
    assert tiny.grid == (8, 8)
    model = small(recall_window=3, variant="openstl")
    rebuilt = build_predictor(model.config).double()
    rebuilt.load_state_dict(model.state_dict())
    frames = rand(1, 2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt(frames, 2), model(frames, 2))


@pytest.mark.parametrize(("options", "option"), [
    ({"variant": "tf"}, "variant"),
    ({"temporal_kernel_size": 3}, "temporal_kernel_size"),
    ({"window_length": 0}, "window_length"),
    ({"recall_window": 0}, "recall_window"),
    ({"hidden_channels": [4, 8]}, "hidden_channels"),
    ({"hidden_channels": []}, "hidden_channels"),
    ({"patch_size": 3}, "patch_size"),
    ({"kernel_size": 4}, "kernel_size"),
    ({"frame_size": (8,)}, "frame_size"),
])
def test_refused_options_are_named(options, option):
    with pytest.raises(OptionValueError) as info:
        E3DLSTM(frame_size=options.pop("frame_size", (8, 8)), **options)
    assert info.value.option == option


def test_unequal_widths_are_fine_without_the_zigzag_memory():
    model = E3DLSTM(frame_size=(8, 8), hidden_channels=[4, 8], kernel_size=3, patch_size=2,
                    variant="openstl")
    assert model(torch.rand(1, 2, 1, 8, 8), 2).shape == (1, 2, 1, 8, 8)
