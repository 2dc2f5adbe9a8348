"""Denormal floats are flushed to zero in every thread that computes (predlearn.denormals).

The probes build denormal inputs from their bit pattern and multiply them in an operation large
enough that torch splits it over all its intra-op threads: with flushing on, every element of the
result must be exactly zero, so one thread that does not flush fails the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from support import ThreadFlushProbe, quiet_trainer
from torch.utils.data import DataLoader, TensorDataset

import predlearn
from predlearn.datamodules.base import SequenceDataModule
from predlearn.datamodules.stream import ResumableStreamLoader
from predlearn.denormals import (
    FlushDenormalsInWorker,
    denormal_tensor,
    intraop_threads_flush_denormals,
    intraop_threads_keep_denormals,
    set_flush_denormal,
    worker_init_fn,
)
from predlearn.module import PredictiveModule

THREADS = 3  # more intra-op threads than the main one, on any machine


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (its own denormal mode and thread pool)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def intraop_threads():
    """THREADS intra-op threads for the test; the test session's own count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(before)


def test_denormal_tensor_holds_the_denormal_bit_pattern():
    values = denormal_tensor(5)
    assert values.dtype == torch.float32
    # Compared as bits: with flushing on, reading the values as floats would give 0.
    assert values.view(torch.int32).tolist() == [0x00400000] * 5  # 2**-127


def test_the_probe_catches_an_intraop_thread_that_does_not_flush():
    """torch.set_flush_denormal after the thread pool exists reaches the calling thread only;
    the probe must say so (otherwise the tests below could not fail)."""
    out = run_python(f"""
        import torch
        from predlearn.denormals import (denormal_tensor, intraop_threads_flush_denormals,
                                         thread_flushes_denormals)
        torch.set_num_threads({THREADS})
        numel = 4 * 32768 * {THREADS}
        (denormal_tensor(numel) * 1.5).sum()  # the pool is made, in the IEEE mode
        torch.set_flush_denormal(True)  # the main thread only
        nonzero = int((denormal_tensor(numel) * 1.5).count_nonzero())
        print(thread_flushes_denormals(), intraop_threads_flush_denormals(), nonzero)
    """)
    main_flushes, all_flush, nonzero = out.split()
    assert main_flushes == "True"
    assert all_flush == "False"
    # the threads other than the main one left their chunks as they were
    assert 0 < int(nonzero) < 4 * 32768 * THREADS


def test_set_flush_denormal_reaches_intraop_threads_made_before_it():
    out = run_python(f"""
        import torch
        from predlearn.denormals import denormal_tensor, set_flush_denormal
        torch.set_num_threads({THREADS})
        numel = 4 * 32768 * {THREADS}
        print(int((denormal_tensor(numel) * 1.5).count_nonzero()))  # made in the IEEE mode
        print(set_flush_denormal(True))
        print(int((denormal_tensor(numel) * 1.5).count_nonzero()))  # DAZ: denormal inputs
        big = torch.full((numel,), -90.0)
        print(int(torch.exp(big).count_nonzero()))  # FTZ: exp(-90) ~ 8e-40 is a denormal result
        print(set_flush_denormal(False))
        print(int((denormal_tensor(numel) * 1.5).count_nonzero()), int(torch.exp(big).count_nonzero()))
    """)
    numel = 4 * 32768 * THREADS
    lines = out.split("\n")
    assert lines[0] == str(numel)
    assert lines[1] == "True"
    assert lines[2] == "0"
    assert lines[3] == "0"
    assert lines[4] == "True"
    assert lines[5] == f"{numel} {numel}"


def test_a_new_thread_pool_inherits_the_mode_set_before_it():
    out = run_python(f"""
        import torch
        from predlearn.denormals import intraop_threads_flush_denormals, set_flush_denormal
        set_flush_denormal(True)  # before any parallel operation
        torch.set_num_threads({THREADS})
        print(intraop_threads_flush_denormals())
    """)
    assert out.strip() == "True"


class _Sequences(TensorDataset):
    def __init__(self) -> None:
        super().__init__(torch.rand(4, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("flush", [True, False])
def test_predictive_module_sets_every_thread_in_fit_validate_test_and_predict(
        intraop_threads, flush):
    set_flush_denormal(not flush)  # the opposite mode everywhere first
    predictor = predlearn.create_model("predrnn", frame_channels=1, frame_size=(8, 8),
                                       hidden_channels=[4, 4], kernel_size=3)
    module = PredictiveModule(predictor, context_frames=2, horizon=2, metrics=["mse"],
                              flush_denormal=flush)
    probe = ThreadFlushProbe()
    trainer = quiet_trainer(max_steps=1, limit_val_batches=1, num_sanity_val_steps=0,
                            callbacks=[probe])
    loader = DataLoader(_Sequences(), batch_size=2)
    trainer.fit(module, loader, loader)
    for run in (trainer.validate, trainer.test, trainer.predict):
        set_flush_denormal(not flush)
        run(module, loader)
    mode = "flush" if flush else "keep"
    assert probe.seen == {"train": mode, "validation": mode, "test": mode, "predict": mode}
    set_flush_denormal(True)


@pytest.mark.slow
def test_the_command_line_option_turns_flushing_off(intraop_threads, tmp_path):
    from predlearn.cli import run_cli

    common = ["--trainer.max_steps=1", "--trainer.limit_val_batches=1",
              "--trainer.logger=false", "--trainer.enable_progress_bar=false",
              f"--trainer.default_root_dir={tmp_path}", "--checkpoint.save_last=false",
              "--figures.enabled=false", "--data=mmnist", "--data.digits=bundled",
              "--data.num_val=2", "--data.num_test=2", "--data.batch_size=2",
              f"--data.root={tmp_path}", "--model=predrnn",
              "--model.predictor.hidden_channels=[4]", "--model.predictor.patch_size=4",
              "--model.metrics=[mse]"]
    set_flush_denormal(True)
    run_cli(["fit", *common, "--model.flush_denormal=false"])
    assert intraop_threads_keep_denormals()
    run_cli(["fit", *common])  # the default flushes
    assert intraop_threads_flush_denormals()


def test_loader_workers_started_by_spawn_flush_as_the_main_thread_does():
    module = SequenceDataModule(batch_size=1, num_workers=1)
    set_flush_denormal(True)
    try:
        loader = module._loader(ThreadFlushProbe.Dataset(), multiprocessing_context="spawn")
        assert [bool(flag) for flag in next(iter(loader))] == [True]  # a spawned worker
        set_flush_denormal(False)
        keep = module._loader(ThreadFlushProbe.Dataset())
        assert keep.worker_init_fn.flush is False
    finally:
        set_flush_denormal(True)


def test_the_training_stream_loader_gives_its_workers_the_mode():
    from predlearn.datamodules.moving_mnist import MovingMNISTStream

    stream = MovingMNISTStream(torch.zeros(3, 28, 28, dtype=torch.uint8).numpy(), 4)
    set_flush_denormal(True)
    assert ResumableStreamLoader(stream, num_workers=1).worker_init_fn.flush is True
    assert ResumableStreamLoader(stream, num_workers=0).worker_init_fn is None


def test_worker_init_sets_the_mode_then_calls_the_users_function():
    called = []
    init = worker_init_fn(then=called.append)
    assert isinstance(init, FlushDenormalsInWorker)
    init(3)
    assert called == [3]
