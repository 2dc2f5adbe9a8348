"""The layout of a predlearn run folder: its files' names, and where a new run goes.

One run, one folder: its config, checkpoints, pictures, curves, predictions and (with W&B) the
W&B run files sit together, in a folder named after the model, the data and the time
(``runs/predrnn-mmnist-20261203-201500/``). No heavy imports: ``predlearn compare`` reads runs
without loading Lightning.
"""

from __future__ import annotations

import time
from pathlib import Path

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
