"""STEPS, the ensemble nowcasting baseline without weights (``--model=steps``): members drawn by
pysteps' STEPS along the motion of ``OpticalFlowExtrapolation``, faithful to pysteps."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from lightning_utilities.core.imports import RequirementCache

import predlearn
from predlearn.errors import OptionValueError
from predlearn.predictor import build_predictor
from predlearn.zoo import OpticalFlowExtrapolation, Steps, nowcast_baselines

#: checked without importing pysteps (its import prints and changes the warning filters)
pytestmark = pytest.mark.skipif(not (nowcast_baselines.PYSTEPS and nowcast_baselines.OPENCV),
                                reason="STEPS needs the nowcast extra: pip install "
                                       "'predlearn[nowcast]'")

J, K, SIZE = 4, 4, 48
#: (x to the right, y down) pixels per frame
SHIFT = (1, 1)
THRESHOLD = 10 / 70


def blobs(step: int, size: int = SIZE) -> torch.Tensor:
    """(size, size) in [0, 1]: three Gaussian blobs moved ``step`` times by SHIFT."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                          torch.arange(size, dtype=torch.float64), indexing="ij")
    scale = size / 48
    field = torch.zeros(size, size, dtype=torch.float64)
    for cy, cx, sigma, peak in ((16, 16, 4, 0.9), (26, 22, 5, 0.7), (18, 30, 3, 0.8)):
        cx, cy = cx * scale + SHIFT[0] * step, cy * scale + SHIFT[1] * step
        field += peak * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (sigma * scale) ** 2))
    return field.clamp(0, 1)


def sequences(batch: int = 2, channels: int = 1, size: int = SIZE) -> torch.Tensor:
    """(batch, J + K, channels, size, size) float32, the same moving blobs everywhere."""
    clip = torch.stack([blobs(t, size) for t in range(J + K)])[:, None]
    return clip.expand(-1, channels, -1, -1).expand(batch, -1, -1, -1, -1).float().contiguous()


def centre_of_mass(field: torch.Tensor) -> torch.Tensor:
    """(x, y) of a field (H, W)."""
    y, x = torch.meshgrid(torch.arange(field.shape[0], dtype=torch.float64),
                          torch.arange(field.shape[1], dtype=torch.float64), indexing="ij")
    field = field.double()
    return torch.stack([(x * field).sum(), (y * field).sum()]) / field.sum()


def test_shapes_range_spread_and_reproducibility():
    observed = sequences()[:, :J]
    model = Steps()
    torch.manual_seed(0)
    members = model.predict_members(observed, K, 3)
    assert members.shape == (2, 3, K, 1, SIZE, SIZE) and members.dtype == torch.float32
    assert torch.isfinite(members).all() and 0 <= members.min() and members.max() <= 1
    assert not members.requires_grad
    # no rain is 0, rain is at least the threshold
    assert ((members == 0) | (members >= THRESHOLD)).all()
    spread = members.std(dim=1)
    assert spread.mean() > 1e-3, spread.mean()  # the members differ
    torch.manual_seed(0)
    assert torch.equal(model.predict_members(observed, K, 3), members)
    torch.manual_seed(1)
    assert not torch.equal(model.predict_members(observed, K, 3), members)
    # the two (equal) sequences draw their own seeds: different members
    assert not torch.equal(members[0], members[1])
    # one forecast: one member (mean_members=1), the same as the module's forward
    prediction = model(observed, K)
    assert prediction.shape == (2, K, 1, SIZE, SIZE) and prediction.dtype == torch.float32
    torch.manual_seed(2)
    single = model.predict_members(observed.double(), K, 1)
    torch.manual_seed(2)
    assert torch.equal(model.predict(observed.double(), K), single[:, 0])
    averaged = Steps(mean_members=3)
    torch.manual_seed(3)
    mean = averaged.predict(observed.double(), K)
    torch.manual_seed(3)
    torch.testing.assert_close(mean, averaged.predict_members(observed.double(), K, 3).mean(1))


