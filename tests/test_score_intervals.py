"""Bootstrap intervals of the test scores (``predlearn.score_intervals``): every metric's
per-sequence statistics sum to its curves, survive a DDP-style merge, give intervals that cover
at the nominal rate (wider with blocks of overlapping windows), carry the right event counts and
round-trip through ``<stage>_intervals.csv``; the data modules say where their test windows lie."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support import free_port
from torchmetrics import Metric

from predlearn.datamodules.base import SequenceDataModule
from predlearn.datamodules.frames import FramesDataModule
from predlearn.datamodules.moving_mnist import MovingMNISTDataModule
from predlearn.datamodules.radar import RadarDataModule
from predlearn.metrics import SequenceMetrics
from predlearn.registry import METRICS
from predlearn.score_intervals import (
    INTERVAL_COLUMNS,
    IntervalRow,
    SequenceSums,
    blocks_from_windows,
    read_intervals_csv,
    score_intervals,
    write_intervals_csv,
)
from predlearn.units import ScoringSettings, ValueMapping

F64 = torch.float64
SETTINGS = ScoringSettings(ValueMapping(low=0.0, high=1.0), (0.3, 0.6), fss_scales=(1, 3))
#: every registered metric kind
KINDS = ("mse", "bce", "psnr", "ssim", "categorical", "fss", "ensemble")
B, M, K, C, H, W = 3, 4, 2, 1, 12, 12


def build(name: str, horizon: int = K) -> SequenceSums:
    cls = METRICS.get(name)
    if getattr(cls, "needs_members", False):
        metric = cls(horizon, SETTINGS, M)
    elif getattr(cls, "physical_units", False):
        metric = cls(horizon, SETTINGS)
    else:
        metric = cls(horizon)
    assert isinstance(metric, SequenceSums)
    return metric


def batch(name: str, seed: int, masked: bool, channels: int = C):
    """(preds, target, valid) of one batch for metric ``name`` (members for the ensemble);
    with ``masked`` a random mask and, in sequence 0, a frame without any valid pixel."""
    generator = torch.Generator().manual_seed(seed)
    shape = (B, K, channels, H, W)
    members = (B, M, *shape[1:]) if name == "ensemble" else shape
    preds = torch.rand(members, generator=generator)
    target = torch.rand(shape, generator=generator)
    valid = None
    if masked:
        valid = torch.rand(shape, generator=generator) < 0.7
        valid[0, 1] = False
    return preds, target, valid


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=0, equal_nan=True, msg=key)


def close_rows(a: list[IntervalRow], b: list[IntervalRow], rel: float = 0.0) -> None:
    assert [(r.metric, r.step, r.sequences, r.blocks, r.events) for r in a] == \
        [(r.metric, r.step, r.sequences, r.blocks, r.events) for r in b]
    for x, y in zip(a, b, strict=True):
        for field in ("value", "low", "high"):
            u, v = getattr(x, field), getattr(y, field)
            assert (math.isnan(u) and math.isnan(v)) or u == pytest.approx(v, rel=rel, abs=0), \
                (x.metric, x.step, field)


# --- per-sequence statistics -----------------------------------------------------------------


def test_every_registered_metric_kind_is_covered():
    assert set(METRICS.names()) == set(KINDS)


@pytest.mark.parametrize("masked", [False, True], ids=["whole", "masked"])
@pytest.mark.parametrize("name", KINDS)
def test_recorded_rows_summed_give_exactly_the_curves(name, masked):
    metric = build(name)
    metric.record_sequences = True
    batches = [batch(name, seed, masked) for seed in range(3)]
    for preds, target, valid in batches:
        metric.update(preds, target, valid)
    width = metric.totals().numel()
    assert all(rows.dtype == F64 and rows.shape == (B, width)
               for rows in metric.sequence_statistics)
    totals = torch.zeros(width, dtype=F64)
    for rows in metric.sequence_statistics:  # in the order the states were summed: exact
        totals = totals + rows.sum(dim=0)
    assert torch.equal(totals, metric.totals())
    curves = metric.curves()
    same(metric.scores_of(totals), curves)
    assert all(curve.shape == (K,) for curve in metric.scores_of(totals).values())
    # summed at once, in another order: equal to float64 rounding
    recorded = metric.recorded()
    assert recorded.shape == (3 * B, width)
    for key, value in metric.scores_of(recorded.sum(dim=0)).items():
        torch.testing.assert_close(value, curves[key], rtol=1e-12, atol=1e-12, equal_nan=True)
    # each row is that sequence's own: a metric fed it alone keeps the same sums
    preds, target, valid = batches[1]
    alone = build(name)
    alone.update(preds[2:], target[2:], None if valid is None else valid[2:])
    torch.testing.assert_close(recorded[B + 2], alone.totals(), rtol=1e-6, atol=1e-9)


def test_a_metric_that_records_nothing_keeps_its_sums_only():
    metric = build("categorical")
    assert not metric.record_sequences
    metric.update(*batch("categorical", 0, False)[:2])
    assert "sequence_statistics" not in metric.metric_state
    with pytest.raises(RuntimeError, match="set record_sequences before the first update"):
        metric.recorded()
    metric.record_sequences = True  # too late: 3 sequences were not recorded
    metric.update(*batch("categorical", 1, False)[:2])
    with pytest.raises(RuntimeError, match="scored 6 sequences and recorded 3"):
        metric.recorded()
    metric.reset()
    assert metric.sequence_statistics == []


def all_metrics(channels: tuple[str, ...] = ("a", "b")) -> SequenceMetrics:
    metrics = SequenceMetrics(K, KINDS, settings=SETTINGS, members=M, channel_names=channels)
    metrics.record_sequences = True
    return metrics


def test_sequence_metrics_record_and_give_a_row_for_every_key_and_step():
    metrics = all_metrics()
    assert metrics.record_sequences
    preds, target, valid = batch("ensemble", 0, True, channels=2)
    metrics.update(preds, target, valid)
    rows = metrics.intervals(torch.arange(B), replicates=50)
    curves = metrics.curves()
    assert [row.metric for row in rows] == [key for key in curves for _ in range(K + 1)]
    assert "mse_per_frame[b]" in curves and "brier_0.3dBZ" in curves
    for key, curve in curves.items():
        found = [row for row in rows if row.metric == key]
        assert [row.step for row in found] == ["all", *map(str, range(1, K + 1))]
        assert found[0].value == curve.mean().item() or math.isnan(curve.mean().item())
        for row, value in zip(found[1:], curve.tolist(), strict=True):
            assert row.value == value or (math.isnan(row.value) and math.isnan(value))
        assert all(r.sequences == B and r.blocks == B and r.level == 0.95 for r in found)
    metrics.record_sequences = False
    assert not metrics.record_sequences


def test_two_halves_merged_give_the_intervals_of_one_pass():
    """What DDP's ``cat`` and ``sum`` do: the halves' states merged, rows in rank order."""
    whole, first, second = all_metrics(), all_metrics(), all_metrics()
    batches = [batch("ensemble", seed, True, channels=2) for seed in (1, 2)]
    for preds, target, valid in batches:
        whole.update(preds, target, valid)
    first.update(*batches[0])
    second.update(*batches[1])
    for a, b in zip(second.modules(), first.modules(), strict=True):
        if isinstance(a, Metric):
            a.merge_state(b)  # ``cat``: the incoming (first) rows, then its own
    indices = torch.arange(2 * B)
    close_rows(second.intervals(indices, replicates=200),
               whole.intervals(indices, replicates=200))
    # blocks drawn whole do not depend on the rows' order: the other merge agrees too
    other, later = all_metrics(), all_metrics()
    other.update(*batches[0])
    later.update(*batches[1])
    for a, b in zip(other.modules(), later.modules(), strict=True):
        if isinstance(a, Metric):
            a.merge_state(b)  # rows of the second batch first
    blocks = blocks_from_windows(([0] * (2 * B), [0, 1, 2, 10, 11, 12], 5))
    order = torch.tensor([3, 4, 5, 0, 1, 2])
    close_rows(other.intervals(order, blocks, replicates=200),
               whole.intervals(indices, blocks, replicates=200), rel=1e-9)


def _ddp_shard(rank: int, world: int, port: int, preds, target, out) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metrics = SequenceMetrics(K, ["mse", "categorical"], settings=SETTINGS)
        metrics.record_sequences = True
        shard = slice(0, 2) if rank == 0 else slice(2, None)  # uneven: 2 and 4 sequences
        metrics.update(preds[shard], target[shard])
        rows = metrics.intervals(torch.arange(len(preds)), replicates=100)
        out[rank] = [(r.metric, r.step, r.value, r.low, r.high, r.events) for r in rows]
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_give_the_intervals_of_one():
    import torch.multiprocessing as mp

    generator = torch.Generator().manual_seed(3)
    preds = torch.rand(6, K, 1, H, W, generator=generator)
    target = torch.rand(6, K, 1, H, W, generator=generator)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_ddp_shard, args=(2, free_port(), preds, target, out), nprocs=2, join=True)
        found = dict(out)
    metrics = SequenceMetrics(K, ["mse", "categorical"], settings=SETTINGS)
    metrics.record_sequences = True
    metrics.update(preds, target)
    rows = metrics.intervals(torch.arange(6), replicates=100)
    expected = [(r.metric, r.step, r.value, r.low, r.high, r.events) for r in rows]
    for rank in (0, 1):
        for got, want in zip(found[rank], expected, strict=True):
            assert got[:2] == want[:2] and got[5] == want[5]
            np.testing.assert_allclose(got[2:5], want[2:5], rtol=1e-12)


# --- the intervals ---------------------------------------------------------------------------


def test_mse_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    """iid sequences, target 0 and predictions uniform on 4 pixels: the per-frame MSE of a
    frame is a sum of 4 squares of U(0, 1), mean 4/3."""
    covered, trials = 0, 200
    for trial in range(trials):
        generator = torch.Generator().manual_seed(trial)
        preds = torch.rand(40, 1, 1, 2, 2, generator=generator)
        metrics = SequenceMetrics(1, ["mse"])
        metrics.record_sequences = True
        metrics.update(preds, torch.zeros_like(preds))
        row = metrics.intervals(torch.arange(40), replicates=400, seed=trial)[0]
        assert row.step == "all" and row.low < row.value < row.high
        covered += row.low <= 4 / 3 <= row.high
    assert 0.90 <= covered / trials <= 0.98


def test_overlapping_windows_of_an_ar1_series_get_wider_intervals_in_blocks():
    generator = torch.Generator().manual_seed(5)
    frames, context, horizon, phi = 600, 10, 10, 0.9
    noise = torch.randn(frames, generator=generator, dtype=F64)
    series = torch.zeros(frames, dtype=F64)
    for t in range(1, frames):
        series[t] = phi * series[t - 1] + noise[t]
    values = (0.5 + 0.1 * series).clamp(0, 1).float()
    length = context + horizon
    starts = list(range(frames - length + 1))
    preds = torch.stack([values[s + context:s + length] for s in starts]).view(-1, horizon,
                                                                               1, 1, 1)
    metrics = SequenceMetrics(horizon, ["mse"])
    metrics.record_sequences = True
    metrics.update(preds, torch.zeros_like(preds))
    indices = torch.arange(len(starts))
    single = metrics.intervals(indices)[0]
    blocks_of = blocks_from_windows(([0] * len(starts), starts, length))
    assert blocks_of is not None
    blocked = metrics.intervals(indices, blocks_of)[0]
    assert single.blocks == len(starts) and blocked.blocks == math.ceil(len(starts) / length)
    assert blocked.value == single.value
    assert blocked.high - blocked.low > 2 * (single.high - single.low)
    assert blocks_from_windows(None) is None


def test_events_are_the_observed_event_pixels_counted_by_hand():
    # one sequence, 2 steps, 1 x 4 pixels; thresholds 0.3 and 0.6
    target = torch.tensor([[0.1, 0.4, 0.7, 0.9], [0.0, 0.0, 0.35, 0.2]]).view(1, 2, 1, 1, 4)
    preds = torch.full_like(target, 0.5)
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[0, 0, 0, 0, 3] = False  # the 0.9 is not observed
    metrics = SequenceMetrics(2, ["mse", "categorical", "fss", "ensemble"], settings=SETTINGS,
                              members=2)
    metrics.record_sequences = True
    members = torch.stack([preds, target], dim=1)  # (1, 2 members, K, C, H, W)
    metrics.update(members, target, valid)
    rows = {(row.metric, row.step): row for row in metrics.intervals(torch.arange(1), None,
                                                                     replicates=20)}
    # >= 0.3: step 1: 0.4, 0.7 (0.9 masked); step 2: 0.35. >= 0.6: step 1: 0.7; step 2: none
    for prefix in ("csi", "pod", "far", "hss", "ets", "brier"):
        assert [rows[f"{prefix}_0.3dBZ", s].events for s in ("1", "2", "all")] == [2, 1, 3]
        assert [rows[f"{prefix}_0.6dBZ", s].events for s in ("1", "2", "all")] == [1, 0, 1]
    for key in ("mse_per_frame", "fss_0.3dBZ_1px", "crps", "spread_skill"):
        assert rows[key, "all"].events is None and rows[key, "1"].events is None
    assert math.isnan(rows["pod_0.6dBZ", "2"].value)  # no event observed: undefined
    assert math.isnan(rows["pod_0.6dBZ", "all"].value)  # the curve's mean, as logged
    assert all(row.sequences == 1 and row.blocks == 1 for row in rows.values())


def test_intervals_refuse_indices_that_do_not_match_the_rows():
    metrics = SequenceMetrics(K, ["mse"])
    metrics.record_sequences = True
    metrics.update(*batch("mse", 0, False)[:2])
    with pytest.raises(ValueError, match="recorded 3 sequences; 2 indices given"):
        score_intervals(metrics, torch.arange(2))


# --- the CSV ---------------------------------------------------------------------------------


def test_the_csv_round_trip_and_its_format(tmp_path):
    rows = [IntervalRow("mse_per_frame", "all", 27.41234567, 25.1, 29.8, 0.95, 21, 2),
            IntervalRow("mse_per_frame", "1", 1e-7 / 3, math.nan, math.nan, 0.95, 21, 2),
            IntervalRow("csi_20dBZ", "all", 0.31, 0.27, 0.35, 0.95, 21, 2, 1234)]
    path = write_intervals_csv(rows, tmp_path / "out" / "test_intervals.csv")
    lines = path.read_text().splitlines()
    assert lines == [",".join(INTERVAL_COLUMNS),
                     "mse_per_frame,all,27.4123,25.1,29.8,0.95,21,2,",
                     "mse_per_frame,1,3.33333e-08,nan,nan,0.95,21,2,",
                     "csi_20dBZ,all,0.31,0.27,0.35,0.95,21,2,1234"]
    back = read_intervals_csv(path)
    rounded = [IntervalRow(r.metric, r.step, float(f"{r.value:.6g}"), r.low, r.high, r.level,
                           r.sequences, r.blocks, r.events) for r in rows]
    close_rows(back, rounded)
    assert [r.level for r in back] == [0.95] * 3
    # what ``predlearn compare`` reads
    from predlearn.compare_runs import read_intervals_csv as compare_reads

    found = compare_reads(path)
    assert found["csi_20dBZ"].mean.value == 0.31 and found["csi_20dBZ"].events == 1234
    assert math.isnan(found["mse_per_frame"].steps[1].low)


# --- where the data modules' test windows lie ------------------------------------------------


def test_radar_test_windows_are_its_windows_at_their_frames(tmp_path):
    from radar_fixtures import write_prepared

    stamps = np.arange(100, dtype=np.int64) * 300
    stamps[70:] += 3000  # a gap between frames 69 and 70
    path = write_prepared(tmp_path / "radar.h5", stamps, size=16)
    data = RadarDataModule(str(path), train_fraction=0.5, val_fraction=0.25, batch_size=2)
    series, starts, length = data.test_windows()
    assert length == 20 and series == [0] * len(starts)
    assert starts == [50, *range(70, 81)]  # test frames [50, 100): no window spans the gap
    dataset = data.test_dataloader().dataset
    assert len(dataset) == len(starts)
    for index in (0, 1, len(starts) - 1):  # frame i of the file is all i / 255
        window = dataset[index]
        assert window.shape[0] == length
        assert window[0].max().item() == pytest.approx(starts[index] / 255)
    blocks_of = blocks_from_windows((series, starts, length))
    assert blocks_of is not None
    assert blocks_of(torch.arange(len(starts))).tolist() == [0] + [1] * 11


def test_frames_test_windows_name_their_sequence_and_first_frame(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "frames.npy"  # 5 sequences of 24 frames: the last one tests
    np.save(path, rng.integers(0, 256, (5, 24, 1, 16, 16), dtype=np.uint8))
    data = FramesDataModule(str(path), batch_size=2, val_fraction=0.2, test_fraction=0.2)
    assert data.test_windows() == ([4] * 5, [0, 1, 2, 3, 4], 20)
    series_path = tmp_path / "series.npy"  # one series of 120 frames: test frames [96, 120)
    frames = rng.integers(0, 256, (120, 16, 16), dtype=np.uint8)
    np.save(series_path, frames)
    data = FramesDataModule(str(series_path), batch_size=2, val_fraction=0.1,
                            test_fraction=0.2)
    series, starts, length = data.test_windows()
    assert (series, starts, length) == ([0] * 5, [96, 97, 98, 99, 100], 20)
    dataset = data.test_dataloader().dataset
    for index, start in enumerate(starts):
        expected = frames[start:start + length, None] / 255
        np.testing.assert_allclose(dataset[index].numpy(), expected, rtol=1e-6)


def test_independent_sequences_have_no_windows():
    assert SequenceDataModule().test_windows() is None
    assert MovingMNISTDataModule.test_windows is SequenceDataModule.test_windows


def test_a_plugin_that_records_no_rows_is_left_out_with_a_warning():
    from predlearn.frame_metrics import FrameMSE

    class OwnUpdate(FrameMSE):  # its own update: sums, no rows
        def update(self, preds, target, valid=None):
            self.total += (preds - target).square().flatten(2).sum(-1).sum(0).double()
            self.count += preds.shape[0]
            self.sequences += preds.shape[0]

    metrics = SequenceMetrics(K, ["mse"])
    metrics.metrics["own"] = OwnUpdate(K, per="pixel")
    metrics.record_sequences = True
    metrics.update(*batch("mse", 0, False)[:2])
    with pytest.warns(UserWarning, match="OwnUpdate scored 3 sequences and recorded 0"):
        rows = metrics.intervals(torch.arange(B), replicates=20)
    assert {row.metric for row in rows} == {"mse_per_frame"}
    late = SequenceMetrics(K, ["mse"])
    late.update(*batch("mse", 0, False)[:2])
    late.record_sequences = True
    with pytest.raises(RuntimeError, match="set record_sequences before the first update"):
        late.intervals(torch.arange(B))
