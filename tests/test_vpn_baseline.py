"""VPN baseline (Kalchbrenner et al. 2017; docs/models.md#vpn-baseline): the multiplicative unit and
the residual multiplicative block against their equations, resolution preservation, shapes, closed
loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from predlearn import create_model
from predlearn.zoo.cells.conv_lstm import ConvLSTMCell
from predlearn.zoo.vpn_baseline import (
    MultiplicativeUnit,
    ResidualMultiplicativeBlock,
    VPNBaseline,
)

BATCH, CONTEXT = 2, 3
TINY = {"encoder_channels": 2, "dilations": (1, 2), "lstm_channels": 4, "decoder_channels": 2,
        "decoder_blocks": 1}


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """float64, every parameter small seeded random values (no zero biases or peepholes)."""
    module = module.double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator,
                                              dtype=torch.float64))
    return module


def rand(*shape: int, seed: int = 1, dtype=torch.float64) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# MU and RMB against the VPN paper's equations, one F.conv2d per weight


def conv(x: Tensor, weight: Tensor, bias: Tensor, dilation: int = 1) -> Tensor:
    """W * x with 'same' padding for an odd kernel."""
    return F.conv2d(x, weight, bias, padding=dilation * (weight.shape[-1] // 2), dilation=dilation)


def mu_reference(unit: MultiplicativeUnit, h: Tensor) -> Tensor:
    """MU(h) = g1 o tanh(g2 o h + g3 o u); the weights W1..W4 are stacked in that order."""
    c, d = unit.channels, unit.dilation
    weight, bias = unit.conv.weight, unit.conv.bias
    w = [weight[i * c:(i + 1) * c] for i in range(4)]
    b = [bias[i * c:(i + 1) * c] for i in range(4)]
    g1 = torch.sigmoid(conv(h, w[0], b[0], d))
    g2 = torch.sigmoid(conv(h, w[1], b[1], d))
    g3 = torch.sigmoid(conv(h, w[2], b[2], d))
    u = torch.tanh(conv(h, w[3], b[3], d))
    return g1 * torch.tanh(g2 * h + g3 * u)


@pytest.mark.parametrize("dilation", [1, 2])
def test_multiplicative_unit_matches_its_equation(dilation):
    unit = randomise(MultiplicativeUnit(3, dilation=dilation))
    assert unit.conv.weight.shape == (12, 3, 3, 3) and unit.conv.dilation == (dilation, dilation)
    h = torch.randn(BATCH, 3, 9, 7, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    torch.testing.assert_close(unit(h), mu_reference(unit, h))


@pytest.mark.parametrize("dilation", [1, 3])
def test_residual_multiplicative_block_matches_its_equation(dilation):
    c = 2
    block = randomise(ResidualMultiplicativeBlock(c, dilation=dilation), seed=dilation)
    assert block.reduce.weight.shape == (c, 2 * c, 1, 1)
    assert block.expand.weight.shape == (2 * c, c, 1, 1)
    x = torch.randn(BATCH, 2 * c, 11, 10, generator=torch.Generator().manual_seed(4),
                    dtype=torch.float64)
    h = conv(x, block.reduce.weight, block.reduce.bias)  # 1x1: 2c -> c
    h = mu_reference(block.mu1, h)
    h = mu_reference(block.mu2, h)
    expected = x + conv(h, block.expand.weight, block.expand.bias)  # 1x1: c -> 2c, residual
    torch.testing.assert_close(block(x), expected)
    # The dilation reaches both units: a different rate gives a different block output.
    other = ResidualMultiplicativeBlock(c, dilation=dilation + 1).double()
    other.load_state_dict(block.state_dict())
    assert not torch.allclose(other(x), expected)


# ---------------------------------------------------------------------------------------------
# Structure


def test_encoder_and_decoder_follow_the_configuration():
    model = VPNBaseline(frame_channels=3, frame_size=(8, 8), encoder_channels=2,
                        dilations=(1, 2, 4, 8, 1), lstm_channels=6, decoder_channels=2,
                        decoder_blocks=2)
    blocks = [m for m in model.encoder if isinstance(m, ResidualMultiplicativeBlock)]
    assert [b.mu1.dilation for b in blocks] == [1, 2, 4, 8, 1]
    assert [b.mu2.dilation for b in blocks] == [1, 2, 4, 8, 1]
    assert model.encoder[0].weight.shape == (4, 3, 1, 1)  # input 1x1 convolution: C -> 2c
    assert isinstance(model.lstm, ConvLSTMCell) and model.lstm.hidden_channels == 6
    decoder_blocks = [m for m in model.decoder if isinstance(m, ResidualMultiplicativeBlock)]
    assert [b.mu1.dilation for b in decoder_blocks] == [1, 1]
    assert model.decoder[0].weight.shape == (4, 6, 1, 1)  # 1x1 from the ConvLSTM's 6 to 2c' = 4
    assert model.decoder[-1].weight.shape == (3, 4, 1, 1)  # 1x1 to the frame's channels


def test_parameter_count_at_the_default_size_matches_the_docstring():
    with torch.device("meta"):
        model = VPNBaseline()
    blocks = [m for m in model.encoder if isinstance(m, ResidualMultiplicativeBlock)]
    assert [b.mu1.dilation for b in blocks] == [1, 2, 4, 8, 1, 2, 4, 8]
    assert model.encoder[0].out_channels == 256 and model.lstm.hidden_channels == 256
    assert isinstance(model.decoder[0], nn.Identity)  # ConvLSTM width is already 2c = 256
    assert sum(isinstance(m, ResidualMultiplicativeBlock) for m in model.decoder) == 12
    assert sum(p.numel() for p in model.parameters()) == 32_797_953
    assert "32,797,953" in VPNBaseline.__doc__


@pytest.mark.parametrize("size", [(20, 20), (100, 100), (13, 29)])
def test_encoder_preserves_the_resolution(size):
    model = VPNBaseline(frame_size=size, **{**TINY, "dilations": (1, 2, 4, 8)})
    encoded = model.encoder(rand(BATCH, 1, *size, dtype=torch.float32))
    assert encoded.shape == (BATCH, 4, *size)


# ---------------------------------------------------------------------------------------------
# The predictor


@pytest.mark.parametrize("frame", [(1, 64, 64), (3, 128, 128)])
@pytest.mark.parametrize("horizon", [1, 3])
def test_shapes_and_gradients_reach_every_parameter(frame, horizon):
    torch.manual_seed(0)
    model = create_model("vpn_baseline", frame_channels=frame[0], frame_size=frame[1:], **TINY)
    assert isinstance(model, VPNBaseline)
    out = model(rand(BATCH, CONTEXT, *frame, dtype=torch.float32), horizon)
    assert out.shape == (BATCH, horizon, *frame)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def build(frame=(2, 7, 6), seed: int = 0, **kwargs) -> VPNBaseline:
    torch.manual_seed(seed)
    model = VPNBaseline(frame_channels=frame[0], frame_size=frame[1:], **{**TINY, **kwargs})
    return randomise(model, seed)


def test_prediction_is_the_decoded_state_after_the_last_observed_frame():
    model = build()
    frames, horizon = rand(BATCH, CONTEXT, 2, 7, 6), 3
    with torch.no_grad():
        h = torch.zeros(BATCH, 4, 7, 6, dtype=torch.float64)
        c = torch.zeros_like(h)
        expected, x = [], None
        for t in range(CONTEXT + horizon - 1):
            x = frames[:, t] if t < CONTEXT else x  # after X_J: the previous prediction
            h, c, _ = model.lstm(model.encoder(x), h, c, None)
            if t >= CONTEXT - 1:
                x = model.decoder(h)
                expected.append(x)
        out = model(frames, horizon)
    torch.testing.assert_close(out, torch.stack(expected, dim=1))


def test_sigmoid_output_is_bounded_and_the_linear_one_is_not_clipped():
    linear = build()
    bounded = build(output_activation="sigmoid")
    with torch.no_grad():
        first_linear = linear(rand(BATCH, CONTEXT, 2, 7, 6), 1)
        out = bounded(rand(BATCH, CONTEXT, 2, 7, 6), 1)
    torch.testing.assert_close(out, torch.sigmoid(first_linear))
    assert ((first_linear < 0) | (first_linear > 1)).any()


@pytest.mark.parametrize("frame", [(1, 7, 6), (2, 6, 7), (2, 7, 7)])
def test_frames_of_another_shape_are_rejected(frame):
    model = build()
    with pytest.raises(ValueError, match=r"built for frames \(C, H, W\) = \(2, 7, 6\)"):
        model(rand(BATCH, CONTEXT, *frame), 2)


@pytest.mark.parametrize(
    "kwargs", [{"dilations": (1, 0)}, {"decoder_blocks": -1}, {"input_kernel_size": 2},
               {"output_activation": "tanh"}, {"encoder_channels": 0}])
def test_invalid_options_are_rejected(kwargs):
    with pytest.raises(ValueError):
        VPNBaseline(frame_size=(4, 4), **{**TINY, **kwargs})
