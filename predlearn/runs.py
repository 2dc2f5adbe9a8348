"""The layout of a predlearn run folder: its files' names, and where a new run goes.

One run, one folder: its config, checkpoints, pictures, curves, predictions and (with W&B) the
W&B run files sit together, in a folder named after the model, the data and the time
(``runs/predrnn-mmnist-20261203-201500/``). No heavy imports: ``predlearn compare`` reads runs
without loading Lightning.
"""

from __future__ import annotations

import os
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


def is_wandb_logger(logger: Any) -> bool:
    """Whether a parsed ``--trainer.logger`` is W&B's (predlearn's ``AutoWandbLogger`` or
    Lightning's ``WandbLogger``)."""
    path = str(logger.get("class_path")) if hasattr(logger, "get") else ""
    return path.endswith("WandbLogger")


def choose_run_folder(subcommand: str, config: Any) -> tuple[Path | None, str | None]:
    """One run, one folder, set in the command's parsed ``config``: with W&B (the default) or no
    logger, ``<default_root_dir>/<model>-<data>[-<command>]-<time>/``, never another run's; a
    resumed fit goes on in its run's folder; ``predict`` makes no W&B run and writes into
    ``<checkpoint's run>/predict-<time>/`` (or beside ``--predictions.output_path``, with no
    config file); other loggers (CSV) keep their ``version_N``. Returns (the folder, or None
    when the logger chooses it; the config file's name there, or None for none)."""
    from predlearn.class_paths import registry_name
    from predlearn.registry import DATAMODULES, MODELS

    trainer = config.get("trainer", {})
    logger = trainer.get("logger")
    if subcommand == "predict" and is_wandb_logger(logger):
        trainer["logger"] = logger = False  # predict logs nothing: no empty W&B run
    if logger not in (None, False) and not is_wandb_logger(logger):
        return None, CONFIG
    root = str(trainer.get("default_root_dir") or RUN_ROOT)
    if is_wandb_logger(logger):
        save_dir = logger.get("init_args").get("save_dir")
        if save_dir and str(save_dir) != RUN_ROOT:
            root = str(save_dir)  # runs/ is only the default of both
    model = registry_name(MODELS, config.get("model", {}).get("predictor", {}))
    data = registry_name(DATAMODULES, config.get("data", {}))
    checkpoint = config.get("ckpt_path")
    run = run_of_checkpoint(checkpoint) if checkpoint and Path(checkpoint).is_file() else None
    config_name: str | None = CONFIG
    inherited = os.environ.get(RUN_FOLDER_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        folder = Path(inherited)  # a process Lightning launched for DDP: rank 0's folder
    elif subcommand == "predict":
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
    os.environ[RUN_FOLDER_ENV] = str(folder)  # for the processes a DDP launch starts
    trainer["default_root_dir"] = str(folder)
    if is_wandb_logger(logger):
        logger.get("init_args")["save_dir"] = str(folder)
    checkpoints = config.get("checkpoint")
    if checkpoints is not None and checkpoints.get("dirpath") is None:
        checkpoints["dirpath"] = str(folder / CHECKPOINTS)
    return folder, config_name
