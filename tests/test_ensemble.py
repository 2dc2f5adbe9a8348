"""Ensembles for every model (issue 32, ``predlearn.ensemble``): members drawn with learnt input
noise by every trainable model, the (almost) fair CRPS loss against independent
implementations, members that spread under CRPS and collapse under L1 + L2, the one-line
refusals, and an ensemble through ``predlearn fit / test / predict`` on radar data (scores,
pictures, tables, the members in predictions.h5). The scores themselves are checked in
test_ensemble_scores.py and test_ensemble_metrics.py."""

from __future__ import annotations

import csv
import math

import h5py
import pytest
import torch
from support import members_scores_on_two_processes, tiny_options, trainable_models
from test_nowcasting import radar_args, radar_file  # noqa: F401  (the module's fixture)

import predlearn
from predlearn.cli import run_cli
from predlearn.ensemble import MemberNoise, crps_loss, expand_members
from predlearn.ensemble_scores import crps_ensemble, spread_and_error, spread_skill_ratio
from predlearn.errors import OptionValueError
from predlearn.metrics import SequenceMetrics
from predlearn.module import PredictiveModule
from predlearn.units import ScoringSettings, ValueMapping

CONTEXT, HORIZON, MEMBERS = 3, 2, 3


@pytest.mark.parametrize("name", trainable_models())
def test_every_trainable_model_draws_distinct_members_and_learns_their_noise(name):
    torch.manual_seed(0)
    predictor = predlearn.create_model(name, **tiny_options(name, CONTEXT))
    module = PredictiveModule(predictor, context_frames=CONTEXT, horizon=HORIZON,
                              ensemble_members=MEMBERS, loss="crps")
    channels, *size = getattr(predictor, "frame_channels", 1), *getattr(
        predictor, "frame_size", (64, 64))
    batch = torch.rand(2, CONTEXT + HORIZON, channels, *size)
    loss, logs = module.training_loss(batch, 0)
    loss.backward()
    assert module.member_noise is not None and module.member_noise.log_std.grad is not None
    assert module.member_noise.log_std.grad != 0  # the noise scale is learnt
    assert float(logs["train/ensemble_noise"]) == pytest.approx(0.1)
    module.eval()
    with torch.no_grad():
        members = module(batch[:, :CONTEXT], HORIZON)
    assert members.shape == (2, MEMBERS, HORIZON, channels, *size)
    assert members.std(dim=1).mean() > 0  # samples, not copies


def test_crps_loss_is_the_fair_crps_and_alpha_interpolates_to_the_plain_one():
    scoringrules = pytest.importorskip("scoringrules")
    properscoring = pytest.importorskip("properscoring")
    generator = torch.Generator().manual_seed(1)
    members = torch.rand(4, 5, 2, 1, 6, 6, generator=generator, dtype=torch.float64)
    targets = torch.rand(4, 2, 1, 6, 6, generator=generator, dtype=torch.float64)
    fair = scoringrules.crps_ensemble(targets.numpy(), members.movedim(1, -1).numpy(),
                                      estimator="fair")
    plain = properscoring.crps_ensemble(targets.numpy(), members.movedim(1, -1).numpy())
    assert float(crps_loss(members, targets)) == pytest.approx(fair.mean(), rel=1e-12)
    assert float(crps_loss(members, targets, alpha=0.0)) == pytest.approx(plain.mean(), rel=1e-12)
    mixed = 0.95 * fair.mean() + 0.05 * plain.mean()  # almost fair, Lang et al. 2024
    assert float(crps_loss(members, targets, alpha=0.95)) == pytest.approx(mixed, rel=1e-12)
    valid = torch.rand(targets.shape, generator=generator) > 0.5
    assert float(crps_loss(members, targets, valid=valid)) == pytest.approx(
        fair[valid.numpy()].mean(), rel=1e-12)
    members.requires_grad_(True)
    crps_loss(members, targets).backward()
    # by hand: d/dx_i = (sign(x_i - y) / M - (2 r_i - M + 1) / (M (M - 1))) / positions, r_i
    # the member's rank 0 .. M - 1 (the pair term's derivative through the sort)
    count, positions = members.shape[1], targets.numel()
    ranks = members.detach().argsort(dim=1).argsort(dim=1).double()
    expected = ((members.detach() - targets.unsqueeze(1)).sign() / count
                - (2 * ranks - count + 1) / (count * (count - 1))) / positions
    torch.testing.assert_close(members.grad, expected, rtol=1e-12, atol=1e-15)


