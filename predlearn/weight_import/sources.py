"""A source's checkpoint file as plain tensors and settings, read without running pickled code.

- predrnn-pytorch (the authors' code, ``core/models/model_factory.py``): ``torch.save`` of
  ``{"net_param": network.state_dict()}`` in ``model.ckpt-<iteration>`` files. The
  hyper-parameters live in the shell scripts, not the file.
- OpenSTL: its Lightning checkpoints (``best.ckpt``, ``last.ckpt``): ``state_dict`` with the
  network under ``model.`` and ``hyper_parameters`` (the run's config: ``num_hidden``,
  ``filter_size``, ``patch_size``, ``in_shape``, ...); and its released ``.pth`` files, either the
  same dictionary without the optimizer (``tools/model_converters/publish_model.py``) or a plain
  ``state_dict`` of the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from predlearn.errors import CheckpointError

SOURCES = ("predrnn-pytorch", "openstl")


@dataclass
class SourceWeights:
    """One source file: its network's tensors under the source's names (OpenSTL's ``model.``
    prefix removed) and the hyper-parameters it holds ({} where it holds none)."""

    path: Path
    source: str
    state: dict[str, Tensor]
    hparams: dict[str, Any] = field(default_factory=dict)


#: dict subclasses that Lightning versions pickle into ``hyper_parameters`` (AttributeDict),
#: read as plain dicts: no code of theirs runs, nothing of theirs needs to be installed
_PLAIN_DICTS = [(dict, name) for name in (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict")]


def load_plain(path: Path) -> Any:
    """``path`` loaded with ``weights_only``, Lightning's AttributeDict read as a dict
    (``predlearn.checkpoint_files.load_plain_values``: one line when it cannot be)."""
    from predlearn.checkpoint_files import load_plain_values

    return load_plain_values(path, "save the network's state_dict alone "
                             "(torch.save(model.state_dict(), PATH)) and import that",
                             allowed=_PLAIN_DICTS)


def read_source(path: str | Path, source: str) -> SourceWeights:
    """The tensors and hyper-parameters of ``path``, a checkpoint of ``source``."""
    path = Path(path)
    contents = load_plain(path)
    if not isinstance(contents, Mapping):
        raise CheckpointError(f"{path}: holds a {type(contents).__name__}, not a checkpoint's "
                              "dictionary")
    if source == "predrnn-pytorch":
        state = contents.get("net_param")
        if not isinstance(state, Mapping):
            hint = (" (it looks like an OpenSTL checkpoint: --from=openstl)"
                    if "state_dict" in contents else "")
            raise CheckpointError(f"{path}: no 'net_param' entry, so not a predrnn-pytorch "
                                  f"checkpoint (model.ckpt-<iteration>){hint}")
        return SourceWeights(path, source, _tensors(state, path))
    if source == "openstl":
        if "net_param" in contents:
            raise CheckpointError(f"{path}: a predrnn-pytorch checkpoint ('net_param'), not an "
                                  "OpenSTL one: --from=predrnn-pytorch")
        state = contents.get("state_dict", contents)
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: its 'state_dict' is not a dictionary of tensors")
        state = _tensors(state, path)
        if state and all(key.startswith("model.") for key in state):
            state = {key[len("model."):]: value for key, value in state.items()}
        hparams = contents.get("hyper_parameters") if "state_dict" in contents else None
        return SourceWeights(path, source, state, dict(hparams or {}))
    raise CheckpointError(f"unknown source {source!r}; sources: {', '.join(SOURCES)}")


def _tensors(state: Mapping[Any, Any], path: Path) -> dict[str, Tensor]:
    """``state`` checked to map names to tensors."""
    bad = [key for key, value in state.items() if not isinstance(value, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entry {bad[0]!r} of its state_dict is not a tensor")
    if not state:
        raise CheckpointError(f"{path}: its state_dict is empty")
    return {str(key): value for key, value in state.items()}
