"""Checkpoints you can rely on: with ``--checkpoint.every_n_train_steps``, ``last`` is written at
every interval (also before the first validation), a step's checkpoint is ranked only by the
validation of that same step, and a run killed and resumed from ``last.ckpt`` picks the same
best checkpoint as an uninterrupted one."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from support import tiny_run

from predlearn.cli import run_cli

#: a checkpoint step every step; validation every 2 steps, counted across epochs (of 5
#: training batches)
STEPS = ["--checkpoint.every_n_train_steps=1", "--trainer.val_check_interval=2",
         "--trainer.check_val_every_n_epoch=null", "--figures.enabled=false"]


def val_losses(run_dir: Path) -> dict[int, float]:
    """val/loss by the global step it was computed at, from the CSV logger's files."""
    losses: dict[int, float] = {}
    for path in sorted(run_dir.glob("run/version_*/metrics.csv")):
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row.get("val/loss"):
                    losses[int(row["step"]) + 1] = float(row["val/loss"])
    return losses


def saved(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


class LastProbe(L.Callback):
    """Records, before every training batch, the step ``last.ckpt`` holds (None: no file yet):
    what a run killed at that moment could resume from."""

    def __init__(self) -> None:
        self.seen: list[int | None] = []

    def on_train_batch_start(self, trainer, *args) -> None:
        path = trainer.checkpoint_callback.last_model_path
        self.seen.append(saved(path)["global_step"] if path and Path(path).is_file() else None)


@pytest.mark.slow
def test_last_is_written_at_every_interval_before_the_first_validation(mnist_root, tmp_path):
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=3",
                                    "--checkpoint.every_n_train_steps=1",
                                    "--trainer.val_check_interval=3", "--figures.enabled=false",
                                    "--trainer.callbacks=test_checkpoints.LastProbe")])
    (probe,) = (c for c in cli.trainer.callbacks if isinstance(c, LastProbe))
    assert probe.seen == [None, 1, 2]  # before steps 1, 2, 3: the validation is at step 3
    checkpoint = cli.trainer.checkpoint_callback
    assert sorted(val_losses(tmp_path)) == [3]
    assert saved(checkpoint.last_model_path)["global_step"] == 3
    assert Path(checkpoint.best_model_path).name == "best-step000003.ckpt"


@pytest.mark.slow
def test_a_step_is_ranked_only_by_its_own_validation(mnist_root, tmp_path):
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=5",
                                    "--checkpoint.save_top_k=-1", *STEPS)])
    checkpoint = cli.trainer.checkpoint_callback
    losses = val_losses(tmp_path)
    assert sorted(losses) == [2, 4, 5]  # and the last step (predlearn.final_validation)
    # steps 1 and 3 have no validation of their own: written as `last` only, never ranked
    ranked = {Path(path).name: float(score) for path, score in checkpoint.best_k_models.items()}
    assert ranked == pytest.approx({"best-step000002.ckpt": losses[2],
                                    "best-step000004.ckpt": losses[4],
                                    "best-step000005.ckpt": losses[5]}, rel=1e-6)
    assert saved(checkpoint.last_model_path)["global_step"] == 5
    # `last` at a validated step is written after the validation: it holds the ranking
    at_step_4 = saved(Path(checkpoint.dirpath) / "best-step000004.ckpt")
    state = next(v for k, v in at_step_4["callbacks"].items() if k.startswith("ModelCheckpoint{"))
    assert Path(state["best_model_path"]).name in ranked


@pytest.mark.slow
@pytest.mark.parametrize("stop", [4, 5])  # killed right after a validation, or between two
def test_a_resumed_run_picks_the_same_best_checkpoint(mnist_root, tmp_path, stop):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    whole = run_cli(["fit", *tiny_run(mnist_root, straight, "--trainer.max_steps=8", *STEPS)])
    first = run_cli(["fit", *tiny_run(mnist_root, interrupted, f"--trainer.max_steps={stop}",
                                      *STEPS)])
    last = first.trainer.checkpoint_callback.last_model_path
    assert saved(last)["global_step"] == stop
    resumed = run_cli(["fit", *tiny_run(mnist_root, interrupted, "--trainer.max_steps=8",
                                        *STEPS), f"--ckpt_path={last}"])

    assert sorted(val_losses(straight)) == [2, 4, 6, 8]
    # the first fit validated its last step too (predlearn.final_validation)
    assert sorted(val_losses(interrupted)) == sorted({2, 4, 6, 8, stop})
    expected, got = whole.trainer.checkpoint_callback, resumed.trainer.checkpoint_callback
    assert Path(got.best_model_path).name == Path(expected.best_model_path).name
    assert float(got.best_model_score) == pytest.approx(float(expected.best_model_score),
                                                        rel=1e-6)
    weights, expected_weights = (saved(c.best_model_path)["state_dict"]
                                 for c in (got, expected))
    for name, value in expected_weights.items():
        torch.testing.assert_close(weights[name], value)


