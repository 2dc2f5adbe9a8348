"""Every fit validates its last step: a fit that ends after training steps since its last
validation validates once more inside the fit (never twice at one step), so that it leaves a
best checkpoint ranked by that validation, its pictures and its curves, and a ``last``
checkpoint written after it that resumes exactly."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
import torch
from support import tiny_run

from predlearn.cli import run_cli

NO_FIGURES = "--figures.enabled=false"


def validated_steps(run_dir: Path) -> list[int]:
    """The global step of every validation, in order (one entry per validation), from the CSV
    logger's files."""
    steps = []
    for path in sorted(run_dir.glob("run/version_*/metrics.csv")):
        with path.open() as handle:
            steps += [int(row["step"]) + 1 for row in csv.DictReader(handle) if row["val/loss"]]
    return steps


def val_losses(run_dir: Path) -> dict[int, float]:
    losses: dict[int, float] = {}
    for path in sorted(run_dir.glob("run/version_*/metrics.csv")):
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row["val/loss"]:
                    losses[int(row["step"]) + 1] = float(row["val/loss"])
    return losses


def saved(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize(("limits", "expected"), [
    (["--trainer.max_steps=3"], [2, 3]),  # the last step is not on the schedule
    (["--trainer.max_steps=4"], [2, 4]),  # it is: validated once
    (["--trainer.max_steps=-1", "--trainer.max_epochs=1"], [2, 4, 5]),  # an epoch of 5 batches
])
def test_the_last_step_is_validated_once(mnist_root, tmp_path, limits, expected):
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, *limits, NO_FIGURES,
                                    "--trainer.val_check_interval=2")])
    assert validated_steps(tmp_path) == expected
    last_step = expected[-1]
    checkpoint = cli.trainer.checkpoint_callback
    last = saved(checkpoint.last_model_path)
    assert last["global_step"] == last_step
    assert last["predlearn"]["validation"]["step"] == last_step  # written after the validation
    losses = val_losses(tmp_path)
    best = min(losses, key=losses.get)
    assert Path(checkpoint.best_model_path).name == f"best-step{best:06d}.ckpt"
    assert float(checkpoint.best_model_score) == pytest.approx(losses[best], rel=1e-6)


def test_a_fit_shorter_than_its_first_validation_leaves_a_best_checkpoint(mnist_root,
                                                                            tmp_path):
    """The default schedule validates once an epoch (5 batches); a 3-step fit did not validate
    at all, leaving no best checkpoint, no pictures and Lightning's warning about val/loss."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=3")])
    assert not [str(w.message) for w in caught if "val/loss" in str(w.message)]
    assert validated_steps(tmp_path) == [3]
    checkpoint = cli.trainer.checkpoint_callback
    assert Path(checkpoint.best_model_path).name == "best-step000003.ckpt"
    run = Path(cli.trainer.log_dir)
    for name in ("val_predictions.png", "val_curves.csv"):
        assert (run / name).is_file(), name


def test_the_last_step_is_a_checkpoint_step_of_a_step_schedule(mnist_root, tmp_path):
    """With ``--checkpoint.every_n_train_steps=2`` step 3 is no checkpoint step, yet it is the
    last: ranked by its own validation, like the checkpoint steps."""
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=3", NO_FIGURES,
                                    "--checkpoint.every_n_train_steps=2",
                                    "--checkpoint.save_top_k=-1",
                                    "--trainer.val_check_interval=2",
                                    "--trainer.check_val_every_n_epoch=null")])
    losses = val_losses(tmp_path)
    ranked = {Path(path).name: float(score)
              for path, score in cli.trainer.checkpoint_callback.best_k_models.items()}
    assert ranked == pytest.approx({"best-step000002.ckpt": losses[2],
                                    "best-step000003.ckpt": losses[3]}, rel=1e-6)


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train/loss) of every logged training step, in order."""
    rows = []
    for path in sorted(run_dir.glob("run/version_*/metrics.csv")):
        with path.open() as handle:
            rows += [(int(row["step"]) + 1, float(row["train/loss"]))
                     for row in csv.DictReader(handle) if row["train/loss"]]
    return rows


#: a validation every 2 steps, counted across epochs (of 5 batches)
EVERY_2 = ["--trainer.val_check_interval=2", "--trainer.check_val_every_n_epoch=null", NO_FIGURES]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [3, 5])  # mid-epoch, and an epoch's last batch
def test_a_fit_resumed_after_its_final_validation_goes_on_as_an_uninterrupted_one(
        mnist_root, tmp_path, stop):
    """Its last checkpoint is written after a validation the schedule does not call for (at step
    3 or 5), which Lightning resumes exactly only as written at the end of its step: else the
    loggers' steps come back one behind, and after step 5 the next epoch starts a batch late."""
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    whole = run_cli(["fit", *tiny_run(mnist_root, straight, "--trainer.max_steps=8", *EVERY_2)])
    first = run_cli(["fit", *tiny_run(mnist_root, interrupted, f"--trainer.max_steps={stop}",
                                      *EVERY_2)])
    last = first.trainer.checkpoint_callback.last_model_path
    resumed = run_cli(["fit", *tiny_run(mnist_root, interrupted, "--trainer.max_steps=8",
                                        *EVERY_2), f"--ckpt_path={last}"])
    assert validated_steps(straight) == [2, 4, 6, 8]
    assert validated_steps(interrupted) == sorted({2, 4, 6, 8, stop})
    expected, got_losses = train_losses(straight), train_losses(interrupted)
    assert [step for step, _ in expected] == [step for step, _ in got_losses] == list(range(1, 9))
    assert [loss for _, loss in got_losses] == pytest.approx([loss for _, loss in expected],
                                                             rel=1e-6)
    got, wanted = (saved(cli.trainer.checkpoint_callback.last_model_path)
                   for cli in (resumed, whole))
    assert got["global_step"] == wanted["global_step"] == 8
    for name, value in wanted["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][name], value)
