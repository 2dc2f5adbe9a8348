"""Quiet by default: a fit, a 2-process DDP fit and a predict raise no warning that is not on
the allow-list, and each filter of ``predlearn.quiet`` hides its warning only where it is
raised."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from support import tiny_run

from predlearn.cli import run_cli
from predlearn.quiet import FILTERED, LIGHTNING_INFO_LOGGER, hide_own_checkpoints_warning, quiet

#: warnings a tiny run may raise although nothing is wrong, with the reason each is allowed
#: (none today: a run that raises any other warning fails its test)
ALLOWED: dict[str, str] = {}
#: in a subprocess with -W always, at its exit (after the command): W&B's service leaves a
#: temporary folder that Python removes then (a ResourceWarning, ignored by default)
ALLOWED_AT_EXIT = {r"ResourceWarning: Implicitly cleaning up <TemporaryDirectory": "W&B"}


def unexpected(seen: list[warnings.WarningMessage]) -> list[str]:
    """The recorded warnings that no ``ALLOWED`` pattern matches, as ``file:line: message``."""
    return [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in seen
            if not any(re.search(pattern, str(w.message)) for pattern in ALLOWED)]


def run_recording(argv: list[str]) -> list[str]:
    """``run_cli(argv)`` with every warning recorded (``always``: none hidden by the test
    session's or Python's defaults, only by predlearn's own filters)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run_cli(argv)
    return unexpected(seen)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import wandb

    wandb.finish()
    monkeypatch.setenv("WANDB_MODE", "offline")


#: the warnings ``FILTERED`` hides, as raised: (module, category, message)
RAISED = [
    ("lightning.pytorch.utilities._pytree", FutureWarning,
     ("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
      "treespec.is_leaf()` instead.")),
    ("lightning.fabric.utilities.seed", UserWarning, "No seed found, seed set to 0"),
    ("lightning.pytorch.utilities.data", UserWarning,
     ("Your `IterableDataset` has `__len__` defined. In combination with multi-process data "
      "loading (when num_workers > 1), `__len__` could be inaccurate")),
    ("lightning.pytorch.cli", DeprecationWarning,
     "\n    ``ArgumentParser.add_instantiator`` was deprecated in v4.49.0 and will be removed"),
    ("lightning.pytorch.cli", DeprecationWarning,
     "\n    ``instantiate_classes`` was deprecated in v4.49.0 and will be removed in v5.0.0."),
    ("lightning.pytorch.cli", DeprecationWarning,
     "\n    skip_none parameter was deprecated in v4.49.0 and will be removed in v5.0.0."),
    ("lightning.pytorch.cli", DeprecationWarning,
     "\n    By default only one JsonargparseDeprecationWarning per type is shown. To see"),
]


def shown(module: str, category: type[Warning], message: str) -> bool:
    """Whether a warning raised in ``module`` gets through ``quiet()`` under ``-W error``
    (quiet's filters come first, so they hold there too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet():
            try:
                warnings.warn_explicit(message, category, f"{module}.py", 1, module=module)
            except Warning:
                return True
    return False


def test_each_filter_hides_its_warning_only_where_it_is_raised():
    for module, category, message in RAISED:
        assert not shown(module, category, message), message
        # the same text from elsewhere, or from there as another kind of warning, shows
        assert shown("mypackage.models", category, message), message
        assert shown(f"{module}_extra", category, message), message
        assert shown(module, RuntimeWarning, message), message
    assert shown("lightning.pytorch.cli", DeprecationWarning,
                 "\n    ``something_else`` was deprecated in v4.49.0")  # only those it names
    # every filter is exercised above
    assert all(any(re.match(hidden.module, module) and re.match(hidden.message, message,
                                                                 re.IGNORECASE)
                   for module, _, message in RAISED) for hidden in FILTERED)
    # outside the block, the filters are gone
    module, category, message = RAISED[0]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet():
            pass
        warnings.warn_explicit(message, category, "x.py", 1, module=module)
    assert len(seen) == 1


def test_lightning_tips_are_dropped_and_its_summary_stays():
    from lightning.pytorch.utilities import rank_zero_info

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    handler = Keep()
    logger.addHandler(handler)
    try:
        with quiet():
            rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger]")
            rank_zero_info("GPU available: False, used: False")
        rank_zero_info("💡 Tip: shown again outside")
    finally:
        logger.removeHandler(handler)
    assert records == ["GPU available: False, used: False", "💡 Tip: shown again outside"]


def test_the_resumed_runs_checkpoint_warning_is_hidden_for_its_folder_only(tmp_path):
    own, other = tmp_path / "run" / "checkpoints", tmp_path / "elsewhere"
    module = "lightning.pytorch.callbacks.model_checkpoint"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet():
            hide_own_checkpoints_warning(own)
            for folder in (own, other):
                warnings.warn_explicit(f"Checkpoint directory {folder} exists and is not empty.",
                                       UserWarning, "model_checkpoint.py", 1, module=module)
    assert [str(w.message) for w in seen] == [
        f"Checkpoint directory {other} exists and is not empty."]


@pytest.mark.slow
def test_a_fit_and_a_predict_raise_no_unexpected_warning(mnist_root, tmp_path):
    """The default logger (W&B, offline), loader workers (Lightning's stream-length warning)
    and a validation: no warning but those of ``ALLOWED``."""
    root = tmp_path / "runs"
    args = [arg for arg in tiny_run(mnist_root, root, "--trainer.max_steps=3",
                                    "--trainer.val_check_interval=3", "--data.num_workers=2")
            if not arg.startswith("--trainer.logger")]  # the default, W&B
    assert run_recording(["fit", *args]) == []
    (folder,) = root.iterdir()
    assert run_recording(["predict", *args,
                          f"--ckpt_path={folder / 'checkpoints' / 'last.ckpt'}"]) == []
    assert list(folder.glob("predict-*/predictions.h5"))


def warning_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that show a warning (``path.py:line: ...``, as Python and
    Lightning print them), other than those of ``ALLOWED`` and ``ALLOWED_AT_EXIT``."""
    allowed = [*ALLOWED, *ALLOWED_AT_EXIT]
    return [line for line in stderr.splitlines() if re.match(r"\S+\.py:\d+: ", line)
            and not any(re.search(pattern, line) for pattern in allowed)]


@pytest.mark.slow
def test_a_two_process_ddp_fit_raises_no_unexpected_warning(mnist_root, tmp_path):
    """``predlearn fit --trainer.strategy=ddp --trainer.devices=2`` (gloo) with every warning
    shown (``-W always``): none, in particular no "It is recommended to use `sync_dist=True`"
    per logged key (the metrics are synced, and logged so), and no Lightning tip."""
    args = [arg for arg in tiny_run(mnist_root, tmp_path / "runs", "--trainer.max_steps=3",
                                    "--trainer.val_check_interval=3")
            if not arg.startswith(("--trainer.logger", "--trainer.devices", "--seed"))]
    command = [str(Path(sys.executable).with_name("predlearn")), "fit", *args,
               "--trainer.devices=2", "--trainer.strategy=ddp"]  # W&B, no --seed_everything
    environment = {key: value for key, value in os.environ.items() if key != "PL_GLOBAL_SEED"}
    environment.update(WANDB_MODE="offline", OMP_NUM_THREADS="1", PYTHONWARNINGS="always")
    done = subprocess.run(command, capture_output=True, text=True, env=environment,
                          timeout=300, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stderr  # really two processes
    assert warning_lines(done.stderr) == []
    assert "sync_dist" not in done.stderr and "💡 Tip" not in done.stderr
    assert "GPU available: False" in done.stderr  # Lightning's summary stays
    assert "Seed set to 0" in done.stderr
    assert "anonymous setting" not in done.stderr  # W&B's, fixed in AutoWandbLogger