def test_member_noise_is_correlated_over_its_cells_and_scaled_by_its_weight():
    torch.manual_seed(0)
    noise = MemberNoise(std=0.2, cells=4)
    frames = torch.zeros(64, 1, 16, 16)
    drawn = noise(frames)
    # bilinear upsampling of a 4 x 4 grid: neighbours agree far more than independent pixels
    neighbours = torch.corrcoef(torch.stack([drawn[..., :-1].flatten(), drawn[..., 1:].flatten()]))
    assert neighbours[0, 1] > 0.8
    assert 0.05 < float(drawn.detach().std()) < 0.2  # below the grid's std: interpolation averages
    white = MemberNoise(std=0.2, cells=1)(frames).detach()
    assert float(white.std()) == pytest.approx(0.2, rel=0.05)
    assert expand_members(torch.arange(3), 2).tolist() == [0, 0, 1, 1, 2, 2]


def _amplitude_data(count: int, generator: torch.Generator) -> torch.Tensor:
    """Two observed frames of a level, then the level times an unpredictable factor 0.5..1.5."""
    level = torch.rand(count, 1, 1, 1, 1, generator=generator) * 0.5 + 0.25
    factor = 0.5 + torch.rand(count, 1, 1, 1, 1, generator=generator)
    return torch.cat([level.expand(count, 2, 1, 8, 8), (level * factor).expand(count, 1, 1, 8, 8)],
                     dim=1).contiguous()


