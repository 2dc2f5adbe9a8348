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
import pickle
from collections.abc import Mapping
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


#: the LightningModule whose checkpoints predlearn reads (``_class_path`` in their hyper-parameters)
MODULE_CLASS_PATH = "predlearn.module.PredictiveModule"


def read_checkpoint(path: str | os.PathLike, needs_predictor: bool = True) -> dict[str, Any]:
    """The contents of a predlearn checkpoint file, loaded without running pickled code
    (``weights_only``), checked to be a Lightning checkpoint of a ``PredictiveModule`` (with
    ``needs_predictor``: one that stores its predictor's config, so that it rebuilds its model).

    Raises ``CheckpointError`` naming the file when it is missing, damaged or truncated, holds
    pickled objects, or is not a checkpoint of a predlearn model.
    """
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower():
            raise CheckpointError(f"{path}: not a checkpoint, or damaged ({error})") from error
        raise CheckpointError(
            f"{path}: holds pickled Python objects, which predlearn does not load (they could "
            "run code); predlearn's own checkpoints hold only tensors and plain values"
        ) from error
    except Exception as error:  # torch.load fails on damaged files in many ways
        reason = str(error).split("\n")[0].split(". ")[0] or type(error).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint, damaged or truncated ({reason})") from error
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (it has no state_dict)")
    hparams = checkpoint.get("hyper_parameters")
    made_by = hparams.get("_class_path") if isinstance(hparams, Mapping) else None
    predictor = hparams.get("predictor") if isinstance(hparams, Mapping) else None
    has_config = isinstance(predictor, Mapping) and "class_path" in predictor
    if made_by not in (None, MODULE_CLASS_PATH) or (needs_predictor and not has_config):
        why = (f"made by {made_by}" if made_by not in (None, MODULE_CLASS_PATH)
               else "its hyper-parameters name no predictor")
        raise CheckpointError(f"{path}: not a checkpoint of a predlearn model ({why}); give a "
                              "checkpoint written by `predlearn fit`")
    return dict(checkpoint)


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
           "pretrained_path", "read_checkpoint", "resolve_checkpoint"]
