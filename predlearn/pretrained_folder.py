"""Pretrained folders, hub style: a predictor as ``config.json``, ``model.safetensors`` and a
model card ``README.md``, which load without running any pickled code.

    >>> import predlearn
    >>> predlearn.save_pretrained(module, "my-predrnn")    # a PredictiveModule, Predictor or .ckpt
    >>> predictor = predlearn.from_pretrained("my-predrnn")  # or a shipped name: "predrnn-mmnist2"
    >>> predictions = predictor(frames, 10)                 # (B, J, C, H, W) -> (B, 10, C, H, W)

- ``config.json``: the predictor's class path and constructor options (``Predictor.config``),
  the frame counts (``context_frames``, ``horizon``), the data's normalisation where known
  (own data: its ``value_scale``, as a checkpoint keeps it for ``restore_data_state``), the
  module's recipe, the training facts (step, test scores, wall time, machine, config) and
  predlearn's version.
- ``model.safetensors``: the predictor's weights (``safetensors.torch``), plain tensors with a
  JSON header: loading it runs no code, unlike a pickled checkpoint.
- ``README.md``: the model card (data, recipe, steps, test scores and the command behind them).

Loading builds the predictor from ``config.json`` only when its class is a registered model
(``predlearn list``, plugins included) or a ``predlearn.`` class: a folder never makes predlearn
import anything else. Weights that do not fit the config are refused in one line naming the key
and, where one changed option fits them, that option.

``--ckpt_path=<folder or shipped name>`` (``predlearn.pretrained.resolve_checkpoint``): Lightning
restores models from checkpoint files, so the folder is turned into one (``checkpoint_of``):
weights from the safetensors file, settings from config.json, written once into predlearn's
cache (``$PREDLEARN_CACHE``, else ``$XDG_CACHE_HOME/predlearn`` or ``~/.cache/predlearn``) under a
name made of the two files' SHA-256, so a changed folder gets a new file and an unchanged one is
not written again. The file holds tensors and plain values only (read with ``weights_only``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from predlearn.class_paths import import_class, plain
from predlearn.errors import CheckpointError, OutputError, PredlearnError
from predlearn.predictor import Predictor

CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
#: the folder of the models shipped inside the package (``predlearn.pretrained``)
SHIPPED_DIR = Path(__file__).parent / "weights"
#: the layout of config.json this predlearn writes and reads
FORMAT = "predlearn-pretrained/1"
#: module settings a pretrained folder does not keep (the running command's, not the model's)
_NOT_KEPT = ("predictor", "context_frames", "horizon", "test_horizon", "compile",
             "compile_backend")
#: the training facts a checkpoint's ``predlearn`` entry holds that config.json keeps
_TRAINING_KEYS = ("step", "test_scores", "test_curves", "test_command", "wall_time", "machine",
                  "config", "command", "seed", "data")


def save_pretrained(model: Any, folder: str | os.PathLike, card: str | None = None,
                    **training: Any) -> Path:
    """Write ``model`` (a ``PredictiveModule``, a ``Predictor`` or a checkpoint file) as a
    pretrained folder; returns the folder. ``card``: the model card's Markdown (default: one
    written from the config); ``training``: facts for config.json and the card (``test_scores``,
    ``test_command``, ``wall_time``, ...; ``context_frames``/``horizon`` for a bare predictor).
    Each file is written atomically; an existing folder's files are replaced."""
    from safetensors.torch import save_file

    from predlearn.files import sha256_of, written_atomically

    predictor, config = _described(model, training)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file; give a folder for the pretrained model")
    # clones: no two names share memory (safetensors refuses tied tensors), all contiguous
    tensors = {key: value.detach().to("cpu").contiguous().clone()
               for key, value in predictor.state_dict().items()}
    with written_atomically(folder / WEIGHTS_FILE) as part:
        save_file(tensors, str(part), metadata={"format": "pt", "predlearn": config["predlearn"]})
        part.chmod(0o644)  # safetensors creates it private; the other files are not
        config["weights_sha256"] = sha256_of(part)  # checked on every load (_load_weights)
    with written_atomically(folder / CONFIG_FILE) as part:
        part.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if card is None:
        from predlearn.pretrained_card import write_card

        card = write_card(folder.name, config)
    with written_atomically(folder / CARD_FILE) as part:
        part.write_text(card, encoding="utf-8")
    return folder


