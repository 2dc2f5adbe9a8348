"""The nowcasting baselines without weights: Eulerian persistence (the last frame repeated) and
Lagrangian persistence (optical-flow extrapolation with pysteps)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from lightning_utilities.core.imports import RequirementCache

import predlearn
from predlearn.errors import OptionValueError
from predlearn.predictor import build_predictor
from predlearn.zoo import OpticalFlowExtrapolation, Persistence, nowcast_baselines

J, K = 4, 5
#: (x to the right, y down) pixels per frame of the two test sequences
SHIFTS = ((2, 1), (-1, 2))


def blobs(step: int, shift: tuple[int, int], size: int = 64) -> torch.Tensor:
    """A smooth field (size, size) in [0, 1]: four Gaussian blobs whose centres have moved
    ``step`` times by ``shift``; far enough from the border that nothing leaves the field."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                          torch.arange(size, dtype=torch.float64), indexing="ij")
    scale = size / 64
    field = torch.zeros(size, size, dtype=torch.float64)
    for cy, cx, sigma, peak in ((22, 22, 5, 0.9), (34, 30, 7, 0.7), (26, 40, 4, 0.8),
                                (42, 24, 6, 0.6)):
        cx, cy = cx * scale + shift[0] * step, cy * scale + shift[1] * step
        field += peak * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (sigma * scale) ** 2))
    return field.clamp(0, 1)


def moving_sequences(size: int = 64) -> torch.Tensor:
    """(2, J + K, 1, size, size) float32: one sequence per shift in SHIFTS."""
    return torch.stack([torch.stack([blobs(t, shift, size) for t in range(J + K)])
                        for shift in SHIFTS]).unsqueeze(2).float()


def mse_per_sequence(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    return (predicted.double() - truth.double()).square().flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------
# Persistence


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 3, 1, 16, 16), (1, 1, 3, 5, 7)])
@pytest.mark.parametrize("horizon", [1, 4])
def test_persistence_repeats_the_last_observed_frame_exactly(dtype, shape, horizon):
    frames = torch.rand(shape).to(dtype)
    model = Persistence()
    predicted = model(frames, horizon)
    assert predicted.shape == (shape[0], horizon, *shape[2:])
    assert predicted.dtype == dtype and predicted.device == frames.device
    for k in range(horizon):
        assert torch.equal(predicted[:, k], frames[:, -1])
    assert predicted.data_ptr() != frames.data_ptr()  # a copy, not a view of the input
    # teacher inputs are ignored: nothing is fed back
    targets = torch.rand(shape[0], horizon, *shape[2:]).to(dtype)
    mask = torch.ones(shape[0], horizon - 1, dtype=torch.bool)
    assert torch.equal(model(frames, horizon, targets, mask), predicted)
    assert torch.equal(model.rollout(frames, horizon).outputs, predicted)


