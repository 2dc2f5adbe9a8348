"""One step of each recurrent cell against a reference written from the paper's equations.

ConvLSTM: paper eq. 2, PredRNN-M memory cell: eq. 3, ST-LSTM: eq. 4 (all written out in
docs/models.md#the-cells-equations). Every reference below computes each term of its equation
separately (one convolution per weight W_ab, one Hadamard product per peephole), with the per-gate
weights sliced from the cells' stacked convolutions in the gate order the cells document.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from predlearn.zoo import ConvLSTMCell, SpatiotemporalLSTMCell, SpatiotemporalMemoryCell

IN, HID, SIZE, K, BATCH = 2, 3, (5, 5), 3, 2
ALL_CELLS = (ConvLSTMCell, SpatiotemporalMemoryCell, SpatiotemporalLSTMCell)


def make_cell(cell_class, input_channels: int = IN, seed: int = 0, **options):
    """A float64 cell whose every parameter holds small seeded random values (no zeros)."""
    cell = cell_class(input_channels, HID, kernel_size=K, spatial_size=SIZE, **options).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.copy_(0.4 * torch.randn(parameter.shape, generator=generator,
                                              dtype=torch.float64))
    return cell


def make_inputs(channels_x: int = IN, seed: int = 1) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def rand(channels: int) -> Tensor:
        return torch.randn(BATCH, channels, *SIZE, generator=generator, dtype=torch.float64)

    return {"x": rand(channels_x), "h": rand(HID), "c": rand(HID), "m": rand(HID)}


def gate(weight: Tensor, index: int, width: int = HID) -> Tensor:
    """The index-th block of ``width`` output channels of a stacked weight or bias."""
    return weight[index * width:(index + 1) * width]


def conv(inputs: Tensor, weight: Tensor) -> Tensor:
    """W * X with 'same' padding, no bias."""
    return F.conv2d(inputs, weight, padding=weight.shape[-1] // 2)


def bias(b: Tensor) -> Tensor:
    return b.view(1, -1, 1, 1)


# ---------------------------------------------------------------------------------------------
# ConvLSTM (eq. 2)


def convlstm_reference(cell: ConvLSTMCell, x: Tensor, h: Tensor, c: Tensor):
    wx, bx, wh = cell.conv_x.weight, cell.conv_x.bias, cell.conv_h.weight
    # gate order g, i, f, o (ConvLSTMCell comment)
    w_xg, w_xi, w_xf, w_xo = (gate(wx, n) for n in range(4))
    w_hg, w_hi, w_hf, w_ho = (gate(wh, n) for n in range(4))
    b_g, b_i, b_f, b_o = (bias(gate(bx, n)) for n in range(4))
    g = torch.tanh(conv(x, w_xg) + conv(h, w_hg) + b_g)
    i = torch.sigmoid(conv(x, w_xi) + conv(h, w_hi) + cell.w_ci * c + b_i)
    f = torch.sigmoid(conv(x, w_xf) + conv(h, w_hf) + cell.w_cf * c + b_f)
    c_t = f * c + i * g
    o = torch.sigmoid(conv(x, w_xo) + conv(h, w_ho) + cell.w_co * c_t + b_o)
    h_t = o * torch.tanh(c_t)
    return h_t, c_t


def test_convlstm_parameter_shapes():
    cell = ConvLSTMCell(IN, HID, kernel_size=K, spatial_size=SIZE)
    shapes = {name: tuple(p.shape) for name, p in cell.named_parameters()}
    assert shapes == {
        "conv_x.weight": (4 * HID, IN, K, K),
        "conv_x.bias": (4 * HID,),
        "conv_h.weight": (4 * HID, HID, K, K),
        # Shi et al.: one peephole value per channel and position
        "w_ci": (HID, *SIZE),
        "w_cf": (HID, *SIZE),
        "w_co": (HID, *SIZE),
    }


def test_convlstm_step_matches_equation_2():
    cell = make_cell(ConvLSTMCell)
    inputs = make_inputs()
    h, c, m = cell(inputs["x"], inputs["h"], inputs["c"], None)
    h_ref, c_ref = convlstm_reference(cell, inputs["x"], inputs["h"], inputs["c"])
    assert m is None
    torch.testing.assert_close(c, c_ref)
    torch.testing.assert_close(h, h_ref)


def test_convlstm_peepholes_are_elementwise_per_position():
    """A peephole weight at one (channel, position) changes the state at that point only."""
    cell = make_cell(ConvLSTMCell)
    inputs = make_inputs()
    h0, c0, _ = cell(inputs["x"], inputs["h"], inputs["c"], None)
    with torch.no_grad():
        cell.w_cf[1, 2, 3] += 1.0
    h1, c1, _ = cell(inputs["x"], inputs["h"], inputs["c"], None)
    changed = (c1 != c0).any(dim=0)
    assert changed[1, 2, 3]
    assert changed.sum() == 1
    assert ((h1 != h0).any(dim=0) == changed).all()


def test_convlstm_without_peepholes_has_no_peephole_terms():
    cell = make_cell(ConvLSTMCell, peephole=False)
    assert not any(name.startswith("w_c") for name, _ in cell.named_parameters())
    inputs = make_inputs()
    h, c, _ = cell(inputs["x"], inputs["h"], inputs["c"], None)
    reference = make_cell(ConvLSTMCell)
    reference.load_state_dict(cell.state_dict(), strict=False)
    with torch.no_grad():
        for name in ("w_ci", "w_cf", "w_co"):
            getattr(reference, name).zero_()
    h_ref, c_ref = convlstm_reference(reference, inputs["x"], inputs["h"], inputs["c"])
    torch.testing.assert_close(c, c_ref)
    torch.testing.assert_close(h, h_ref)


# ---------------------------------------------------------------------------------------------
# PredRNN-M spatiotemporal memory cell (eq. 3)


def memory_reference(cell: SpatiotemporalMemoryCell, x: Tensor | None, h: Tensor, m: Tensor):
    """Eq. 3; ``x`` None for l > 1 (the indicator 1{l=1}). h = H^{l-1}_t, m = M^{l-1}_t."""
    wh, bh = cell.conv_h.weight, cell.conv_h.bias

    def x_term(n: int) -> Tensor | float:
        return conv(x, gate(cell.conv_x.weight, n)) if x is not None else 0.0

    # gate order g, i, f, o; biases in conv_h
    b_g, b_i, b_f, b_o = (bias(gate(bh, n)) for n in range(4))
    g = torch.tanh(x_term(0) + conv(h, gate(wh, 0)) + b_g)
    i = torch.sigmoid(x_term(1) + conv(h, gate(wh, 1)) + cell.w_mi * m + b_i)
    f = torch.sigmoid(x_term(2) + conv(h, gate(wh, 2)) + cell.w_mf * m + b_f)
    m_t = f * m + i * g
    o = torch.sigmoid(x_term(3) + conv(h, gate(wh, 3)) + cell.w_mo * m_t + b_o)
    h_t = o * torch.tanh(m_t)
    return h_t, m_t


def test_memory_cell_parameter_shapes():
    bottom = SpatiotemporalMemoryCell(IN, HID, kernel_size=K, spatial_size=SIZE)
    upper = SpatiotemporalMemoryCell(0, HID, kernel_size=K, spatial_size=SIZE)
    common = {
        "conv_h.weight": (4 * HID, HID, K, K),
        "conv_h.bias": (4 * HID,),
        "w_mi": (HID, *SIZE),
        "w_mf": (HID, *SIZE),
        "w_mo": (HID, *SIZE),
    }
    assert {n: tuple(p.shape) for n, p in bottom.named_parameters()} == {
        **common, "conv_x.weight": (4 * HID, IN, K, K)}
    # no x path above the bottom layer: X_t enters only layer 1
    assert {n: tuple(p.shape) for n, p in upper.named_parameters()} == common
    assert upper.conv_x is None


def test_memory_cell_bottom_layer_matches_equation_3():
    cell = make_cell(SpatiotemporalMemoryCell)
    inputs = make_inputs()
    h, c, m = cell(inputs["x"], inputs["h"], None, inputs["m"])
    h_ref, m_ref = memory_reference(cell, inputs["x"], inputs["h"], inputs["m"])
    assert c is None
    torch.testing.assert_close(m, m_ref)
    torch.testing.assert_close(h, h_ref)
    # and the frame does matter in the bottom layer
    h_other, _, _ = cell(inputs["x"] + 1.0, inputs["h"], None, inputs["m"])
    assert not torch.allclose(h_other, h)


def test_memory_cell_upper_layer_has_no_x_path():
    cell = make_cell(SpatiotemporalMemoryCell, input_channels=0)
    inputs = make_inputs()
    h, c, m = cell(None, inputs["h"], None, inputs["m"])
    h_ref, m_ref = memory_reference(cell, None, inputs["h"], inputs["m"])
    assert c is None
    torch.testing.assert_close(m, m_ref)
    torch.testing.assert_close(h, h_ref)


def test_memory_cell_bottom_layer_requires_the_frame():
    cell = make_cell(SpatiotemporalMemoryCell)
    inputs = make_inputs()
    with pytest.raises(ValueError, match="input frame x"):
        cell(None, inputs["h"], None, inputs["m"])


# ---------------------------------------------------------------------------------------------
# ST-LSTM (eq. 4)


def st_lstm_reference(cell: SpatiotemporalLSTMCell, x, h, c, m, forget_bias: float = 0.0):
    wx, bx = cell.conv_x.weight, cell.conv_x.bias
    wh, wm = cell.conv_h.weight, cell.conv_m.weight
    # conv_x order: W_x{g,i,f}, W'_x{g,i,f}, W_xo; conv_h: W_h{g,i,f,o}; conv_m: W_m{g,i,f}
    w_xg, w_xi, w_xf, w2_xg, w2_xi, w2_xf, w_xo = (gate(wx, n) for n in range(7))
    b_g, b_i, b_f, b2_g, b2_i, b2_f, b_o = (bias(gate(bx, n)) for n in range(7))
    w_hg, w_hi, w_hf, w_ho = (gate(wh, n) for n in range(4))
    w_mg, w_mi, w_mf = (gate(wm, n) for n in range(3))
    # W_co and W_mo: the input-channel halves of the joint convolution over [C_t, M_t]
    w_co, w_mo = cell.conv_o.weight[:, :HID], cell.conv_o.weight[:, HID:]

    g = torch.tanh(conv(x, w_xg) + conv(h, w_hg) + b_g)
    i = torch.sigmoid(conv(x, w_xi) + conv(h, w_hi) + b_i)
    f = torch.sigmoid(conv(x, w_xf) + conv(h, w_hf) + b_f + forget_bias)
    c_t = f * c + i * g
    g2 = torch.tanh(conv(x, w2_xg) + conv(m, w_mg) + b2_g)
    i2 = torch.sigmoid(conv(x, w2_xi) + conv(m, w_mi) + b2_i)
    f2 = torch.sigmoid(conv(x, w2_xf) + conv(m, w_mf) + b2_f + forget_bias)
    m_t = f2 * m + i2 * g2
    o = torch.sigmoid(conv(x, w_xo) + conv(h, w_ho) + conv(c_t, w_co) + conv(m_t, w_mo) + b_o)
    h_t = o * torch.tanh(conv(torch.cat([c_t, m_t], dim=1), cell.conv_1x1.weight))
    return h_t, c_t, m_t


def test_st_lstm_parameter_shapes():
    cell = SpatiotemporalLSTMCell(IN, HID, kernel_size=K, spatial_size=SIZE)
    assert {n: tuple(p.shape) for n, p in cell.named_parameters()} == {
        "conv_x.weight": (7 * HID, IN, K, K),  # 7 x-gates: g, i, f, g', i', f', o
        "conv_x.bias": (7 * HID,),
        "conv_h.weight": (4 * HID, HID, K, K),  # 4 h-gates: g, i, f, o
        "conv_m.weight": (3 * HID, HID, K, K),  # 3 m-gates: g', i', f'
        "conv_o.weight": (HID, 2 * HID, K, K),  # W_co * C_t + W_mo * M_t (convolutions)
        "conv_1x1.weight": (HID, 2 * HID, 1, 1),  # W_1x1 * [C_t, M_t]
    }


@pytest.mark.parametrize("forget_bias", [0.0, 1.0])
def test_st_lstm_step_matches_equation_4(forget_bias):
    cell = make_cell(SpatiotemporalLSTMCell, forget_bias=forget_bias)
    inputs = make_inputs()
    h, c, m = cell(inputs["x"], inputs["h"], inputs["c"], inputs["m"])
    h_ref, c_ref, m_ref = st_lstm_reference(cell, **inputs, forget_bias=forget_bias)
    torch.testing.assert_close(c, c_ref)
    torch.testing.assert_close(m, m_ref)
    torch.testing.assert_close(h, h_ref)


def test_st_lstm_forget_bias_shifts_both_forget_gates():
    """forget_bias=b is the same as adding b to the biases b_f and b'_f (and to nothing else)."""
    shifted = make_cell(SpatiotemporalLSTMCell, forget_bias=1.0)
    plain = copy.deepcopy(shifted)
    plain.forget_bias = 0.0
    with torch.no_grad():
        gate(plain.conv_x.bias, 2).add_(1.0)  # b_f
        gate(plain.conv_x.bias, 5).add_(1.0)  # b'_f
    inputs = make_inputs()
    for got, expected in zip(shifted(**inputs), plain(**inputs), strict=True):
        torch.testing.assert_close(got, expected)
    # and it is not a no-op
    unshifted = copy.deepcopy(shifted)
    unshifted.forget_bias = 0.0
    assert not torch.allclose(shifted(**inputs)[1], unshifted(**inputs)[1])
    assert not torch.allclose(shifted(**inputs)[2], unshifted(**inputs)[2])


