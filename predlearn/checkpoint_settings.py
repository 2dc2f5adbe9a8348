"""``--ckpt_path`` on the command line: which checkpoint a command runs, and the settings it
brings.

``validate``, ``test`` and ``predict`` need ``--ckpt_path`` (a file, a shipped model's name, or
``untrained`` on purpose), except for predictors without weights (``trainable = False``:
``persistence``, ``extrapolation``), which ``fit`` refuses. A checkpoint is read without running
pickled code and fills in only the settings the command line leaves out: a model or size the
command line names is never replaced (``CheckpointError`` when the checkpoint holds another).
"""

from __future__ import annotations

import sys
from argparse import ArgumentError
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from predlearn.checkpoint_files import read_checkpoint
from predlearn.class_paths import class_or_none, constructor_defaults, plain, registry_name
from predlearn.errors import CheckpointError, OptionValueError
from predlearn.pretrained import list_pretrained, resolve_checkpoint
from predlearn.registry import MODELS

#: ``--ckpt_path=untrained``: validate, test or predict with the untrained (randomly
#: initialised) model, on purpose; without a --ckpt_path those commands refuse to run
UNTRAINED = "untrained"
#: ``--ckpt_path`` values Lightning resolves itself (within a fit: "best", "last")
LIGHTNING_CKPT_NAMES = ("best", "last", "hpc", "registry")
#: module arguments set from the data (``--data.horizon`` etc.) or from --optimizer and
#: --lr_scheduler, never from a checkpoint
LINKED_MODULE_ARGUMENTS = ("context_frames", "horizon", "test_horizon", "optimizer",
                           "lr_scheduler")
#: predictor arguments that change how it computes, not its weights, or that the data sets: the
#: command line may set them differently from the checkpoint's
RUNTIME_PREDICTOR_ARGUMENTS = ("checkpoint_steps", "channels_last", "frame_size",
                               "frame_channels")
def given_options(argv: Sequence[Any]) -> set[str]:
    """The option keys an argument list sets (``--model.predictor.init_args.kernel_size=3`` ->
    ``model.predictor.kernel_size``)."""
    return {arg[2:].split("=", 1)[0].replace(".init_args.", ".") for arg in argv
            if isinstance(arg, str) and arg.startswith("--")}


def take_checkpoint(config: Any, subcommand: str, parser: Any, given: set[str]) -> Any:
    """The parsed ``config`` of ``subcommand`` after its ``--ckpt_path`` is checked and resolved
    (a shipped model's name becomes its file) and the checkpoint's settings fill in what the
    command line leaves out."""
    options = config[subcommand]
    ckpt = options.get("ckpt_path")
    predictor = (options.get("model") or {}).get("predictor")
    cls = class_or_none(predictor.get("class_path")) if predictor is not None else None
    if cls is not None and not getattr(cls, "trainable", True):
        # a baseline without weights (persistence, optical-flow extrapolation)
        name = registry_name(MODELS, predictor) or cls.__name__
        if subcommand == "fit":
            raise OptionValueError(
                "--model", f"{name} has no weights to train; score it with `predlearn test "
                f"--model={name} --data=...` (no --ckpt_path)")
        if ckpt not in (None, UNTRAINED):
            raise OptionValueError(
                "--ckpt_path", f"{name} has no weights, so no checkpoint; leave --ckpt_path out")
        options["ckpt_path"] = None
        return config
    if ckpt == UNTRAINED:
        options["ckpt_path"] = None
        if subcommand != "fit":
            name = registry_name(MODELS, predictor) or "the model"
            print(f"predlearn: note: --ckpt_path={UNTRAINED}: {subcommand} runs {name} with "
                  "untrained, random weights", file=sys.stderr)
        return config
    if ckpt is None:
        if subcommand != "fit":
            shipped = ", ".join(list_pretrained())
            raise OptionValueError(
                "--ckpt_path", f"`predlearn {subcommand}` runs a trained model: pass "
                "--ckpt_path=<checkpoint file or shipped model name"
                + (f" ({shipped})" if shipped else "") + f">, or --ckpt_path={UNTRAINED} "
                "to run the untrained model on purpose")
        return config
    if ckpt in LIGHTNING_CKPT_NAMES:
        if subcommand != "fit" and ckpt in ("best", "last"):
            raise OptionValueError(
                "--ckpt_path", f"{ckpt!r} names a checkpoint of a fit in the same run; "
                f"`predlearn {subcommand}` needs the checkpoint file (e.g. "
                "<run folder>/checkpoints/last.ckpt) or a shipped model's name")
        return config
    path = resolve_checkpoint(str(ckpt))
    if not Path(path).is_file():
        shipped = ", ".join(list_pretrained()) or "none"
        raise CheckpointError(f"--ckpt_path: no checkpoint file {ckpt} (and no shipped model "
                              f"of that name; shipped: {shipped})")
    options["ckpt_path"] = path
    hparams = read_checkpoint(path, needs_predictor=predictor is None).get("hyper_parameters")
    hparams = dict(hparams) if isinstance(hparams, Mapping) else {}
    return _with_checkpoint_settings(config, subcommand, parser, given, hparams, path)


