"""Trained predictors shipped inside the package, by name.

Each shipped model is a pretrained folder ``predlearn/weights/<name>/`` (config.json,
model.safetensors, the model card README.md: ``predlearn.pretrained_folder``), which loads
without running pickled code.

    >>> import predlearn
    >>> predlearn.list_pretrained()
    ['predrnn-mmnist2']
    >>> module = predlearn.load_pretrained("predrnn-mmnist2")  # a PredictiveModule in eval mode

On the command line the name, or the path of any pretrained folder, works wherever a checkpoint
path does: ``predlearn predict --ckpt_path=predrnn-mmnist2 --data=frames --data.path=clip.h5``.
A folder is given to Lightning as a checkpoint file written once into predlearn's cache
(``predlearn.pretrained_folder.checkpoint_of``: the folder's weights and settings, no pickle).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import predlearn.pretrained_folder as folders
from predlearn.errors import CheckpointError, UsageError

#: the shipped models' folder (tests point ``predlearn.pretrained_folder.SHIPPED_DIR``
#: elsewhere; everything here reads that)
WEIGHTS_DIR = folders.SHIPPED_DIR
#: checkpoint entries a shipped model keeps; everything else (optimiser, loops, callbacks) goes
KEPT_KEYS = ("state_dict", "hyper_parameters", "hparams_name", "_instantiator",
             "pytorch-lightning_version", "predlearn")


#: the file of a pretrained folder that makes it one
FOLDER_CONFIG = folders.CONFIG_FILE


def list_pretrained() -> list[str]:
    """Names of the trained models shipped with predlearn."""
    return folders.shipped_names()


def pretrained_path(name: str) -> Path:
    """The pretrained folder of a shipped model; a clear error names the shipped ones."""
    folder = folders.SHIPPED_DIR / name
    if "/" not in name and (folder / FOLDER_CONFIG).is_file():
        return folder
    known = ", ".join(list_pretrained()) or "none"
    raise UsageError(f"no shipped model named {name!r}; shipped: {known}")


def model_card(name: str) -> str:
    """The model card (Markdown) of a shipped model."""
    return (pretrained_path(name) / "README.md").read_text(encoding="utf-8")


def load_pretrained(name: str, map_location: str | torch.device = "cpu") -> Any:
    """A shipped model as a ready ``PredictiveModule`` in eval mode."""
    return folders.load_module(pretrained_path(name), map_location=map_location)


def resolve_checkpoint(value: str) -> str:
    """``--ckpt_path`` as given: an existing file stays; a pretrained folder, a shipped
    model's name or a Hub model (``hf://owner/name``, downloaded: ``predlearn.pretrained_hub``)
    becomes a checkpoint file (a folder's is written once into predlearn's cache,
    ``predlearn.pretrained_folder.checkpoint_of``); anything else stays as it is (Lightning then
    reports it, or it is "best"/"last")."""
    if value in ("best", "last", "hpc", "registry") or os.path.isfile(value):
        return value
    folder = Path(value) if os.path.isdir(value) else folders.SHIPPED_DIR / value
    if (folder / FOLDER_CONFIG).is_file() and (os.path.isdir(value) or "/" not in value):
        return str(folders.checkpoint_of(folder))
    from predlearn.pretrained_hub import hub_folder, is_hub_id

    if is_hub_id(value, bare=False):  # hf://owner/name: the downloaded folder's checkpoint
        return str(folders.checkpoint_of(hub_folder(value)))
    return value


def export_checkpoint(source: str | os.PathLike, destination: str | os.PathLike,
                      **metadata: Any) -> Path:
    """Write ``source`` (a predlearn training checkpoint) reduced to what prediction needs,
    with ``metadata`` (e.g. the test scores) under the ``predlearn`` key; returns the path.

    The weights are stored as they were trained (float32). The file is written beside its
    destination and renamed, so a failed export leaves nothing behind.
    """
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    if "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"{source} is not a Lightning checkpoint of a predlearn model "
                              "(no state_dict or hyper_parameters)")
    kept = {key: checkpoint[key] for key in KEPT_KEYS if key in checkpoint}
    kept["predlearn"] = {**kept.get("predlearn", {}), **metadata}
    from predlearn.files import written_atomically

    destination = Path(destination)
    with written_atomically(destination) as partial:
        torch.save(kept, partial)
    return destination


__all__ = ["export_checkpoint", "list_pretrained", "load_pretrained", "model_card",
           "pretrained_path", "resolve_checkpoint"]
