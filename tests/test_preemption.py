"""Preemption: a ``predlearn fit`` that SIGTERM, SIGINT or SIGUSR1 stops finishes its step,
validates it, writes ``last`` atomically, prints one line with the command that resumes it and
exits with 128 + the signal's number; the resumed fit ends with the weights of an uninterrupted
one. Every rank of a DDP fit stops at the same step when one alone is signalled, a second Ctrl-C
stops at once, and the timed last checkpoint writes ``last`` without ranking anything."""

from __future__ import annotations

import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from support import tiny_run

from predlearn.cli import main, run_cli
from predlearn.preemption import STOP_SIGNALS, AtomicCheckpointIO, Preemption, write_atomically

TESTS = Path(__file__).resolve().parent
#: the folder of the files a signalled fit and its test meet by (``PauseAtStep``)
MEET_ENV = "PREDLEARN_TEST_MEET"
#: the step a signal reaches a fit at
STEP = 2
NO_FIGURES = "--figures.enabled=false"
STOPPED = re.compile(r"predlearn: stopped by (SIG[A-Z0-9]+) after step (\d+); checkpoint (\S+); "
                     r"resume with: (predlearn fit --config \S+ --ckpt_path=\S+)")


class PauseAtStep(L.Callback):
    """In a fit started by ``start_fit``: at the end of training step ``STEP``, writes ``ready``
    into the folder ``$PREDLEARN_TEST_MEET`` and waits there (up to a minute) for the ``sent``
    the test writes after signalling this process, so that the signal lands during that step.
    Does nothing without the variable (a resumed fit in the test's process)."""

    def on_train_batch_end(self, trainer, *args) -> None:
        folder = os.environ.get(MEET_ENV)
        if not folder or trainer.global_step != STEP:
            return
        (Path(folder) / "ready").touch()
        deadline = time.monotonic() + 60
        while not (Path(folder) / "sent").exists() and time.monotonic() < deadline:
            time.sleep(0.02)


class SignalRankOne(L.Callback):
    """At the end of step ``STEP`` rank 1 alone sends itself SIGTERM."""

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_rank == 1 and trainer.global_step == STEP:
            os.kill(os.getpid(), signal.SIGTERM)


