"""What every converter does to a source's tensors: rename them, put stacked gates in predlearn's
order, put patch channels in ``pixel_unshuffle``'s order, and fill the weights the source's
network does not have (a bias it leaves out) with the value that makes them do nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from predlearn.errors import CheckpointError
from predlearn.weight_import.sources import SourceWeights


@dataclass
class Target:
    """Where one source tensor goes: our name, and for a stacked convolution, for each of our
    chunks along ``dim`` the index of the source's chunk (None: as it is)."""

    name: str
    order: Sequence[int] | None = None
    dim: int = 0


#: a rule: the source's name -> our Target, or None for a tensor the source builds but never uses
Rule = Callable[[str], "Target | None"]


@dataclass
class Converted:
    """A converter's result: the predictor's constructor options, its state dict in our names,
    the frame counts the file records (None: not recorded), and the patterns (regular
    expressions) of our tensors the source's network does not have, which are set to zero
    (``completed``: biases it leaves out)."""

    options: dict[str, Any]
    state_dict: dict[str, Tensor]
    context_frames: int | None = None
    horizon: int | None = None
    zero: Sequence[str] = field(default_factory=tuple)


def reorder(value: Tensor, order: Sequence[int] | None, dim: int = 0) -> Tensor:
    """``value`` split into ``len(order)`` equal chunks along ``dim``, taken in ``order``."""
    if order is None:
        return value
    chunks = torch.chunk(value, len(order), dim=dim)
    return torch.cat([chunks[index] for index in order], dim=dim)


def renamed(weights: SourceWeights, rule: Rule, model: str) -> dict[str, Tensor]:
    """``weights.state`` under our names (``rule``); a source name the rule does not know is
    refused naming it (a file of another model, or of another version of the code)."""
    out: dict[str, Tensor] = {}
    for name, value in weights.state.items():
        try:
            target = rule(name)
        except (KeyError, IndexError, ValueError):
            target = _UNKNOWN
        if target is _UNKNOWN:
            raise CheckpointError(
                f"{weights.path}: {name!r} is not a weight of {weights.source}'s {model}; is "
                f"--model={model} the model this file was trained as?")
        if target is not None:
            out[target.name] = reorder(value, target.order, target.dim).detach().clone()
    return out


_UNKNOWN = Target("<unknown>")


def unknown() -> Target:
    """What a rule returns for a name it does not know."""
    return _UNKNOWN


def patch_order(patch_size: int, channels: int) -> list[int]:
    """For each channel of ``pixel_unshuffle`` (channel-major: c, py, px) the index of the same
    value in the source's patches (``reshape_patch`` of the authors and OpenSTL: py, px, c)."""
    p = patch_size
    return [(py * p + px) * channels + c
            for c in range(channels) for py in range(p) for px in range(p)]


def patched_input(value: Tensor, patch_size: int, channels: int) -> Tensor:
    """A convolution weight reading patched frames (dim 1), its input channels in our order."""
    return value[:, patch_order(patch_size, channels)] if patch_size > 1 and channels > 1 \
        else value


def patched_output(value: Tensor, patch_size: int, channels: int) -> Tensor:
    """A convolution weight or bias writing patched frames (dim 0), in our channel order."""
    return value[patch_order(patch_size, channels)] if patch_size > 1 and channels > 1 \
        else value


def completed(state: dict[str, Tensor], expected: Mapping[str, Tensor],
              zero: Iterable[str]) -> dict[str, Tensor]:
    """``state`` with the tensors of ``expected`` whose names match a pattern of ``zero``
    (regular expressions) and that the source does not have set to zeros: biases and peepholes
    the source's network leaves out, which then change nothing."""
    patterns = [re.compile(pattern) for pattern in zero]
    out = dict(state)
    for key, value in expected.items():
        if key not in out and any(pattern.fullmatch(key) for pattern in patterns):
            out[key] = torch.zeros_like(value, device="cpu")
    return out


def layer_index(name: str, prefix: str) -> int:
    """The layer number in ``prefix.<n>.rest``."""
    return int(name[len(prefix):].split(".", 1)[0])


def the_value(options: Mapping[str, Any], key: str, allowed: Sequence[Any], model: str,
              weights: SourceWeights) -> None:
    """Refuse a source setting predlearn's model does not have (e.g. a stride of 2)."""
    if key in options and options[key] not in allowed:
        raise CheckpointError(
            f"{weights.path}: {weights.source}'s {key}={options[key]!r}; predlearn's {model} "
            f"supports {', '.join(map(repr, allowed))} only")