def _with_checkpoint_settings(config: Any, subcommand: str, parser: Any, given: set[str],
                              hparams: dict[str, Any], path: str) -> Any:
    """``config`` with the model's settings it leaves out taken from the checkpoint's
    ``hparams``; a predictor class or size that differs from one the command line names is a
    ``CheckpointError``."""
    from predlearn.module import PredictiveModule

    model = config[subcommand].get("model")
    for key in ("_instantiator", "_class_path", *LINKED_MODULE_ARGUMENTS):
        hparams.pop(key, None)
    saved = hparams.get("predictor")
    named = model.get("predictor") if model is not None else None
    if named is not None and isinstance(saved, Mapping):
        hparams["predictor"] = _same_predictor(named, saved, path, given)
    elif named is not None:
        hparams.pop("predictor", None)  # a checkpoint without a predictor config
    defaults = constructor_defaults(PredictiveModule)
    for key in list(hparams):
        if key != "predictor" and model is not None and key in model and (
                f"model.{key}" in given or plain(model.get(key)) != defaults.get(key, _UNSET)):
            del hparams[key]  # chosen on the command line (or its config): it stays
    try:
        return parser.parse_object({subcommand: {"model": hparams}}, config)
    except ArgumentError as error:
        from predlearn.cli_errors import condense

        raise CheckpointError(f"{path}: its settings do not fit this predlearn "
                              f"({condense(str(error))[1]})") from error


_UNSET = object()


def _model_name(path: str) -> str:
    """A predictor's registry name (or class path) for messages."""
    return registry_name(MODELS, path) or path


def _same_predictor(named: Any, saved: Mapping[str, Any], path: str,
                    given: set[str]) -> dict[str, Any]:
    """The checkpoint's predictor config ``saved``, after checking that it is the one the
    command line names (``named``): the same class, and the same value of every argument the
    command line sets (given, or not the default); the command line's computing-only arguments
    (``RUNTIME_PREDICTOR_ARGUMENTS``) are kept."""
    named_path, saved_path = str(named.get("class_path")), str(saved.get("class_path"))
    # One class has several paths (predlearn.zoo.PredRNN, predlearn.zoo.predrnn.PredRNN).
    named_class = class_or_none(named_path)
    if named_path != saved_path and (named_class is None
                                     or named_class is not class_or_none(saved_path)):
        raise CheckpointError(
            f"{path} holds a {_model_name(saved_path)} model, not the {_model_name(named_path)} "
            "named on the command line: leave out --model to use the checkpoint's model, or give "
            f"a checkpoint of {_model_name(named_path)}")
    named_args = plain(named.get("init_args")) or {}
    saved_args = dict(plain(saved.get("init_args")) or {})
    defaults = constructor_defaults(named_class) if named_class is not None else {}
    differ = []
    for key, value in named_args.items():
        chosen = f"model.predictor.{key}" in given or (
            key in defaults and value != defaults[key])
        if key in RUNTIME_PREDICTOR_ARGUMENTS:
            if chosen:
                saved_args[key] = value
        elif chosen and key in saved_args and value != saved_args[key]:
            differ.append(f"{key}={saved_args[key]} (command line: {value})")
    if differ:
        raise CheckpointError(
            f"{path} holds a {_model_name(saved_path)} with {', '.join(differ)}: leave those "
            "options out to use the checkpoint's, or give a checkpoint made with them")
    return {"class_path": saved_path, "init_args": saved_args}
