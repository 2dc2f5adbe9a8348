"""Two CPU processes (DDP, gloo) score the test set exactly as one process does."""

from __future__ import annotations

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
