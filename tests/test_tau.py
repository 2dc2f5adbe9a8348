"""TAU (Tan et al., CVPR 2023; docs/models.md#tau): the outputs, gradients and differential
divergence regularisation of OpenSTL's SimVP_Model(model_type='tau') and diff_div_reg
(tests/reference/make_simvp.py made the fixture), the regularisation by hand and in the
training loss, the Temporal Attention Unit's pieces, option errors and OpenSTL's sizes."""

from __future__ import annotations

import math

import pytest
import torch
from test_simvp import check_against, from_fixture

from predlearn.errors import OptionValueError
from predlearn.module import PredictiveModule
from predlearn.sampling import ScheduledSampling
from predlearn.zoo.tau import TAU, TemporalAttentionUnit, divergence_regularisation, squeeze_width


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_outputs_gradients_and_regularisation_equal_openstl(mode):
    """Eval: BatchNorm's running statistics, drop path off; training: batch statistics and drop
    path (the seed's draws). The loss: mean squared output + alpha x the regularisation."""
    model, record = from_fixture("tau", TAU)
    entry = record if mode == "eval" else record["train"]
    if mode == "train":
        torch.manual_seed(entry["seed"])
    model.train(mode == "train")
    targets = record["targets"]
    terms = []

    def regularisation(outputs):
        terms.append(model.prediction_loss(outputs, targets))
        return terms[-1]

    check_against(model, entry, record["frames"], record["horizon"], regularisation)
    torch.testing.assert_close(terms[0], entry["prediction_loss"], rtol=0, atol=1e-7)


def test_the_regularisation_by_hand():
    """KL(softmax(ΔŶ / τ) || softmax(ΔY / τ)) over the pixels of each frame difference, with
    OpenSTL's eps, averaged over batch, differences and pixels."""
    predictions = torch.tensor([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[0.0, 0.0], [0.2, 0.4], [0.2, 0.1]], dtype=torch.float64)
    tau, eps = 0.5, 1e-12
    terms = []
    for t in range(2):
        dp = [(predictions[t + 1, i] - predictions[t, i]).item() / tau for i in range(2)]
        dq = [(targets[t + 1, i] - targets[t, i]).item() / tau for i in range(2)]
        p = [math.exp(v) / sum(math.exp(w) for w in dp) for v in dp]
        q = [math.exp(v) / sum(math.exp(w) for w in dq) for v in dq]
        terms += [p[i] * math.log(p[i] / (q[i] + eps) + eps) for i in range(2)]
    expected = sum(terms) / len(terms)
    shaped = (predictions.view(1, 3, 1, 1, 2), targets.view(1, 3, 1, 1, 2))
    assert divergence_regularisation(*shaped, temperature=tau).item() == pytest.approx(expected)
    # the same motion from another background: the same differences, no divergence
    still = torch.rand(2, 4, 1, 5, 5, dtype=torch.float64)
    assert divergence_regularisation(still + 0.3, still).abs() < 1e-10


def test_the_prediction_loss_joins_training_and_needs_three_frames():
    torch.manual_seed(0)
    model = TAU(context_frames=3, frame_size=(16, 16), **TAU.tiny_config())
    module = PredictiveModule(model, context_frames=3, horizon=4, loss="l2")
    batch = torch.rand(2, 7, 1, 16, 16)
    torch.manual_seed(1)  # the same drop-path draws (training mode) in both passes
    loss, logs = module.training_loss(batch, 0)
    torch.manual_seed(1)
    outputs = model(batch[:, :3], 4)
    expected = 0.1 * divergence_regularisation(outputs, batch[:, 3:])
    torch.testing.assert_close(logs["train/prediction_loss"], expected)
    torch.testing.assert_close(loss, logs["train/frame_loss"] + expected)
    two = torch.rand(2, 2, 1, 16, 16)
    assert model.prediction_loss(two, two) is None  # OpenSTL: 0 for T <= 2
    assert TAU(context_frames=3, frame_size=(16, 16), alpha=0.0,
               **TAU.tiny_config()).prediction_loss(outputs, outputs) is None


def test_the_temporal_attention_unit():
    """SA(H) ⊗ DA(H) ⊙ H: DA a per-sample, per-channel gate from the pooled input; SA a local
    depth-wise 5x5, a dilated (3) depth-wise 7x7 at kernel 21, and a 1x1."""
    unit = TemporalAttentionUnit(16, 21).double()
    assert unit.convs["local"].kernel_size == (5, 5)
    assert (unit.convs["dilated"].kernel_size, unit.convs["dilated"].dilation) == ((7, 7), (3, 3))
    assert (unit.squeeze.out_features, unit.excite.out_features) == (4, 16)
    assert [squeeze_width(d) for d in (640, 512, 64, 16, 12)] == [16, 16, 16, 4, 3]
    x = torch.rand(2, 16, 6, 6, dtype=torch.float64)
    statical = unit.convs["pointwise"](unit.convs["dilated"](unit.convs["local"](x)))
    gate = torch.sigmoid(unit.excite(torch.relu(unit.squeeze(x.mean((2, 3))))))
    torch.testing.assert_close(unit(x), statical * gate[:, :, None, None] * x)


def test_tau_predicts_blocks_and_refuses_scheduled_sampling():
    torch.manual_seed(0)
    model = TAU(context_frames=3, frame_channels=2, frame_size=(8, 12),
                **TAU.tiny_config()).eval()
    frames = torch.rand(2, 3, 2, 8, 12)
    with torch.no_grad():
        first = model.predict_block(frames)
        torch.testing.assert_close(model(frames, 4),
                                   torch.cat([first, model.predict_block(first)[:, :1]], 1))
    with pytest.raises(OptionValueError, match="predicts its frames at once"):
        PredictiveModule(model, sampling=ScheduledSampling())
    assert TAU(**TAU.tiny_config())(torch.rand(1, 10, 1, 64, 64), 10).shape == (1, 10, 1, 64, 64)


@pytest.mark.parametrize(("options", "argument", "message"), [
    ({"alpha": -0.1}, "alpha", ">= 0"),
    ({"temperature": 0.0}, "temperature", "positive"),
    ({"temporal_channels": 2}, "temporal_channels", "at least 4"),
    ({"context_frames": 1, "spatial_channels": 2}, "spatial_channels", "at least 4"),
    ({"attention_kernel_size": 2}, "attention_kernel_size", "at least 3"),
])
def test_option_errors_name_the_argument(options, argument, message):
    with pytest.raises(OptionValueError, match=message) as error:
        TAU(**{**TAU.tiny_config(), "context_frames": 3, "frame_size": (8, 8), **options})
    assert error.value.as_typed().option == f"--model.predictor.{argument}"
    with pytest.raises(TypeError):
        TAU(translator="gsta")  # TAU's translator is its own


def test_openstl_moving_mnist_size():
    """configs/mmnist/TAU.py: OpenSTL's SimVP_Model(model_type='tau') has exactly these (its
    table: 44.7M)."""
    with torch.device("meta"):
        model = TAU()
    assert sum(p.numel() for p in model.parameters()) == 44_656_001
    assert (model.alpha, model.temperature) == (0.1, 0.1)
