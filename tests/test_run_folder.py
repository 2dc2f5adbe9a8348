"""One run, one folder: where a run's files go, what is printed, and what a failed start
leaves (nothing). W&B runs offline (the default logger)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from mnist_fixtures import write_fake_mnist

from predlearn.cli import main, run_cli
from predlearn.run_folder import RunFolder


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), n_train=60, n_test=30)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import wandb

    wandb.finish()  # a run left open by an earlier test would be reused
    monkeypatch.setenv("WANDB_MODE", "offline")


def tiny(mnist: Path, root: Path, *extra: str) -> list[str]:
    """A tiny PredRNN on fake MNIST with the default logger (W&B), runs under ``root``."""
    return ["--model=predrnn", "--model.predictor.hidden_channels=[4]",
            "--model.predictor.kernel_size=3", "--model.predictor.patch_size=4",
            "--data=mmnist", f"--data.root={mnist}", "--data.download=false",
            "--data.num_val=4", "--data.num_test=4", "--data.batch_size=4",
            "--data.train_sequences_per_epoch=20", "--seed_everything=0",
            "--trainer.accelerator=cpu", "--trainer.devices=1",
            f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", *extra]


def saved_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.slow
def test_each_run_has_its_own_folder_printed_at_start_and_end(mnist, tmp_path, capsys):
    root = tmp_path / "runs"
    fit = ["fit", *tiny(mnist, root, "--trainer.max_steps=2", "--trainer.val_check_interval=2")]
    folders = [Path(run_cli(fit).trainer.log_dir) for _ in range(2)]  # the same command twice
    assert folders[0] != folders[1] and sorted(root.iterdir()) == sorted(folders)
    for folder in folders:
        assert folder.name.startswith("predrnn-mmnist-")
        for name in ("config.yaml", "predlearn_run.json", "val_curves.csv", "val_curves.png",
                     "val_predictions.png", "val_predictions.gif", "checkpoints/last.ckpt",
                     "checkpoints/best-step000002.ckpt"):
            assert (folder / name).is_file(), name
        (offline,) = (folder / "wandb").glob("offline-run-*")
        assert list(offline.glob("run-*.wandb"))
    out = capsys.readouterr().out
    for folder in folders:  # at the start and at the end, with the checkpoints
        assert out.count(f"predlearn: run folder {folder}\n") == 2
        assert f"predlearn: last checkpoint {folder / 'checkpoints' / 'last.ckpt'}" in out
        assert "predlearn: best checkpoint (val/loss " in out
        assert f"{folder / 'checkpoints' / 'best-step000002.ckpt'}\n" in out


@pytest.mark.slow
def test_a_resumed_fit_goes_on_in_its_folder_and_predict_writes_beside_it(mnist, tmp_path,
                                                                         capsys):
    root = tmp_path / "runs"
    first = run_cli(["fit", *tiny(mnist, root, "--trainer.max_steps=2",
                                  "--trainer.val_check_interval=2")])
    folder = Path(first.trainer.log_dir)
    config = (folder / "config.yaml").read_bytes()
    resumed = run_cli(["fit", *tiny(mnist, root, "--trainer.max_steps=4",
                                    "--trainer.val_check_interval=2"),
                       f"--ckpt_path={folder / 'checkpoints' / 'last.ckpt'}"])
    assert Path(resumed.trainer.log_dir) == folder and list(root.iterdir()) == [folder]
    assert saved_step(folder / "checkpoints" / "last.ckpt") == 4
    assert (folder / "config.yaml").read_bytes() == config  # the first run's config is kept
    (again,) = folder.glob("config.resumed-*.yaml")
    assert "max_steps: 4" in again.read_text()
    assert len(list((folder / "wandb").glob("offline-run-*"))) == 2
    assert resumed.trainer.logger.experiment.name == folder.name

    wandb_runs = sorted((folder / "wandb").iterdir())
    best = resumed.trainer.checkpoint_callback.best_model_path
    capsys.readouterr()
    run_cli(["predict", *tiny(mnist, root), f"--ckpt_path={best}"])
    printed = capsys.readouterr().out  # predict chose no checkpoint: it names none
    assert "best checkpoint" not in printed and "last checkpoint" not in printed
    (predicted,) = folder.glob("predict-*")  # in the checkpoint's run, no new run folder
    assert list(root.iterdir()) == [folder]
    with h5py.File(predicted / "predictions.h5") as handle:
        assert handle["predictions"].shape == (4, 10, 1, 64, 64)
    assert (predicted / "config.yaml").is_file()
    assert sorted((folder / "wandb").iterdir()) == wandb_runs  # no W&B run for predict


def test_a_run_that_fails_before_its_first_step_leaves_nothing(mnist, tmp_path, capsys):
    root = tmp_path / "runs"
    with pytest.raises(SystemExit) as stop:  # fails while preparing the data
        main(["fit", "--model=predrnn", "--data=mmnist", f"--data.root={tmp_path / 'nowhere'}",
              "--data.download=false", f"--trainer.default_root_dir={root}"])
    assert stop.value.code == 1
    assert not root.exists() or not list(root.iterdir())
    # fails after its W&B run started (3 frames, 10 observed): the run and its folder are removed
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(SystemExit) as stop:
        main(["test", "--model=predrnn", "--ckpt_path=untrained", "--data=frames",
              f"--data.path={short}", f"--trainer.default_root_dir={root}"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "predlearn: removed the run folder" in err and "before its first step" in err
    assert not root.exists() or not list(root.iterdir())


def test_a_failed_start_in_an_existing_folder_removes_only_what_it_added(tmp_path):
    folder = tmp_path / "run"
    old_run = folder / "wandb" / "offline-run-1"
    old_run.mkdir(parents=True)
    (folder / "config.yaml").write_text("first")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_text("weights")
    os.symlink(old_run.name, folder / "wandb" / "latest-run")
    watcher = RunFolder(folder, "config.resumed-1.yaml")
    # what the resumed run adds before it fails, and a file someone else puts there meanwhile
    new_run = folder / "wandb" / "offline-run-2"
    (new_run / "files").mkdir(parents=True)
    (folder / "wandb" / "latest-run").unlink()
    os.symlink(new_run.name, folder / "wandb" / "latest-run")
    (folder / "config.resumed-1.yaml").write_text("second")
    (folder / "notes.txt").write_text("mine")
    watcher.remove()
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "checkpoints", "checkpoints/last.ckpt", "config.yaml", "notes.txt", "wandb",
        "wandb/offline-run-1"]


def test_the_checkpoints_are_reported_only_after_a_fit(tmp_path, capsys):
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.trainer.states import TrainerFn

    kept = ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val/loss")
    kept.best_model_path, kept.best_model_score = "run/checkpoints/best.ckpt", torch.tensor(0.5)
    kept.last_model_path = "run/checkpoints/last.ckpt"
    trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.PREDICTING),
                              checkpoint_callback=kept, is_global_zero=True)
    for command in (TrainerFn.PREDICTING, TrainerFn.TESTING, TrainerFn.VALIDATING):
        trainer.state.fn = command  # the callback is of a fit that did not run: no checkpoint
        assert RunFolder(tmp_path).report(trainer) == f"predlearn: run folder {tmp_path}"
    watcher = RunFolder(tmp_path)
    trainer.state.fn = TrainerFn.FITTING
    watcher.setup(trainer, None, "fit")
    trainer.state.fn = TrainerFn.TESTING  # --test_after_fit: the fit's checkpoints are reported
    assert watcher.report(trainer).splitlines()[1:] == [
        "predlearn: best checkpoint (val/loss 0.5) run/checkpoints/best.ckpt",
        "predlearn: last checkpoint run/checkpoints/last.ckpt"]


def csv_rows(folder: Path) -> list[dict[str, str]]:
    import csv

    with (folder / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def train_steps(folder: Path) -> list[int]:
    """The steps of the training-loss rows of a run's metrics.csv, in file order."""
    return [int(row["step"]) for row in csv_rows(folder) if row.get("train/loss")]


