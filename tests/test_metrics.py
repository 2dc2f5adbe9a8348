"""Metrics against hand-computed values, per-frame vs per-pixel MSE, and DDP agreement."""

from __future__ import annotations

import math

import pytest
import torch
from support import scores_on_two_processes

from predlearn.metric_keys import step_key
from predlearn.metrics import (
    DEFAULT_METRICS,
    FrameBCE,
    FrameMSE,
    FramePSNR,
    FrameSSIM,
    SequenceMetrics,
)


def two_frame_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """B=2 sequences, K=2 steps, 1x2x2 frames with errors chosen for easy arithmetic."""
    target = torch.zeros(2, 2, 1, 2, 2)
    preds = torch.zeros(2, 2, 1, 2, 2)
    preds[0, 0] = torch.tensor([[0.5, 0.0], [0.0, 0.0]])  # squared error sum 0.25
    preds[0, 1] = torch.tensor([[0.5, 0.5], [0.5, 0.5]])  # 1.0
    preds[1, 0] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # 1.0
    preds[1, 1] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # 2.0
    return preds, target


def test_mse_per_frame_sums_pixels_and_per_pixel_averages_them():
    preds, target = two_frame_batch()
    per_frame = FrameMSE(horizon=2)
    per_frame.update(preds, target)
    # step 1: (0.25 + 1.0) / 2 sequences; step 2: (1.0 + 2.0) / 2
    torch.testing.assert_close(per_frame.compute(), torch.tensor([0.625, 1.5], dtype=torch.float64))
    per_pixel = FrameMSE(horizon=2, per="pixel")
    per_pixel.update(preds, target)
    # the same sums divided by the 4 pixels of a frame
    torch.testing.assert_close(per_pixel.compute(), per_frame.compute() / 4)
    assert per_frame.key == "mse_per_frame" and per_pixel.key == "mse_per_pixel"


def test_mse_per_frame_scale_matches_paper_example():
    # docs/metrics.md: 56.8 per frame on 64x64 frames is a per-pixel MSE of about 0.0139.
    target = torch.zeros(1, 1, 1, 64, 64)
    preds = torch.full_like(target, math.sqrt(56.8 / 4096))
    metric = FrameMSE(horizon=1)
    metric.update(preds, target)
    assert metric.compute().item() == pytest.approx(56.8, rel=1e-5)
    assert 56.8 / 4096 == pytest.approx(0.0139, abs=5e-5)


def test_predictions_are_clipped_to_unit_range_before_scoring():
    target = torch.zeros(1, 1, 1, 1, 2)
    preds = torch.tensor([-0.5, 1.5]).view(1, 1, 1, 1, 2)  # clipped to [0, 1]
    metric = FrameMSE(horizon=1)
    metric.update(preds, target)
    assert metric.compute().item() == pytest.approx(1.0)


def test_bce_per_frame_against_hand_computed_value():
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 1, 2, 2)
    preds = torch.tensor([0.5, 0.5, 0.9, 0.2]).view(1, 1, 1, 2, 2)
    expected = -(math.log(0.5) + math.log(0.5) + math.log(0.9) + math.log(0.8))
    metric = FrameBCE(horizon=1)
    metric.update(preds, target)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-5)


def test_bce_is_finite_for_saturated_predictions():
    target = torch.ones(1, 1, 1, 2, 2)
    metric = FrameBCE(horizon=1)
    metric.update(torch.zeros_like(target), target)
    value = metric.compute().item()
    assert math.isfinite(value) and value == pytest.approx(-4 * math.log(1e-7), rel=1e-3)


def test_psnr_is_averaged_per_frame_with_data_range_one():
    target = torch.zeros(2, 1, 1, 4, 4)
    preds = torch.zeros(2, 1, 1, 4, 4)
    preds[0] = 0.1  # per-pixel MSE 0.01 -> 20 dB
    preds[1] = 0.01  # 1e-4 -> 40 dB
    metric = FramePSNR(horizon=1)
    metric.update(preds, target)
    # mean of the per-frame PSNRs (30 dB), not the PSNR of the mean MSE (~23 dB)
    assert metric.compute().item() == pytest.approx(30.0, rel=1e-5)


