"""The modules that ``predlearn export`` turns into graphs, and the step's state layout.

- ``ForecastGraph``: the whole closed loop, ``frames`` (B, J, C, H, W) -> ``forecast``
  (B, K, C, H, W), K fixed at export (the loop over the steps is unrolled into the graph).
- ``StepGraph``: one step of a recurrent predictor (one that runs the shared rollout,
  ``Predictor.initial_state``/``transition``): ``frame`` (B, C, H, W) and the state tensors in,
  ``prediction`` (the next frame) and the new state tensors, in the same order, out.

A graph takes and returns flat tensors, while a predictor's state is a nested structure (dicts of
lists of tensors, None where a layer has no such state). ``StateLayout`` flattens it with
``torch.utils._pytree`` (None entries vanish) and names each tensor by its place,
``state.h.0``; it also records what each tensor starts as, so that a service can allocate it:
``zeros``, or ``first_frame`` (the first observed frame: CDNA's static background). Entries the
step adds to the state that the initial state does not have (PredRNN v2's decoupling terms, a
training loss) are left out of the step's outputs; plain Python values of the state (a step
counter) are fixed in the graph at their initial value. Whether the step then still reproduces
the forecast is what ``StateLayout.refusal`` tells from an eager run (``stream``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from predlearn.predictor import Predictor

#: what a state tensor starts as: all zeros, or a copy of the first observed frame
INITIAL_VALUES = ("zeros", "first_frame")


class ForecastGraph(nn.Module):
    """``predictor(frames, horizon)`` with the horizon fixed: the graph's one input and output."""

    def __init__(self, predictor: Predictor, horizon: int) -> None:
        super().__init__()
        self.predictor, self.horizon = predictor, horizon

    def forward(self, frames: Tensor) -> Tensor:
        return self.predictor(frames, self.horizon)


@dataclass(frozen=True)
class StateSlot:
    """One tensor of the step's state: its input name (the output is ``new_`` + it), its place
    in the predictor's state, its shape after the batch dimension, and its initial value."""

    name: str
    path: pytree.KeyPath
    shape: tuple[int, ...]
    dtype: str
    initial: str

    def describe(self) -> dict[str, Any]:
        """The slot as plain values (the ONNX metadata and the .pt2's ``predlearn.json``)."""
        return {"name": self.name, "output": output_name(self.name),
                "shape": ["batch", *self.shape], "dtype": self.dtype, "initial": self.initial}


def output_name(state_name: str) -> str:
    """The output of the step that carries the new value of the state input ``state_name``
    (ONNX wants every name in a graph once, so the output cannot share the input's)."""
    return f"new_{state_name}"


def slot_name(path: pytree.KeyPath) -> str:
    """``state.h.0`` for the key path ``['h'][0]``."""
    parts = []
    for key in path:
        if isinstance(key, pytree.MappingKey):
            parts.append(str(key.key))
        elif isinstance(key, pytree.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, pytree.GetAttrKey):
            parts.append(key.name)
        else:
            parts.append(str(key))
    return ".".join(["state", *parts])