def direct_pysteps(sequence: torch.Tensor, seed: int, members: int) -> np.ndarray:
    """pysteps' STEPS called directly on one sequence (J, 1, H, W) with the documented
    mapping, the motion of OpticalFlowExtrapolation and the defaults: (M, K, H, W)."""
    get_method = nowcast_baselines.pysteps_module("nowcasts").get_method
    velocity = OpticalFlowExtrapolation().motion(sequence).numpy()
    fields = sequence[-3:, 0].double().numpy()  # AR(2): the last 3 frames
    values = np.where(fields < THRESHOLD, THRESHOLD - 5 / 70, fields)
    with contextlib.redirect_stdout(io.StringIO()):
        forecast = get_method("steps")(
            values, velocity, K, n_ens_members=members, n_cascade_levels=4,  # 48 px: 4 octaves
            precip_thr=THRESHOLD, kmperpixel=1.0, timestep=5.0, noise_method="nonparametric",
            ar_order=2, vel_pert_method="bps", mask_method="incremental",
            probmatching_method="cdf", seed=seed, num_workers=1)
    forecast = np.nan_to_num(forecast, nan=0.0)
    return np.clip(np.where(forecast < THRESHOLD, 0.0, forecast), 0, 1)


def test_members_are_pysteps_steps_member_by_member():
    observed = sequences()[:, :J].double()
    observed[1] = observed[1].flip(-1)  # another field for the second sequence
    torch.manual_seed(5)
    members = Steps().predict_members(observed, K, 3)
    torch.manual_seed(5)
    seeds = [int(torch.randint(0, 2**31 - 1, ())) for _ in range(2)]
    for b in range(2):
        expected = direct_pysteps(observed[b], seeds[b], 3)
        difference = np.abs(members[b, :, :, 0].numpy() - expected).max()
        assert difference < 1e-12, difference


def test_the_ensemble_mean_moves_with_the_field():
    clip = sequences(batch=1)
    observed, truth = clip[:, :J], clip[0, J + K - 1, 0]
    torch.manual_seed(0)
    mean = Steps().predict_members(observed, K, 6).mean(dim=1)[0, -1, 0]
    last, expected = centre_of_mass(observed[0, -1, 0]), centre_of_mass(truth)
    moved = centre_of_mass(mean)
    shift = moved - last
    assert (shift > 0.5 * K * torch.tensor(SHIFT)).all(), shift  # in the motion's direction
    assert (moved - expected).norm() < 0.5 * (last - expected).norm(), (moved, expected, last)


def test_channels_run_separately_on_the_same_motion_and_seed():
    observed = sequences(batch=1, channels=2, size=32)[:, :J]
    torch.manual_seed(7)
    both = Steps().predict_members(observed, 2, 2)
    torch.manual_seed(7)
    one = Steps().predict_members(observed[:, :, :1], 2, 2)
    assert both.shape == (1, 2, 2, 2, 32, 32)
    assert torch.equal(both[:, :, :, :1], one) and torch.equal(both[:, :, :, 1:], one)


def test_no_rain_gives_zeros_and_a_field_without_change_persists():
    model = Steps()
    for dry in (torch.zeros(2, J, 1, 16, 16), torch.full((1, J, 2, 32, 32), THRESHOLD - 0.01)):
        members = model.predict_members(dry, 3, 4)
        assert members.shape == (dry.shape[0], 4, 3, *dry.shape[2:])
        assert torch.equal(members, torch.zeros_like(members))
        assert torch.equal(model(dry, 3), torch.zeros(dry.shape[0], 3, *dry.shape[2:]))
    appearing = torch.zeros(1, J, 1, 32, 32)  # rain only in the last frame: pysteps' zeros
    appearing[0, -1, 0] = blobs(0, 32).float()
    assert torch.equal(model(appearing, 2), torch.zeros(1, 2, 1, 32, 32))
    still = sequences(batch=1, size=32)[:, :1].expand(-1, J, -1, -1, -1)
    persisted = torch.where(still[:, -1] < THRESHOLD, 0, still[:, -1])
    assert torch.equal(model.predict_members(still, 2, 2),
                       persisted[:, None, None].expand(-1, 2, 2, -1, -1, -1))
    uniform = torch.full((1, J, 1, 16, 16), 0.5)
    assert torch.equal(model(uniform, 2), uniform[:, :2])
    # frames that differ only in scale: every level perfectly correlated, AR(2) singular
    scaled = torch.zeros(1, J, 1, 32, 32)
    scaled[..., 8:24, 8:24] = 0.6
    scaled[:, 1::2] *= 0.8  # the same rain, weaker every other frame (the last: 0.48)
    with pytest.warns(RuntimeWarning, match=r"AR\(2\) fit is singular.*using AR\(1\)"):
        members = model.predict_members(scaled, 2, 2)
    assert torch.isfinite(members).all() and 0.4 < members.max() <= 0.6


