"""Ensemble scores against independent implementations (scoringrules, properscoring, pysteps'
verification) on the same numbers, and against what a score must be on known ensembles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from predlearn.ensemble_scores import (
    brier_score,
    crps_ensemble,
    exceedance_probability,
    pair_sum,
    rank_histogram,
    reliability_counts,
    spread_and_error,
    spread_skill_ratio,
)


def sample(members=8, shape=(5, 6), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(members, *shape, generator=generator, dtype=torch.float64),
            torch.randn(*shape, generator=generator, dtype=torch.float64))


def test_the_pair_sum_is_the_double_sum_of_absolute_differences():
    members, _ = sample(7)
    brute = (members.unsqueeze(0) - members.unsqueeze(1)).abs().sum(dim=(0, 1))
    torch.testing.assert_close(pair_sum(members), brute)


def test_fair_and_plain_crps_equal_scoringrules_and_properscoring():
    scoringrules = pytest.importorskip("scoringrules")
    properscoring = pytest.importorskip("properscoring")
    members, observed = sample()
    fair = scoringrules.crps_ensemble(observed.numpy(), members.numpy(), m_axis=0,
                                      estimator="fair")
    np.testing.assert_allclose(crps_ensemble(members, observed).numpy(), fair, rtol=1e-10)
    plain = properscoring.crps_ensemble(observed.numpy(), np.moveaxis(members.numpy(), 0, -1))
    np.testing.assert_allclose(crps_ensemble(members, observed, fair=False).numpy(), plain,
                               rtol=1e-10)


def test_crps_equals_pysteps_and_properscoring_on_radar_like_values():
    verification = pytest.importorskip("pysteps.verification.probscores")
    properscoring = pytest.importorskip("properscoring")
    generator = torch.Generator().manual_seed(1)
    members = torch.rand(6, 8, 8, generator=generator, dtype=torch.float64)
    observed = torch.rand(8, 8, generator=generator, dtype=torch.float64)
    expected = verification.CRPS(members.numpy(), observed.numpy())
    assert crps_ensemble(members, observed, fair=False).mean().item() == pytest.approx(expected)
    # no rain on half the pixels: many members and observations tied at 0. pysteps' Hersbach
    # decomposition drops the intervals that start at an observation equal to a member, so
    # properscoring is the reference here
    members[members < 0.5] = 0.0
    observed[observed < 0.5] = 0.0
    plain = properscoring.crps_ensemble(observed.numpy(), np.moveaxis(members.numpy(), 0, -1))
    np.testing.assert_allclose(crps_ensemble(members, observed, fair=False).numpy(), plain,
                               rtol=1e-10)


def test_identical_members_score_the_absolute_error_and_a_perfect_forecast_zero():
    _, observed = sample()
    forecast = observed + 0.3 * torch.randn_like(observed)
    copies = forecast.expand(5, *forecast.shape)
    for fair in (True, False):
        torch.testing.assert_close(crps_ensemble(copies, observed, fair), (forecast - observed).abs())
    assert crps_ensemble(observed.expand(4, *observed.shape), observed).abs().max() < 1e-12


def test_the_brier_score_of_an_exceedance():
    members = torch.tensor([[0.0, 2.0], [1.0, 3.0], [2.0, 0.5], [3.0, 0.0]])  # M = 4, 2 pixels
    observed = torch.tensor([1.5, 0.1])
    assert exceedance_probability(members, 1.0).tolist() == [0.75, 0.5]
    torch.testing.assert_close(brier_score(members, observed, 1.0),
                               torch.tensor([(0.75 - 1) ** 2, 0.5 ** 2]))


def test_a_calibrated_ensemble_has_a_flat_rank_histogram_and_unit_spread_skill():
    """Members and observation drawn from the same distribution (a random mean per position):
    every rank equally likely, spread / skill 1 within sampling error."""
    generator = torch.Generator().manual_seed(2)
    count, positions = 9, 40_000
    centre = 3 * torch.randn(positions, generator=generator, dtype=torch.float64)
    members = centre + torch.randn(count, positions, generator=generator, dtype=torch.float64)
    observed = centre + torch.randn(positions, generator=generator, dtype=torch.float64)
    histogram = rank_histogram(members, observed, torch.Generator().manual_seed(0))
    expected = positions / (count + 1)
    # chi-square with 9 degrees of freedom: 27.9 is its 99.9 % quantile
    assert ((histogram - expected) ** 2 / expected).sum().item() < 27.9
    variance, error = spread_and_error(members, observed)
    ratio = spread_skill_ratio(variance.sum(), error.sum(), count).item()
    assert ratio == pytest.approx(1.0, abs=0.03)
    narrow = centre + 0.5 * (members - centre)  # under-dispersed: U-shaped, ratio < 1
    variance, error = spread_and_error(narrow, observed)
    assert spread_skill_ratio(variance.sum(), error.sum(), count).item() < 0.8
    shaped = rank_histogram(narrow, observed, torch.Generator().manual_seed(0))
    assert shaped[0] > 2 * expected and shaped[-1] > 2 * expected


def test_the_rank_histogram_equals_pysteps_without_ties():
    ensscores = pytest.importorskip("pysteps.verification.ensscores")
    members, observed = sample(5, (30, 30), seed=3)
    ours = rank_histogram(members, observed)
    theirs = ensscores.rankhist(members.numpy(), observed.numpy(), normalize=False)
    np.testing.assert_array_equal(ours.numpy(), theirs)


def test_tied_observations_spread_over_the_tied_ranks():
    members = torch.zeros(3, 30_000)
    observed = torch.zeros(30_000)  # every member equals the observation: any rank 0 .. 3
    histogram = rank_histogram(members, observed, torch.Generator().manual_seed(0))
    assert histogram.sum() == 30_000 and (histogram - 7_500).abs().max() < 300


def test_reliability_counts_equal_pysteps_reliability_diagram():
    probscores = pytest.importorskip("pysteps.verification.probscores")
    generator = torch.Generator().manual_seed(4)
    probability = torch.rand(2000, generator=generator, dtype=torch.float64)
    event = (torch.rand(2000, generator=generator, dtype=torch.float64) < probability).double()
    sums, events, counts = reliability_counts(probability, event, bins=10)
    diagram = probscores.reldiag_init(0.5, n_bins=10, min_count=1)
    # pysteps takes the probability and the observed values, with the event threshold X_min
    probscores.reldiag_accum(diagram, probability.numpy(), event.numpy())
    mean_probability, frequency = probscores.reldiag_compute(diagram)
    np.testing.assert_allclose((events / counts).numpy(), frequency)
    np.testing.assert_allclose((sums / counts).numpy(), mean_probability)
    assert counts.sum() == 2000