def test_st_lstm_default_has_no_forget_bias_as_in_the_paper():
    assert SpatiotemporalLSTMCell(IN, HID, kernel_size=K, spatial_size=SIZE).forget_bias == 0.0


# ---------------------------------------------------------------------------------------------
# All cells


@pytest.mark.parametrize("cell_class", ALL_CELLS)
@pytest.mark.parametrize("kernel_size", [0, 4, -3])
def test_invalid_kernel_size_is_rejected(cell_class, kernel_size):
    with pytest.raises(ValueError, match=rf"kernel_size.*got {kernel_size}$"):
        cell_class(IN, HID, kernel_size=kernel_size, spatial_size=SIZE)


@pytest.mark.parametrize("cell_class", ALL_CELLS)
def test_non_positive_hidden_channels_is_rejected(cell_class):
    with pytest.raises(ValueError, match="hidden_channels.*got 0"):
        cell_class(IN, 0, kernel_size=K, spatial_size=SIZE)


@pytest.mark.parametrize("cell_class", ALL_CELLS)
def test_state_shapes_are_preserved(cell_class):
    cell = make_cell(cell_class)
    inputs = make_inputs()
    for state in cell(**inputs):
        assert state is None or state.shape == (BATCH, HID, *SIZE)


@pytest.mark.parametrize(
    ("cell_class", "input_channels"),
    [(ConvLSTMCell, IN), (SpatiotemporalMemoryCell, IN), (SpatiotemporalMemoryCell, 0),
     (SpatiotemporalLSTMCell, IN)],
)
def test_gradients_reach_every_parameter(cell_class, input_channels):
    cell = make_cell(cell_class, input_channels=input_channels)
    inputs = make_inputs()
    if input_channels == 0:
        inputs["x"] = None
    loss = sum(state.pow(2).sum() for state in cell(**inputs) if state is not None)
    loss.backward()
    for name, parameter in cell.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_st_lstm_gradient_matches_reference_gradient():
    """Autograd through the cell equals autograd through the equation-4 reference."""
    cell = make_cell(SpatiotemporalLSTMCell)
    inputs = make_inputs()
    m = inputs["m"].clone().requires_grad_(True)
    inputs["m"] = m
    (grad_cell,) = torch.autograd.grad(cell(**inputs)[0].sum(), m)
    (grad_ref,) = torch.autograd.grad(st_lstm_reference(cell, **inputs)[0].sum(), m)
    torch.testing.assert_close(grad_cell, grad_ref)
