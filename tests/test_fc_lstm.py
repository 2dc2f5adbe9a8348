"""FC-LSTM (Srivastava et al. 2015; docs/models.md#fc-lstm): shapes, no convolutions, dense
dependence, the encoder-to-decoder state hand-over, closed loop and teacher forcing."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from predlearn import create_model
from predlearn.zoo.fc_lstm import FCLSTM

BATCH, CONTEXT = 2, 3
SMALL = (2, 6, 5)  # (C, H, W): several channels, not square


def build(frame=SMALL, hidden: int = 8, seed: int = 0, **kwargs) -> FCLSTM:
    torch.manual_seed(seed)
    model = FCLSTM(frame_channels=frame[0], frame_size=frame[1:], hidden_size=hidden, **kwargs)
    return model.double()


def clip(length: int = CONTEXT, frame=SMALL, seed: int = 1, dtype=torch.float64) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(BATCH, length, *frame, generator=generator, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Shapes, gradients, structure


@pytest.mark.parametrize("frame", [(1, 64, 64), (3, 128, 128)])
@pytest.mark.parametrize("horizon", [1, 2, 4])
def test_shapes_and_gradients_reach_every_parameter(frame, horizon):
    torch.manual_seed(0)
    model = create_model("fc_lstm", frame_channels=frame[0], frame_size=frame[1:],
                         hidden_size=16, num_layers=2)
    assert isinstance(model, FCLSTM)
    out = model(clip(frame=frame, dtype=torch.float32), horizon)
    assert out.shape == (BATCH, horizon, *frame)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, parameter in model.named_parameters():
        if horizon == 1 and name == "decoder.0.weight_ih":
            # The first decoder input is zeros (default), so with one step these get nothing.
            assert parameter.grad is None or not parameter.grad.any(), name
        else:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_last_frame_as_first_decoder_input_trains_every_parameter_in_one_step():
    model = build(first_decoder_input="last_frame")
    model(clip(), 1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("conditional", [True, False])
def test_no_convolution_modules(conditional):
    model = build(num_layers=3, conditional=conditional)
    assert not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    assert sum(isinstance(m, nn.LSTMCell) for m in model.modules()) == 6


def test_parameter_count_at_the_default_size_matches_the_docstring():
    with torch.device("meta"):  # no memory for the 109M parameters
        model = FCLSTM()
        unconditioned = FCLSTM(conditional=False)
    assert model.input_size == 64 * 64 and model.hidden_size == 2048 and model.num_layers == 1
    assert sum(p.numel() for p in model.parameters()) == 109_088_768
    assert sum(p.numel() for p in unconditioned.parameters()) == 75_534_336
    assert "109,088,768" in FCLSTM.__doc__ and "75,534,336" in FCLSTM.__doc__


# ---------------------------------------------------------------------------------------------
# A fully connected model: every output depends on every input pixel


@pytest.mark.parametrize("observed", [0, CONTEXT - 1])
def test_first_prediction_depends_on_every_pixel_of_an_observed_frame(observed):
    model = build()
    frames = clip().requires_grad_(True)
    model(frames, 2)[:, 0].sum().backward()
    grad = frames.grad[:, observed]
    assert (grad != 0).all(), f"{int((grad == 0).sum())} pixels without influence"


# ---------------------------------------------------------------------------------------------
# Against nn.LSTM: the encoder's final (h, c) start the decoder, layer by layer


def as_lstm(cells: nn.ModuleList) -> nn.LSTM:
    """An nn.LSTM holding the weights of stacked LSTMCells (same gate layout i, f, g, o)."""
    lstm = nn.LSTM(cells[0].input_size, cells[0].hidden_size, num_layers=len(cells),
                   batch_first=True).double()
    with torch.no_grad():
        for layer, cell in enumerate(cells):
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(lstm, f"{kind}_l{layer}").copy_(getattr(cell, kind))
    return lstm


def test_rollout_matches_an_nn_lstm_encoder_and_decoder():
    model = build(num_layers=2)
    frames, horizon = clip(), 3
    encoder, decoder = as_lstm(model.encoder), as_lstm(model.decoder)
    with torch.no_grad():
        _, state = encoder(frames.flatten(2))  # (h, c) of every layer after X_J
        x = torch.zeros(BATCH, 1, model.input_size, dtype=torch.float64)
        expected = []
        for _ in range(horizon):
            top, state = decoder(x, state)
            x = model.head(top)  # the conditional decoder's next input is its own output
            expected.append(x.view(BATCH, *SMALL))
        out = model(frames, horizon)
    torch.testing.assert_close(out, torch.stack(expected, dim=1))


def test_sigmoid_output_is_the_sigmoid_of_the_linear_output_at_the_first_step():
    linear, bounded = build(), build(output_activation="sigmoid")
    with torch.no_grad():
        first_linear, out = linear(clip(), 1), bounded(clip(), 3)
    torch.testing.assert_close(out[:, :1], torch.sigmoid(first_linear))
    assert ((out > 0) & (out < 1)).all()


# ---------------------------------------------------------------------------------------------
# Closed loop and teacher forcing


@pytest.mark.parametrize("conditional", [True, False])
def test_teacher_mask_feeds_the_truth_into_the_next_step(conditional):
    model = build(conditional=conditional)
    horizon = 4
    targets = clip(horizon - 1, seed=7).requires_grad_(True)
    on = torch.ones(BATCH, horizon - 1, dtype=torch.bool)
    for k in range(horizon - 1):
        targets.grad = None
        model(clip(), horizon, targets, on)[:, k + 1].sum().backward()
        grad = torch.zeros_like(targets) if targets.grad is None else targets.grad
        if conditional:
            assert grad[:, k].abs().sum() > 0  # prediction k+1 reads targets[:, k]
        else:
            assert not grad[:, k].any()  # the unconditioned decoder takes no input
        assert not grad[:, k + 1:].any()  # never a later truth

    off = torch.zeros_like(on)
    targets.grad = None
    out = model(clip(), horizon, targets, off)
    out.sum().backward()
    assert targets.grad is None or not targets.grad.any()
    with torch.no_grad():
        torch.testing.assert_close(out, model(clip(), horizon), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Argument checks


@pytest.mark.parametrize("frame", [(1, 6, 5), (2, 5, 6), (2, 6, 6)])
def test_frames_of_another_shape_are_rejected(frame):
    model = build()
    with pytest.raises(ValueError, match=r"built for frames \(C, H, W\) = \(2, 6, 5\)"):
        model(clip(frame=frame), 2)


@pytest.mark.parametrize(
    "kwargs", [{"hidden_size": 0}, {"num_layers": 0}, {"output_activation": "relu"},
               {"first_decoder_input": "noise"}, {"frame_size": (0, 4)}])
def test_invalid_options_are_rejected(kwargs):
    with pytest.raises(ValueError):
        FCLSTM(**{"frame_size": (4, 4), "hidden_size": 4, **kwargs})
