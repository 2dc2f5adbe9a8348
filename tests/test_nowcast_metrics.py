"""Nowcasting scores against hand computation: contingency counts and categorical scores, the
fractions skill score, threshold conversion, key names, radial power spectra, DDP-style state
sums, and the power-spectrum figure and table."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from predlearn.categorical_scores import (
    CORRECT_NEGATIVES,
    FALSE_ALARMS,
    HITS,
    MISSES,
    CategoricalScores,
    categorical_scores,
    contingency_counts,
)
from predlearn.fractions_skill_score import FractionsSkillScore, fss_sums, neighbourhood_fractions
from predlearn.power_spectrum import (
    PowerSpectrum,
    plot_power_spectra,
    radial_power_spectrum,
    read_power_spectra_csv,
    write_power_spectra_csv,
)
from predlearn.units import ScoringSettings, ValueMapping

F64 = torch.float64
NAN = math.nan


def frames(*rows: list[float]) -> torch.Tensor:
    """One (1, 1, 1, H, W) sequence from the rows of one frame."""
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, 1, len(rows), len(rows[0]))


def unit_settings(thresholds: tuple[float, ...], scales: tuple[int, ...] = (1,)) -> ScoringSettings:
    """Settings whose thresholds are values of x itself (a mapping 0..1 'dBZ')."""
    return ScoringSettings(ValueMapping(low=0.0, high=1.0), thresholds, fss_scales=scales)


def assert_scores(scores: dict[str, torch.Tensor], expected: dict[str, float]) -> None:
    for name, value in expected.items():
        torch.testing.assert_close(scores[name], torch.tensor(value, dtype=F64), equal_nan=True,
                                   msg=lambda m, name=name: f"{name}: {m}")


# --- contingency counts and categorical scores -----------------------------------------------

# events at x >= 0.3:  observed Y Y N / N N Y   forecast Y N Y / N N Y
#   -> hits 2 (0,0),(1,2); misses 1 (0,1); false alarms 1 (0,2); correct negatives 2
# events at x >= 0.6:  observed Y N N / N N N   forecast Y N N / N N Y
#   -> hits 1; misses 0; false alarms 1 (1,2); correct negatives 4
TARGET = frames([0.7, 0.4, 0.1], [0.0, 0.25, 0.35])
PREDS = frames([0.8, 0.2, 0.5], [0.0, 0.1, 0.62])


def test_contingency_counts_by_hand_at_two_thresholds():
    counts = contingency_counts(PREDS, TARGET, [0.3, 0.6])
    assert counts.shape == (1, 1, 2, 4)
    assert counts.dtype == F64
    expected = torch.zeros(2, 4, dtype=F64)
    expected[0, [HITS, MISSES, FALSE_ALARMS, CORRECT_NEGATIVES]] = torch.tensor(
        [2.0, 1.0, 1.0, 2.0], dtype=F64)
    expected[1, [HITS, MISSES, FALSE_ALARMS, CORRECT_NEGATIVES]] = torch.tensor(
        [1.0, 0.0, 1.0, 4.0], dtype=F64)
    torch.testing.assert_close(counts[0, 0], expected)
    # the order of the last dimension is hits, misses, false alarms, correct negatives
    assert (HITS, MISSES, FALSE_ALARMS, CORRECT_NEGATIVES) == (0, 1, 2, 3)


def test_every_score_by_hand_at_two_thresholds():
    scores = categorical_scores(contingency_counts(PREDS, TARGET, [0.3, 0.6])[0, 0])
    # a=2 b=1 c=1 d=2, n=6: HSS 2(4-1)/(3*3+3*3), ar = 3*3/6 = 1.5, ETS (2-1.5)/(4-1.5)
    # a=1 b=1 c=0 d=4, n=6: HSS 2(4-0)/(1*4+2*5), ar = 2*1/6, ETS (1-1/3)/(2-1/3)
    expected = {
        "csi": [2 / 4, 1 / 2],
        "pod": [2 / 3, 1 / 1],
        "far": [1 / 3, 1 / 2],
        "hss": [6 / 18, 8 / 14],
        "ets": [0.5 / 2.5, (2 / 3) / (5 / 3)],
    }
    for name, values in expected.items():
        torch.testing.assert_close(scores[name], torch.tensor(values, dtype=F64))


def test_empty_categories_give_nan_without_a_warning():
    field = frames([0.7, 0.4, 0.1], [0.0, 0.25, 0.35])
    nothing = torch.zeros_like(field)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # no event observed and none forecast at 0.9: only correct negatives
        none = categorical_scores(contingency_counts(field, field, [0.9])[0, 0, 0])
        # an event observed (0.7 >= 0.6) but none forecast: one miss
        missed = categorical_scores(contingency_counts(nothing, field, [0.6])[0, 0, 0])
        # perfect forecast with events and non-events
        perfect = categorical_scores(contingency_counts(field, field, [0.3])[0, 0, 0])
        # every pixel an event in both: HSS and ETS undefined, the others perfect
        everywhere = categorical_scores(contingency_counts(field, field, [0.0])[0, 0, 0])
    assert_scores(none, {"csi": NAN, "pod": NAN, "far": NAN, "hss": NAN, "ets": NAN})
    assert_scores(missed, {"csi": 0.0, "pod": 0.0, "far": NAN, "hss": 0.0, "ets": 0.0})
    assert_scores(perfect, {"csi": 1.0, "pod": 1.0, "far": 0.0, "hss": 1.0, "ets": 1.0})
    assert_scores(everywhere, {"csi": 1.0, "pod": 1.0, "far": 0.0, "hss": NAN, "ets": NAN})
    # and all zero counts (nothing scored) are NaN, not a crash
    assert all(v.isnan() for v in categorical_scores(torch.zeros(4)).values())


def test_contingency_counts_against_loops_per_sequence_and_lead_time():
    generator = torch.Generator().manual_seed(0)
    preds = torch.rand(2, 3, 2, 4, 5, generator=generator)
    target = torch.rand(2, 3, 2, 4, 5, generator=generator)
    thresholds = [0.25, 0.5, 0.8]
    counts = contingency_counts(preds, target, thresholds)
    assert counts.shape == (2, 3, 3, 4)
    for b in range(2):
        for k in range(3):
            for t, threshold in enumerate(thresholds):
                table = [0, 0, 0, 0]
                for f, o in zip(preds[b, k].flatten().tolist(), target[b, k].flatten().tolist()):
                    if f >= threshold and o >= threshold:
                        table[HITS] += 1
                    elif o >= threshold:
                        table[MISSES] += 1
                    elif f >= threshold:
                        table[FALSE_ALARMS] += 1
                    else:
                        table[CORRECT_NEGATIVES] += 1
                assert counts[b, k, t].tolist() == table


def test_scores_come_from_counts_pooled_over_updates():
    event = [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    # batch 1: one hit, no false alarm -> CSI 1; batch 2: one hit, three false alarms -> CSI 1/4
    preds_1, target_1 = frames(*event), frames(*event)
    preds_2, target_2 = frames([1.0, 1.0, 1.0], [1.0, 0.0, 0.0]), frames(*event)
    settings = unit_settings((0.5,))
    twice = CategoricalScores(1, settings)
    twice.update(preds_1, target_1)
    twice.update(preds_2, target_2)
    once = CategoricalScores(1, settings)
    once.update(torch.cat([preds_1, preds_2]), torch.cat([target_1, target_2]))
    torch.testing.assert_close(twice.counts, once.counts)
    assert twice.counts[0, 0].tolist() == [2.0, 0.0, 3.0, 7.0]
    # pooled: 2 hits / (2 + 3 false alarms) = 0.4, not the mean of per-batch CSIs (1 + 1/4) / 2
    csi = twice.curves()["csi_0.5dBZ"]
    torch.testing.assert_close(csi, torch.tensor([0.4], dtype=F64))
    assert not math.isclose(float(csi), (1 + 0.25) / 2)
    for key, curve in once.curves().items():
        torch.testing.assert_close(twice.curves()[key], curve, equal_nan=True)


def test_metric_clamps_predictions_and_checks_shapes():
    settings = unit_settings((0.5,))
    metric = CategoricalScores(2, settings)
    with pytest.raises(ValueError, match=r"\(1, 2, 1, 2, 3\) and \(1, 2, 1, 3, 2\)"):
        metric.update(torch.zeros(1, 2, 1, 2, 3), torch.zeros(1, 2, 1, 3, 2))
    with pytest.raises(ValueError, match="built for 2 predicted steps; got 3"):
        metric.update(torch.zeros(1, 3, 1, 2, 3), torch.zeros(1, 3, 1, 2, 3))
    with pytest.raises(ValueError, match="same"):
        metric.update(torch.zeros(2, 1, 2, 3), torch.zeros(2, 1, 2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns of compute() before update()
        with pytest.raises(RuntimeError, match="before any update"):
            metric.curves()
        with pytest.raises(RuntimeError, match="before any update"):
            FractionsSkillScore(2, settings).curves()
        with pytest.raises(RuntimeError, match="before any update"):
            PowerSpectrum(2, (4, 4)).compute()
    preds = torch.full((1, 2, 1, 2, 3), 1.5, requires_grad=True)
    metric.update(preds, torch.ones(1, 2, 1, 2, 3))
    assert not metric.counts.requires_grad
    torch.testing.assert_close(metric.curves()["csi_0.5dBZ"], torch.ones(2, dtype=F64))


# --- fractions skill score -------------------------------------------------------------------


def loop_fractions(field: list[list[float]], size: int) -> list[list[float]]:
    """Event fractions in a size x size window, zero outside the field, divided by size^2."""
    h, w, r = len(field), len(field[0]), size // 2
    out = [[0.0] * w for _ in range(h)]
    for i in range(h):
        for j in range(w):
            total = 0.0
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    if 0 <= i + di < h and 0 <= j + dj < w:
                        total += field[i + di][j + dj]
            out[i][j] = total / (size * size)
    return out


def loop_fss_sums(forecast: list[list[float]], observed: list[list[float]],
                  size: int) -> tuple[float, float]:
    pf, po = loop_fractions(forecast, size), loop_fractions(observed, size)
    differences = sum((f - o) ** 2 for rf, ro in zip(pf, po) for f, o in zip(rf, ro))
    references = sum(f * f + o * o for rf, ro in zip(pf, po) for f, o in zip(rf, ro))
    return differences, references


def binary_field(events: list[tuple[int, int]], size: int = 5) -> list[list[float]]:
    field = [[0.0] * size for _ in range(size)]
    for i, j in events:
        field[i][j] = 1.0
    return field


OBSERVED = binary_field([(1, 1), (1, 2), (3, 3)])
FORECAST = binary_field([(0, 0), (1, 2), (2, 2), (4, 4)])


def test_neighbourhood_fractions_match_loops_with_zero_padding():
    field = torch.tensor(OBSERVED)
    for size in (1, 3, 5, 7):
        torch.testing.assert_close(neighbourhood_fractions(field, size),
                                   torch.tensor(loop_fractions(OBSERVED, size)))
    # corner pixel (0, 0) at size 3 sees (1, 1) only, divided by 9 (not by the 4 pixels inside)
    assert math.isclose(float(neighbourhood_fractions(field, 3)[0, 0]), 1 / 9, rel_tol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        neighbourhood_fractions(field, 2)


def test_neighbourhood_fractions_match_scipy_uniform_filter():
    from scipy import ndimage  # scipy comes with pysteps (the dev and nowcast extras)

    field = torch.tensor(FORECAST, dtype=F64)
    expected = ndimage.uniform_filter(field.numpy(), size=3, mode="constant", cval=0.0)
    torch.testing.assert_close(neighbourhood_fractions(field, 3), torch.from_numpy(expected))


def test_fss_against_loops_pooled_over_sequences():
    # two sequences: (forecast, observed) = (FORECAST, OBSERVED) and (OBSERVED, another field)
    second_forecast = OBSERVED
    second_observed = binary_field([(2, 2), (3, 3), (4, 0)])
    preds = torch.tensor([FORECAST, second_forecast]).view(2, 1, 1, 5, 5)
    target = torch.tensor([OBSERVED, second_observed]).view(2, 1, 1, 5, 5)
    differences, references = fss_sums(preds, target, [0.5], [1, 3])
    assert differences.shape == references.shape == (1, 1, 2)
    for s, size in enumerate((1, 3)):
        d1, r1 = loop_fss_sums(FORECAST, OBSERVED, size)
        d2, r2 = loop_fss_sums(second_forecast, second_observed, size)
        assert math.isclose(float(differences[0, 0, s]), d1 + d2, rel_tol=1e-6)
        assert math.isclose(float(references[0, 0, s]), r1 + r2, rel_tol=1e-6)
    # at size 1 FSS is 1 - (misses + false alarms) / (forecast + observed event counts)
    # sequence 1: (0,0),(2,2),(4,4) false alarms, (1,1),(3,3) misses: 5 / (4 + 3)
    # sequence 2: (1,1),(1,2) false alarms, (2,2),(4,0) misses, (3,3) hit: 4 / (3 + 3)
    metric = FractionsSkillScore(1, unit_settings((0.5,), (1, 3)))
    metric.update(preds, target)
    curves = metric.curves()
    assert math.isclose(float(curves["fss_0.5dBZ_1px"][0]), 1 - (5 + 4) / (7 + 6), rel_tol=1e-9)
    d1, r1 = loop_fss_sums(FORECAST, OBSERVED, 3)
    d2, r2 = loop_fss_sums(second_forecast, second_observed, 3)
    assert math.isclose(float(curves["fss_0.5dBZ_3px"][0]), 1 - (d1 + d2) / (r1 + r2),
                        rel_tol=1e-6)
    # pooled sums, not the mean of per-sequence FSS
    mean_of_fss = ((1 - d1 / r1) + (1 - d2 / r2)) / 2
    assert not math.isclose(float(curves["fss_0.5dBZ_3px"][0]), mean_of_fss, rel_tol=1e-4)


def test_fss_matches_pysteps():
    from pysteps.verification import spatialscores  # the dev and nowcast extras

    forecast = torch.tensor(FORECAST, dtype=F64)
    observed = torch.tensor(OBSERVED, dtype=F64)
    differences, references = fss_sums(forecast.view(1, 1, 1, 5, 5), observed.view(1, 1, 1, 5, 5),
                                       [0.5], [3])
    expected = spatialscores.fss(forecast.numpy(), observed.numpy(), 0.5, 3)
    assert math.isclose(1 - float(differences[0, 0, 0] / references[0, 0, 0]), expected,
                        rel_tol=1e-6)


def test_fss_perfect_one_false_events_zero_no_events_nan():
    settings = unit_settings((0.5,), (1, 3))
    field = torch.tensor(OBSERVED).view(1, 1, 1, 5, 5)
    nothing = torch.zeros_like(field)
    cases = {"perfect": (field, field, 1.0), "false events": (field, nothing, 0.0),
             "no events": (nothing, nothing, NAN)}
    for name, (preds, target, expected) in cases.items():
        metric = FractionsSkillScore(1, settings)
        metric.update(preds, target)
        for key, curve in metric.curves().items():
            torch.testing.assert_close(curve, torch.tensor([expected], dtype=F64), equal_nan=True,
                                       msg=f"{name} {key}")


# --- thresholds in physical units, key names -------------------------------------------------


def test_threshold_in_dbz_catches_30_2_and_not_29_8():
    mapping = ValueMapping(low=0.0, high=70.0)
    settings = ScoringSettings(mapping, (30.0,))
    field = frames([mapping.to_unit_interval(30.2), mapping.to_unit_interval(29.8)])
    counts = contingency_counts(field, field, settings.unit_thresholds())
    assert counts[0, 0, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    # forecast 29.8 where 30.2 is observed and 30.2 where 29.8 is: one miss, one false alarm
    metric = CategoricalScores(1, settings)
    metric.update(field.flip(-1), field)
    assert metric.counts[0, 0].tolist() == [0.0, 1.0, 1.0, 0.0]
    # 1 mm/h is 10 log10(200) = 23.01 dBZ by Marshall-Palmer
    rain = ScoringSettings(mapping, (1.0,), threshold_unit="mm/h")
    field = frames([mapping.to_unit_interval(23.1), mapping.to_unit_interval(22.9)])
    assert contingency_counts(field, field, rain.unit_thresholds())[0, 0, 0].tolist() == [
        1.0, 0.0, 0.0, 1.0]


def test_key_names_directions_and_labels():
    settings = ScoringSettings(ValueMapping(), (20.0, 30.0), fss_scales=(1, 3))
    categorical = CategoricalScores(2, settings)
    fss = FractionsSkillScore(2, settings)
    assert CategoricalScores.physical_units and FractionsSkillScore.physical_units
    assert list(categorical.directions()) == [
        "csi_20dBZ", "csi_30dBZ", "pod_20dBZ", "pod_30dBZ", "far_20dBZ", "far_30dBZ",
        "hss_20dBZ", "hss_30dBZ", "ets_20dBZ", "ets_30dBZ"]
    assert {key for key, higher in categorical.directions().items() if not higher} == {
        "far_20dBZ", "far_30dBZ"}
    assert fss.directions() == {
        "fss_20dBZ_1px": True, "fss_20dBZ_3px": True, "fss_30dBZ_1px": True,
        "fss_30dBZ_3px": True}
    preds = torch.rand(2, 2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    for metric in (categorical, fss):
        metric.update(preds, preds.flip(-1))
        curves = metric.curves()
        assert list(curves) == list(metric.directions())
        assert all(curve.shape == (2,) and curve.dtype == F64 for curve in curves.values())
    rain = ScoringSettings(ValueMapping(), (1.0, 0.5), threshold_unit="mm/h", fss_scales=(5,))
    assert list(CategoricalScores(1, rain).directions())[:2] == ["csi_1mmh", "csi_0.5mmh"]
    assert list(FractionsSkillScore(1, rain).directions()) == ["fss_1mmh_5px", "fss_0.5mmh_5px"]
    assert CategoricalScores.describe_key("csi_20dBZ") == "CSI, event >= 20 dBZ"
    assert CategoricalScores.describe_key("far_0.5mmh") == "FAR, event >= 0.5 mm/h"
    assert FractionsSkillScore.describe_key("fss_30dBZ_3px") == "FSS, event >= 30 dBZ, 3x3 px"
    for key in ("mse_per_frame", "fss_30dBZ_3px", "csi_20", "csi_20dBZ_3px"):
        assert CategoricalScores.describe_key(key) is None
    for key in ("csi_20dBZ", "fss_30dBZ", "psnr"):
        assert FractionsSkillScore.describe_key(key) is None


# --- radial power spectrum -------------------------------------------------------------------


def modes_in_bins(n: int) -> list[int]:
    """How many Fourier modes of an n x n field fall in each annulus k - 1/2 <= |k| < k + 1/2."""
    counts = [0] * (n // 2)
    for i in range(n):
        for j in range(n):
            ky, kx = (i if i <= n // 2 else i - n), (j if j <= n // 2 else j - n)
            if n % 2 == 0 and i == n // 2:
                ky = -n // 2  # fftfreq's convention for the Nyquist row and column
            if n % 2 == 0 and j == n // 2:
                kx = -n // 2
            k = math.floor(math.hypot(ky, kx) + 0.5)
            if 1 <= k <= n // 2:
                counts[k - 1] += 1
    return counts


def test_cosine_puts_its_power_in_its_wavenumber_bin():
    n = 32
    j = torch.arange(n, dtype=F64)
    modes = modes_in_bins(n)
    for k, (ky, kx) in {4: (0, 4), 5: (3, 4), 9: (9, 0)}.items():
        field = torch.cos(2 * math.pi * (ky * j[:, None] + kx * j[None, :]) / n) + 0.3
        wavenumbers, power = radial_power_spectrum(field)
        assert wavenumbers.tolist() == list(range(1, n // 2 + 1))
        assert power.shape == (n // 2,)
        assert float(power[k - 1] / power.sum()) > 0.999
        # orthonormal FFT: the bin's modes hold the field's sum of squares (n^2 / 2, mean removed)
        assert math.isclose(float(power[k - 1]) * modes[k - 1], n * n / 2, rel_tol=1e-9)


def test_white_noise_spectrum_is_flat_at_its_variance():
    noise = 2.0 * torch.randn(64, 32, 32, generator=torch.Generator().manual_seed(2))
    _, power = radial_power_spectrum(noise)
    mean = power.mean(dim=0)
    assert mean.shape == (16,)
    assert torch.all((mean > 4.0 * 0.75) & (mean < 4.0 * 1.25)), mean
    assert abs(float(mean.mean()) - 4.0) < 0.2


def test_blurring_removes_high_wavenumber_power():
    noise = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    blurred = torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2,
                                             count_include_pad=False)
    _, sharp = radial_power_spectrum(noise)
    _, smooth = radial_power_spectrum(blurred)
    ratio = smooth.mean(dim=(0, 1)) / sharp.mean(dim=(0, 1))
    assert float(ratio[:2].min()) > 0.5  # large scales kept
    assert float(ratio[-4:].max()) < 0.1  # small scales gone


def test_power_spectrum_metric_means_per_lead_time():
    preds = torch.rand(3, 2, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    target = torch.rand(3, 2, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    metric = PowerSpectrum(2, (8, 8))
    metric.update(preds, target)
    spectra = metric.spectra()
    assert spectra["wavenumber"].tolist() == [1.0, 2.0, 3.0, 4.0]
    _, expected = radial_power_spectrum(target)
    torch.testing.assert_close(spectra["observed"], expected.mean(dim=(0, 2)).to(F64))
    assert spectra["predicted"].shape == (2, 4)
    with pytest.raises(ValueError, match="8x8 frames; got shape"):
        metric.update(torch.zeros(1, 2, 1, 8, 6), torch.zeros(1, 2, 1, 8, 6))


# --- DDP-style reduction ---------------------------------------------------------------------


def test_summed_states_of_two_halves_equal_one_metric_fed_everything():
    generator = torch.Generator().manual_seed(6)
    preds = torch.rand(4, 3, 1, 9, 9, generator=generator)
    target = torch.rand(4, 3, 1, 9, 9, generator=generator)
    settings = unit_settings((0.3, 0.7, 0.95), (1, 3, 5))
    builders = {
        "categorical": lambda: CategoricalScores(3, settings),
        "fss": lambda: FractionsSkillScore(3, settings),
        "spectrum": lambda: PowerSpectrum(3, (9, 9)),
    }
    for name, build in builders.items():
        whole, first, second = build(), build(), build()
        whole.update(preds, target)
        first.update(preds[:1], target[:1])
        second.update(preds[1:], target[1:])
        # torchmetrics' "sum" reduction: each state tensor added across ranks
        for state, value in second.metric_state.items():
            setattr(first, state, getattr(first, state) + value)
        result = first.compute()
        for key, value in whole.compute().items():
            torch.testing.assert_close(result[key], value, equal_nan=True, msg=f"{name} {key}")
        for state, value in whole.metric_state.items():
            assert value.dtype == F64, f"{name}.{state}"
            assert whole._reductions[state] is not None  # a DDP reduction, the sum
    # the halves differ: the first half alone scores otherwise
    alone = CategoricalScores(3, settings)
    alone.update(preds[:1], target[:1])
    whole = CategoricalScores(3, settings)
    whole.update(preds, target)
    assert not torch.equal(alone.counts, whole.counts)


# --- figure and table ------------------------------------------------------------------------


def test_power_spectra_figure_and_csv(tmp_path):
    noise = torch.rand(2, 4, 1, 16, 16, generator=torch.Generator().manual_seed(7))
    metric = PowerSpectrum(4, (16, 16))
    metric.update(torch.nn.functional.avg_pool3d(noise, (1, 3, 3), stride=1, padding=(0, 1, 1)),
                  noise)
    spectra = metric.compute()
    png = plot_power_spectra(spectra, tmp_path / "plots" / "spectra.png", lead_minutes=5,
                             title="test")
    assert png == tmp_path / "plots" / "spectra.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    table = write_power_spectra_csv(spectra, tmp_path / "spectra.csv")
    header = table.read_text().splitlines()[0].split(",")
    assert header == ["wavenumber", *(f"observed_step_{k:02d}" for k in range(1, 5)),
                      *(f"predicted_step_{k:02d}" for k in range(1, 5))]
    back = read_power_spectra_csv(table)
    assert set(back) == {"wavenumber", "predicted", "observed"}
    for key, value in spectra.items():
        torch.testing.assert_close(back[key], value, rtol=0, atol=0)
    # a single lead time without minutes draws too
    one = {key: value[:1] if key != "wavenumber" else value for key, value in spectra.items()}
    assert plot_power_spectra(one, tmp_path / "one.png").stat().st_size > 1000
