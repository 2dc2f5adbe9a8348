"""The ConvGRU cell against reference equations, and the ``convgru`` predictor's shapes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import predlearn
from predlearn_plugin_example import ConvGRU, ConvGRUCell


def test_one_by_one_kernels_make_a_gru_cell_at_every_pixel():
    torch.manual_seed(0)
    cell = ConvGRUCell(input_channels=3, hidden_channels=5, kernel_size=1, spatial_size=(4, 6))
    reference = torch.nn.GRUCell(3, 5)
    with torch.no_grad():
        cell.conv_x.weight.copy_(reference.weight_ih[:, :, None, None])
        cell.conv_x.bias.copy_(reference.bias_ih)
        cell.conv_h.weight.copy_(reference.weight_hh[:, :, None, None])
        cell.conv_h.bias.copy_(reference.bias_hh)
    x, h = torch.randn(2, 3, 4, 6), torch.randn(2, 5, 4, 6)

    h_new, c_new, m_new = cell(x, h, None, None)

    def per_pixel(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B*H*W, C)
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    expected = reference(per_pixel(x), per_pixel(h))
    torch.testing.assert_close(per_pixel(h_new), expected, rtol=1e-5, atol=1e-6)
    assert c_new is None and m_new is None


def test_the_gru_equations_with_spatial_kernels():
    torch.manual_seed(1)
    cell = ConvGRUCell(input_channels=2, hidden_channels=4, kernel_size=3, spatial_size=(8, 8))
    x, h = torch.randn(3, 2, 8, 8), torch.randn(3, 4, 8, 8)

    w_x, b_x = cell.conv_x.weight, cell.conv_x.bias
    w_h, b_h = cell.conv_h.weight, cell.conv_h.bias

    def conv(inp, weight, bias, gate):  # gate 0, 1, 2 = r, z, n
        rows = slice(4 * gate, 4 * (gate + 1))
        return F.conv2d(inp, weight[rows], bias[rows], padding=1)

    r = torch.sigmoid(conv(x, w_x, b_x, 0) + conv(h, w_h, b_h, 0))
    z = torch.sigmoid(conv(x, w_x, b_x, 1) + conv(h, w_h, b_h, 1))
    n = torch.tanh(conv(x, w_x, b_x, 2) + r * conv(h, w_h, b_h, 2))
    expected = (1 - z) * n + z * h

    h_new, _, _ = cell(x, h, None, None)
    torch.testing.assert_close(h_new, expected, rtol=1e-5, atol=1e-6)


def test_update_gate_closed_keeps_the_state():
    cell = ConvGRUCell(input_channels=1, hidden_channels=2, kernel_size=3, spatial_size=(5, 5))
    with torch.no_grad():
        cell.conv_x.bias[2:4].fill_(1e4)  # z = sigmoid(large) = 1: H' = H
    h = torch.randn(1, 2, 5, 5)
    h_new, _, _ = cell(torch.randn(1, 1, 5, 5), h, None, None)
    torch.testing.assert_close(h_new, h)


def test_the_registered_predictor_rolls_out_with_gradients():
    assert predlearn.create_cell("conv_gru", input_channels=1, hidden_channels=2).__class__ \
        is ConvGRUCell
    torch.manual_seed(0)
    model = predlearn.create_model("convgru", frame_size=(16, 16), hidden_channels=[4, 6],
                                   kernel_size=3, patch_size=2)
    assert isinstance(model, ConvGRU)
    states = model.init_states(2, torch.zeros(1))
    assert states["c"] == [None, None] and states["m"] is None  # H only

    frames = torch.rand(2, 3, 1, 16, 16)
    targets = torch.rand(2, 4, 1, 16, 16)
    predictions = model(frames, horizon=4)
    assert predictions.shape == (2, 4, 1, 16, 16)
    F.mse_loss(predictions, targets).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
