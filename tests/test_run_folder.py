"""One run, one folder: where a run's files go, what is printed, and what a failed start
leaves (nothing). W&B runs offline (the default logger)."""

from __future__ import annotations

import os
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
