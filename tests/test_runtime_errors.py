"""What Lightning and torch raise while a run runs is one line that names the option or file.

Each kind end to end where a CPU-only machine can provoke it, through the console script
(``predlearn.cli.main``) with a tiny fit: a trainer setting Lightning refuses (exit 2), out of
memory, a full disk or a folder that may not be written (checkpoint writes go to ``/dev/full``,
whose writes the kernel refuses with ENOSPC), a DDP process group that cannot start (exit 1).
A CUDA out-of-memory, which a CPU cannot give, is raised where the real one would be; the errors
torch.distributed raises on a cluster are made by torch here and given to the mapping. An
exception the boundary does not know keeps its traceback.
"""

from __future__ import annotations

import builtins
import datetime
import errno
import importlib.util
import io
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from lightning.fabric.utilities.exceptions import MisconfigurationException
from mnist_fixtures import write_fake_mnist
from support import free_port
from test_cli_errors import refused, tiny

from predlearn.cli import main
from predlearn.errors import (
    DataError,
    DiskFullError,
    DistributedSetupError,
    NotEnoughMemoryError,
    OptionValueError,
    OutputError,
)
from predlearn.module import PredictiveModule
from predlearn.runtime_errors import runtime_error


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), n_train=20, n_test=10)


@pytest.fixture
def environment():
    """os.environ restored after the test (a DDP start-up sets variables of its own)."""
    saved = dict(os.environ)
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)


def fit(mnist_root: Path, folder: Path, *extra: str) -> list[str]:
    """A fit of two training steps, without validation."""
    return ["fit", *tiny(mnist_root, folder, "--trainer.max_steps=2",
                         "--trainer.limit_val_batches=0", *extra)]


def raised(error: BaseException) -> BaseException:
    """``error`` as raised (with a traceback), for the mapping."""
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001 -- handed back as it is
        return caught


# --- trainer settings Lightning refuses when the run starts (exit 2) --------------------------


LIGHTNING_REFUSALS = [
    # (arguments, the option named, words of the line)
    (["--trainer.val_check_interval=1000", "--data.train_sequences_per_epoch=4",
      "--trainer.limit_val_batches=1"], "--trainer.val_check_interval",
     ["1000 is more than the 2 training batches of an epoch",
      "--trainer.check_val_every_n_epoch=null"]),
    (["--trainer.limit_val_batches=-1"], "--trainer.limit_val_batches",
     ["-1.0 is neither a fraction of the batches in [0.0, 1.0] nor a number of batches"]),
    (["--trainer.devices=0"], "--trainer.devices", ["--trainer.devices=0 value", "allowed:"]),
    (["--trainer.num_nodes=0"], "--trainer.num_nodes", ["positive", "allowed:"]),
    (["--trainer.accelerator=gpux"], "--trainer.accelerator",
     ["--trainer.accelerator=gpux", "auto", "cpu"]),
    (["--trainer.strategy=fsdp", "--trainer.accelerator=cpu"], "--trainer.strategy",
     ["requires a GPU accelerator", "--trainer.accelerator=cpu"]),
    (["--trainer.strategy=no_such_strategy"], "--trainer.strategy", ["ddp", "auto"]),
    (["--trainer.gradient_clip_algorithm=sideways"], "--trainer.gradient_clip_algorithm",
     ["'value', 'norm'"]),
    (["--checkpoint.mode=middle"], "--checkpoint.mode", ["min, max", "middle"]),  # a callback
]


@pytest.mark.parametrize(("extra", "option", "words"), LIGHTNING_REFUSALS,
                         ids=[case[1] for case in LIGHTNING_REFUSALS])
def test_a_setting_lightning_refuses_names_the_option(mnist_root, tmp_path, capsys, extra,
                                                      option, words):
    line = refused(capsys, fit(mnist_root, tmp_path, *extra), 2, f"{option}: ", *words)
    assert "Trainer(" not in line and "`accelerator=" not in line  # the command line's words


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_of_a_machine_without_one(mnist_root, tmp_path, capsys):
    refused(capsys, fit(mnist_root, tmp_path, "--trainer.accelerator=gpu"), 2,
            "--trainer.accelerator: no GPU found", "(this machine: cpu)")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None,
                    reason="deepspeed is installed")
def test_a_strategy_whose_package_is_missing_says_what_to_install(mnist_root, tmp_path, capsys):
    refused(capsys, fit(mnist_root, tmp_path, "--trainer.strategy=deepspeed"), 2,
            "--trainer.strategy: ", "pip install -U deepspeed")


def test_debug_shows_lightnings_own_error(mnist_root, tmp_path):
    with pytest.raises(OptionValueError) as raised_error:
        main([*fit(mnist_root, tmp_path, "--trainer.limit_val_batches=-1"), "--debug"])
    assert raised_error.value.option == "--trainer.limit_val_batches"
    assert isinstance(raised_error.value.__cause__, MisconfigurationException)