@dataclass
class StateLayout:
    """A predictor's state as the step graph carries it: the tensors (``slots``, in order), and
    the rest of the initial state's structure, fixed (``spec`` and the plain ``constants``)."""

    spec: pytree.TreeSpec
    leaves: list[Any]
    slots: list[StateSlot]
    #: the state's plain Python values (name, place, initial value), fixed in the graph
    constants: list[tuple[str, pytree.KeyPath, Any]]

    @classmethod
    def of(cls, predictor: Predictor, frames: Tensor) -> StateLayout:
        """The layout of ``predictor.initial_state(frames)``. Raises ValueError when a tensor
        is neither zeros nor the first observed frame, or is not batch-first."""
        state = predictor.initial_state(frames)
        with_paths, spec = pytree.tree_flatten_with_path(state)
        slots: list[StateSlot] = []
        constants: list[tuple[str, pytree.KeyPath, Any]] = []
        leaves: list[Any] = []
        for path, leaf in with_paths:
            leaves.append(leaf)
            if not isinstance(leaf, Tensor):
                if leaf is not None:  # None: a layer without such a state, nothing to carry
                    constants.append((slot_name(path), path, leaf))
                continue
            name = slot_name(path)
            if leaf.ndim == 0 or leaf.shape[0] != frames.shape[0]:
                raise ValueError(f"its state tensor {name} {list(leaf.shape)} does not have the "
                                 "batch first, so no service could allocate it per batch")
            slots.append(StateSlot(name, path, tuple(leaf.shape[1:]),
                                   str(leaf.dtype).removeprefix("torch."), _initial(leaf, frames)
                                   or _refuse_initial(name)))
        return cls(spec, leaves, slots, constants)

    @property
    def names(self) -> list[str]:
        """The state inputs' names, in order."""
        return [slot.name for slot in self.slots]

    def initial(self, frames: Tensor) -> list[Tensor]:
        """The state tensors before the first of the observed ``frames`` (B, J, C, H, W)."""
        batch = frames.shape[0]
        return [frames[:, 0].clone() if slot.initial == "first_frame"
                else frames.new_zeros(batch, *slot.shape) for slot in self.slots]

    def state(self, tensors: Sequence[Tensor]) -> Any:
        """The predictor's state of the flat ``tensors`` (the constants as they started)."""
        leaves = list(self.leaves)
        positions = [i for i, leaf in enumerate(self.leaves) if isinstance(leaf, Tensor)]
        for position, tensor in zip(positions, tensors, strict=True):
            leaves[position] = tensor
        return pytree.tree_unflatten(leaves, self.spec)

    def flat(self, state: Any) -> list[Tensor]:
        """The tensors of ``state`` (a state the step returned) at the slots' places; entries the
        step added are left out. Raises ValueError when a slot is missing or not a tensor."""
        tensors = []
        for slot in self.slots:
            try:
                value = pytree.key_get(state, slot.path)
            except (KeyError, IndexError, AttributeError, TypeError):
                value = None
            if isinstance(value, Tensor):
                tensors.append(value)
                continue
            raise ValueError(f"its step returns no tensor at {slot.name}, where its state "
                             "started with one")
        return tensors

    def added(self, state: Any) -> list[str]:
        """The top-level entries of ``state`` (a state the step returned) that hold more
        tensors or values than the initial state had there: what the step adds at every step
        (PredRNN v2's decoupling terms, E3D-LSTM's growing memory of past states)."""
        before = _counts(pytree.tree_unflatten(self.leaves, self.spec))
        after = _counts(state)
        return sorted(key for key, count in after.items() if count > before.get(key, 0))

    def describe(self) -> list[dict[str, Any]]:
        """Every slot as plain values, in order."""
        return [slot.describe() for slot in self.slots]


def _counts(state: Any) -> Counter[str]:
    """How many leaves each top-level entry of ``state`` holds."""
    return Counter(slot_name(path[:1]).removeprefix("state.")
                   for path, _ in pytree.tree_flatten_with_path(state)[0])


def _initial(leaf: Tensor, frames: Tensor) -> str | None:
    """``zeros`` or ``first_frame`` when ``leaf`` is one of them for these random frames."""
    if not bool(leaf.any()):
        return "zeros"
    first = frames[:, 0]
    if leaf.shape == first.shape and torch.equal(leaf, first):
        return "first_frame"
    return None


def _refuse_initial(name: str) -> str:
    raise ValueError(f"its initial state {name} is computed from the observed frames (neither "
                     "zeros nor the first frame), so the step graph cannot start without it")


class StepGraph(nn.Module):
    """One step, ``(frame, *state) -> (prediction, *new_state)``, on flat tensors (``layout``)."""

    def __init__(self, predictor: Predictor, layout: StateLayout) -> None:
        super().__init__()
        self.predictor, self.layout = predictor, layout

    def forward(self, frame: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        prediction, new_state = self.predictor.transition(
            self.predictor.encode(frame), self.layout.state(state), True)
        if prediction is None:
            raise ValueError("its step predicts nothing for this input")
        return (prediction, *self.layout.flat(new_state))


#: one step on flat tensors: (frame, *state) -> (prediction, *new_state)
StepFunction = Callable[..., Sequence[Tensor]]


def stream(step: StepFunction, frames: Tensor, horizon: int, state: list[Tensor]) -> Tensor:
    """What a streaming service computes: the step on each of the J observed ``frames``, then
    ``horizon - 1`` steps fed its own prediction; returns the ``horizon`` predictions (B, K, ...)
    made from the last observed frame on, i.e. ``predictor(frames, horizon)``'s."""
    outputs: list[Tensor] = []
    for t in range(frames.shape[1] + horizon - 1):
        frame = frames[:, t] if t < frames.shape[1] else outputs[-1]
        prediction, *state = step(frame, *state)
        if t >= frames.shape[1] - 1:
            outputs.append(prediction)
    return torch.stack(outputs, dim=1)


__all__ = ["INITIAL_VALUES", "ForecastGraph", "StateLayout", "StateSlot", "StepGraph",
           "output_name", "slot_name", "stream"]
