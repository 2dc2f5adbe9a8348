"""Missing values (masked pixels), value bounds and per-channel curves, against hand-computed
values (docs/metrics.md, "Missing values (masked pixels)")."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from support import quiet_trainer
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import Metric

import predlearn
from predlearn.categorical_scores import CategoricalScores, contingency_counts
from predlearn.errors import OptionValueError
from predlearn.fractions_skill_score import FractionsSkillScore, fss_sums
from predlearn.metric_keys import is_step_key
from predlearn.metrics import (
    FrameBCE,
    FrameMSE,
    FramePSNR,
    FrameSSIM,
    PerStepMetric,
    SequenceMetrics,
    curve_label,
)
from predlearn.module import PredictiveModule, sequence_loss, valid_of
from predlearn.power_spectrum import PowerSpectrum
from predlearn.registry import METRICS
from predlearn.units import ScoringSettings, ValueMapping

F64 = torch.float64
SETTINGS = ScoringSettings(ValueMapping(low=0.0, high=1.0), (0.3, 0.6), fss_scales=(1, 3))


def random_pair(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


def random_mask(shape: tuple[int, ...], seed: int, keep: float = 0.7) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < keep


# --- the loss --------------------------------------------------------------------------------


def test_masked_loss_is_the_mean_over_valid_elements_with_zero_gradient_elsewhere():
    preds = torch.tensor([0.5, 0.0, 1.0, float("nan")], requires_grad=True)  # NaN: masked
    targets = torch.tensor([0.0, 0.25, 0.5, 0.75])
    valid = torch.tensor([True, True, False, False])
    loss = sequence_loss(preds, targets, valid=valid)
    # errors 0.5 and -0.25 on the two valid elements
    assert loss.item() == pytest.approx((0.5 + 0.25) / 2 + (0.25 + 0.0625) / 2)
    loss.backward()
    # d/dp of mean |e| + mean e^2 over n = 2: sign(e) / 2 + e
    torch.testing.assert_close(preds.grad, torch.tensor([0.5 + 0.5, -0.5 - 0.25, 0.0, 0.0]))
    assert sequence_loss(preds, targets, "l1", valid).item() == pytest.approx(0.375)
    assert sequence_loss(preds, targets, "l2", valid).item() == pytest.approx(0.15625)


def test_loss_without_any_valid_element_is_zero_with_zero_gradient():
    preds = torch.tensor([0.5, float("inf")], requires_grad=True)
    loss = sequence_loss(preds, torch.zeros(2), valid=torch.zeros(2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and preds.grad is not None and preds.grad.tolist() == [0.0, 0.0]


def test_all_true_mask_gives_the_unmasked_loss_exactly():
    preds, targets = random_pair((2, 3, 1, 4, 4), 0)
    every = torch.ones_like(preds, dtype=torch.bool)
    for name in ("l1+l2", "l1", "l2"):
        assert torch.equal(sequence_loss(preds, targets, name, every),
                           sequence_loss(preds, targets, name))


# --- per-frame metrics -----------------------------------------------------------------------

# one frame of 1x2x2 pixels, the last masked: squared errors 0.25, 0.04, 0.0 on the valid three
PREDS = torch.tensor([[0.5, 0.2], [0.0, 1.0]]).view(1, 1, 1, 2, 2)
TARGET = torch.zeros(1, 1, 1, 2, 2)
VALID = torch.tensor([[True, True], [True, False]]).view(1, 1, 1, 2, 2)
VALID_MSE = (0.25 + 0.04 + 0.0) / 3


def scored(metric: PerStepMetric, preds, target, valid=None) -> float:
    metric.update(preds, target, valid)
    return metric.compute().item()


def test_mse_over_valid_pixels_scaled_to_the_frame():
    assert scored(FrameMSE(1), PREDS, TARGET, VALID) == pytest.approx(VALID_MSE * 4)
    assert scored(FrameMSE(1, per="pixel"), PREDS, TARGET, VALID) == pytest.approx(VALID_MSE)


def test_bce_over_valid_pixels_scaled_to_the_frame():
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 1, 1, 2, 2)
    preds = torch.tensor([[0.5, 0.2], [0.9, 0.7]]).view(1, 1, 1, 2, 2)
    mean = -(math.log(0.5) + math.log(0.8) + math.log(0.9)) / 3  # (1, 1) masked
    assert scored(FrameBCE(1), preds, target, VALID) == pytest.approx(4 * mean, rel=1e-5)


def test_psnr_from_the_masked_mse():
    expected = 10 * math.log10(1.0 / VALID_MSE)
    assert scored(FramePSNR(1), PREDS, TARGET, VALID) == pytest.approx(expected, rel=1e-5)


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Wang et al.'s SSIM map of (N, 1, H, W) fields in plain torch: Gaussian window 11, sigma
    1.5, K1 0.01, K2 0.03, data range 1, reflected borders (torchmetrics' settings)."""
    coords = torch.arange(11, dtype=F64) - 5
    gauss = torch.exp(-coords.square() / (2 * 1.5**2))
    gauss = gauss / gauss.sum()
    kernel = (gauss[:, None] * gauss[None, :])[None, None]

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(z, (5, 5, 5, 5), mode="reflect"), kernel)

    x, y = x.to(F64), y.to(F64)
    mx, my = blur(x), blur(y)
    sxx = (blur(x * x) - mx * mx).clamp(min=0)
    syy = (blur(y * y) - my * my).clamp(min=0)
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def test_ssim_is_the_ssim_map_averaged_over_valid_pixels():
    preds, target = random_pair((1, 1, 1, 12, 12), 1)
    valid = random_mask(preds.shape, 2, keep=0.6)
    reference = ssim_map(preds[0], target[0])[0, 0]
    # the reference is SSIM: its mean is the unmasked score
    assert scored(FrameSSIM(1), preds, target) == pytest.approx(reference.mean().item(), abs=1e-5)
    expected = reference[valid[0, 0, 0]].mean().item()
    assert scored(FrameSSIM(1), preds, target, valid) == pytest.approx(expected, abs=1e-5)