# --- out of memory (exit 1) --------------------------------------------------------------------


def test_out_of_cpu_memory_in_training_says_what_needs_less(mnist_root, tmp_path, capsys,
                                                            monkeypatch):
    def greedy_step(self, batch, batch_idx):
        torch.empty(2 ** 46)  # 256 TiB: more than the address space; the allocator refuses
        return PredictiveModule.training_step(self, batch, batch_idx)

    monkeypatch.setattr(PredictiveModule, "training_step", greedy_step)
    refused(capsys, fit(mnist_root, tmp_path), 1, "out of CPU memory",
            "256.00 TiB", "--data.batch_size (now 2)", "--trainer.precision=bf16-mixed (now "
            "32-true)", "--model.predictor.checkpoint_steps=true")


def test_out_of_gpu_memory_names_the_options(mnist_root, tmp_path, capsys, monkeypatch):
    """Raised where torch raises it on a GPU (a CPU cannot): inside the training step."""
    def step(self, batch, batch_idx):
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of "
            "79.10 GiB of which 1.50 GiB is free.")

    monkeypatch.setattr(PredictiveModule, "training_step", step)
    refused(capsys, fit(mnist_root, tmp_path, "--trainer.precision=bf16-mixed"), 1,
            "out of GPU memory (it tried to allocate 20.00 GiB more)",
            "--data.batch_size (now 2)", "--model.predictor.checkpoint_steps=true")
    assert "--trainer.precision" not in capsys.readouterr().err  # bf16 already


def test_out_of_memory_while_validating_leaves_activation_checkpointing_out(
        mnist_root, tmp_path, capsys, monkeypatch):
    """Activation checkpointing saves memory in training only."""
    def step(self, batch, batch_idx):
        torch.empty(2 ** 46)

    monkeypatch.setattr(PredictiveModule, "validation_step", step)
    line = refused(capsys, ["validate", *tiny(mnist_root, tmp_path), "--ckpt_path=untrained"],
                   1, "out of CPU memory", "--data.batch_size (now 2)")
    assert "checkpoint_steps" not in line


def test_memory_refused_outside_a_run_hints_at_the_stack_models():
    try:
        np.empty(2 ** 50)  # numpy's own MemoryError: 8 PiB
    except MemoryError as error:
        found = runtime_error(error)
    assert isinstance(found, NotEnoughMemoryError)
    assert "out of CPU memory (it tried to allocate 8.00 PiB more)" in str(found)
    assert "--model.predictor.checkpoint_steps=true (the recurrent stack models)" in str(found)


# --- a full disk, a folder that may not be written (exit 1) ------------------------------------


@pytest.fixture
def checkpoint_writes(monkeypatch):
    """``fail(error=None)``: from then on, opening a file for writing while a checkpoint is
    saved (whichever writer saves it) opens ``/dev/full`` (error None: each write fails with
    ENOSPC, as on a full disk) or raises ``OSError(error, strerror, filename)`` as ``open``
    does."""
    real_open = io.open

    def saving() -> bool:
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_name != "save_checkpoint":
            frame = frame.f_back
        return frame is not None

    def fail(error: int | None = None) -> None:
        def open_(file, mode="r", *args, **kwargs):
            name = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
            ours = isinstance(name, str) and bool(name) and saving()
            if ours and any(flag in mode for flag in "wax+"):
                if error is not None:
                    raise OSError(error, os.strerror(error), name)
                return real_open("/dev/full", mode, *args, **kwargs)
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(builtins, "open", open_)

    return fail


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_full_disk_while_writing_a_checkpoint_names_the_file(mnist_root, tmp_path, capsys,
                                                               checkpoint_writes):
    checkpoint_writes()
    line = refused(capsys, fit(mnist_root, tmp_path), 1,
                   "no space left on the disk while writing", "free space there",
                   "--checkpoint.dirpath", "--trainer.default_root_dir")
    written = line.split("while writing ")[1].split(":")[0]
    assert written.startswith(str(tmp_path)) and written.endswith(".ckpt"), written
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize(("code", "words"), [(errno.EACCES, "may not be written"),
                                            (errno.EROFS, "is on a read-only file system")])
def test_a_folder_that_may_not_be_written_names_the_file(mnist_root, tmp_path, capsys,
                                                         checkpoint_writes, code, words):
    checkpoint_writes(code)
    line = refused(capsys, fit(mnist_root, tmp_path), 1, words, "--checkpoint.dirpath")
    named = line.split("error: ")[1].split(" ")[0]
    assert named.startswith(str(tmp_path)) and named.endswith(".ckpt"), named  # not a temporary