def from_pretrained(folder_or_name: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> Predictor:
    """The predictor of a pretrained folder (or of a shipped model's name), in eval mode:
    ``predictor(frames, horizon)``. Reads config.json and the safetensors weights only."""
    folder = pretrained_folder(folder_or_name)
    config = read_config(folder)
    predictor = _built(config, folder / CONFIG_FILE)
    _load_weights(predictor, folder, config)
    return predictor.to(map_location).eval()


def pretrained_folder(folder_or_name: str | os.PathLike) -> Path:
    """The folder ``folder_or_name`` names: a folder with a config.json, or a shipped model's.
    A checkpoint file is refused with the way to make a folder of it."""
    path = Path(folder_or_name)
    if (path / CONFIG_FILE).is_file():
        return path
    if path.is_file():
        raise CheckpointError(
            f"{path} is a file, not a pretrained folder; make one with "
            f"`predlearn.save_pretrained({str(path)!r}, FOLDER)` (it reads the checkpoint "
            "without running pickled code)")
    if path.is_dir():
        raise CheckpointError(f"{path}: no {CONFIG_FILE}, so not a pretrained folder; write one "
                              "with predlearn.save_pretrained(model, folder)")
    shipped = SHIPPED_DIR / str(folder_or_name)
    if "/" not in str(folder_or_name) and (shipped / CONFIG_FILE).is_file():
        return shipped
    from predlearn.pretrained_hub import hub_folder, is_hub_id

    if is_hub_id(str(folder_or_name)):
        return hub_folder(str(folder_or_name))
    known = ", ".join(shipped_names()) or "none"
    raise CheckpointError(f"{folder_or_name}: no such pretrained folder, and no shipped model of "
                          f"that name (shipped: {known})")


def shipped_names() -> list[str]:
    """The names of the pretrained folders shipped inside the package."""
    return sorted(path.parent.name for path in SHIPPED_DIR.glob(f"*/{CONFIG_FILE}"))


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """A pretrained folder's config.json, checked to be one (its format and a predictor)."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable JSON file ({error})") from error
    predictor = config.get("predictor") if isinstance(config, dict) else None
    if not isinstance(predictor, dict) or not isinstance(predictor.get("class_path"), str):
        raise CheckpointError(f"{path}: not a predlearn pretrained config (no predictor with a "
                              "class_path); write it with predlearn.save_pretrained")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {config.get('format')!r}, not {FORMAT!r}; write "
                              "it again with this predlearn's save_pretrained")
    return config


def predictor_class(class_path: str, source: str | os.PathLike) -> type[Predictor]:
    """The predictor class a config names, imported only when it is a registered model's path
    or a ``predlearn.`` path: a config never makes predlearn import other code."""
    from predlearn.registry import MODELS

    registered = {MODELS.path_of(name) for name in MODELS.names()}
    if class_path not in registered and not class_path.startswith("predlearn."):
        raise CheckpointError(
            f"{source}: predictor {class_path!r} is neither a registered model nor a predlearn "
            "class, so predlearn does not import it; register it as a plugin (`predlearn list` "
            "shows the registered models)")
    try:
        cls = import_class(class_path)
    except ValueError as error:
        raise CheckpointError(f"{source}: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, Predictor)):
        raise CheckpointError(f"{source}: {class_path!r} is not a predlearn Predictor")
    return cls


def checkpoint_contents(folder_or_name: str | os.PathLike) -> dict[str, Any]:
    """A pretrained folder as the contents of a predlearn checkpoint (weights under
    ``predictor.``, the module's settings, the data's state under its data module's name), for
    ``PredictiveModule.load_from_checkpoint`` and Lightning's ``ckpt_path``."""
    import lightning

    folder = pretrained_folder(folder_or_name)
    config = read_config(folder)
    predictor = _built(config, folder / CONFIG_FILE)
    _load_weights(predictor, folder, config)
    frames = config.get("frames") or {}
    hparams = {**(config.get("module") or {}), "predictor": config["predictor"],
               **{key: frames[key] for key in ("context_frames", "horizon", "test_horizon")
                  if frames.get(key) is not None}}
    contents: dict[str, Any] = {
        "state_dict": {f"predictor.{key}": value for key, value in predictor.state_dict().items()},
        "hyper_parameters": hparams, "hparams_name": "kwargs",
        "pytorch-lightning_version": lightning.__version__,
        "predlearn": dict(config.get("training") or {})}
    data = config.get("data") or {}
    if data.get("datamodule") and data.get("value_scale"):
        contents[data["datamodule"]] = {"value_scale": data["value_scale"],
                                        "channel_names": data.get("channel_names") or []}
    return contents


def checkpoint_of(folder_or_name: str | os.PathLike) -> Path:
    """A checkpoint file of a pretrained folder in predlearn's cache (see the module's
    docstring), for ``--ckpt_path``; written once per content of the folder."""
    from predlearn.files import sha256_of, written_atomically

    folder = pretrained_folder(folder_or_name)
    digest = sha256_of(folder / CONFIG_FILE, folder / WEIGHTS_FILE)
    path = cache_dir() / "pretrained" / f"{folder.resolve().name}-{digest[:16]}.ckpt"
    if not path.is_file():
        with written_atomically(path) as part:
            torch.save(checkpoint_contents(folder), part)
    return path


def cache_dir() -> Path:
    """predlearn's cache folder: ``$PREDLEARN_CACHE``, else ``$XDG_CACHE_HOME/predlearn``, else
    ``~/.cache/predlearn``."""
    if os.environ.get("PREDLEARN_CACHE"):
        return Path(os.environ["PREDLEARN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "predlearn"


def load_module(folder_or_name: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """A pretrained folder as a ``PredictiveModule`` in eval mode (what ``load_pretrained``
    returns), through an in-memory checkpoint: no file written."""
    from predlearn.module import PredictiveModule

    buffer = io.BytesIO()
    torch.save(checkpoint_contents(folder_or_name), buffer)
    buffer.seek(0)
    return PredictiveModule.load_from_checkpoint(buffer, map_location=map_location).eval()


# -- what save_pretrained writes -------------------------------------------------------------


def _described(model: Any, given: dict[str, Any]) -> tuple[Predictor, dict[str, Any]]:
    """``model``'s predictor and the config.json that describes it, with ``given`` facts."""
    from predlearn import __version__

    module, checkpoint = None, None
    if isinstance(model, (str, os.PathLike)):
        checkpoint = _checkpoint_of_file(model)
        predictor = _predictor_of_checkpoint(checkpoint, model)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
    elif isinstance(model, Predictor):
        predictor, hparams = model, {}
    elif isinstance(getattr(model, "predictor", None), Predictor):
        module, predictor = model, model.predictor
        hparams = plain(dict(model.hparams))
    else:
        raise TypeError(f"save_pretrained takes a PredictiveModule, a Predictor or a checkpoint "
                        f"file; got {type(model).__name__}")
    if predictor.config is None:
        raise CheckpointError(f"{type(predictor).__name__} has no config (no __init__ of its "
                              "own), so a folder could not rebuild it")
    training = dict((checkpoint or {}).get("predlearn") or {})
    training = {key: training[key] for key in _TRAINING_KEYS if key in training}
    if module is not None and module.trained_steps:
        training.setdefault("step", module.trained_steps)
    frames = {key: given.pop(key, hparams.get(key, getattr(predictor, key, None)))
              for key in ("context_frames", "horizon", "test_horizon")}
    data = given.pop("data_state", None) or _data_state(module, checkpoint)
    if module is not None:
        data.setdefault("value_bounds", plain(module.value_bounds))
    training.update(given)
    config = {"format": FORMAT, "predlearn": __version__,
              "model": _registry_name(predictor), "predictor": plain(predictor.config),
              "frames": frames, "data": data,
              "module": {key: value for key, value in hparams.items()
                         if key not in _NOT_KEPT and not key.startswith("_")},
              "training": training}
    try:
        json.dumps(config)
    except TypeError as error:
        raise CheckpointError(f"the model's settings do not fit in {CONFIG_FILE} ({error}); "
                              "give plain values (numbers, strings, lists, dicts)") from error
    return predictor, config


def _checkpoint_of_file(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint file's contents, read without running pickled code."""
    from predlearn.checkpoint_files import read_checkpoint

    return read_checkpoint(path)


def _predictor_of_checkpoint(checkpoint: Mapping[str, Any], path: Any) -> Predictor:
    """The predictor a checkpoint holds, its class checked like a folder's."""
    config = checkpoint["hyper_parameters"]["predictor"]
    predictor = _built(plain(config), path)
    weights = {key[len("predictor."):]: value for key, value in checkpoint["state_dict"].items()
               if key.startswith("predictor.")}
    _check_fit(predictor, weights, plain(config), path)
    predictor.load_state_dict(weights)
    return predictor


def _data_state(module: Any, checkpoint: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data's normalisation (own data: ``value_scale``, ``channel_names``) and the name of
    its data module, from a checkpoint or a module's trainer; {} where there is none."""
    states: dict[str, Any] = {}
    if checkpoint is not None:
        states = {key: value for key, value in checkpoint.items()
                  if isinstance(value, Mapping) and "value_scale" in value}
    elif module is not None:
        datamodule = getattr(getattr(module, "_trainer", None), "datamodule", None)
        state = datamodule.state_dict() if datamodule is not None else None
        if isinstance(state, Mapping) and "value_scale" in state:
            states = {type(datamodule).__qualname__: state}
    for name, state in states.items():
        return {"datamodule": name, "value_scale": plain(state["value_scale"]),
                "channel_names": plain(state.get("channel_names") or [])}
    return {}


def _registry_name(predictor: Predictor) -> str | None:
    from predlearn.registry import MODELS

    return MODELS.name_of(type(predictor))


# -- what from_pretrained reads ----------------------------------------------------------------


def _built(config: Mapping[str, Any], source: Any) -> Predictor:
    """The predictor of a ``predictor`` config entry, its class checked (``predictor_class``)."""
    predictor_config = config.get("predictor", config)
    cls = predictor_class(str(predictor_config.get("class_path")), source)
    try:
        return cls(**dict(predictor_config.get("init_args") or {}))
    except (PredlearnError, TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: its predictor options are refused "
                              f"({str(error).splitlines()[0]})") from error


def _load_weights(predictor: Predictor, folder: Path, config: Mapping[str, Any]) -> None:
    """``folder``'s safetensors weights into ``predictor``, after checking that they fit."""
    import safetensors
    from safetensors.torch import load_file

    # the error of damaged files (SafetensorError in safetensors 0.4 to 0.8)
    unreadable = (getattr(safetensors, "SafetensorError", OSError), OSError, ValueError)

    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a pretrained folder keeps its weights there")
    expected = config.get("weights_sha256")
    if expected is not None:
        from predlearn.errors import ChecksumError
        from predlearn.files import sha256_of

        found = sha256_of(path)
        if found != expected:
            raise ChecksumError(f"{path}: SHA-256 {found[:16]}..., but {CONFIG_FILE} records "
                                f"{expected[:16]}...: the weights were changed or damaged "
                                "after they were saved; download or save them again")
    try:
        weights = load_file(str(path))
    except unreadable as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    _check_fit(predictor, weights, config["predictor"], path)
    predictor.load_state_dict(weights)


def _check_fit(predictor: Predictor, weights: Mapping[str, torch.Tensor],
               config: Mapping[str, Any], source: Any, optional: Collection[str] = ()) -> None:
    """Refuse ``weights`` that do not fit ``predictor`` in one line: the first missing,
    unexpected or misshapen key, and the option value that would fit them where one does.
    ``optional``: keys of the predictor the weights may lack (and that are then not compared)."""
    from predlearn.pretrained_fit import fitting_option

    expected = {key: tuple(value.shape) for key, value in predictor.state_dict().items()
                if key not in optional}
    got = {key: tuple(value.shape) for key, value in weights.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if not (missing or unexpected or misshapen):
        return
    if misshapen:
        key = misshapen[0]
        what = f"{key!r} is {list(got[key])} in the weights, {list(expected[key])} in the model"
    elif missing:
        what = f"missing key {missing[0]!r}" + (f" (and {len(missing) - 1} more)"
                                                 if len(missing) > 1 else "")
    else:
        what = f"unexpected key {unexpected[0]!r}" + (f" (and {len(unexpected) - 1} more)"
                                                       if len(unexpected) > 1 else "")
    fit = fitting_option(type(predictor), dict(config.get("init_args") or {}), got, optional)
    value = json.dumps(fit[1], separators=(",", ":")) if fit else ""
    hint = (f"; the weights fit --model.predictor.{fit[0]}={value}" if fit
            else "; give the config these weights were saved with")
    raise CheckpointError(f"{source}: the weights do not fit the predictor "
                          f"{config.get('class_path')}: {what}{hint}")


__all__ = ["CARD_FILE", "CONFIG_FILE", "WEIGHTS_FILE", "cache_dir", "checkpoint_contents",
           "checkpoint_of", "from_pretrained", "load_module", "predictor_class",
           "pretrained_folder", "read_config", "save_pretrained"]