def test_masked_scores_of_whole_frames_equal_the_unmasked_scores():
    preds, target = random_pair((2, 2, 2, 12, 12), 3)
    every = torch.ones_like(preds, dtype=torch.bool)
    for metric in (FrameMSE(2), FrameMSE(2, per="pixel"), FrameBCE(2), FramePSNR(2),
                   FrameSSIM(2)):
        torch.testing.assert_close(metric.masked_per_frame(preds, target, every),
                                   metric.per_frame(preds, target), rtol=1e-5, atol=1e-6)


def test_masked_pixels_values_do_not_change_pixel_scores():
    preds, target = random_pair((2, 2, 1, 4, 4), 4)
    valid = random_mask(preds.shape, 5)
    noisy_preds = torch.where(valid, preds, torch.rand_like(preds))
    noisy_target = torch.where(valid, target, torch.full_like(target, float("nan")))
    for build in (lambda: FrameMSE(2), lambda: FrameBCE(2), lambda: FramePSNR(2)):
        clean, noisy = build(), build()
        clean.update(preds, target, valid)
        noisy.update(noisy_preds, noisy_target, valid)
        torch.testing.assert_close(noisy.compute(), clean.compute())


def test_a_frame_without_valid_pixels_is_left_out_of_its_step():
    preds = torch.zeros(2, 2, 1, 1, 2)
    preds[0] = 0.5  # squared error 0.25 per pixel
    preds[1] = 1.0  # 1.0 per pixel
    valid = torch.ones_like(preds, dtype=torch.bool)
    valid[1, 1] = False  # sequence 2, step 2: nothing observed
    metric = FrameMSE(2)
    metric.update(preds, torch.zeros_like(preds), valid)
    assert metric.count.tolist() == [2.0, 1.0]
    # step 1: (0.5 + 2.0) / 2 frames; step 2: sequence 1 alone
    torch.testing.assert_close(metric.compute(), torch.tensor([1.25, 0.5], dtype=F64))
    never = FrameMSE(2)
    valid[0, 1] = False  # no frame of step 2 has a valid pixel
    never.update(preds, torch.zeros_like(preds), valid)
    curve = never.compute()
    assert curve[0].item() == 1.25 and math.isnan(curve[1].item())
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="before any update"):
        FrameMSE(2).compute()


