"""Two CPU processes (DDP, gloo) score the test set exactly as one process does."""

from __future__ import annotations

import hashlib

import pytest
import torch
from support import quiet_trainer

import predlearn
from predlearn.datamodules import MovingMNISTDataModule
from predlearn.module import PredictiveModule


def small_setup(root) -> tuple[PredictiveModule, MovingMNISTDataModule]:
    torch.manual_seed(0)
    predictor = predlearn.create_model("predrnn", hidden_channels=[4], kernel_size=3,
                                       patch_size=4)
    module = PredictiveModule(predictor)
    # 7 test sequences in batches of 2: uneven over 2 ranks (4 + 3) and over the batches
    data = MovingMNISTDataModule(root=str(root), digits="bundled", num_val=4, num_test=7,
                                 batch_size=2)
    return module, data


def test_ddp_test_scores_equal_a_single_process(tmp_path):
    module, data = small_setup(tmp_path)
    (single,) = quiet_trainer().test(module, datamodule=data)
    module, data = small_setup(tmp_path)
    (ddp,) = quiet_trainer(strategy="ddp_spawn", devices=2).test(module, datamodule=data)
    assert set(ddp) == set(single)
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, rel=1e-5), key


class RecordingModule(PredictiveModule):
    """Writes a digest of every training sequence it receives to ``<folder>/rank<r>.txt``."""

    def __init__(self, predictor, folder: str) -> None:
        super().__init__(predictor)
        self.folder = folder

    def training_step(self, batch, batch_idx):
        with open(f"{self.folder}/rank{self.global_rank}.txt", "a") as handle:
            handle.writelines(f"{hashlib.sha1(seq.numpy().tobytes()).hexdigest()}\n"
                              for seq in batch.cpu())
        return super().training_step(batch, batch_idx)


def test_ddp_training_stream_differs_on_every_rank_and_worker(tmp_path):
    """Two gloo processes with two loader workers each: 16 sequences, none seen twice."""
    torch.manual_seed(0)
    predictor = predlearn.create_model("predrnn", hidden_channels=[2], kernel_size=3,
                                       patch_size=4)
    module = RecordingModule(predictor, str(tmp_path))
    data = MovingMNISTDataModule(root=str(tmp_path / "mnist"), digits="bundled", num_val=2,
                                 num_test=2, train_sequences_per_epoch=16, batch_size=2,
                                 num_workers=2)
    quiet_trainer(strategy="ddp_spawn", devices=2, max_epochs=1,
                  limit_val_batches=0).fit(module, datamodule=data)
    seen = {rank: (tmp_path / f"rank{rank}.txt").read_text().split() for rank in (0, 1)}
    assert [len(seen[0]), len(seen[1])] == [8, 8]  # each rank its half of the epoch
    assert len(set(seen[0]) | set(seen[1])) == 16  # distinct across ranks and workers