@pytest.mark.slow
def test_a_csv_run_lives_in_its_folder_and_resumes_there(mnist, tmp_path, capsys):
    """``--trainer.logger=CSVLogger``: one folder named after the run (no version_N), resumed
    in place from a checkpoint path and from ``last``; metrics.csv goes on, each step once."""
    root = tmp_path / "runs"
    csv = ["--trainer.logger=CSVLogger", "--trainer.log_every_n_steps=1",
           "--trainer.val_check_interval=3"]
    first = run_cli(["fit", *tiny(mnist, root, "--trainer.max_steps=3", *csv)])
    (folder,) = root.iterdir()
    assert folder.name.startswith("predrnn-mmnist-") and Path(first.trainer.log_dir) == folder
    for name in ("config.yaml", "metrics.csv", "hparams.yaml", "val_curves.csv",
                 "checkpoints/last.ckpt", "checkpoints/best-step000003.ckpt"):
        assert (folder / name).is_file(), name
    assert train_steps(folder) == [0, 1, 2]
    # as if the run had logged two more steps before it was killed: the resumed run repeats them
    with (folder / "metrics.csv").open("a") as handle:
        handle.write("0,3" + "," * (len(csv_rows(folder)[0]) - 2) + "\n")
        handle.write("0,4" + "," * (len(csv_rows(folder)[0]) - 2) + "\n")
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        resumed = run_cli(["fit", *tiny(mnist, root, "--trainer.max_steps=6", *csv),
                           f"--ckpt_path={folder / 'checkpoints' / 'last.ckpt'}"])
    assert Path(resumed.trainer.log_dir) == folder and list(root.iterdir()) == [folder]
    assert not [w for w in seen if "exists and is not empty" in str(w.message)]
    assert train_steps(folder) == [0, 1, 2, 3, 4, 5]
    assert saved_step(folder / "checkpoints" / "last.ckpt") == 6
    again = run_cli(["fit", *tiny(mnist, root, "--trainer.max_steps=9", *csv),
                     "--ckpt_path=last"])
    assert Path(again.trainer.log_dir) == folder and list(root.iterdir()) == [folder]
    assert train_steps(folder) == list(range(9))
    assert saved_step(folder / "checkpoints" / "last.ckpt") == 9
    assert len(list(folder.glob("config.resumed-*.yaml"))) == 2
    assert "predlearn: note: --ckpt_path=last" not in capsys.readouterr().err