def saved(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def start_fit(folder: Path, *args: str) -> subprocess.Popen:
    """``predlearn fit *args`` in a new process (and session, as a terminal's job), in
    ``folder``, its output in ``folder/out.txt`` and ``folder/err.txt``."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", MEET_ENV: str(folder),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    with (folder / "out.txt").open("w") as out, (folder / "err.txt").open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "predlearn.cli", "fit", *args], cwd=folder,
                                env=env, stdout=out, stderr=err, start_new_session=True)


def finish(process: subprocess.Popen, folder: Path, timeout: float = 300) -> tuple[int, str]:
    """The exit status of ``process`` and what it wrote on stderr."""
    try:
        code = process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    return code, (folder / "err.txt").read_text()


def signal_at_step(process: subprocess.Popen, folder: Path, signum: int,
                   whole_group: bool = False) -> None:
    """Send ``signum`` to the fit once it reached ``STEP`` (to its whole process group, as a
    terminal's Ctrl-C does: loader workers too), then let it go on."""
    deadline = time.monotonic() + 240
    while not (folder / "ready").exists():
        assert process.poll() is None, (folder / "err.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, "the fit never reached its step"
        time.sleep(0.05)
    if whole_group:
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    (folder / "sent").touch()


def stop_line(err: str) -> re.Match:
    """The one line a stopped fit ends with, parsed."""
    lines = [line for line in err.splitlines() if line.startswith("predlearn: stopped by")]
    assert len(lines) == 1, err[-3000:]
    match = STOPPED.fullmatch(lines[0])
    assert match, lines[0]
    return match


@pytest.mark.slow
def test_sigterm_stops_after_the_step_and_the_printed_command_resumes_exactly(
        mnist_root, tmp_path, monkeypatch):
    # the default schedule: a validation at each epoch's end (5 batches); step 2 is mid-epoch
    args = ["--trainer.max_steps=8", NO_FIGURES, "--trainer.callbacks=test_preemption.PauseAtStep"]
    whole = run_cli(["fit", *tiny_run(mnist_root, tmp_path / "straight", *args)])

    process = start_fit(tmp_path, *tiny_run(mnist_root, tmp_path / "stopped", *args))
    signal_at_step(process, tmp_path, signal.SIGTERM)
    code, err = finish(process, tmp_path)
    assert code == 143, err[-3000:]
    stopped = stop_line(err)
    assert stopped.group(1, 2) == ("SIGTERM", str(STEP))
    last = saved(tmp_path / stopped.group(3))
    assert last["global_step"] == STEP
    assert last["predlearn"]["validation"]["step"] == STEP  # validated, then written
    best = tmp_path / Path(stopped.group(3)).with_name(f"best-step{STEP:06d}.ckpt")
    assert best.is_file()  # ranked by the validation of its step
    assert not list(best.parent.glob(".*.tmp"))

    monkeypatch.chdir(tmp_path)  # the printed command, run where the fit ran
    command = shlex.split(stopped.group(4))
    resumed = run_cli(command[1:])
    got, expected = (saved(cli.trainer.checkpoint_callback.last_model_path)
                     for cli in (resumed, whole))
    assert got["global_step"] == expected["global_step"] == 8
    for name, value in expected["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][name], value)


@pytest.mark.slow
def test_ctrl_c_stops_after_the_step_with_130(mnist_root, tmp_path):
    """Ctrl-C reaches the fit's whole process group, its loader worker too."""
    process = start_fit(tmp_path, *tiny_run(mnist_root, tmp_path / "run", "--trainer.max_steps=8",
                                            NO_FIGURES, "--data.num_workers=1",
                                            "--trainer.callbacks=test_preemption.PauseAtStep"))
    signal_at_step(process, tmp_path, signal.SIGINT, whole_group=True)
    code, err = finish(process, tmp_path)
    assert code == 130, err[-3000:]
    stopped = stop_line(err)
    assert stopped.group(1, 2) == ("SIGINT", str(STEP))
    assert saved(tmp_path / stopped.group(3))["global_step"] == STEP
    assert "KeyboardInterrupt" not in err


@pytest.mark.slow
def test_every_ddp_rank_stops_at_the_step_one_rank_was_signalled_at(mnist_root, tmp_path):
    process = start_fit(tmp_path, *tiny_run(mnist_root, tmp_path / "run", "--trainer.max_steps=8",
                                            NO_FIGURES, "--trainer.strategy=ddp",
                                            "--trainer.devices=2",
                                            "--trainer.callbacks=test_preemption.SignalRankOne"))
    code, err = finish(process, tmp_path)  # a rank that went on would wait for the other
    assert code == 143, err[-3000:]
    stopped = stop_line(err)
    assert stopped.group(1, 2) == ("SIGTERM", str(STEP))  # rank 0 was not signalled itself
    assert saved(tmp_path / stopped.group(3))["global_step"] == STEP


class LastProbe(L.Callback):
    """Records, before every training batch, the step ``last.ckpt`` holds (None: no file)."""

    def __init__(self) -> None:
        self.seen: list[int | None] = []

    def on_train_batch_start(self, trainer, *args) -> None:
        path = trainer.checkpoint_callback.last_model_path
        self.seen.append(saved(path)["global_step"] if path and Path(path).is_file() else None)


@pytest.mark.parametrize(("minutes", "seen"), [("0.0001", [None, 1, 2, 3]),
                                               ("0", [None, None, None, None])])
def test_the_timed_checkpoint_writes_last_and_ranks_nothing(mnist_root, tmp_path, minutes,
                                                           seen):
    """0.0001 minutes (6 ms) is shorter than a step: ``last`` after every step; the validation
    at the last step (4, before the epoch's end) ranks the one best checkpoint. After the fit
    the signals are handled as before it."""
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=4", NO_FIGURES,
                                    f"--checkpoint_every_minutes={minutes}",
                                    "--trainer.callbacks=test_preemption.LastProbe")])
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == before
    (probe,) = (c for c in cli.trainer.callbacks if isinstance(c, LastProbe))
    assert probe.seen == seen
    checkpoint = cli.trainer.checkpoint_callback
    assert [Path(path).name for path in checkpoint.best_k_models] == ["best-step000004.ckpt"]
    files = sorted(path.name for path in Path(checkpoint.dirpath).iterdir())
    assert files == ["best-step000004.ckpt", "last.ckpt"]  # no temporary file left either
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_negative_checkpoint_interval_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--model=predrnn", "--data=mmnist", "--checkpoint_every_minutes=-1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--checkpoint_every_minutes" in err and "\n" not in err


@pytest.fixture
def handlers():
    """The process's handlers of the stop signals, put back after the test."""
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


def test_a_second_ctrl_c_stops_at_once(handlers):
    callback = Preemption()
    callback.install(object())
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's repeated signal: still stopping
    assert callback.received == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs at once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_lightnings_slurm_requeue_handler_still_runs(handlers):
    """Under SLURM with auto-requeue, Lightning's handler of SIGUSR1 saves and requeues the
    job (here a stand-in for it): it still runs, and the fit stops too."""
    requeued = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: requeued.append(signum))
    callback = Preemption()
    callback.install(object())
    os.kill(os.getpid(), signal.SIGUSR1)
    assert requeued == [signal.SIGUSR1] and callback.received == signal.SIGUSR1


def test_a_sigterm_lightning_took_before_is_taken_over(handlers):
    """Lightning's own SIGTERM handler would make its loop raise SIGTERMException (exit 0, no
    checkpoint) after the step; the stop is handled here instead."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer._signal_connector.received_sigterm = True
    callback = Preemption()
    callback.install(trainer)
    assert callback.received == signal.SIGTERM and not trainer.received_sigterm


def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"previous")

    def fail_halfway(handle) -> None:
        handle.write(b"half of a new file")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(path, fail_halfway)
    assert path.read_bytes() == b"previous" and sorted(tmp_path.iterdir()) == [path]
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):  # found halfway
        AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(3), "bad": lambda: 0}, path)
    assert path.read_bytes() == b"previous" and sorted(tmp_path.iterdir()) == [path]
    AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(3)}, path)
    assert torch.equal(saved(path)["weights"], torch.ones(3))
    assert sorted(tmp_path.iterdir()) == [path]
