"""One import, end to end: read a source's file, convert it, build predlearn's predictor, check
that the weights fit it (one line naming the key and the option that fits where they do not),
and write a pretrained folder and a predlearn checkpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from predlearn.errors import CheckpointError, PredlearnError
from predlearn.files import sha256_of
from predlearn.predictor import Predictor
from predlearn.weight_import.converters import converter, model_name
from predlearn.weight_import.openstl_options import AUTHORS_FRAMES
from predlearn.weight_import.renaming import completed
from predlearn.weight_import.sources import read_source


@dataclass
class Imported:
    """An imported predictor, with what the folder and checkpoint record of it."""

    predictor: Predictor
    model: str
    context_frames: int
    horizon: int
    source: dict[str, Any]


def import_weights(path: str | os.PathLike, source: str, model: str,
                   options: Mapping[str, Any] | None = None, context_frames: int | None = None,
                   horizon: int | None = None) -> Imported:
    """``path`` (a checkpoint of ``source``: "predrnn-pytorch" or "openstl") as predlearn's
    ``model``, its options from the file and ``options`` (which win), in eval mode.

    ``context_frames`` / ``horizon``: J and K; from the file where it records them (OpenSTL's
    ``pre_seq_length`` / ``aft_seq_length``), else the authors' Moving MNIST 10 and 10.
    """
    from predlearn.pretrained_folder import _check_fit
    from predlearn.registry import MODELS

    name = model_name(source, model)
    weights = read_source(Path(path), source)
    given = dict(options or {})
    converted = converter(source, name)(weights, given)
    context = context_frames or converted.context_frames or AUTHORS_FRAMES[0]
    horizon = horizon or converted.horizon or AUTHORS_FRAMES[1]
    cls = MODELS.get(name)
    init_args = dict(converted.options)
    if "context_frames" in _parameters(cls):  # one-call models are built for J frames
        init_args.setdefault("context_frames", context)
    try:
        predictor = cls(**init_args)
    except (PredlearnError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: predlearn's {name} refuses the options {init_args} "
                              f"({str(error).splitlines()[0]})") from error
    # checked before the zero-filled tensors are added: their shapes are the model's, right or
    # wrong, and would hide which option fits the source's tensors
    state = completed(converted.state_dict, predictor.state_dict(), converted.zero)
    filled = set(state) - set(converted.state_dict)
    config = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
    _check_fit(predictor, converted.state_dict, config, path, optional=filled)
    predictor.load_state_dict(state)
    facts = {"from": source, "file": Path(path).name, "sha256": sha256_of(path),
             "hyper_parameters_in_file": bool(weights.hparams)}
    return Imported(predictor.eval(), name, context, horizon, facts)


def write_outputs(imported: Imported, folder: str | os.PathLike,
                  checkpoint: str | os.PathLike | None) -> tuple[Path, Path | None]:
    """The pretrained folder and (unless None) the predlearn checkpoint of ``imported``."""
    from predlearn import save_pretrained
    from predlearn.files import written_atomically
    from predlearn.pretrained_folder import checkpoint_contents

    written = save_pretrained(imported.predictor, folder,
                              context_frames=imported.context_frames, horizon=imported.horizon,
                              imported=imported.source)
    if checkpoint is None:
        return written, None
    with written_atomically(checkpoint) as part:
        torch.save(checkpoint_contents(written), part)
    return written, Path(checkpoint)


def _parameters(cls: type) -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(cls).parameters)
