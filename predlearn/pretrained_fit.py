"""Which one changed constructor option makes a predictor's weights fit saved ones: the hint of
the one-line refusal of weights that do not fit their config (``predlearn.pretrained_folder``).

Candidates are built on the ``meta`` device (shapes only, no memory, no computation): each
integer option scaled by the ratio of a mismatched dimension (or its square root: patches), and
each list of integers scaled so, or made longer or shorter (layers)."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import torch

Shapes = Mapping[str, tuple[int, ...]]
#: at most this many candidate configs are built
MAX_TRIES = 64


def shapes_of(cls: type, init_args: Mapping[str, Any], ignore: Collection[str] = ()
              ) -> dict[str, tuple[int, ...]] | None:
    """The state dict's shapes of ``cls(**init_args)`` (keys in ``ignore`` left out), built on
    the meta device; None where it cannot be built so."""
    try:
        with torch.device("meta"):
            model = cls(**init_args)
        return {key: tuple(value.shape) for key, value in model.state_dict().items()
                if key not in ignore}
    except Exception:  # noqa: BLE001 -- any refusal or meta-unfriendly constructor: no hint
        return None


def fitting_option(cls: type, init_args: dict[str, Any], got: Shapes,
                   ignore: Collection[str] = ()) -> tuple[str, Any] | None:
    """(option, value) such that ``cls`` built with that one option changed has exactly the
    shapes ``got`` (keys in ``ignore`` left out); None when no candidate does."""
    expected = shapes_of(cls, init_args, ignore)
    if expected is None:
        return None
    ratios = _ratios(expected, got)
    for tries, (name, value) in enumerate(_candidates(init_args, ratios, got)):
        if tries >= MAX_TRIES:
            break
        if shapes_of(cls, {**init_args, name: value}, ignore) == dict(got):
            return name, value
    return None


def _ratios(expected: Shapes, got: Shapes) -> list[float]:
    """got / expected of every dimension that differs between the shapes both have."""
    found: list[float] = []
    for key in set(expected) & set(got):
        if len(expected[key]) == len(got[key]):
            found += [g / e for e, g in zip(expected[key], got[key]) if e != g and e > 0]
    return sorted(set(found))


def _candidates(init_args: Mapping[str, Any], ratios: list[float],
                got: Shapes) -> Iterator[tuple[str, Any]]:
    """Options changed one at a time, in the order of likelihood."""
    factors = [r for ratio in ratios for r in (ratio, math.sqrt(ratio))]
    for name, value in init_args.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            yield from ((name, v) for v in _scaled([value], factors))
        elif isinstance(value, list) and value and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            for scaled in _scaled(value, factors):
                yield name, scaled
            for length in _layer_counts(got):
                if length != len(value):
                    yield name, value[:length] + [value[-1]] * (length - len(value))


def _scaled(values: list[int], factors: list[float]) -> Iterator[Any]:
    """``values`` times each factor, where every product is a positive integer."""
    seen: set[tuple[int, ...]] = set()
    for factor in factors:
        products = [v * factor for v in values]
        if all(p >= 1 and abs(p - round(p)) < 1e-9 for p in products):
            out = tuple(round(p) for p in products)
            if out not in seen and list(out) != values:
                seen.add(out)
                yield out[0] if len(values) == 1 else list(out)


def _layer_counts(got: Shapes) -> list[int]:
    """Layer counts the keys suggest: one more than each numbered part's largest number."""
    counts: dict[str, int] = {}
    for key in got:
        parts = key.split(".")
        for i, part in enumerate(parts[1:], 1):
            if part.isdigit():
                prefix = ".".join(parts[:i])
                counts[prefix] = max(counts.get(prefix, 0), int(part) + 1)
    return sorted(set(counts.values()))