def test_cascade_levels_follow_the_frame_size():
    model = Steps()
    assert [model.cascade_levels(s, s) for s in (8, 16, 32, 48, 64, 128, 512)] == [
        3, 3, 4, 4, 5, 6, 6]
    assert Steps(n_cascade_levels=8).cascade_levels(512, 300) == 8
    with pytest.raises(OptionValueError, match=r"^n_cascade_levels: 6 levels need frames of at "
                                               r"least 128 pixels.*got 48 x 48.*<= 4"):
        Steps(n_cascade_levels=6).predict_members(sequences()[:, :J], 2, 2)


def test_too_few_frames_and_bad_options_are_one_line_errors():
    frames = sequences(batch=1, size=16)[:, :J]
    refusals = [
        (lambda: Steps()(frames[:, :2], 2),
         r"^ar_order: an AR\(2\) model needs 3 observed frames, but only 2 are observed"),
        (lambda: Steps(motion_frames=4)(frames[:, :3], 2),
         r"^motion_frames: needs 4 observed frames"),
        (lambda: Steps(precip_thr=1.5), r"^precip_thr: must be a value inside"),
        (lambda: Steps(n_cascade_levels=2), r"^n_cascade_levels: must be an integer of at least 3"),
        (lambda: Steps(ar_order=0), r"^ar_order: must be an integer of at least 1"),
        (lambda: Steps(kmperpixel=0), r"^kmperpixel: must be positive"),
        (lambda: Steps(noise_method="white"), r"^noise_method: must be one of 'nonparametric'"),
        (lambda: Steps(mask_method="all"), r"^mask_method: must be one of"),
        (lambda: Steps(probmatching_method="mean", mask_method=None),
         r"^probmatching_method: 'mean' .* needs a mask_method"),
        (lambda: Steps(vel_pert_method="gauss"), r"^vel_pert_method: must be one of 'bps', None"),
        (lambda: Steps(mean_members=0), r"^mean_members: must be an integer of at least 1"),
        (lambda: Steps(method="farneback"), r"^method: must be one of 'LK'"),
    ]
    for refuse, message in refusals:
        with pytest.raises(OptionValueError, match=message) as caught:
            refuse()
        assert "\n" not in str(caught.value)
    with pytest.raises(OptionValueError) as caught:
        Steps(ar_order=3)(frames[:, :3], 2)
    assert caught.value.as_typed().option == "--model.predictor.ar_order"
    with pytest.raises(ValueError, match="members must be a positive integer"):
        Steps().predict_members(frames, 2, 0)
    with pytest.raises(ValueError, match="frames must be \\(batch, time"):
        Steps().predict_members(frames[0], 2, 2)


def test_missing_pysteps_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(nowcast_baselines, "PYSTEPS", RequirementCache("pysteps>=999"))
    with pytest.raises(nowcast_baselines.NowcastDependencyMissingError,
                       match=r"^the STEPS ensemble baseline needs pysteps.*'predlearn\[nowcast\]'"):
        Steps()


def test_registered_without_weights_as_a_native_ensemble():
    model = predlearn.create_model("steps", **Steps.tiny_config())
    assert type(model) is Steps and predlearn.registry.MODELS.name_of(Steps) == "steps"
    assert not Steps.trainable and Steps.native_ensemble and Steps.export_refusal
    assert list(model.parameters()) == [] and model.state_dict() == {}
    rebuilt = build_predictor(model.config)
    assert type(rebuilt) is Steps and rebuilt.config == model.config
    assert model.config["init_args"]["precip_thr"] == THRESHOLD


def test_pysteps_is_imported_only_when_used_and_quietly():
    code = textwrap.dedent("""
        import sys, warnings
        import torch
        filters = list(warnings.filters)
        import predlearn.zoo
        model = predlearn.zoo.Steps()
        assert "pysteps" not in sys.modules
        blob = torch.zeros(1, 3, 1, 16, 16)
        for t in range(3):  # a blob moving right, growing: STEPS runs
            blob[0, t, 0, 4:10 + t, 3 + t:9 + 2 * t] = torch.linspace(0.3, 0.8, 6 + t)
        assert model.predict_members(blob, 2, 2).shape == (1, 2, 2, 1, 16, 16)
        assert "pysteps.nowcasts" in sys.modules
        assert list(warnings.filters) == filters
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "ok\n"  # neither pysteps' configuration line nor STEPS' log
