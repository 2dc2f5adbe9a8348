"""PhyDNet (Le Guen and Thome, CVPR 2020; docs/models.md#phydnet): against OpenSTL's
implementation (the fixture tests/reference/phydnet.pt, made by tests/reference/make_phydnet.py),
the moment matrices and the moment loss against values worked out by hand, the auxiliary loss,
the closed loop and the option checks. The generic tests of every registered model are in
tests/test_models.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from predlearn.errors import OptionValueError
from predlearn.module import PredictiveModule
from predlearn.zoo.phydnet import (
    PhyDNet,
    derivative_targets,
    kernel_moments,
    moment_loss,
    moment_matrix,
)

FIXTURE = Path(__file__).parent / "reference" / "phydnet.pt"


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def from_fixture(reference: dict) -> PhyDNet:
    model = PhyDNet(**reference["config"])
    model.load_state_dict(reference["state_dict"])
    return model


def build(seed: int = 0, **kwargs) -> PhyDNet:
    torch.manual_seed(seed)
    return PhyDNet(**{**PhyDNet.tiny_config(), "frame_size": (16, 16), **kwargs})


# -- against OpenSTL -----------------------------------------------------------------------------


def test_outputs_and_gradients_equal_openstl(reference):
    model = from_fixture(reference).eval()
    outputs = model(reference["frames"], reference["horizon"])
    torch.testing.assert_close(outputs, reference["outputs"], atol=1e-5, rtol=0)
    outputs.pow(2).mean().backward()
    assert set(reference["grads"]) == {name for name, _ in model.named_parameters()}
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, reference["grads"][name], atol=1e-5, rtol=0,
                                   msg=name)


def test_predictions_of_observed_frames_equal_openstl(reference):
    model = from_fixture(reference).eval()
    with torch.no_grad():
        rollout = model.rollout(reference["frames"], reference["horizon"], every_frame=True)
    torch.testing.assert_close(rollout.outputs, reference["every_frame"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", ["closed", "teacher"])
def test_training_loss_is_openstls_over_the_steps(reference, key):
    """OpenSTL's loss (per-frame MSEs summed over the J - 1 + K predictions, plus the moment
    loss; teacher forcing ratio 0 or 1) = J - 1 + K times ours (l2 over every frame + the
    auxiliary loss), through PredictiveModule's own training loss."""
    frames, targets, horizon = reference["frames"], reference["targets"], reference["horizon"]
    context = frames.shape[1]
    ratio = 1.0 if key == "teacher" else 0.0
    module = PredictiveModule(from_fixture(reference), context_frames=context, horizon=horizon,
                              loss="l2", loss_frames="all", sampling={
                                  "class_path": "predlearn.sampling.ScheduledSampling",
                                  "init_args": {"start": ratio, "decay": 0.0}})
    module.train()
    with torch.no_grad():
        loss, logs = module.training_loss(torch.cat([frames, targets], dim=1), 0)
    assert "train/auxiliary_loss" in logs
    steps = context - 1 + horizon
    torch.testing.assert_close(steps * loss, reference["loss"][key], atol=1e-5, rtol=1e-6)


def test_moments_of_7x7_filters_equal_openstls_k2m(reference):
    kernels = reference["kernels7"]
    moments = kernel_moments(kernels.double()).float()
    torch.testing.assert_close(moments, reference["moments7"], atol=1e-5, rtol=0)
    torch.testing.assert_close(moment_loss(kernels), reference["moment_loss7"], atol=1e-3,
                               rtol=1e-6)


# -- the moment matrix and the moment loss (paper §3), by hand ----------------------------------


def test_moment_matrix_from_its_definition():
    expected = torch.tensor([[1.0, 1.0, 1.0], [-1.0, 0.0, 1.0], [0.5, 0.0, 0.5]],
                            dtype=torch.float64)
    torch.testing.assert_close(moment_matrix(3), expected)
    assert moment_matrix(7)[6, 0].item() == pytest.approx(3**6 / 720)