# --- every registered metric -----------------------------------------------------------------


def all_metrics(horizon: int, **options) -> SequenceMetrics:
    # every metric of one forecast (the ensemble scores, which need members, have their tests)
    names = [name for name in METRICS.names()
             if not getattr(METRICS.get(name), "needs_members", False)]
    return SequenceMetrics(horizon, names, "test", SETTINGS, **options)


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                exact: bool = True) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if exact:
            assert torch.equal(actual[key], value) or (
                torch.isnan(actual[key]).all() and torch.isnan(value).all()), key
        else:
            torch.testing.assert_close(actual[key], value, equal_nan=True, msg=key)


def test_an_all_true_mask_gives_exactly_the_unmasked_values_of_every_metric():
    preds, target = random_pair((3, 2, 2, 12, 12), 6)
    every = torch.ones_like(preds, dtype=torch.bool)
    for options in ({}, {"channel_names": ("a", "b")}):
        plain, masked = all_metrics(2, **options), all_metrics(2, **options)
        plain.update(preds, target)
        masked.update(preds, target, valid=every)
        assert_same(masked.compute(), plain.compute())
    spectra = [PowerSpectrum(2, (12, 12)) for _ in range(2)]
    spectra[0].update(preds, target)
    spectra[1].update(preds, target, valid=every)
    assert_same(spectra[1].compute(), spectra[0].compute())


def test_masks_must_be_boolean_and_of_the_frames_shape():
    preds, target = random_pair((1, 2, 1, 4, 4), 7)
    with pytest.raises(ValueError, match="boolean mask .* got torch.float32"):
        FrameMSE(2).update(preds, target, torch.ones_like(preds))
    with pytest.raises(ValueError, match=r"shape \(1, 2, 1, 4, 4\); got torch.bool of shape"):
        SequenceMetrics(2, ["mse"]).update(preds, target, torch.ones(1, 2, 1, 4, dtype=torch.bool))


# --- nowcasting scores and the power spectrum ------------------------------------------------


def frames(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows).view(1, 1, 1, len(rows), len(rows[0]))


def test_masked_pixels_are_in_no_cell_of_the_contingency_table():
    target = frames([0.7, 0.4, 0.1], [0.0, 0.25, 0.35])
    preds = frames([0.8, 0.2, 0.5], [0.0, 0.1, 0.62])
    valid = frames([1, 0, 1], [1, 1, 0]).bool()  # without the miss (0, 1) and the hit (1, 2)
    counts = contingency_counts(preds, target, (0.3, 0.6), valid)
    # >= 0.3: hit (0, 0), false alarm (0, 2), negatives (1, 0), (1, 1)
    # >= 0.6: hit (0, 0), negatives (0, 2), (1, 0), (1, 1); the false alarm (1, 2) is masked
    assert counts[0, 0].tolist() == [[1.0, 0.0, 1.0, 2.0], [1.0, 0.0, 0.0, 3.0]]
    metric = CategoricalScores(1, SETTINGS)
    metric.update(preds, target, valid)
    assert metric.curves()["csi_0.3dBZ"].tolist() == [0.5]


def loop_masked_fss_sums(forecast: list[list[float]], observed: list[list[float]],
                         valid: list[list[bool]], size: int) -> tuple[float, float]:
    """FSS sums over the valid pixels: each fraction the valid events of its window over the
    window's size * size pixels less its masked ones (outside the field: valid non-events)."""
    h, w, r = len(valid), len(valid[0]), size // 2

    def fractions(field: list[list[float]]) -> list[list[float]]:
        out = [[0.0] * w for _ in range(h)]
        for i in range(h):
            for j in range(w):
                window = [(a, b) for a in range(i - r, i + r + 1) for b in range(j - r, j + r + 1)
                          if 0 <= a < h and 0 <= b < w]
                events = sum(field[a][b] >= 0.5 for a, b in window if valid[a][b])
                masked = sum(not valid[a][b] for a, b in window)
                out[i][j] = events / (size * size - masked) if valid[i][j] else 0.0
        return out

    pf, po = fractions(forecast), fractions(observed)
    cells = [(i, j) for i in range(h) for j in range(w) if valid[i][j]]
    return (sum((pf[i][j] - po[i][j]) ** 2 for i, j in cells),
            sum(pf[i][j] ** 2 + po[i][j] ** 2 for i, j in cells))


