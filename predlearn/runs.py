"""The layout of a predlearn run folder: its files' names, and where a new run goes.

One run, one folder: its config, checkpoints, pictures, curves, predictions and (with W&B) the
W&B run files sit together, in a folder named after the model, the data and the time
(``runs/predrnn-mmnist-20261203-201500/``). No heavy imports: ``predlearn compare`` reads runs
without loading Lightning.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

#: which model and data made a run's files (written by the figures callback, read by compare)
RUN_INFO = "predlearn_run.json"
#: the command line's settings, written by LightningCLI at the start of each run
CONFIG = "config.yaml"
#: the folder of a run's checkpoints
CHECKPOINTS = "checkpoints"


def run_folder_name(model: str | None, data: str | None, command: str,
                    when: float | None = None) -> str:
    """``<model>-<data>-<YYYYmmdd-HHMMSS>`` for ``fit``, with the command before the time for
    the others (``predrnn-mmnist-test-20261203-201500``); unknown names are left out."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    parts = [part for part in (model, data) if part]
    if command != "fit":
        parts.append(command)
    return "-".join([*parts, stamp])


def new_run_folder(root: str | Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``... when a folder of that name exists: no run
    writes into another's folder. Nothing is created here (a run that fails before its first
    step leaves no folder)."""
    folder = Path(root) / name
    number = 2
    while folder.exists():
        folder = Path(root) / f"{name}-{number}"
        number += 1
    return folder


def run_of_checkpoint(checkpoint: str | Path) -> Path | None:
    """The run folder a checkpoint file belongs to (``<run>/checkpoints/<file>.ckpt`` beside the
    run's ``config.yaml``), or None for a checkpoint kept anywhere else (a shipped model)."""
    path = Path(checkpoint)
    folder = path.parent.parent
    if path.parent.name == CHECKPOINTS and ((folder / CONFIG).is_file()
                                           or (folder / RUN_INFO).is_file()):
        return folder
    return None


#: where runs go unless ``--trainer.default_root_dir`` says otherwise
RUN_ROOT = "runs"
#: the run folder rank 0 chose, passed on to the processes Lightning starts for DDP (they run
#: the command again and would otherwise choose a folder of their own)
RUN_FOLDER_ENV = "PREDLEARN_RUN_FOLDER"
#: the CSV logger that writes into the run's folder itself (``predlearn.loggers``)
RUN_CSV_LOGGER = "predlearn.loggers.RunCSVLogger"
#: how long the other ranks of a torchrun job wait for rank 0 to tell its folder (seconds; the
#: default timeout of torch's process groups, which they would wait for rank 0 anyway)
RANK_ZERO_TIMEOUT = 1800.0
#: the key prefix under which rank 0 of a torchrun job tells its folder in the agent's store
STORE_PREFIX = "predlearn/run_folder"

_commands_run = 0  # the commands this process has chosen a folder for: one store key each


def is_wandb_logger(logger: Any) -> bool:
    """Whether a parsed ``--trainer.logger`` is W&B's (predlearn's ``AutoWandbLogger`` or
    Lightning's ``WandbLogger``)."""
    path = str(logger.get("class_path")) if hasattr(logger, "get") else ""
    return path.endswith("WandbLogger")


def is_run_csv_logger(logger: Any) -> bool:
    """Whether a parsed ``--trainer.logger`` is a CSV logger that names no folder of its own
    (no ``name``, no ``version``): Lightning's ``CSVLogger`` or predlearn's ``RunCSVLogger``,
    which then write into the run's folder."""
    if not hasattr(logger, "get"):
        return False
    from lightning.pytorch.loggers import CSVLogger

    from predlearn.class_paths import class_or_none

    cls = class_or_none(logger.get("class_path"))
    init_args = logger.get("init_args") or {}
    return (isinstance(cls, type) and issubclass(cls, CSVLogger) and not init_args.get("name")
            and init_args.get("version") in (None, ""))


def last_checkpoint(folder: Path) -> Path | None:
    """The newest ``last*.ckpt`` in ``folder/checkpoints`` (as Lightning names its last
    checkpoints: ``last.ckpt``, ``last-v1.ckpt``), or None."""
    found = [path for path in (folder / CHECKPOINTS).glob("last*.ckpt")
             if re.fullmatch(r"last(-v?\d+)?", path.stem)]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def latest_run(root: str | Path, model: str | None, data: str | None) -> Path | None:
    """The fit run under ``root`` of this model and data (``<model>-<data>-<time>[-N]``) whose
    last checkpoint is the newest: the run ``--ckpt_path=last`` resumes; None when none has one."""
    prefix = "-".join(part for part in (model, data) if part)
    name = re.compile(rf"{re.escape(prefix)}{'-' if prefix else ''}\d{{8}}-\d{{6}}(-\d+)?")
    runs = {folder: last for folder in (Path(root).iterdir() if Path(root).is_dir() else ())
            if name.fullmatch(folder.name) and (last := last_checkpoint(folder)) is not None}
    return max(runs, key=lambda folder: runs[folder].stat().st_mtime) if runs else None


def _torchrun_store() -> Any:
    """A client of the TCPStore that torchrun's agent hosts for its workers (at ``MASTER_ADDR``
    and ``MASTER_PORT``, ``TORCHELASTIC_USE_AGENT_STORE=True``), or None outside torchrun or
    in a job of one process."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or int(
            os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    from datetime import timedelta

    import torch.distributed as dist

    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                         is_master=False, timeout=timedelta(seconds=RANK_ZERO_TIMEOUT),
                         wait_for_workers=False)


def agree_on_run_folder(folder: Path) -> Path:
    """The run folder of every rank: the one rank 0 chose (``folder`` on rank 0).

    Rank 0 decides; the others are told before Lightning sets up its process group (they need
    the folder while the command is built: the logger's, the checkpoints', the predictions'):

    - processes Lightning's DDP launcher starts on this node run the command again with rank 0's
      environment: its folder comes in ``PREDLEARN_RUN_FOLDER``;
    - under torchrun (every node, every process started by torchrun), rank 0 sets its folder in
      the TCPStore of torchrun's agent, which every worker reaches at ``MASTER_ADDR:MASTER_PORT``
      before any process group exists, under a key unique to the job, its restart and the
      command (``predlearn/run_folder/<TORCHELASTIC_RUN_ID>/<restart>/<n>``); the others wait
      for it (``RANK_ZERO_TIMEOUT``, then a clear error). The store, not a file: nodes may
      start in different working directories, so no relative path names one file for all.

    Under torchrun the folder is rank 0's absolute path on every rank, rank 0 included: a
    relative ``--trainer.default_root_dir`` is taken in rank 0's working directory, and the
    shared file system must be mounted at the same path on every node. Other multi-node
    launchers (``srun`` or ``mpirun`` starting predlearn itself) tell nothing: start predlearn
    through torchrun there (``srun torchrun ...``)."""
    global _commands_run
    _commands_run += 1
    store = _torchrun_store()
    inherited = os.environ.get(RUN_FOLDER_ENV)
    if store is None and inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)  # a process Lightning launched for DDP: rank 0's folder
    if store is not None:
        key = "/".join((STORE_PREFIX, os.environ.get("TORCHELASTIC_RUN_ID", "none"),
                        os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"), str(_commands_run)))
        if os.environ.get("RANK", "0") == "0":
            folder = Path(os.path.abspath(folder))
            store.set(key, str(folder))
        else:
            try:
                folder = Path(store.get(key).decode())
            except RuntimeError as error:  # torch's DistStoreError on a timeout
                raise RuntimeError(
                    f"predlearn: rank {os.environ.get('RANK')} waited {RANK_ZERO_TIMEOUT:.0f} s "
                    "for rank 0 to tell the run folder in torchrun's store; did rank 0 start "
                    f"and parse the same command? ({error})") from error
    os.environ[RUN_FOLDER_ENV] = str(os.path.abspath(folder))  # for a DDP launch's processes
    return folder


def choose_run_folder(subcommand: str, config: Any) -> tuple[Path | None, str | None]:
    """One run, one folder, set in the command's parsed ``config``: with W&B (the default), a
    CSV logger that names no folder (``--trainer.logger=CSVLogger``) or no logger,
    ``<default_root_dir>/<model>-<data>[-<command>]-<time>/``, never another run's; a resumed
    fit (``--ckpt_path`` a checkpoint of a run folder, or ``last``: the run of this model and
    data with the newest last checkpoint) goes on in its run's folder; ``predict`` makes no W&B
    run and writes into ``<checkpoint's run>/predict-<time>/`` (or beside
    ``--predictions.output_path``, with no config file); other loggers, and a CSV logger given
    a ``name`` or ``version``, keep their own layout (``version_N``). Every rank of a
    multi-process job gets rank 0's folder (``agree_on_run_folder``). Returns (the folder, or
    None when the logger chooses it; the config file's name there, or None for none)."""
    from predlearn.class_paths import registry_name
    from predlearn.registry import DATAMODULES, MODELS

    trainer = config.get("trainer", {})
    logger = trainer.get("logger")
    if subcommand == "predict" and is_wandb_logger(logger):
        trainer["logger"] = logger = False  # predict logs nothing: no empty W&B run
    csv = is_run_csv_logger(logger)
    if logger not in (None, False) and not is_wandb_logger(logger) and not csv:
        return None, CONFIG
    root = str(trainer.get("default_root_dir") or RUN_ROOT)
    if is_wandb_logger(logger) or csv:
        save_dir = logger.get("init_args").get("save_dir")
        if save_dir and str(save_dir) != RUN_ROOT:
            root = str(save_dir)  # runs/ is only the default of both
    model = registry_name(MODELS, config.get("model", {}).get("predictor", {}))
    data = registry_name(DATAMODULES, config.get("data", {}))
    checkpoint = config.get("ckpt_path")
    checkpoints = config.get("checkpoint")
    own_checkpoints = checkpoints is not None and checkpoints.get("dirpath") is None
    if checkpoint == "last" and subcommand == "fit" and own_checkpoints:
        run = latest_run(root, model, data)
    else:
        run = run_of_checkpoint(checkpoint) if checkpoint and Path(checkpoint).is_file() else None
    config_name: str | None = CONFIG
    if subcommand == "predict":
        output = (config.get("predictions") or {}).get("output_path")
        if output:  # written where asked; no config file beside it
            folder, config_name = Path(output).parent, None
        else:
            folder = new_run_folder(run or root, run_folder_name(
                None if run else model, None if run else data, "predict"))
    elif subcommand == "fit" and run is not None:
        folder = run  # a resumed run goes on in its folder
        if (run / CONFIG).exists():
            config_name = f"config.resumed-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    else:
        folder = new_run_folder(root, run_folder_name(model, data, subcommand))
    folder = agree_on_run_folder(folder)
    if checkpoint == "last" and subcommand == "fit" and own_checkpoints and last_checkpoint(
            folder) is None:  # decided in the agreed folder: the same on every rank
        config["ckpt_path"] = None  # the first of the runs a requeued job repeats
        if os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0":
            print(f"predlearn: note: --ckpt_path=last: no run of {model or 'this model'} on "
                  f"{data or 'these data'} under {root} to resume; starting a new one",
                  file=sys.stderr, flush=True)
    trainer["default_root_dir"] = str(folder)
    if is_wandb_logger(logger):
        logger.get("init_args")["save_dir"] = str(folder)
    elif csv:  # its files in the folder itself, not in a version_N below it
        logger["class_path"] = RUN_CSV_LOGGER
        logger.get("init_args")["save_dir"] = str(folder)
    if own_checkpoints:
        checkpoints["dirpath"] = str(folder / CHECKPOINTS)
        if subcommand == "fit" and run is not None:  # goes on writing its own checkpoints
            from predlearn.quiet import hide_own_checkpoints_warning

            hide_own_checkpoints_warning(checkpoints["dirpath"])
    return folder, config_name