def test_finite_difference_filters_have_their_derivatives_moment():
    dx = torch.tensor([[0.0, 0.0, 0.0], [-0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])  # d/dx: columns
    dyy = torch.tensor([[0.0, 1.0, 0.0], [0.0, -2.0, 0.0], [0.0, 1.0, 0.0]])  # d2/dy2: rows
    for kernel, order in ((dx, (0, 1)), (dyy, (2, 0))):
        expected = torch.zeros(3, 3)
        expected[order] = 1.0
        assert torch.allclose(kernel_moments(kernel), expected, atol=1e-12)


def test_moment_loss_by_hand():
    # zero filters: each channel misses k*k of the (k*k)^2 target entries by 1 -> 1 / k^2 each
    assert moment_loss(torch.zeros(9, 4, 3, 3)).item() == pytest.approx(4 / 9)
    # filters built from the targets through the inverse moment matrix meet them exactly
    inverse = torch.linalg.inv(moment_matrix(5))
    exact = inverse @ derivative_targets(5, torch.float64) @ inverse.T
    assert moment_loss(exact.unsqueeze(1).repeat(1, 2, 1, 1)).item() < 1e-20
    # one filter off by one in its moment (0, 0) (in one of 2 channels): 1 / (25 * 25)
    off = exact.clone()
    off[3] += inverse[:, :1] @ inverse[:, :1].T  # moments M w M^T = the unit at (0, 0)
    weight = torch.stack([exact, off], dim=1)
    assert moment_loss(weight).item() == pytest.approx(1 / 625)


def test_auxiliary_loss_is_the_weighted_moment_loss_over_the_steps():
    model = build(moment_weight=0.5).train()
    rollout = model.rollout(torch.rand(2, 3, 1, 16, 16), 2)
    expected = 0.5 * moment_loss(model.phycell.derivatives.weight) / (3 - 1 + 2)
    torch.testing.assert_close(rollout.auxiliary_loss, expected)
    rollout.auxiliary_loss.backward()
    assert model.phycell.derivatives.weight.grad.abs().sum() > 0
    assert model.eval().rollout(torch.rand(2, 3, 1, 16, 16), 2).auxiliary_loss is None
    assert build(moment_weight=0.0).train().rollout(
        torch.rand(1, 2, 1, 16, 16), 1).auxiliary_loss is None


# -- the model's own behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize("patch_size", [2, 4])
def test_shapes_and_range(patch_size):
    model = build(frame_channels=3, frame_size=(16, 24), patch_size=patch_size).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 4, 3, 16, 24), 3)
    assert out.shape == (2, 3, 3, 16, 24)
    assert 0 < out.min() and out.max() < 1


def test_a_teacher_forced_step_reads_the_truth_as_an_observed_frame():
    model = build().eval()
    frames, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        always = torch.ones(2, 2, dtype=torch.bool)
        forced = model(frames, 3, targets=targets, teacher_mask=always)
        longer = model(torch.cat([frames, targets[:, :2]], dim=1), 1)
        closed = model(frames, 3)
        ignored = model(frames, 3, targets=targets)
    torch.testing.assert_close(forced[:, -1], longer[:, 0], atol=1e-6, rtol=0)
    assert torch.equal(closed, ignored)
    assert not torch.allclose(forced[:, -1], closed[:, -1])


def test_steps_without_prediction_skip_the_decoder_only():
    model = build().eval()
    frames = torch.rand(2, 1, 1, 16, 16)
    with torch.no_grad():
        inputs = model.encode(frames[:, 0])
        skipped, state_a = model.transition(inputs, model.initial_state(frames), predict=False)
        predicted, state_b = model.transition(inputs, model.initial_state(frames))
    assert skipped is None and predicted is not None and state_a["steps"] == 1
    assert torch.equal(state_a["physics"], state_b["physics"])
    assert all(torch.equal(a, b) for a, b in zip(state_a["h"], state_b["h"], strict=True))


def test_defaults_are_openstls_mmnist_set_up():
    model = PhyDNet()
    assert sum(p.numel() for p in model.parameters()) == 3_091_732  # OpenSTL: 3.1M
    assert model.phycell.derivatives.weight.shape == (49, 64, 7, 7)
    assert [cell.hidden_channels for cell in model.convlstm] == [128, 128, 64]
    assert model.grid == (16, 16)


def test_tiny_config_builds_and_runs():
    model = PhyDNet(**PhyDNet.tiny_config()).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 2, 1, 64, 64), 2).shape == (1, 2, 1, 64, 64)


@pytest.mark.parametrize(("options", "option"), [
    ({"patch_size": 3}, "patch_size"),
    ({"patch_size": 4, "frame_size": (18, 16)}, "patch_size"),
    ({"encoder_channels": 3}, "encoder_channels"),
    ({"latent_channels": 6, "norm_groups": 4}, "latent_channels"),
    ({"norm_groups": 0}, "norm_groups"),
    ({"phycell_kernel_size": 4}, "phycell_kernel_size"),
    ({"convlstm_channels": []}, "convlstm_channels"),
    ({"convlstm_kernel_size": 0}, "convlstm_kernel_size"),
    ({"moment_weight": -1.0}, "moment_weight"),
])
def test_option_errors_name_the_argument(options, option):
    with pytest.raises(OptionValueError) as error:
        build(**options)
    assert error.value.option == option


def test_frames_of_another_size_are_refused():
    with pytest.raises(ValueError, match="frame_size"):
        build()(torch.rand(1, 2, 1, 32, 32), 1)


def test_loss_uses_every_output():
    """F.mse_loss over the rollout is the mean of the per-frame MSEs (equal frame sizes), which
    the OpenSTL equivalence above relies on."""
    outputs, truth = torch.rand(2, 5, 1, 4, 4), torch.rand(2, 5, 1, 4, 4)
    per_frame = sum(F.mse_loss(outputs[:, t], truth[:, t]) for t in range(5))
    torch.testing.assert_close(5 * F.mse_loss(outputs, truth), per_frame)