def test_fss_over_valid_pixels_against_loops():
    forecast = [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]
    observed = [[1, 1, 0, 0], [0, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 1]]
    valid = [[True, False, True, True], [True, True, True, False],
             [False, True, True, True], [True, True, True, True]]
    preds, target = frames(*forecast).float(), frames(*observed).float()
    mask = frames(*valid).bool()
    differences, references = fss_sums(preds, target, (0.5,), (1, 3), mask)
    for s, size in enumerate((1, 3)):
        expected = loop_masked_fss_sums(forecast, observed, valid, size)
        assert differences[0, 0, s].item() == pytest.approx(expected[0], rel=1e-6), size
        assert references[0, 0, s].item() == pytest.approx(expected[1], rel=1e-6), size
    # a forecast event at a masked pixel changes nothing
    moved = preds.clone()
    moved[0, 0, 0, 0, 1] = 1.0
    torch.testing.assert_close(fss_sums(moved, target, (0.5,), (1, 3), mask),
                               (differences, references))
    metric = FractionsSkillScore(1, SETTINGS)
    metric.update(preds, target, mask)
    assert metric.curves()["fss_0.3dBZ_3px"].item() == pytest.approx(
        1 - expected[0] / expected[1], rel=1e-6)


def test_power_spectrum_leaves_out_frames_with_a_masked_pixel():
    preds, target = random_pair((3, 2, 1, 8, 8), 8)
    valid = torch.ones_like(preds, dtype=torch.bool)
    valid[0, 0, 0, 3, 3] = False  # step 1 of sequence 1 is left out
    valid[:, 1, 0, 0, 0] = False  # step 2 of every sequence
    metric = PowerSpectrum(2, (8, 8))
    metric.update(preds, target, valid)
    whole = PowerSpectrum(1, (8, 8))
    whole.update(preds[1:, :1], target[1:, :1])
    spectra = metric.compute()
    torch.testing.assert_close(spectra["observed"][0], whole.compute()["observed"].reshape(-1))
    torch.testing.assert_close(spectra["predicted"][0], whole.compute()["predicted"].reshape(-1))
    assert torch.isnan(spectra["observed"][1]).all() and metric.count.tolist() == [2.0, 0.0]


# --- merging states, as DDP sums them --------------------------------------------------------


def test_states_summed_over_two_halves_equal_one_metric_fed_everything():
    preds, target = random_pair((4, 2, 2, 12, 12), 9)
    valid = random_mask(preds.shape, 10)
    valid[1, 0] = False  # a frame without a valid pixel, in the first half
    builders = (lambda: all_metrics(2, channel_names=("a", "b")),
                lambda: PowerSpectrum(2, (12, 12)))
    for build in builders:
        whole, first, second = build(), build(), build()
        whole.update(preds, target, valid=valid)
        first.update(preds[:2], target[:2], valid=valid[:2])
        second.update(preds[2:], target[2:], valid=valid[2:])
        # torchmetrics' merge_state: each "sum" state added, as DDP reduces them
        for a, b in zip(first.modules(), second.modules()):
            if isinstance(a, Metric):
                a.merge_state(b)
        assert_same(first.compute(), whole.compute(), exact=False)


# --- bounds and channels ---------------------------------------------------------------------