def test_last_without_an_earlier_run_starts_a_new_one_with_a_note(mnist, tmp_path, capsys):
    """``--ckpt_path=last`` in a job that a scheduler repeats: its first run finds nothing to
    resume, says so in one line and starts afresh (no Lightning warning)."""
    root = tmp_path / "runs"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cli = run_cli(["fit", *tiny(mnist, root, "--trainer.max_steps=1",
                                    "--trainer.limit_val_batches=0", "--figures.enabled=false",
                                    "--trainer.logger=false"), "--ckpt_path=last"])
    assert not [str(w.message) for w in seen if "last" in str(w.message)]
    (folder,) = root.iterdir()
    assert folder.name.startswith("predrnn-mmnist-") and Path(cli.trainer.log_dir) == folder
    assert ("predlearn: note: --ckpt_path=last: no run of predrnn on mmnist under "
            f"{root} to resume; starting a new one") in capsys.readouterr().err
    assert saved_step(folder / "checkpoints" / "last.ckpt") == 1


def choose(tmp_path: Path, *args: str, subcommand: str = "fit"):
    """``choose_run_folder`` on a config as the command line parses it (no run)."""
    from jsonargparse import Namespace

    from predlearn.runs import choose_run_folder

    logger = None
    for arg in args:
        if arg.startswith("--trainer.logger="):
            value = arg.split("=", 1)[1]
            logger = False if value == "false" else Namespace(
                class_path=value, init_args=Namespace(save_dir="runs", name=None, version=None))
    config = Namespace(
        trainer=Namespace(default_root_dir=str(tmp_path / "runs"), logger=logger),
        model=Namespace(predictor=Namespace(class_path="predlearn.zoo.PredRNN")),
        data=Namespace(class_path="predlearn.datamodules.MovingMNISTDataModule"),
        checkpoint=Namespace(dirpath=None), ckpt_path=None)
    for arg in args:
        if arg.startswith("--trainer.logger.name="):
            config.trainer.logger.init_args.name = arg.split("=", 1)[1]
    folder, _ = choose_run_folder(subcommand, config)
    return folder, config


@pytest.mark.parametrize("logger", ["false", "lightning.pytorch.loggers.CSVLogger"])
def test_without_w_and_b_a_run_still_gets_its_named_folder(tmp_path, logger, monkeypatch):
    monkeypatch.delenv("PREDLEARN_RUN_FOLDER", raising=False)
    folder, config = choose(tmp_path, f"--trainer.logger={logger}")
    assert folder.parent == tmp_path / "runs" and folder.name.startswith("predrnn-mmnist-")
    assert config.trainer.default_root_dir == str(folder)
    assert config.checkpoint.dirpath == str(folder / "checkpoints")
    if logger != "false":  # its files in the folder itself, not in version_N below it
        assert config.trainer.logger.class_path == "predlearn.loggers.RunCSVLogger"
        assert config.trainer.logger.init_args.save_dir == str(folder)


def test_a_csv_logger_given_a_name_keeps_its_own_layout(tmp_path):
    folder, config = choose(tmp_path, "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
                            "--trainer.logger.name=mine")
    assert folder is None
    assert config.trainer.logger.class_path == "lightning.pytorch.loggers.CSVLogger"


def test_last_resumes_the_newest_run_of_that_model_and_data(tmp_path):
    import time

    from predlearn.runs import latest_run

    root = tmp_path / "runs"
    made = {}
    for name in ("predrnn-mmnist-20260101-000000", "predrnn-mmnist-20260102-000000-2",
                 "predrnn-mmnist-test-20260103-000000", "convlstm-mmnist-20260104-000000",
                 "predrnn-mmnist-20260105-000000"):
        (root / name / "checkpoints").mkdir(parents=True)
        made[name] = root / name
    for name in ("predrnn-mmnist-20260105-000000", "predrnn-mmnist-20260101-000000",
                 "predrnn-mmnist-test-20260103-000000", "convlstm-mmnist-20260104-000000",
                 "predrnn-mmnist-20260102-000000-2"):
        (made[name] / "checkpoints" / "last.ckpt").write_text(name)
        time.sleep(0.02)  # written in this order: the last one is the newest
    assert latest_run(root, "predrnn", "mmnist") == made["predrnn-mmnist-20260102-000000-2"]
    assert latest_run(root, "convlstm", "mmnist") == made["convlstm-mmnist-20260104-000000"]
    assert latest_run(root, "mim", "mmnist") is None and latest_run(tmp_path / "no", "a", "b") \
        is None
