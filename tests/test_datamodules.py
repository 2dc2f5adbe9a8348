"""Every registered data module (plugins included), from its tiny data in the real format:
batches of float (B, J + K, C, H, W) frames in [0, 1] for each stage it serves, and a fit by its
registry name on the command line. The list comes from the registry; the tiny data from
``tests/data_fixtures.py``."""

from __future__ import annotations

import json

import pytest
import torch
from data_fixtures import TINY_DATA

import predlearn
from predlearn.cli import run_cli
from predlearn.registry import DATAMODULES

NAMES = predlearn.list_datamodules()


def cli_args(init_args: dict) -> list[str]:
    """``--data.KEY=VALUE`` for each argument, lists written as JSON."""
    return [f"--data.{key}={json.dumps(list(value)) if isinstance(value, (list, tuple)) else value}"
            for key, value in init_args.items()]


def test_every_registered_data_module_has_tiny_data():
    missing = sorted(set(NAMES) - set(TINY_DATA))
    assert not missing, f"data modules without tiny data in tests/data_fixtures.py: {missing}"


def _first_batch(loader) -> torch.Tensor:
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, (list, tuple)) else batch


@pytest.mark.parametrize("name", NAMES)
def test_batches_of_every_stage(name, tmp_path):
    tiny = TINY_DATA[name](tmp_path)
    module = DATAMODULES.get(name)(**tiny.init_args)
    loaders = {"fit": ("train_dataloader", "val_dataloader"), "test": ("test_dataloader",),
               "predict": ("predict_dataloader",)}
    assert tuple(module.frame_shape()) == tiny.frame  # known before setup: the model follows it
    for stage in tiny.stages:
        module.setup(stage)
        for loader in loaders[stage]:
            batch = _first_batch(getattr(module, loader)())
            frames = (module.context_frames if name == "frames" and stage == "predict" else
                      module.test_sequence_length if loader in ("test_dataloader",
                                                                "predict_dataloader")
                      else module.sequence_length)
            assert batch.dtype == torch.float32, loader
            assert batch.shape[1:] == (frames, *tiny.frame), (loader, tuple(batch.shape))
            assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0, loader


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fit_by_registry_name_on_the_command_line(name, tmp_path):
    tiny = TINY_DATA[name](tmp_path)
    assert "fit" in tiny.stages, "every data module trains"
    channels, height, width = tiny.frame
    patch = 4 if height % 4 == 0 and width % 4 == 0 else 1
    cli = run_cli(["fit", "--model=predrnn", "--model.predictor.hidden_channels=[2]",
                   "--model.predictor.kernel_size=3", f"--model.predictor.patch_size={patch}",
                   f"--data={name}",
                   *cli_args(tiny.init_args), "--trainer.max_steps=1", "--trainer.logger=false",
                   "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={tmp_path}",
                   "--trainer.enable_progress_bar=false", "--figures.enabled=false"])
    assert cli.trainer.global_step == 1
    assert DATAMODULES.name_of(type(cli.datamodule)) == name
    # the data decide the model's shape: no option repeats it
    predictor = cli.model.predictor
    assert (predictor.frame_channels, tuple(predictor.frame_size)) == (channels, (height, width))
