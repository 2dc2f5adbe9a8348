"""``EnsembleScores``: per-lead-time pooling equals the pure scores on the same numbers, in the
data's unit; masked pixels count nowhere; batches and DDP-style merges add up."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from predlearn.ensemble_metrics import EnsembleScores
from predlearn.ensemble_scores import brier_score, crps_ensemble, rank_histogram
from predlearn.units import ScoringSettings, ValueMapping

SETTINGS = ScoringSettings(ValueMapping(low=0.0, high=70.0), (20.0, 40.0))  # dBZ
B, M, K, C, H, W = 3, 4, 2, 1, 6, 5


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(B, M, K, C, H, W, generator=generator),
            torch.rand(B, K, C, H, W, generator=generator))


def test_scores_per_lead_time_equal_the_pure_functions_in_dbz():
    preds, target = batch()
    metric = EnsembleScores(K, SETTINGS, members=M)
    metric.update(preds, target)
    scores = metric.compute()
    members = preds.double().transpose(0, 1)
    for step in range(K):
        crps = crps_ensemble(70 * members[:, :, step], 70 * target.double()[:, step]).mean()
        assert scores["crps"][step].item() == pytest.approx(crps.item(), rel=1e-12)
        for tag, threshold in (("20dBZ", 20 / 70), ("40dBZ", 40 / 70)):
            brier = brier_score(members[:, :, step], target.double()[:, step], threshold).mean()
            assert scores[f"brier_{tag}"][step].item() == pytest.approx(brier.item(), rel=1e-12)
        counts = rank_histogram(members[:, :, step], target.double()[:, step])
        assert torch.equal(metric.ranks[step], counts)  # continuous values: no ties
    assert torch.allclose(metric.histograms().sum(dim=1), torch.ones(K, dtype=torch.float64))


def test_two_halves_merged_equal_one_pass():
    """What DDP's sum does: two metrics on the two halves, states added, give one pass's scores."""
    preds, target = batch(1)
    whole = EnsembleScores(K, SETTINGS, members=M)
    whole.update(preds, target)
    first, second = EnsembleScores(K, SETTINGS, members=M), EnsembleScores(K, SETTINGS, members=M)
    first.update(preds[:1], target[:1])
    second.update(preds[1:], target[1:])
    merged = EnsembleScores(K, SETTINGS, members=M)
    for name in ("crps_sum", "spread_sum", "error_sum", "brier_sum", "ranks", "pixels", "count"):
        setattr(merged, name, getattr(first, name) + getattr(second, name))
    merged._update_count = 1
    for key, value in whole.compute().items():
        torch.testing.assert_close(merged.compute()[key], value)


def test_masked_pixels_count_nowhere():
    preds, target = batch(2)
    valid = torch.ones(B, K, C, H, W, dtype=torch.bool)
    valid[:, :, :, :3] = False
    garbage = preds.clone()
    garbage[:, :, :, :, :3] = 1.0  # whatever sits under the mask
    masked = EnsembleScores(K, SETTINGS, members=M)
    masked.update(garbage, target, valid)
    cropped = EnsembleScores(K, SETTINGS, members=M)
    cropped.update(preds[..., 3:, :], target[..., 3:, :])
    for key, value in cropped.compute().items():
        torch.testing.assert_close(masked.compute()[key], value)
    assert torch.equal(masked.ranks, cropped.ranks)


def test_a_perfect_ensemble_scores_zero_crps_and_brier():
    _, target = batch(3)
    copies = target.unsqueeze(1).expand(B, M, K, C, H, W)
    metric = EnsembleScores(K, SETTINGS, members=M)
    metric.update(copies, target)
    scores = metric.compute()
    assert scores["crps"].abs().max() < 1e-12 and scores["brier_20dBZ"].abs().max() == 0
    assert math.isnan(scores["spread_skill"][0])  # no error: the ratio is undefined


def test_wrong_shapes_and_no_members_are_refused():
    preds, target = batch()
    with pytest.raises(ValueError, match=r"needs members \(B, 4, K, C, H, W\)"):
        EnsembleScores(K, SETTINGS, members=M).update(preds[:, :3], target)
    with pytest.raises(ValueError, match="at least 1 member"):
        EnsembleScores(K, SETTINGS, members=0)


def test_reliability_counts_equal_pysteps_reliability_diagram_with_a_mask():
    """Per threshold, over every lead time: the sum of the exceedance probabilities, the
    observed events and the forecasts per bin, masked pixels left out, as pysteps' diagram
    accumulates them in dBZ. Three members: probabilities k / 3, none on a bin edge (pysteps'
    edges are shifted by 1e-6 and closed on the right, ours closed on the left)."""
    probscores = pytest.importorskip("pysteps.verification.probscores")
    generator = torch.Generator().manual_seed(5)
    members = 3
    preds = torch.rand(B, members, K, C, H, W, generator=generator)
    target = torch.rand(B, K, C, H, W, generator=generator)
    valid = torch.rand(B, K, C, H, W, generator=generator) < 0.7
    metric = EnsembleScores(K, SETTINGS, members=members)
    metric.update(preds, target, valid)
    table = metric.reliability()
    assert table.shape == (2, 10, 3) and table.dtype == torch.float64
    dbz, observed = 70 * preds.double(), 70 * target.double()
    observed[~valid] = math.nan  # pysteps leaves out the pairs that are not finite
    for index, threshold in enumerate((20.0, 40.0)):
        diagram = probscores.reldiag_init(threshold, n_bins=10, min_count=1)
        for step in range(K):
            probability = (dbz[:, :, step] >= threshold).double().mean(dim=1)
            probscores.reldiag_accum(diagram, probability.numpy(), observed[:, step].numpy())
        np.testing.assert_allclose(table[index, :, 0].numpy(), diagram["X_sum"], rtol=1e-12)
        np.testing.assert_array_equal(table[index, :, 1].numpy(), diagram["Y_sum"])
        np.testing.assert_array_equal(table[index, :, 2].numpy(), diagram["num_idx"])
    assert table[0, :, 2].sum() == valid.sum()