def test_bounds_none_leaves_predictions_unclamped():
    preds = torch.tensor([-0.5, 1.5]).view(1, 1, 1, 1, 2)
    target = torch.zeros_like(preds)
    assert scored(FrameMSE(1), preds, target) == pytest.approx(1.0)  # clamped to [0, 1]
    assert scored(FrameMSE(1, bounds=None), preds, target) == pytest.approx(0.25 + 2.25)
    assert scored(FrameMSE(1, bounds=(-1.0, 1.0)), preds, target) == pytest.approx(0.25 + 1.0)
    metrics = SequenceMetrics(1, ["mse"], bounds=None)
    metrics.update(preds, target)
    assert metrics.compute()["test/mse_per_frame"].item() == pytest.approx(2.5)
    with pytest.raises(OptionValueError, match="'bce' .*no Bernoulli reading"):
        SequenceMetrics(1, ["mse", "bce"], bounds=None)


def test_per_channel_curves_equal_the_metric_on_that_channel_alone():
    preds, target = random_pair((3, 2, 2, 12, 12), 11)
    valid = random_mask(preds.shape, 12)
    names = ["mse", "psnr", "ssim", "bce", "categorical"]
    metrics = SequenceMetrics(2, names, "test", SETTINGS, channel_names=("ir108", "wv062"))
    metrics.update(preds, target, valid=valid)
    curves = metrics.curves()
    for c, channel in enumerate(("ir108", "wv062")):
        alone = SequenceMetrics(2, names, "test", SETTINGS)
        alone.update(preds[:, :, c:c + 1], target[:, :, c:c + 1], valid=valid[:, :, c:c + 1])
        for key, curve in alone.curves().items():
            if key.startswith(("csi", "pod", "far", "hss", "ets")):
                assert f"{key}[{channel}]" not in curves  # physical scores: all channels only
            else:
                assert torch.equal(curves[f"{key}[{channel}]"], curve), key
    assert metrics.directions()["psnr[wv062]"] is True
    assert "test/ssim[ir108]/step_02" in metrics.compute()
    assert list(curves)[:3] == ["mse_per_frame", "mse_per_frame[ir108]", "mse_per_frame[wv062]"]
    whole = SequenceMetrics(2, ["mse"], channel_names=("ir108", "wv062"))
    whole.update(preds, target)  # without a mask, the channels' sums add up to the frame's
    sums = whole.curves()
    torch.testing.assert_close(sums["mse_per_frame[ir108]"] + sums["mse_per_frame[wv062]"],
                               sums["mse_per_frame"])


def test_channel_keys_parse_and_label():
    assert is_step_key("test/mse_per_frame[ir108]/step_01")
    assert not is_step_key("test/mse_per_frame[ir108]")
    assert curve_label("mse_per_frame[ir108]") == curve_label("mse_per_frame") + " [ir108]"
    assert curve_label("csi_30dBZ[a]") == "CSI, event >= 30 dBZ [a]"
    one = SequenceMetrics(1, ["mse"], channel_names=("only",))
    one.update(torch.zeros(1, 1, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2))
    assert list(one.curves()) == ["mse_per_frame"]  # one channel: no curve of its own
    with pytest.raises(ValueError, match="2 channel names .* frames of 3 channels"):
        SequenceMetrics(1, ["mse"], channel_names=("a", "b")).update(
            torch.zeros(1, 1, 3, 2, 2), torch.zeros(1, 1, 3, 2, 2))
    with pytest.raises(ValueError, match="without '/'"):
        SequenceMetrics(1, ["mse"], channel_names=("a/b", "c"))


# --- the LightningModule ---------------------------------------------------------------------


