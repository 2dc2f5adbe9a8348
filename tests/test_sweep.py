"""``predlearn sweep``: every config trained and tested, a Table-1-style table and Figure 3 plot."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from mnist_fixtures import write_fake_mnist
from omegaconf import OmegaConf
from support import TINY_MODELS

import predlearn
from predlearn.cli import main
from predlearn.paper import TABLE1
from predlearn.sweep import is_trainable, load_config, sweep_configs

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

def write_tiny_configs(folder: Path) -> list[str]:
    """One config per model (the model part only; data and trainer come as overrides)."""
    folder.mkdir()
    for name, init_args in TINY_MODELS.items():
        if name not in TABLE1:  # the sweep of Table 1's rows
            continue
        cls = predlearn.registry.MODELS.get(name)
        config = {"model": {"predictor": {"class_path": f"{cls.__module__}.{cls.__qualname__}",
                                          "init_args": init_args}}}
        OmegaConf.save(config, folder / f"{name}.yaml")
    # a transfer-only config is skipped: the sweep runs the transfer test itself
    OmegaConf.save({"data": {"init_args": {"test_num_digits": 3}}}, folder / "zz_transfer.yaml")
    return [name for name in TINY_MODELS if name in TABLE1]


@pytest.mark.slow
def test_sweep_writes_table_plot_and_curves(tmp_path):
    root = write_fake_mnist(tmp_path / "mnist", n_train=40, n_test=20)
    names = write_tiny_configs(tmp_path / "configs")
    out = tmp_path / "sweep"
    main(["sweep", str(tmp_path / "configs"), "--out", str(out),
          "--data=mmnist", f"--data.root={root}", "--data.download=false",
          "--data.num_val=4", "--data.num_test=5", "--data.batch_size=4",
          "--data.train_sequences_per_epoch=8", "--trainer.max_steps=2",
          "--trainer.accelerator=cpu", "--trainer.devices=1",
          "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path / 'runs'}",
          "--trainer.enable_progress_bar=false", "--figures.enabled=false",
          "--seed_everything=0"])

    with (out / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == sorted(names)  # configs in file order
    for row in rows:
        ce, mse, mse3 = (float(row[k]) for k in ("ce_per_frame", "mse_per_frame",
                                                 "mse_per_frame_3digits"))
        assert ce > 0 and mse > 0 and mse3 > 0
        assert mse3 != mse  # a different test set: 3 digits
        assert float(row["paper_mse_per_frame"]) == TABLE1[row["model"]].mnist2_mse
        assert -1 < float(row["ssim"]) <= 1 and float(row["ssim"]) != float(row["ssim_3digits"])
        assert int(row["steps"]) == 2 and float(row["seconds"]) > 0
    table = (out / "table.md").read_text()
    assert "| predrnn | predrnn.yaml |" in table and "\\| 56.8 |" in table
    assert (out / "per_step_mse.png").stat().st_size > 5000
    with (out / "curves" / "predrnn_test_3digits.csv").open() as handle:
        curve = list(csv.DictReader(handle))
    assert len(curve) == 10
    assert float(curve[-1]["mse_per_frame"]) > 0


def test_sweep_skips_transfer_only_configs_and_names_missing_paths(tmp_path):
    selected = {p.name for p in sweep_configs([CONFIGS / "mmnist"])}
    assert "predrnn.yaml" in selected and "predrnn_mnist3.yaml" not in selected
    with pytest.raises(FileNotFoundError, match="no config file or folder"):
        sweep_configs([tmp_path / "nowhere"])


def test_a_config_may_give_its_data_and_model_as_other_yaml_files(tmp_path):
    # as the command line reads them: paths relative to the config's own folder
    mnist = "predlearn.datamodules.MovingMNISTDataModule"
    for name, settings in {
            "data/mnist2.yaml": {"class_path": mnist, "init_args": {"num_digits": 2}},
            "data/mnist3.yaml": {"class_path": mnist, "init_args": {"test_num_digits": 3}},
            "models/persistence.yaml": {"predictor": {"class_path": "predlearn.zoo.Persistence"}},
            "configs/a_transfer.yaml": {"model": "../models/persistence.yaml",
                                        "data": "../data/mnist3.yaml"},
            "configs/b_baseline.yaml": {"model": "../models/persistence.yaml",
                                        "data": "../data/mnist2.yaml"},
            "configs/c_predrnn.yaml": {"model": {"predictor": {
                "class_path": "predlearn.zoo.PredRNN"}}, "data": "../data/mnist2.yaml"},
            "broken/d.yaml": {"data": "../data/nowhere.yaml"}}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        OmegaConf.save(settings, tmp_path / name)
    baseline, predrnn = sweep_configs([tmp_path / "configs"])  # a_transfer: transfer only
    assert (baseline.name, predrnn.name) == ("b_baseline.yaml", "c_predrnn.yaml")
    assert load_config(baseline)["data"]["init_args"] == {"num_digits": 2}
    assert not is_trainable(baseline) and is_trainable(predrnn)
    with pytest.raises(FileNotFoundError, match="names data: ../data/nowhere.yaml"):
        sweep_configs([tmp_path / "broken"])


@pytest.mark.slow
def test_resume_reruns_only_the_configs_without_curves(tmp_path, monkeypatch):
    root = write_fake_mnist(tmp_path / "mnist", n_train=40, n_test=20)
    folder = tmp_path / "configs"
    folder.mkdir()
    for name in ("convlstm", "predrnn"):
        cls = predlearn.registry.MODELS.get(name)
        OmegaConf.save({"model": {"predictor": {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "init_args": {**TINY_MODELS[name], "patch_size": 4}}}}, folder / f"{name}.yaml")
    out = tmp_path / "sweep"
    args = ["sweep", str(folder), "--out", str(out), "--data=mmnist", f"--data.root={root}",
            "--data.download=false", "--data.num_val=4", "--data.num_test=5",
            "--data.batch_size=4", "--data.train_sequences_per_epoch=8",
            "--trainer.max_steps=2", "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={tmp_path / 'runs'}",
            "--trainer.enable_progress_bar=false", "--figures.enabled=false"]
    main(args)
    first = {row["model"]: row for row in csv.DictReader((out / "table.csv").open())}
    (out / "curves" / "predrnn_test_3digits.csv").unlink()  # as if stopped during predrnn

    from predlearn import sweep

    ran = []
    real_run_one = sweep.run_one
    monkeypatch.setattr(sweep, "run_one", lambda config, *rest: (
        ran.append(config.stem), real_run_one(config, *rest))[1])
    main([*args, "--resume"])
    assert ran == ["predrnn"]  # convlstm's curves were there
    second = {row["model"]: row for row in csv.DictReader((out / "table.csv").open())}
    assert sorted(second) == ["convlstm", "predrnn"]
    for key in ("ce_per_frame", "mse_per_frame", "mse_per_frame_3digits", "ssim"):
        # read back from its curves (written to 6 significant digits)
        assert float(second["convlstm"][key]) == pytest.approx(float(first["convlstm"][key]),
                                                               rel=1e-5)
    assert second["convlstm"]["steps"] == first["convlstm"]["steps"] == "2"  # from its run.json
    assert second["convlstm"]["seconds"] == first["convlstm"]["seconds"]
