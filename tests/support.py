"""Helpers shared by the tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import lightning as L
import torch


def quiet_trainer(**kwargs) -> L.Trainer:
    """A CPU trainer without logger, checkpoints, progress bar or summary."""
    options = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
               "enable_model_summary": False, "accelerator": "cpu", "devices": 1}
    options.update(kwargs)
    return L.Trainer(**options)


def load_module_from(path: Path, name: str) -> ModuleType:
    """The Python file at ``path`` (a script, an example's tests) imported as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_run(mnist_root: Path, run_dir: Path, *extra: str, model: str = "predrnn") -> list[str]:
    """Command-line arguments (after the subcommand) of a tiny ``model`` (a recurrent stack) on
    the fake MNIST files in ``mnist_root`` (the ``mnist_root`` fixture of conftest.py), logged to
    CSV in ``run_dir``: ``run_cli(["fit", *tiny_run(mnist_root, tmp_path, ...)])``."""
    return [
        f"--model={model}",
        "--model.predictor.hidden_channels=[4,4]",
        "--model.predictor.kernel_size=3",
        "--model.predictor.patch_size=4",
        "--data=mmnist",
        f"--data.root={mnist_root}",
        "--data.download=false",
        "--data.num_val=6",
        "--data.num_test=7",  # not a multiple of the batch size
        "--data.batch_size=4",
        "--data.train_sequences_per_epoch=20",  # 5 batches per epoch
        "--seed_everything=0",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={run_dir}",
        "--trainer.logger.name=run",
        f"--trainer.default_root_dir={run_dir}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=1",
        *extra,
    ]


def _tiny_models() -> dict[str, dict]:
    """Every registered model (plugins included) -> the constructor arguments of a tiny
    instance, from its ``tiny_config``; models that give none are left out here and fail
    ``test_models.test_every_registered_model_gives_a_tiny_config``."""
    from predlearn.registry import MODELS

    configs = {name: MODELS.get(name).tiny_config() for name in MODELS.names()}
    return {name: config for name, config in configs.items() if config is not None}


# Tiny sizes of every registered model, for the generic tests that run them all (the paper sizes
# are in configs/mmnist/). Keys are registry names; values are constructor arguments.
TINY_MODELS: dict[str, dict] = _tiny_models()


def assert_gradients_equal(module: torch.nn.Module, expected: dict, atol: float,
                           every_parameter: bool = True) -> None:
    """Every parameter's gradient equals ``expected[name]`` (a reference fixture's) within
    ``atol``; with ``every_parameter``, the fixture names exactly the module's parameters."""
    if every_parameter:
        assert set(expected) == {name for name, _ in module.named_parameters()}
    for name, parameter in module.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], rtol=0, atol=atol,
                                   msg=lambda m, name=name: f"{name}: {m}")


def tiny_options(name: str, context_frames: int) -> dict:
    """``TINY_MODELS[name]``, and for a model that maps its observed frames at once
    (``DirectPredictor``: its layers are built for J) the test's ``context_frames``."""
    from predlearn.direct_predictor import DirectPredictor
    from predlearn.registry import MODELS

    options = dict(TINY_MODELS[name])
    if issubclass(MODELS.get(name), DirectPredictor):
        options["context_frames"] = context_frames
    return options


def trainable_models() -> list[str]:
    """The names in ``TINY_MODELS`` whose predictors have weights to fit (``trainable``), sorted:
    the generic tests of gradients and training leave out the baselines without parameters
    (``persistence``, ``extrapolation``), which tests/test_nowcast_baselines.py covers."""
    from predlearn.registry import MODELS

    return sorted(name for name in TINY_MODELS if getattr(MODELS.get(name), "trainable", True))


class ThreadFlushProbe(L.Callback):
    """Records, at the first batch of each stage, whether the main thread and every intra-op
    thread flush denormals: ``seen[stage]`` is "flush", "keep" (none does) or "mixed"."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def _record(self, stage: str) -> None:
        from predlearn.denormals import (
            intraop_threads_flush_denormals,
            intraop_threads_keep_denormals,
        )

        if stage not in self.seen:
            self.seen[stage] = ("flush" if intraop_threads_flush_denormals() else
                                "keep" if intraop_threads_keep_denormals() else "mixed")

    def on_train_batch_start(self, *args, **kwargs) -> None:
        self._record("train")

    def on_validation_batch_start(self, *args, **kwargs) -> None:
        self._record("validation")

    def on_test_batch_start(self, *args, **kwargs) -> None:
        self._record("test")

    def on_predict_batch_start(self, *args, **kwargs) -> None:
        self._record("predict")

    class Dataset(torch.utils.data.Dataset):
        """One item: whether the thread that loads it (a loader worker's) flushes denormals."""

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> torch.Tensor:
            from predlearn.denormals import thread_flushes_denormals

            return torch.tensor(thread_flushes_denormals())


def free_port() -> int:
    """A TCP port free on this machine, for a process group of the tests."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _score_shard(rank: int, world: int, port: int, metric_args: tuple, preds, target,
                 out) -> None:
    import os

    import torch.distributed as dist

    from predlearn.metrics import SequenceMetrics

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metrics = SequenceMetrics(*metric_args)
        shard = slice(0, 3) if rank == 0 else slice(3, None)  # uneven shards: 3 and the rest
        metrics.update(preds[shard], target[shard])
        out[rank] = {key: value.item() for key, value in metrics.compute().items()}
    finally:
        dist.destroy_process_group()


def scores_on_two_processes(metric_args: tuple, preds: torch.Tensor,
                            target: torch.Tensor) -> dict[int, dict[str, float]]:
    """``SequenceMetrics(*metric_args)`` computed by two DDP processes (gloo), rank 0 scoring
    the first 3 sequences and rank 1 the rest: rank -> logged key -> value."""
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_score_shard, args=(2, free_port(), metric_args, preds, target, out), nprocs=2,
                 join=True)
        return dict(out)


def _score_members_shard(rank: int, world: int, port: int, metric_args: tuple, kwargs: dict,
                         preds, target, out) -> None:
    import os

    import torch.distributed as dist

    from predlearn.metrics import SequenceMetrics

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metrics = SequenceMetrics(*metric_args, **kwargs)
        shard = slice(0, 3) if rank == 0 else slice(3, None)
        metrics.update(preds[shard], target[shard])
        out[rank] = {"scores": {key: value.item() for key, value in metrics.compute().items()},
                     "tables": metrics.tables()}
    finally:
        dist.destroy_process_group()


def members_scores_on_two_processes(metric_args: tuple, kwargs: dict, preds: torch.Tensor,
                                    target: torch.Tensor) -> dict[int, dict]:
    """As ``scores_on_two_processes``, with keyword arguments of ``SequenceMetrics`` (e.g.
    ``members``): rank -> {"scores": key -> value, "tables": ``SequenceMetrics.tables()``}."""
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_score_members_shard, args=(2, free_port(), metric_args, kwargs, preds, target,
                                             out), nprocs=2, join=True)
        return dict(out)


class RunsCode:
    """Unpickling this creates the file ``marker``: it would run code on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))
