"""The LightningModule: paper defaults, loss, shapes, scoring every test sequence."""

from __future__ import annotations

import pytest
import torch
from support import quiet_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import predlearn
from predlearn.module import PredictiveModule
from predlearn.predictor import Predictor


class RepeatLastFrame(Predictor):
    """Predicts the last observed frame times a learnable scale (starts at 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, frames, horizon, targets=None, teacher_mask=None):
        last = frames[:, -1:] * self.scale
        return last.expand(-1, horizon, -1, -1, -1)


def test_paper_defaults():
    module = PredictiveModule(RepeatLastFrame())
    assert (module.context_frames, module.horizon, module.test_horizon) == (10, 10, 10)
    assert module.learning_rate == 1e-3 and module.loss_name == "l1+l2"
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert module.sampling is None  # closed loop: scheduled sampling is an opt-in extension
    # the predictor is saved as its config (class path, arguments), never pickled as a module
    assert module.hparams["predictor"] == {"class_path": f"{__name__}.RepeatLastFrame",
                                           "init_args": {}}


def test_a_checkpoint_made_in_python_rebuilds_its_predictor(tmp_path):
    import lightning as L

    predictor = predlearn.create_model("predrnn", hidden_channels=[4, 6], kernel_size=3,
                                       patch_size=4, cell_options={"forget_bias": 1.0})
    assert predictor.config == {
        "class_path": "predlearn.zoo.predrnn.PredRNN",
        "init_args": {"frame_channels": 1, "frame_size": [64, 64], "hidden_channels": [4, 6],
                      "kernel_size": 3, "patch_size": 4, "cell_options": {"forget_bias": 1.0},
                      "checkpoint_steps": False, "channels_last": False, "cell": None}}
    module = PredictiveModule(predictor, learning_rate=5e-4)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    loaded = PredictiveModule.load_from_checkpoint(path)  # no predictor passed
    assert type(loaded.predictor) is type(predictor) and loaded.learning_rate == 5e-4
    assert loaded.predictor.config == predictor.config
    frames = torch.rand(1, 10, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(frames, 3), module.eval()(frames, 3))


def test_a_predictor_config_must_name_a_predictor():
    from predlearn.predictor import build_predictor

    with pytest.raises(TypeError, match="'collections.OrderedDict' is not a predlearn Predictor"):
        PredictiveModule({"class_path": "collections.OrderedDict", "init_args": {}})
    with pytest.raises(ValueError, match="does not name an importable class"):
        build_predictor({"class_path": "predlearn.zoo.NoSuchModel"})


def test_l1_plus_l2_loss_against_hand_computed_value():
    module = PredictiveModule(RepeatLastFrame())
    predictions = torch.tensor([0.5, 0.0, 1.0, 0.25])
    targets = torch.tensor([0.0, 0.0, 0.5, 0.75])
    errors = [0.5, 0.0, 0.5, 0.5]
    expected = sum(abs(e) for e in errors) / 4 + sum(e * e for e in errors) / 4
    assert module.compute_loss(predictions, targets).item() == pytest.approx(expected)
    l2 = PredictiveModule(RepeatLastFrame(), loss="l2")
    assert l2.compute_loss(predictions, targets).item() == pytest.approx(0.1875)
    with pytest.raises(ValueError, match="loss: must be one of"):
        PredictiveModule(RepeatLastFrame(), loss="huber")


def test_batch_of_the_wrong_length_names_both_settings():
    module = PredictiveModule(RepeatLastFrame(), context_frames=3, horizon=2)
    with pytest.raises(ValueError, match=r"context_frames 3 \+ horizon 2; got \(1, 4, 1, 8, 8\)"):
        module.training_step(torch.zeros(1, 4, 1, 8, 8), 0)


def test_predictor_must_be_a_module():
    with pytest.raises(TypeError, match="create_model"):
        PredictiveModule("predrnn")


def test_test_score_covers_every_sequence_when_batches_do_not_divide():
    generator = torch.Generator().manual_seed(0)
    sequences = torch.rand(7, 5, 1, 12, 12, generator=generator)  # 3 observed + 2 predicted
    module = PredictiveModule(RepeatLastFrame(), context_frames=3, horizon=2)
    loader = DataLoader(TensorDataset(sequences), batch_size=3)  # batches of 3, 3, 1
    (scores,) = quiet_trainer().test(module, loader)

    last = sequences[:, 2:3]
    errors = (last - sequences[:, 3:]).square().sum(dim=(2, 3, 4))  # (7, 2) per-frame MSE
    assert scores["test/mse_per_frame"] == pytest.approx(errors.mean().item(), rel=1e-5)
    for step in (1, 2):
        assert scores[f"test/mse_per_frame/step_{step:02d}"] == pytest.approx(
            errors[:, step - 1].mean().item(), rel=1e-5)
    # scoring only the full batches (the authors' code skips the last batch) would differ
    assert errors[:6].mean().item() != pytest.approx(errors.mean().item(), rel=1e-5)
    assert module.curves["test"]["mse_per_frame"].shape == (2,)


def test_fit_reduces_the_loss_of_a_real_predictor():
    torch.manual_seed(0)
    # a moving bright square: predictable, so a tiny PredRNN must improve on it quickly
    frames = torch.zeros(8, 6, 1, 16, 16)
    for t in range(6):
        frames[:, t, :, 4:8, 2 + 2 * t:6 + 2 * t] = 1.0
    predictor = predlearn.create_model("predrnn", frame_size=(16, 16), hidden_channels=[8, 8],
                                       kernel_size=3)
    module = PredictiveModule(predictor, context_frames=3, horizon=3, learning_rate=1e-2)
    before = module.compute_loss(module(frames[:, :3], 3), frames[:, 3:]).item()
    quiet_trainer(max_steps=30).fit(module, DataLoader(TensorDataset(frames), batch_size=8))
    after = module.compute_loss(module(frames[:, :3], 3), frames[:, 3:]).item()
    assert after < 0.5 * before


def test_validation_logs_per_step_curves():
    sequences = torch.rand(4, 5, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    module = PredictiveModule(RepeatLastFrame(), context_frames=3, horizon=2)
    (scores,) = quiet_trainer().validate(module, DataLoader(TensorDataset(sequences), batch_size=2))
    for key in ("val/mse_per_frame", "val/mse_per_frame/step_02", "val/psnr/step_01",
                "val/ssim", "val/bce_per_frame", "val/loss"):
        assert key in scores
