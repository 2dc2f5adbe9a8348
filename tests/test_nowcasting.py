"""Radar nowcasting end to end: the value mapping from file to metrics, the scores chosen by the
data, the weightless baselines through ``predlearn test`` and ``predlearn sweep``, and the
scores of two DDP processes equal to one's. The scores themselves are checked against hand
counts in ``test_nowcast_metrics.py``, the baselines in ``test_nowcast_baselines.py``."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from radar_fixtures import write_fmi_pgm, write_prepared
from support import scores_on_two_processes

from predlearn.cli import main, run_cli
from predlearn.datamodules.radar import RadarDataModule, read_value_mapping
from predlearn.datamodules.radar_prepare import prepare_radar
from predlearn.errors import BadFileError, OptionValueError
from predlearn.metrics import SequenceMetrics
from predlearn.units import ScoringSettings, ValueMapping

FIVE_MINUTES = 300


def moving_rain(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 frames of two rain cells moving one pixel right per frame over a dry field."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    centres = rng.uniform(8, size - 8, (2, 2))
    frames = []
    for t in range(count):
        field = sum(np.exp(-((rows - r) ** 2 + (cols - (c + t) % size) ** 2) / 18.0)
                    for r, c in centres)
        frames.append(np.clip(np.round(255 * 0.7 * field), 0, 255).astype(np.uint8))
    return np.stack(frames)


@pytest.fixture(scope="module")
def radar_file(tmp_path_factory) -> Path:
    stamps = np.arange(60, dtype=np.int64) * FIVE_MINUTES
    return write_prepared(tmp_path_factory.mktemp("radar") / "radar.h5", stamps,
                          frames=moving_rain(60))


def radar_args(path: Path, folder: Path, *extra: str) -> list[str]:
    return ["--data=radar", f"--data.path={path}", "--data.train_fraction=0.5",
            "--data.val_fraction=0.0", "--data.batch_size=4", "--data.context_frames=4",
            "--data.horizon=3",
            "--trainer.logger=false", f"--trainer.default_root_dir={folder}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            *extra]


# --- the value mapping, from the prepared file to the scores -----------------------------------


def test_dbz_round_trip_through_a_prepared_file(tmp_path):
    """dBZ -> FMI pixel -> prepared uint8 -> x -> dBZ comes back within the uint8 step over
    0..70 dBZ (half of 70/255); the FMI step (0.5 dBZ) is exact for these values."""
    dbz = np.array([[0.0, 12.5, 20.0, 30.0], [35.5, 40.0, 52.0, 69.5],
                    [5.0, 10.0, 15.0, 25.0], [45.0, 50.0, 55.0, 60.0]])
    pixels = np.round((dbz + 32.0) / 0.5).astype(np.uint8)  # FMI: dBZ = 0.5 PV - 32
    (tmp_path / "src").mkdir()
    write_fmi_pgm(tmp_path / "src", pixels, "201609281445")
    out = prepare_radar([tmp_path / "src"], tmp_path / "r.h5", size=4, progress=False)
    mapping = read_value_mapping(out)
    assert mapping == ValueMapping("dBZ", 0.0, 70.0, 200.0, 1.6)
    with h5py.File(out) as h5:
        x = h5["frames"][0] / 255.0
    np.testing.assert_allclose(mapping.to_physical(x), dbz, atol=70 / 255 / 2 + 1e-9)
    values = np.array([0.0, 17.3, 45.0, 70.0])
    np.testing.assert_allclose(mapping.to_physical(mapping.to_unit_interval(values)), values)


def test_rain_rate_thresholds_go_through_the_zr_relation():
    mapping = ValueMapping()
    # Marshall-Palmer: 1 mm/h is Z = 200, 23.01 dBZ; 10 mm/h is 39.01 dBZ
    assert mapping.rain_rate_to_dbz(1.0) == pytest.approx(23.0103, abs=1e-4)
    assert mapping.rain_rate_to_dbz(10.0) == pytest.approx(39.0103, abs=1e-4)
    x = mapping.threshold_to_unit_interval(10.0, "mm/h")
    assert mapping.to_rain_rate(x) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="thresholds in 'K' do not apply"):
        mapping.threshold_to_unit_interval(3.0, "K")


def test_a_file_without_its_mapping_is_refused_naming_the_attribute(tmp_path):
    path = write_prepared(tmp_path / "r.h5", np.arange(30) * FIVE_MINUTES)
    with h5py.File(path, "a") as h5:
        del h5.attrs["dbz_max"]
    with pytest.raises(BadFileError, match=r"r\.h5: no value mapping \(attribute 'dbz_max'"):
        read_value_mapping(path)


def test_the_radar_module_passes_its_mapping_and_metrics(radar_file):
    data = RadarDataModule(str(radar_file), train_fraction=0.5, val_fraction=0.0,
                           context_frames=4, horizon=3)
    data.setup("test")
    assert data.value_mapping == ValueMapping()
    assert data.frame_minutes == 5.0
    assert data.val_dataloader() == []  # val_fraction 0: no validation
    assert {"categorical", "fss"} <= set(data.default_metrics)


def test_scores_in_physical_units_need_data_that_has_them(tmp_path):
    from predlearn.module import PredictiveModule
    from predlearn.zoo.nowcast_baselines import Persistence

    module = PredictiveModule(Persistence(), metrics=["mse", "categorical"])
    with pytest.raises(OptionValueError, match="'categorical' score events at thresholds"):
        module.prepare_metrics(None)
    with pytest.raises(ValueError, match="physical units"):
        SequenceMetrics(3, ["categorical"])


# --- the baselines through the command line ------------------------------------------------------


def test_persistence_is_tested_without_a_checkpoint_and_scored_in_dbz(radar_file, tmp_path):
    cli = run_cli(["test", "--model=persistence",
                   *radar_args(radar_file, tmp_path, f"--figures.output_dir={tmp_path}"),
                   "--data.thresholds=[20,40]", "--data.fss_scales=[1,3]"])
    logged = cli.trainer.callback_metrics
    for key in ("csi_20dBZ", "pod_40dBZ", "far_20dBZ", "hss_40dBZ", "ets_20dBZ",
                "fss_20dBZ_3px", "mse_per_frame", "ssim"):
        assert f"test/{key}" in logged, key
    assert "test/csi_20dBZ/step_03" in logged
    # the cells move, so persistence's skill falls with lead time
    curve = [float(logged[f"test/csi_20dBZ/step_{k:02d}"]) for k in (1, 2, 3)]
    assert curve[0] > curve[2] and 0 < curve[2] < 1
    assert (tmp_path / "test_power_spectrum.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.reader((tmp_path / "test_curves.csv").open()))
    assert "csi_20dBZ" in rows[0] and len(rows) == 4  # header + 3 lead times


def test_thresholds_in_rain_rate(radar_file, tmp_path):
    cli = run_cli(["test", "--model=persistence", "--model.metrics=[categorical]",
                   *radar_args(radar_file, tmp_path, "--figures.enabled=false"),
                   "--data.threshold_unit=mm/h", "--data.thresholds=[1,5]"])
    assert "test/csi_1mmh" in cli.trainer.callback_metrics
    assert "test/csi_5mmh" in cli.trainer.callback_metrics


def test_a_baseline_has_nothing_to_fit(radar_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--model=persistence", *radar_args(radar_file, tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "persistence has no weights to train" in err.splitlines()[-1]


@pytest.mark.slow
def test_sweep_tests_the_baselines_and_writes_the_nowcast_table(radar_file, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    tiny = {"hidden_channels": [2], "kernel_size": 3, "patch_size": 4}
    for name, predictor in (("persistence", {"class_path": "predlearn.zoo.Persistence"}),
                            ("predrnn", {"class_path": "predlearn.zoo.PredRNN",
                                         "init_args": tiny})):
        OmegaConf.save({"model": {"predictor": predictor}}, folder / f"{name}.yaml")
    out = tmp_path / "sweep"
    main(["sweep", str(folder), "--out", str(out), "--trainer.max_steps=2",
          "--figures.enabled=false", *radar_args(radar_file, tmp_path),
          "--data.init_args.thresholds=[20,40]", "--data.init_args.fss_scales=[1,3]"])
    rows = {row["model"]: row for row in csv.DictReader((out / "table.csv").open())}
    assert sorted(rows) == ["persistence", "predrnn"]
    assert rows["persistence"]["steps"] == "0" and rows["predrnn"]["steps"] == "2"
    for row in rows.values():
        assert 0 <= float(row["csi_20dBZ"]) <= 1 and float(row["mse_per_frame"]) > 0
    assert rows["predrnn"]["paper_mse_per_frame"] == "44.2"  # Table 2
    table = (out / "table.md").read_text()
    assert "| csi_20dBZ | csi_40dBZ | hss_20dBZ | hss_40dBZ | fss_20dBZ_3px |" in table
    assert (out / "per_step_mse.png").is_file()
    assert (out / "power_spectra.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "curves" / "persistence_power_spectrum.csv").is_file()
    assert not list((out / "curves").glob("*3digits*"))  # no transfer test for radar


# --- two DDP processes score as one --------------------------------------------------------------


SETTINGS = ScoringSettings(ValueMapping(), (20.0, 40.0), "dBZ", (1, 3))


@pytest.mark.slow
def test_nowcast_scores_agree_on_one_process_and_two():
    generator = torch.Generator().manual_seed(3)
    preds = torch.rand(5, 2, 1, 12, 12, generator=generator)
    target = torch.rand(5, 2, 1, 12, 12, generator=generator)
    single = SequenceMetrics(2, ["categorical", "fss"], "test", SETTINGS)
    single.update(preds, target)
    expected = {k: v.item() for k, v in single.compute().items()}
    assert "test/hss_40dBZ/step_02" in expected and "test/fss_20dBZ_3px" in expected
    results = scores_on_two_processes((2, ["categorical", "fss"], "test", SETTINGS), preds,
                                      target)
    for rank in (0, 1):
        assert results[rank].keys() == expected.keys()
        for key, value in expected.items():
            assert results[rank][key] == pytest.approx(value, rel=1e-9, nan_ok=True), key


def test_threshold_scores_share_a_panel_of_the_curves_figure():
    from predlearn.visualize import curve_panels

    keys = ["mse_per_frame", "csi_20dBZ", "csi_1.5mmh", "fss_20dBZ_5px", "fss_30dBZ_9px", "ssim"]
    assert curve_panels(keys) == {"mse_per_frame": ["mse_per_frame"],
                                  "csi": ["csi_20dBZ", "csi_1.5mmh"],
                                  "fss": ["fss_20dBZ_5px", "fss_30dBZ_9px"], "ssim": ["ssim"]}


def test_scoring_options_the_file_cannot_take_are_named_as_typed(radar_file, tmp_path, capsys):
    """Checked when the file's value mapping is known (setup), named as on the command line."""
    with pytest.raises(SystemExit) as stop:
        main(["test", "--model=persistence", *radar_args(radar_file, tmp_path),
              "--data.threshold_unit=mm/h", "--data.thresholds=[0]"])
    assert stop.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("predlearn: error: --data.threshold_unit: ")
    assert "rain-rate threshold must be positive; got 0" in last
    with pytest.raises(SystemExit):
        main(["test", "--model=persistence", *radar_args(radar_file, tmp_path),
              "--data.fss_scales=[2]"])
    assert "--data.fss_scales: must be odd" in capsys.readouterr().err.splitlines()[-1]
