"""Predictors that map the observed frames to the next ones in one call (``DirectPredictor``):
chained blocks for a longer horizon, the recipes that do not apply refused in one line, their
prediction loss in training, and a fit through the command line built for the data's J."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from direct_fixtures import BlockConv

from predlearn.cli import run_cli
from predlearn.errors import OptionValueError
from predlearn.module import PredictiveModule
from predlearn.sampling import ReverseScheduledSampling, ScheduledSampling


def test_a_longer_horizon_chains_blocks_feeding_the_newest_frames_back():
    torch.manual_seed(0)
    model = BlockConv(context_frames=3, frame_size=(8, 8))
    frames = torch.rand(2, 3, 1, 8, 8)
    first = model.predict_block(frames)
    second = model.predict_block(first)  # the newest 3 frames are the first block
    torch.testing.assert_close(model(frames, 3), first)
    torch.testing.assert_close(model(frames, 5), torch.cat([first, second[:, :2]], dim=1))
    with pytest.raises(OptionValueError, match="built for 3 observed frames; got 4"):
        model(torch.rand(2, 4, 1, 8, 8), 3)


def test_recipes_that_feed_or_score_single_frames_are_refused_in_one_line():
    model = BlockConv(context_frames=10)
    for schedule in (ScheduledSampling(), ReverseScheduledSampling()):
        with pytest.raises(OptionValueError, match="predicts its frames at once") as error:
            PredictiveModule(model, sampling=schedule)
        assert error.value.as_typed().option == "--model.sampling"
    with pytest.raises(OptionValueError, match="does not predict the observed frames") as error:
        PredictiveModule(model, loss_frames="all")
    assert error.value.as_typed().option == "--model.loss_frames"
    with pytest.raises(OptionValueError, match="scheduled sampling does not apply"):
        model(torch.rand(1, 10, 1, 64, 64), 10, targets=torch.rand(1, 10, 1, 64, 64),
              teacher_mask=torch.ones(1, 9, dtype=torch.bool))


def test_the_prediction_loss_joins_the_training_loss():
    torch.manual_seed(0)
    module = PredictiveModule(BlockConv(context_frames=3, frame_size=(8, 8), smoothness=0.5),
                              context_frames=3, horizon=3)
    batch = torch.rand(2, 6, 1, 8, 8)
    loss, logs = module.training_loss(batch, 0)
    predictions = module.predictor(batch[:, :3], 3)
    frame = (torch.nn.functional.l1_loss(predictions, batch[:, 3:])
             + torch.nn.functional.mse_loss(predictions, batch[:, 3:]))
    smooth = 0.5 * (predictions[:, 1:] - predictions[:, :-1]).square().mean()
    torch.testing.assert_close(logs["train/frame_loss"], frame)
    torch.testing.assert_close(logs["train/prediction_loss"], smooth)
    torch.testing.assert_close(loss, frame + smooth)


@pytest.mark.slow
def test_the_command_line_builds_it_for_the_datas_observed_frames(tmp_path):
    np.save(tmp_path / "s.npy", np.random.default_rng(0).integers(0, 256, (40, 16, 16), np.uint8))
    cli = run_cli(["fit", "--model.predictor=direct_fixtures.BlockConv", "--data=frames",
                   f"--data.path={tmp_path / 's.npy'}", "--data.context_frames=4",
                   "--data.horizon=4", "--data.val_fraction=0.2", "--trainer.max_steps=2",
                   "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                   f"--trainer.default_root_dir={tmp_path}"])
    assert cli.model.predictor.context_frames == 4 and cli.trainer.global_step == 2