def masked_batch(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    frames_, _ = random_pair(shape, seed)
    valid = random_mask(shape, seed + 1)
    return torch.where(valid, frames_, torch.zeros_like(frames_)), valid  # 0.0: the fill value


def test_training_loss_of_a_masked_batch_is_the_masked_loss_by_hand():
    batch, valid = masked_batch((2, 5, 1, 4, 4), 13)  # J = 3, K = 2
    module = PredictiveModule(predlearn.create_model("persistence"), context_frames=3, horizon=2,
                              reverse_input=True)
    loss, _ = module.training_loss((batch, valid), 0)
    # persistence repeats the last observed frame; the batch is also played backwards
    sequences = torch.cat([batch, batch.flip(1)])
    masks = torch.cat([valid, valid.flip(1)])
    errors = (sequences[:, 2:3] - sequences[:, 3:])[masks[:, 3:]]
    assert loss.item() == pytest.approx((errors.abs().mean() + errors.square().mean()).item())
    assert valid_of((batch, valid)) is valid and PredictiveModule.valid_of([batch]) is None
    assert valid_of((batch, batch)) is None  # a second item that is no mask
    every = torch.ones_like(valid)
    assert torch.equal(module.training_loss((batch, every), 0)[0], module.training_loss(batch, 0)[0])


def test_training_loss_over_every_frame_uses_the_frames_masks():
    batch, valid = masked_batch((2, 5, 1, 8, 8), 15)
    predictor = predlearn.create_model("convlstm", frame_size=(8, 8), hidden_channels=[4],
                                       kernel_size=3)
    module = PredictiveModule(predictor, context_frames=3, horizon=2, loss_frames="all")
    loss, _ = module.training_loss([batch, valid], 0)
    outputs = predictor.rollout(batch[:, :3], 2, targets=batch[:, 3:], every_frame=True).outputs
    errors = (outputs - batch[:, 1:])[valid[:, 1:]]
    torch.testing.assert_close(loss, errors.abs().mean() + errors.square().mean())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in predictor.parameters())


class MaskedData(L.LightningDataModule):
    """(frames, valid) batches of two named channels, z-scored: no value bounds."""

    channel_names = ("ir108", "wv062")
    value_bounds = None

    def __init__(self, batch: torch.Tensor, valid: torch.Tensor) -> None:
        super().__init__()
        self.batch, self.valid = batch, valid

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.batch, self.valid), batch_size=2)


def test_validation_of_masked_data_scores_valid_pixels_per_channel_without_bce():
    batch, valid = masked_batch((3, 5, 2, 4, 4), 17)
    batch[0, 3:] = 3.0  # z-scored values above 1: not clamped
    module = PredictiveModule(predlearn.create_model("persistence"), context_frames=3, horizon=2,
                              metrics=["mse"])  # no SSIM on 4x4 frames
    (scores,) = quiet_trainer().validate(module, datamodule=MaskedData(batch, valid))
    squared = (batch[:, 2:3] - batch[:, 3:]).square()
    mask = valid[:, 3:]
    per_frame = (squared * mask).sum(dim=(2, 3, 4)) / mask.sum(dim=(2, 3, 4)) * 32  # (3, 2)
    assert scores["val/mse_per_frame/step_02"] == pytest.approx(per_frame[:, 1].mean().item(),
                                                                rel=1e-5)
    alone = (squared * mask)[:, :, 1].sum(dim=(2, 3)) / mask[:, :, 1].sum(dim=(2, 3)) * 16
    assert scores["val/mse_per_frame[wv062]"] == pytest.approx(alone.mean().item(), rel=1e-5)
    errors = (batch[:, 2:3] - batch[:, 3:])[mask]
    assert scores["val/loss"] == pytest.approx(
        (errors.abs().mean() + errors.square().mean()).item(), rel=1e-5)


def test_value_bounds_of_the_data_choose_the_clamp_and_the_default_metrics():
    data = MaskedData(*masked_batch((1, 5, 2, 4, 4), 19))
    module = PredictiveModule(predlearn.create_model("persistence"), context_frames=3, horizon=2)
    module.prepare_metrics(data)
    assert module.test_metrics.names == ["mse", "psnr", "ssim"]  # bce: no Bernoulli reading
    assert module.test_metrics.channel_names == ("ir108", "wv062")
    frames_ = torch.full((1, 3, 2, 4, 4), -2.0)
    assert module.predict_step(frames_, 0).min().item() == -2.0  # None: not clamped
    module.prepare_metrics(None)  # data without value_bounds: [0, 1]
    assert module.predict_step(frames_, 0).min().item() == 0.0
    asked = PredictiveModule(predlearn.create_model("persistence"), context_frames=3, horizon=2,
                             metrics=["mse", "bce"])
    with pytest.raises(OptionValueError, match="metrics: 'bce' reads values as Bernoulli means"):
        asked.prepare_metrics(data)