def test_disk_errors_name_the_file_and_where_else_to_write(tmp_path):
    def save_figure(path: str) -> None:  # as predlearn.visualize writes a picture
        with open("/dev/full", "wb") as handle:
            handle.write(b"\0" * 2 ** 20)

    picture = str(tmp_path / "val_predictions.png")
    if os.path.exists("/dev/full"):
        try:
            save_figure(picture)
        except OSError as error:
            found = runtime_error(error)
        assert isinstance(found, DiskFullError)
        assert f"while writing {picture}" in str(found) and "--figures.enabled=false" in str(found)
    quota = runtime_error(raised(OSError(errno.EDQUOT, "Disk quota exceeded", "/s/p.h5")))
    assert isinstance(quota, DiskFullError)
    assert str(quota) == ("the disk quota is used up on the disk while writing /s/p.h5: free "
                          "space there, or choose another --predictions.output_path")
    # re-raised from a loader worker, the errno is only in the message
    from torch.utils.data._utils import ExceptionWrapper
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/data/cache/x.h5")
        except OSError:
            ExceptionWrapper(where="in DataLoader worker process 0").reraise()
    except OSError as wrapped:
        assert wrapped.errno is None
        assert isinstance(runtime_error(wrapped), DiskFullError)


def test_a_file_that_may_not_be_read_is_a_data_error(tmp_path):
    data = tmp_path / "frames.npy"
    data.write_bytes(b"")

    def load(path: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    try:
        load(data)
    except OSError as error:
        found = runtime_error(error)
    assert isinstance(found, DataError) and not isinstance(found, OutputError)
    assert str(found).startswith(f"no permission to read {data}")


# --- DDP that cannot start (exit 1) ------------------------------------------------------------


DDP_ON_ONE_CPU = ["--trainer.strategy=ddp", "--trainer.devices=1", "--trainer.accelerator=cpu"]


def test_ddp_whose_port_is_in_use_names_master_port(mnist_root, tmp_path, capsys, environment):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        refused(capsys, fit(mnist_root, tmp_path, *DDP_ON_ONE_CPU), 1,
                "the DDP processes cannot start", f"port {port} (MASTER_PORT) is already in use",
                "set MASTER_PORT to a free port")
    assert not dist.is_initialized()


def test_ddp_on_a_network_interface_that_is_not_there(mnist_root, tmp_path, capsys,
                                                      environment):
    environment.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                       GLOO_SOCKET_IFNAME="no_such_if0")
    refused(capsys, fit(mnist_root, tmp_path, *DDP_ON_ONE_CPU), 1,
            "GLOO_SOCKET_IFNAME=no_such_if0 names no network interface of this machine")
    assert not dist.is_initialized()


def test_the_errors_torch_distributed_raises_on_a_cluster():
    """Made by torch here, as on a cluster: rank 0 unreachable, a process that never joins, a
    torch without NCCL."""
    second = datetime.timedelta(seconds=1)
    found = []
    for start in (lambda: dist.TCPStore("no-such-host.invalid", free_port(), 2, False,
                                        timeout=second),
                  lambda: dist.TCPStore("127.0.0.1", free_port(), 2, True, timeout=second)):
        with pytest.raises(RuntimeError) as caught:
            start()
        found.append(runtime_error(caught.value))
    assert all(isinstance(error, DistributedSetupError) for error in found)
    assert "cannot reach rank 0 at MASTER_ADDR=no-such-host.invalid" in str(found[0])
    assert "(1 of 2 processes joined)" in str(found[1]) and "NODE_RANK" in str(found[1])
    if not dist.is_nccl_available():
        with pytest.raises(RuntimeError) as caught:
            dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}",
                                    rank=0, world_size=1, timeout=second)
        if dist.is_initialized():
            dist.destroy_process_group()
        assert "this torch has no NCCL" in str(runtime_error(caught.value))


# --- what the boundary does not know keeps its traceback ---------------------------------------


def test_a_bug_keeps_its_traceback(mnist_root, tmp_path, capsys, monkeypatch):
    def step(self, batch, batch_idx):
        raise ValueError("max_steps of the model's own code")  # names a trainer option

    monkeypatch.setattr(PredictiveModule, "training_step", step)
    with pytest.raises(ValueError, match="max_steps of the model's own code"):
        main(fit(mnist_root, tmp_path))
    assert "predlearn: error" not in capsys.readouterr().err


def test_lightning_refusing_the_models_own_call_keeps_its_traceback(mnist_root, tmp_path,
                                                                   capsys, monkeypatch):
    """Lightning's refusal of what the model's code does (logging a non-scalar) is a bug of
    the model, not a setting: no --trainer option to name."""
    def step(self, batch, batch_idx):
        self.log("train/loss", torch.ones(3))

    monkeypatch.setattr(PredictiveModule, "training_step", step)
    with pytest.raises((ValueError, MisconfigurationException)):
        main(fit(mnist_root, tmp_path))
    assert "predlearn: error" not in capsys.readouterr().err


def test_unknown_exceptions_map_to_nothing():
    for error in (RuntimeError("boom"), KeyError("x"), OSError(errno.ENOENT, "gone", "/x"),
                  ValueError("Expected all tensors to be on the same device")):
        assert runtime_error(raised(error)) is None