def test_persistence_under_bf16_autocast_keeps_the_input():
    frames = torch.rand(2, 3, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        predicted = Persistence()(frames, 3)
    assert predicted.dtype == torch.float32
    assert torch.equal(predicted, frames[:, -1:].expand(-1, 3, -1, -1, -1))


# ---------------------------------------------------------------------------------------------
# Optical-flow extrapolation


def test_extrapolation_follows_the_motion_and_beats_persistence():
    sequences = moving_sequences()
    observed, truth = sequences[:, :J], sequences[:, J:]
    model = OpticalFlowExtrapolation()
    for sequence, (dx, dy) in zip(observed, SHIFTS):
        field = model.motion(sequence)
        assert field.shape == (2, 64, 64) and field.dtype == torch.float64
        assert abs(field[0].median().item() - dx) < 0.5
        assert abs(field[1].median().item() - dy) < 0.5
    predicted = model(observed, K)
    assert predicted.shape == truth.shape and predicted.dtype == torch.float32
    assert 0 <= predicted.min() and predicted.max() <= 1
    assert not predicted.requires_grad
    extrapolation = mse_per_sequence(predicted, truth)
    persistence = mse_per_sequence(Persistence()(observed, K), truth)
    assert (extrapolation < 0.2 * persistence).all(), (extrapolation, persistence)
    # every lead time, not only on average
    for k in range(K):
        assert (mse_per_sequence(predicted[:, k], truth[:, k])
                < 0.2 * mse_per_sequence(observed[:, -1], truth[:, k])).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extrapolation_runs_under_bf16_autocast(dtype):
    sequences = moving_sequences(size=32)
    observed, truth = sequences[:, :J].to(dtype), sequences[:, J:]
    model = OpticalFlowExtrapolation()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        predicted = model(observed, K)
    assert predicted.dtype == dtype and predicted.shape == truth.shape
    assert torch.isfinite(predicted.float()).all()
    assert (mse_per_sequence(predicted, truth)
            < 0.2 * mse_per_sequence(observed[:, -1:].expand_as(truth), truth)).all()


def test_extrapolation_without_echo_predicts_zeros_and_a_still_field_itself():
    model = OpticalFlowExtrapolation()
    zeros = torch.zeros(2, J, 1, 32, 32)
    assert torch.equal(model(zeros, K), torch.zeros(2, K, 1, 32, 32))
    assert torch.equal(model.motion(zeros[0]), torch.zeros(2, 32, 32, dtype=torch.float64))
    still = torch.full((1, J, 2, 16, 16), 0.5)
    assert torch.equal(model(still, 3), still[:, -1:].expand(-1, 3, -1, -1, -1))


def test_pixels_advected_in_from_outside_take_zero():
    """A uniform field moving right: the columns that enter on the left carry no echo."""
    observed = torch.zeros(1, J, 1, 32, 32)
    for t in range(J):
        observed[0, t, 0, 4:28, 2 + 2 * t:18 + 2 * t] = torch.linspace(0.2, 1.0, 16)
    model = OpticalFlowExtrapolation(interp_order=0)
    predicted = model(observed, 2)
    assert predicted.shape == (1, 2, 1, 32, 32)
    assert predicted[..., :2].abs().max() == 0  # left edge: advected in from outside
    assert torch.isfinite(predicted).all() and predicted.max() <= 1


@pytest.mark.parametrize(("method", "motion_frames", "size"),
                         [("DARTS", 3, 32), ("proesmans", 2, 64), ("proesmans", 2, 16)])
def test_the_other_pysteps_methods_predict_in_range(method, motion_frames, size):
    sequences = moving_sequences(size=size)
    model = OpticalFlowExtrapolation(method=method, motion_frames=motion_frames)
    predicted = model(sequences[:, :J], 3)
    assert predicted.shape == (2, 3, 1, size, size)
    assert torch.isfinite(predicted).all()
    assert 0 <= predicted.min() and predicted.max() <= 1
    if method == "proesmans" and size == 64:  # accurate on this field, like LK
        field = model.motion(sequences[0, :J])
        assert abs(field[0].median().item() - SHIFTS[0][0]) < 0.5
        assert abs(field[1].median().item() - SHIFTS[0][1]) < 0.5


def test_method_options_reach_pysteps():
    sequences = moving_sequences(size=32)
    model = OpticalFlowExtrapolation(method_options={"decl_scale": 5, "fd_kwargs": {
        "quality_level": 0.05}})
    assert model.config["init_args"]["method_options"]["decl_scale"] == 5
    assert model(sequences[:, :J], 2).shape == (2, 2, 1, 32, 32)
    with pytest.raises(TypeError, match="no_such_option"):
        OpticalFlowExtrapolation(method_options={"no_such_option": 1})(sequences[:, :J], 2)


def test_bad_options_and_inputs_are_named():
    with pytest.raises(OptionValueError, match=r"^method: must be one of 'LK', 'DARTS', "
                                               r"'proesmans'; got 'farneback'"):
        OpticalFlowExtrapolation(method="farneback")
    with pytest.raises(OptionValueError, match="^motion_frames: must be an integer of at least 2"):
        OpticalFlowExtrapolation(motion_frames=1)
    with pytest.raises(OptionValueError, match="^motion_frames: method 'proesmans'.*exactly two"):
        OpticalFlowExtrapolation(method="proesmans")
    with pytest.raises(OptionValueError, match="^interp_order: must be a spline order"):
        OpticalFlowExtrapolation(interp_order=7)
    with pytest.raises(OptionValueError, match="^method_options: DARTS needs N_t < "):
        OpticalFlowExtrapolation(method="DARTS", method_options={"N_t": 2})
    frames = torch.rand(2, 3, 1, 16, 16)
    with pytest.raises(OptionValueError,
                       match=r"^motion_frames: needs 4 observed frames.*only 3 are observed"):
        OpticalFlowExtrapolation(motion_frames=4)(frames, 2)
    with pytest.raises(OptionValueError, match="^motion_frames: needs 4"):
        OpticalFlowExtrapolation(motion_frames=4).motion(frames[0])
    with pytest.raises(ValueError, match="frames must be one sequence"):
        OpticalFlowExtrapolation().motion(frames)
    with pytest.raises(ValueError, match="frames must be \\(batch, time"):
        OpticalFlowExtrapolation()(frames[0], 2)
    # pysteps' proesmans code would crash the process on frames this small for 6 levels
    with pytest.raises(OptionValueError, match="num_levels=6 needs frames of at least 32"):
        OpticalFlowExtrapolation(method="proesmans", motion_frames=2,
                                 method_options={"num_levels": 6})(frames, 2)
    with pytest.raises(ValueError, match="cannot return its predictions of observed frames"):
        OpticalFlowExtrapolation().rollout(frames, 2, every_frame=True)


def test_missing_pysteps_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(nowcast_baselines, "PYSTEPS", RequirementCache("pysteps>=999"))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'predlearn\[nowcast\]'") as caught:
        OpticalFlowExtrapolation()
    assert isinstance(caught.value, nowcast_baselines.NowcastDependencyMissingError)
    assert "pysteps>=999" in str(caught.value)
    Persistence()  # needs nothing


def test_missing_opencv_is_asked_for_by_the_lucas_kanade_method_only(monkeypatch):
    monkeypatch.setattr(nowcast_baselines, "OPENCV", RequirementCache(module="no_such_cv2"))
    with pytest.raises(ModuleNotFoundError, match=r"needs OpenCV.*'predlearn\[nowcast\]'"):
        OpticalFlowExtrapolation(method="LK")
    OpticalFlowExtrapolation(method="DARTS")


def test_pysteps_is_imported_only_when_used_and_quietly():
    code = textwrap.dedent("""
        import sys, warnings
        import torch
        filters = list(warnings.filters)
        import predlearn.zoo
        assert "pysteps" not in sys.modules
        model = predlearn.zoo.OpticalFlowExtrapolation()
        assert "pysteps" not in sys.modules
        model(torch.rand(1, 3, 1, 16, 16), 2)
        assert "pysteps" in sys.modules
        assert list(warnings.filters) == filters
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "ok\n"  # pysteps' "configuration file found" line is not printed


# ---------------------------------------------------------------------------------------------
# The registry


@pytest.mark.parametrize(("name", "cls"), [("persistence", Persistence),
                                           ("extrapolation", OpticalFlowExtrapolation)])
def test_the_baselines_are_registered_without_weights(name, cls):
    assert name in predlearn.list_models()
    model = predlearn.create_model(name, **cls.tiny_config())
    assert type(model) is cls and predlearn.registry.MODELS.name_of(cls) == name
    assert not cls.trainable and not cls.predicts_every_frame
    assert list(model.parameters()) == [] and model.state_dict() == {}
    rebuilt = build_predictor(model.config)
    assert type(rebuilt) is cls and rebuilt.config == model.config


def test_extrapolation_config_records_its_options():
    model = predlearn.create_model("extrapolation", method="proesmans", motion_frames=2,
                                   interp_order=3)
    assert model.config == {
        "class_path": "predlearn.zoo.nowcast_baselines.OpticalFlowExtrapolation",
        "init_args": {"method": "proesmans", "motion_frames": 2, "interp_order": 3,
                      "method_options": None}}
