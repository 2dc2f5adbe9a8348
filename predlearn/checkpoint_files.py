"""Checkpoint files as predlearn reads them: safely (no pickled code runs), checked to be a
predlearn model's, and with the module settings of older predlearn versions upgraded."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from predlearn.errors import CheckpointError

#: the LightningModule whose checkpoints predlearn reads (``_class_path`` in their hyper-parameters)
MODULE_CLASS_PATH = "predlearn.module.PredictiveModule"


#: module arguments of older predlearn checkpoints that are now a schedule object (``sampling``)
#: or the data module's scoring options (``--data.thresholds`` etc.)
_SCHEDULES = {"scheduled_sampling": ("predlearn.sampling.ScheduledSampling",
                                     {"sampling_start": "start", "sampling_decay": "decay",
                                      "sampling_stop": "stop"}),
              "reverse_scheduled_sampling": ("predlearn.sampling.ReverseScheduledSampling",
                                             {"reverse_sampling_start": "start",
                                              "reverse_sampling_end": "end",
                                              "reverse_sampling_alpha": "alpha"})}
_MOVED_TO_DATA = ("thresholds", "threshold_unit", "fss_scales", "power_spectrum")


def upgrade_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's module settings in today's arguments: the sampling flags and numbers of
    older checkpoints as a ``sampling`` schedule, the scoring options (now the data's) left out."""
    for flag, (path, names) in _SCHEDULES.items():
        numbers = {new: hparams.pop(old) for old, new in names.items() if old in hparams}
        if hparams.pop(flag, False):
            hparams["sampling"] = {"class_path": path, "init_args": numbers}
    for key in _MOVED_TO_DATA:
        hparams.pop(key, None)
    return hparams


def load_plain_values(path: str | os.PathLike | io.IOBase, pickled_hint: str,
                      allowed: Sequence[Any] = ()) -> Any:
    """``torch.load`` with ``weights_only``: tensors, containers and numbers only, and the
    globals of ``allowed`` (``torch.serialization.safe_globals`` entries). One line naming the
    file when it is missing, damaged or truncated, or holds pickled objects (which could run
    code; ``pickled_hint`` says what to give instead)."""
    if not isinstance(path, io.IOBase) and not Path(path).is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[arg-type]
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower():
            raise CheckpointError(f"{path}: not a checkpoint, or damaged ({error})") from error
        raise CheckpointError(
            f"{path}: holds pickled Python objects, which predlearn does not load (they could "
            f"run code); {pickled_hint}") from error
    except Exception as error:  # torch.load fails on damaged files in many ways
        reason = str(error).split("\n")[0].split(". ")[0] or type(error).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint, damaged or truncated ({reason})") from error


def read_checkpoint(path: str | os.PathLike, needs_predictor: bool = True) -> dict[str, Any]:
    """The contents of a predlearn checkpoint file, loaded without running pickled code
    (``weights_only``), checked to be a Lightning checkpoint of a ``PredictiveModule`` (with
    ``needs_predictor``: one that stores its predictor's config, so that it rebuilds its model),
    its module settings in today's arguments (``upgrade_hparams``).

    Raises ``CheckpointError`` naming the file when it is missing, damaged or truncated, holds
    pickled objects, or is not a checkpoint of a predlearn model.
    """
    checkpoint = load_plain_values(
        path, "predlearn's own checkpoints hold only tensors and plain values")
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
    checkpoint = dict(checkpoint)
    if isinstance(hparams, Mapping):
        checkpoint["hyper_parameters"] = upgrade_hparams(dict(hparams))
    return checkpoint
