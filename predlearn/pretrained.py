"""Trained predictors shipped inside the package, by name.

Each shipped model is a Lightning checkpoint reduced to what prediction needs (weights,
hyper-parameters, versions; no optimiser state) in ``predlearn/weights/<name>.ckpt``, with its
model card ``<name>.md`` beside it (command, seed, steps, wall time, recipe, test scores).

    >>> import predlearn
    >>> predlearn.list_pretrained()
    ['predrnn-mmnist2']
    >>> module = predlearn.load_pretrained("predrnn-mmnist2")  # a PredictiveModule in eval mode

On the command line the name works wherever a checkpoint path does:
``predlearn predict --ckpt_path=predrnn-mmnist2 --data=frames --data.path=clip.h5``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from predlearn.errors import CheckpointError, UsageError

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: checkpoint entries a shipped model keeps; everything else (optimiser, loops, callbacks) goes
KEPT_KEYS = ("state_dict", "hyper_parameters", "hparams_name", "_instantiator",
             "pytorch-lightning_version", "predlearn")


def list_pretrained() -> list[str]:
    """Names of the trained models shipped with predlearn."""
    return sorted(path.stem for path in WEIGHTS_DIR.glob("*.ckpt"))


def pretrained_path(name: str) -> Path:
    """The checkpoint file of a shipped model; a clear error names the shipped ones."""
    path = WEIGHTS_DIR / f"{name}.ckpt"
    if not path.is_file():
        known = ", ".join(list_pretrained()) or "none"
        raise UsageError(f"no shipped model named {name!r}; shipped: {known}")
    return path


def model_card(name: str) -> str:
    """The model card (Markdown) of a shipped model."""
    return pretrained_path(name).with_suffix(".md").read_text(encoding="utf-8")


def load_pretrained(name: str, map_location: str | torch.device = "cpu") -> Any:
    """A shipped model as a ready ``PredictiveModule`` in eval mode."""
    from predlearn.module import PredictiveModule

    module = PredictiveModule.load_from_checkpoint(pretrained_path(name),
                                                   map_location=map_location)
    return module.eval()


def resolve_checkpoint(value: str) -> str:
    """``--ckpt_path`` as given: an existing file stays; a shipped model's name becomes its
    file; anything else stays as it is (Lightning then reports it, or it is "best"/"last")."""
    if os.path.exists(value) or value in ("best", "last", "hpc", "registry"):
        return value
    if (WEIGHTS_DIR / f"{value}.ckpt").is_file():
        return str(WEIGHTS_DIR / f"{value}.ckpt")
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