def _train_toy(loss: str) -> tuple[float, float]:
    """(CRPS, spread-skill ratio) of 8 members of a small ConvLSTM trained 300 steps."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    predictor = predlearn.create_model("convlstm", hidden_channels=[8], kernel_size=3,
                                       frame_size=[8, 8])
    module = PredictiveModule(predictor, context_frames=2, horizon=1, ensemble_members=2,
                              test_ensemble_members=8, loss=loss)
    optimizer = torch.optim.Adam(module.parameters(), 3e-3)
    for step in range(300):
        value, _ = module.training_loss(_amplitude_data(32, generator), step)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    test = _amplitude_data(256, generator)
    with torch.no_grad():
        members = module.eval()(test[:, :2], 1).transpose(0, 1)
    variance, error = spread_and_error(members, test[:, 2:])
    return (float(crps_ensemble(members, test[:, 2:]).mean()),
            float(spread_skill_ratio(variance.sum(), error.sum(), 8)))


def test_crps_training_spreads_the_members_where_l1_l2_makes_copies():
    crps, spread_skill = _train_toy("crps")
    crps_l1l2, spread_skill_l1l2 = _train_toy("l1+l2")
    assert crps < 0.9 * crps_l1l2
    assert spread_skill > 0.6  # 0.86 measured: near calibrated (1)
    assert spread_skill_l1l2 < 0.4  # 0.19 measured: the members collapse to the mean


def test_ensemble_set_ups_that_cannot_work_are_refused_in_one_line():
    convlstm = predlearn.create_model("convlstm", **tiny_options("convlstm", CONTEXT))
    with pytest.raises(OptionValueError, match="needs --model.ensemble_members=2"):
        PredictiveModule(convlstm, loss="crps")
    with pytest.raises(OptionValueError, match="no weights that could learn a spread"):
        PredictiveModule(predlearn.create_model("persistence"), ensemble_members=4)
    with pytest.raises(OptionValueError, match="trained as an ensemble"):
        PredictiveModule(convlstm, test_ensemble_members=10)
    with pytest.raises(OptionValueError, match="at least 1"):
        PredictiveModule(convlstm, ensemble_members=0)


def test_a_single_forecast_scores_as_one_member_crps_is_its_absolute_error():
    generator = torch.Generator().manual_seed(2)
    preds = torch.rand(3, 2, 1, 8, 8, generator=generator)
    target = torch.rand(3, 2, 1, 8, 8, generator=generator)
    metrics = SequenceMetrics(2, ["ensemble"], "test", SETTINGS)
    metrics.update(preds, target)
    curves = metrics.curves()
    mae_dbz = ((preds - target).abs() * 70).double().mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(curves["crps"], mae_dbz, rtol=1e-6, atol=0)
    assert (curves["spread_skill"] == 0).all()  # no spread
    event = (target >= 20 / 70).double()
    forecast = (preds >= 20 / 70).double()
    torch.testing.assert_close(curves["brier_20dBZ"],
                               (forecast - event).square().mean(dim=(0, 2, 3, 4)))


SETTINGS = ScoringSettings(ValueMapping(), (20.0, 40.0), "dBZ", (1, 3))


@pytest.mark.slow
def test_ensemble_scores_agree_on_one_process_and_two():
    generator = torch.Generator().manual_seed(5)
    members = torch.rand(5, 4, 2, 1, 8, 8, generator=generator)  # continuous: no rank ties
    target = torch.rand(5, 2, 1, 8, 8, generator=generator)
    args = (2, ["mse", "ensemble"], "test", SETTINGS)
    single = SequenceMetrics(*args, members=4)
    single.update(members, target)
    expected = {k: v.item() for k, v in single.compute().items()}
    tables = single.tables()
    assert "test/crps/step_02" in expected and "test/brier_20dBZ" in expected
    results = members_scores_on_two_processes(args, {"members": 4}, members, target)
    for rank in (0, 1):
        assert results[rank]["scores"].keys() == expected.keys()
        for key, value in expected.items():
            # float64 sums for the ensemble scores; MSE sums a frame's pixels in float32
            tolerance = 1e-6 if "mse" in key else 1e-9
            assert results[rank]["scores"][key] == pytest.approx(value, rel=tolerance), key
        for key, table in tables.items():
            torch.testing.assert_close(results[rank]["tables"][key], table, rtol=1e-12, atol=0)


def test_an_ensemble_fits_tests_and_predicts_on_radar(radar_file, tmp_path):  # noqa: F811
    common = ["--model.predictor.hidden_channels=[4]", "--model.predictor.patch_size=4",
              "--model.loss=crps", "--model.ensemble_members=2",
              "--model.test_ensemble_members=4", "--data.thresholds=[20,40]",
              "--data.fss_scales=[1]"]
    cli = run_cli(["fit", "--model=predrnn", *radar_args(
        radar_file, tmp_path / "fit", *common, "--trainer.max_steps=2", "--test_after_fit=true",
        f"--figures.output_dir={tmp_path / 'fit'}")])
    logged = cli.trainer.callback_metrics
    for key in ("test/crps", "test/crps/step_03", "test/spread_skill", "test/brier_20dBZ",
                "test/csi_20dBZ", "test/mse_per_frame"):
        assert key in logged, key
    folder = tmp_path / "fit"
    rows = list(csv.reader((folder / "test_rank_histogram.csv").open()))
    assert rows[0] == ["step", *(f"rank_{r}" for r in range(5))] and len(rows) == 4
    assert all(sum(map(float, row[1:])) == pytest.approx(1) for row in rows[1:])
    reliability = list(csv.DictReader((folder / "test_reliability.csv").open()))
    assert {row["threshold"] for row in reliability} == {"20dBZ", "40dBZ"}
    for picture in ("test_ensemble.png", "test_rank_histogram.png", "test_reliability.png",
                    "test_predictions.png"):
        assert (folder / picture).read_bytes()[:4] == b"\x89PNG", picture
    intervals = {(row["metric"], row["step"]): row
                 for row in csv.DictReader((folder / "test_intervals.csv").open())}
    crps = intervals[("crps", "all")]
    assert float(crps["value"]) == pytest.approx(float(logged["test/crps"]), rel=1e-5)
    assert int(crps["sequences"]) == 24 and int(crps["blocks"]) == 4  # 7-frame windows
    # 4 independent blocks are too few to resample: no interval, rather than a false one
    assert math.isnan(float(crps["low"])) and math.isnan(float(crps["high"]))
    assert int(intervals[("csi_20dBZ", "all")]["events"]) > 0
    checkpoint = next((tmp_path / "fit").rglob("last.ckpt"))
    output = tmp_path / "predict" / "predictions.h5"
    run_cli(["predict", f"--ckpt_path={checkpoint}", *radar_args(radar_file, tmp_path / "predict"),
             f"--predictions.output_path={output}", "--predictions.image_sequences=1"])
    with h5py.File(output) as handle:
        predictions = handle["predictions"]
        assert predictions.shape[1:3] == (4, 3) and predictions.attrs["members"] == 4
        assert predictions[:].std(axis=1).mean() > 0