@pytest.mark.slow
def test_validations_that_never_meet_a_checkpoint_step_are_reported(mnist_root, tmp_path):
    """A fit's last step is validated and ranked (predlearn.final_validation) unless its
    epoch validates nothing: here every other epoch (of 5 batches) validates at its 3rd batch,
    step 8, and the last step, 15, is in an epoch without validation."""
    args = tiny_run(mnist_root, tmp_path, "--trainer.max_steps=15",
                    "--checkpoint.every_n_train_steps=3", "--trainer.val_check_interval=3",
                    "--trainer.check_val_every_n_epoch=2", "--figures.enabled=false")
    with pytest.warns(UserWarning, match=r"no validation ran at a checkpoint step "
                                         r"\(every_n_train_steps=3\)"):
        cli = run_cli(["fit", *args])
    assert sorted(val_losses(tmp_path)) == [8]
    assert cli.trainer.checkpoint_callback.best_model_path == ""  # step 8 is no checkpoint step
    assert saved(cli.trainer.checkpoint_callback.last_model_path)["global_step"] == 15


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["min", "max"])
def test_last_holds_the_last_validated_step_even_when_it_did_not_improve(mnist_root, tmp_path,
                                                                         mode):
    """Lightning writes `last` only with a new best; in one of the two modes at least one of the
    later validations does not improve, and `last` must still be the final step."""
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=6",
                                    "--trainer.val_check_interval=2",
                                    "--trainer.check_val_every_n_epoch=null",
                                    f"--checkpoint.mode={mode}", "--figures.enabled=false")])
    checkpoint = cli.trainer.checkpoint_callback
    assert sorted(val_losses(tmp_path)) == [2, 4, 6]
    assert saved(checkpoint.last_model_path)["global_step"] == 6
    losses = val_losses(tmp_path)
    best = (min if mode == "min" else max)(losses, key=losses.get)
    assert Path(checkpoint.best_model_path).name == f"best-step{best:06d}.ckpt"


def test_checkpoints_of_lightnings_own_callback_resume_with_their_ranking():
    """The callback's state is stored under ModelCheckpoint's key, so a checkpoint written before
    ValidatedCheckpoint existed gives it back its best and last paths on resume."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from predlearn.checkpointing import ValidatedCheckpoint

    options = {"monitor": "val/loss", "mode": "min", "every_n_train_steps": 5}
    assert ValidatedCheckpoint(**options).state_key == ModelCheckpoint(**options).state_key
    assert ValidatedCheckpoint(**options).state_key.startswith("ModelCheckpoint{")


@pytest.mark.slow
def test_a_run_resumed_from_a_moved_folders_last_keeps_writing_last(mnist_root, tmp_path):
    """Resuming from ``last.ckpt`` of a folder that was moved (or copied to another machine):
    the restored state names the old folder, and Lightning wrote ``last-v1.ckpt`` beside the
    stale ``last.ckpt``, which the next resume would have gone back to."""
    first_folder, moved = tmp_path / "first", tmp_path / "moved"
    run_cli(["fit", *tiny_run(mnist_root, tmp_path / "a", "--trainer.max_steps=2", *STEPS),
             f"--checkpoint.dirpath={first_folder}"])
    first_folder.rename(moved)
    run_cli(["fit", *tiny_run(mnist_root, tmp_path / "b", "--trainer.max_steps=4", *STEPS),
             f"--checkpoint.dirpath={moved}", f"--ckpt_path={moved / 'last.ckpt'}"])

    assert saved(moved / "last.ckpt")["global_step"] == 4
    assert not list(moved.glob("last-v*.ckpt"))