def test_ssim_of_constant_frames_matches_the_luminance_formula():
    a, b = 0.25, 0.5  # exact in float32, so the window sums carry no rounding noise
    c1 = (0.01 * 1.0) ** 2  # K1 = 0.01, data range 1.0
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # no variance: contrast term is 1
    preds = torch.full((1, 1, 1, 16, 16), a)
    target = torch.full((1, 1, 1, 16, 16), b)
    metric = FrameSSIM(horizon=1)
    metric.update(preds, target)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-4)
    same = FrameSSIM(horizon=1)
    noise = torch.rand(1, 1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    same.update(noise, noise)
    assert same.compute().item() == pytest.approx(1.0, abs=1e-5)


def test_sequence_metrics_keys_name_the_convention():
    # zero-padded to 12x12 (SSIM's window is 11): the padding adds no error
    preds, target = (torch.nn.functional.pad(x, (0, 10, 0, 10)) for x in two_frame_batch())
    metrics = SequenceMetrics(horizon=2, prefix="test")
    metrics.update(preds, target)
    values = metrics.compute()
    assert step_key("test", "mse_per_frame", 3) == "test/mse_per_frame/step_03"
    for key in ("mse_per_frame", "bce_per_frame", "psnr", "ssim"):
        assert f"test/{key}" in values
        assert f"test/{key}/step_01" in values and f"test/{key}/step_02" in values
        mean = (values[f"test/{key}/step_01"] + values[f"test/{key}/step_02"]) / 2
        torch.testing.assert_close(values[f"test/{key}"], mean)
    assert values["test/mse_per_frame/step_02"].item() == pytest.approx(1.5)


def test_metric_errors_name_the_shapes():
    metric = FrameMSE(horizon=3)
    with pytest.raises(ValueError, match="3 predicted steps; got 2"):
        metric.update(*two_frame_batch())
    with pytest.raises(ValueError, match=r"\(2, 2, 1, 2, 2\) and \(2, 2, 1, 2\)"):
        FrameMSE(horizon=2).update(torch.zeros(2, 2, 1, 2, 2), torch.zeros(2, 2, 1, 2))
    with pytest.raises(ValueError, match="at least 11x11 .* got 2x2"):
        FrameSSIM(horizon=2).update(*two_frame_batch())
    with pytest.raises(ValueError, match="unknown metrics"):
        SequenceMetrics(2, ["mse", "mae"])


def test_updates_in_uneven_batches_average_over_every_sequence():
    generator = torch.Generator().manual_seed(1)
    preds = torch.rand(7, 3, 1, 5, 5, generator=generator)
    target = torch.rand(7, 3, 1, 5, 5, generator=generator)
    metric = FrameMSE(horizon=3)
    for start in range(0, 7, 3):  # batches of 3, 3, 1
        metric.update(preds[start:start + 3], target[start:start + 3])
    expected = (preds - target).square().sum(dim=(2, 3, 4)).mean(dim=0)
    torch.testing.assert_close(metric.compute().float(), expected)


@pytest.mark.slow
def test_metrics_agree_on_one_device_and_across_two_processes():
    generator = torch.Generator().manual_seed(2)
    preds = torch.rand(5, 2, 1, 12, 12, generator=generator)
    target = torch.rand(5, 2, 1, 12, 12, generator=generator)
    single = SequenceMetrics(horizon=2, prefix="test")
    single.update(preds, target)
    expected = {k: v.item() for k, v in single.compute().items()}
    results = scores_on_two_processes((2, DEFAULT_METRICS, "test"), preds, target)
    for rank in (0, 1):
        assert results[rank].keys() == expected.keys()
        for key, value in expected.items():
            assert results[rank][key] == pytest.approx(value, rel=1e-6), key


def test_metrics_are_registered_with_their_keys_and_labels(monkeypatch):
    import predlearn
    from predlearn import registry
    from predlearn.metrics import DEFAULT_METRICS, PerStepMetric, SequenceMetrics, curve_label

    assert set(DEFAULT_METRICS) <= set(predlearn.list_metrics())
    assert curve_label("ssim").startswith("SSIM (Gaussian 11") and curve_label("other") == "other"

    class MaxError(PerStepMetric):
        """The largest absolute pixel error of a frame."""

        key = "max_error"
        label = "largest pixel error"

        def per_frame(self, preds, target):
            return (preds - target).abs().flatten(2).amax(-1)

    metrics = registry.Registry("metric", "predlearn.metrics")
    metrics.names()  # predlearn's own, declared
    monkeypatch.setattr(registry, "METRICS", metrics)
    registry.register_metric("max_error")(MaxError)
    scored = SequenceMetrics(2, ["mse", "max_error"], prefix="test")
    preds = torch.zeros(1, 2, 1, 4, 4)
    target = torch.zeros(1, 2, 1, 4, 4)
    target[0, 1, 0, 0, 0] = 0.5
    scored.update(preds, target)
    values = scored.compute()
    assert values["test/max_error/step_02"] == 0.5 and values["test/max_error/step_01"] == 0
    assert values["test/mse_per_frame/step_02"] == 0.25
    assert curve_label("max_error") == "largest pixel error"
    with pytest.raises(ValueError, match=r"unknown metrics \['nope'\]; known: .*max_error"):
        SequenceMetrics(2, ["nope"])
