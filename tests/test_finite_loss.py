"""A fit whose training loss turns NaN or infinite stops at that step, its last checkpoint good.

End to end through the console script: a learning rate far too high (a real divergence), a loss
that turns NaN at a chosen step (after checkpoints were written: the last one on disk stays the
last good one, and nothing later is written), weights that turn NaN while the loss was still
finite (their checkpoint is refused). The one line names the step and the likely causes, and the
command exits with 1.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from support import tiny_run
from test_cli_errors import refused

from predlearn.errors import TrainingDivergedError
from predlearn.finite_loss import FiniteLoss, finite_loss_callbacks
from predlearn.module import PredictiveModule


def checkpoints(folder: Path) -> dict[str, dict]:
    """Every checkpoint file under ``folder``: name -> (its step, whether its weights are
    finite)."""
    found = {}
    for path in sorted(folder.rglob("*.ckpt")):
        contents = torch.load(path, weights_only=True)
        found[path.name] = {"step": contents["global_step"], "finite": all(
            bool(torch.isfinite(value).all()) for value in contents["state_dict"].values()
            if value.is_floating_point())}
    return found


def fit(mnist_root: Path, folder: Path, *extra: str) -> list[str]:
    """A fit of up to 12 steps, writing ``last`` and validating every 2."""
    return ["fit", *tiny_run(mnist_root, folder, "--trainer.max_steps=12",
                             "--checkpoint.every_n_train_steps=2",
                             "--trainer.val_check_interval=2", "--trainer.logger=false",
                             "--figures.enabled=false", *extra)]


def test_a_learning_rate_far_too_high_stops_the_fit_naming_it(mnist_root, tmp_path, capsys):
    line = refused(capsys, fit(mnist_root, tmp_path, "--model.learning_rate=1e30"), 1,
                   "the training loss is ", " at step ", "the fit stopped before that step "
                   "changed the weights", "--model.learning_rate, now 1e+30",
                   f"data values outside [0, 1] or NaN ({mnist_root})")
    step = int(line.split(" at step ")[1].split(" ")[0])
    assert 1 <= step < 12
    assert all(saved["finite"] and saved["step"] < step
               for saved in checkpoints(tmp_path).values())


def test_a_nan_loss_stops_at_its_step_and_the_last_checkpoint_stays_good(
        mnist_root, tmp_path, capsys, monkeypatch):
    """The loss of step 5 is NaN: checkpoints of steps 2 and 4 were written; the fit stops at
    step 5, and no checkpoint of a later step (nor of NaN weights) is written."""
    training_loss = PredictiveModule.training_loss

    def nan_at_step_5(self, batch, step):
        loss, logs = training_loss(self, batch, step)
        return (loss * float("nan") if step == 4 else loss), logs  # step: the steps done

    monkeypatch.setattr(PredictiveModule, "training_loss", nan_at_step_5)
    line = refused(capsys, fit(mnist_root, tmp_path), 1,
                   "the training loss is nan at step 5 (epoch 0, batch 4)",
                   "checkpoints/last.ckpt (step 4), holds finite weights",
                   "--model.learning_rate, now 0.001")
    assert "\n" not in line
    saved = checkpoints(tmp_path)
    assert saved["last.ckpt"] == {"step": 4, "finite": True}
    assert max(entry["step"] for entry in saved.values()) == 4
    assert all(entry["finite"] for entry in saved.values())


def test_weights_that_turn_nan_under_a_finite_loss_are_never_checkpointed(
        mnist_root, tmp_path, capsys, monkeypatch):
    """Step 4's loss is finite but its update makes a weight NaN (as an overflowing gradient
    would): the checkpoint due after step 4 is refused, ``last`` stays step 2's."""
    optimizer_step = PredictiveModule.optimizer_step

    def poison_at_step_4(self, *args, **kwargs):
        optimizer_step(self, *args, **kwargs)
        if self.global_step == 3:  # the steps done before this one
            with torch.no_grad():
                next(self.parameters()).fill_(float("nan"))

    monkeypatch.setattr(PredictiveModule, "optimizer_step", poison_at_step_4)
    refused(capsys, fit(mnist_root, tmp_path), 1,
            "the weights are no longer finite after step 4", "no checkpoint of them is written",
            "checkpoints/last.ckpt (step 2), holds finite weights")
    saved = checkpoints(tmp_path)
    assert saved["last.ckpt"] == {"step": 2, "finite": True}
    assert all(entry["finite"] and entry["step"] <= 2 for entry in saved.values())


def test_the_batch_the_loss_diverged_on_is_described():
    """A batch holding NaN (or values far outside [0, 1]) is named as the likely cause first;
    own data's options are named."""
    trainer = SimpleNamespace(
        world_size=1, global_step=7, current_epoch=0, checkpoint_callback=None,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_idx=7)),
        optimizers=[torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)],
        datamodule=SimpleNamespace(path="data/own.npy", fill_value=None))
    module = SimpleNamespace(optimizer_config=None)
    for batch, cause in ((torch.tensor([[0.5, float("nan")]]), "this batch holds NaN"),
                         (torch.tensor([[0.0, 255.0]]), "this batch's values span [0, 255]")):
        callback = FiniteLoss()
        callback.on_train_batch_start(trainer, module, (batch, None), 7)
        with pytest.raises(TrainingDivergedError) as diverged:
            callback.on_before_backward(trainer, module, torch.tensor(float("inf")))
        message = str(diverged.value)
        assert message.startswith("the training loss is infinite at step 8 (epoch 0, batch 7)")
        assert "no checkpoint was written before it" in message
        assert message.index(cause) < message.index("--model.learning_rate, now 0.5")
        assert "(data/own.npy); own data: --data.normalize=minmax" in message
        assert "--data.fill_value" in message
    callback.on_before_backward(trainer, module, torch.tensor(1.0))  # a finite loss trains on


def test_every_fit_gets_the_check():
    assert [type(c) for c in finite_loss_callbacks({})] == [FiniteLoss]
