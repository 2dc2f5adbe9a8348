"""The checks of ``predlearn export``: an exported graph against PyTorch, and a predictor's step
on flat tensors against its own step.

- ``Check``: runs a loaded graph on a random sample in the model's value range and compares it
  with the eager predictor: the forecast graph with ``predictor(frames, K)``, the step graph by
  streaming (the J observed frames one by one, then K - 1 steps fed its own prediction, as a
  service would run it) with the same ``predictor(frames, K)``. It keeps the largest absolute
  difference and refuses one beyond ``tolerance x max(1, largest |value| of PyTorch's
  forecast)``, so that the tolerance (default 1e-4) means the same on data in [0, 255].
- ``step_refusal``: why a recurrent predictor's step cannot become a graph of fixed inputs, from an
  eager run, before anything is exported: its state has a Python counter its step reads (MIM's
  first step, FC-LSTM's encoder/decoder switch), or grows at every step (E3D-LSTM's memory of
  past states).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.utils._pytree as pytree
from torch import Tensor

from predlearn.errors import OutputError
from predlearn.export_formats import Runner
from predlearn.export_graphs import StateLayout, StepGraph, stream
from predlearn.predictor import Predictor

#: the largest absolute difference accepted between an exported graph and PyTorch, on values of
#: order 1 (scaled by the largest |value| of the forecast where that is larger)
TOLERANCE = 1e-4
#: the seed of the check's samples (a fixed one: the same export checks the same numbers)
SEED = 0


def sample(shape: Sequence[int], value_range: tuple[float, float], seed: int = SEED) -> Tensor:
    """float32 frames of ``shape``, uniform in ``value_range``."""
    generator = torch.Generator().manual_seed(seed)
    low, high = value_range
    return low + (high - low) * torch.rand(*shape, generator=generator)


@dataclass
class Check:
    """Compares a graph with the eager ``predictor`` on samples of (J, C, H, W) ``frame``
    frames; ``differences`` keeps each sample's largest absolute difference."""

    predictor: Predictor
    context_frames: int
    horizon: int
    frame: tuple[int, int, int]
    value_range: tuple[float, float]
    tolerance: float = TOLERANCE
    differences: list[float] = field(default_factory=list)

    def frames(self, batch: int) -> Tensor:
        return sample((batch, self.context_frames, *self.frame), self.value_range, SEED + batch)

    def forecast(self, run: Runner, batch: int) -> None:
        """The forecast graph ``run`` on a sample of ``batch`` sequences."""
        frames = self.frames(batch)
        self._compare(run([frames])[0], self._expected(frames), "forecast")

    def step(self, layout: StateLayout) -> StepCheck:
        """The check of a step graph of state ``layout``."""
        return StepCheck(self, layout)

    def _expected(self, frames: Tensor) -> Tensor:
        with torch.no_grad():
            return self.predictor(frames, self.horizon)

    def _compare(self, got: Tensor, expected: Tensor, what: str) -> None:
        if tuple(got.shape) != tuple(expected.shape):
            raise OutputError(f"the exported {what} returns {list(got.shape)}, PyTorch "
                              f"{list(expected.shape)}; nothing written")
        difference = float((got.to(expected.dtype) - expected).abs().max())
        self.differences.append(difference)
        allowed = self.tolerance * max(1.0, float(expected.abs().max()))
        if not difference <= allowed:  # NaN fails too
            raise OutputError(
                f"the exported {what} differs from PyTorch by {difference:.3g} (allowed "
                f"{allowed:.3g}: --tolerance={self.tolerance:g} x max(1, largest |value|)); "
                "nothing written")

    @property
    def largest(self) -> float:
        """The largest difference over the samples checked."""
        return max(self.differences, default=float("nan"))


@dataclass
class StepCheck:
    """``Check`` of a step graph: streams ``predictor(frames, K)`` through it."""

    check: Check
    layout: StateLayout

    def __call__(self, run: Runner, batch: int) -> None:
        check = self.check
        frames = check.frames(batch)

        def step(frame: Tensor, *state: Tensor) -> list[Tensor]:
            return run([frame, *state])

        got = stream(step, frames, check.horizon, self.layout.initial(frames))
        check._compare(got, check._expected(frames), "step, streamed,")


def step_refusal(predictor: Predictor, layout: StateLayout, frames: Tensor,
                 horizon: int) -> str | None:
    """Why the step on flat state tensors (``StepGraph``) would not be the predictor's own step
    over J observed ``frames`` and ``horizon`` fed-back steps; None where it is, exactly."""
    graph = StepGraph(predictor, layout)
    own = predictor.initial_state(frames)
    tensors = layout.initial(frames)
    prediction: Tensor | None = None
    with torch.no_grad():
        for t in range(frames.shape[1] + horizon - 1):
            frame = frames[:, t] if t < frames.shape[1] or prediction is None else prediction
            own_prediction, own = predictor.transition(predictor.encode(frame), own, True)
            if own_prediction is None:
                return _counter_refusal(layout, own) or (
                    "its step predicts nothing at some steps, so no step graph returns a frame")
            try:
                prediction, *tensors = graph(frame, *tensors)
                own_tensors = layout.flat(own)
            except ValueError as error:
                return str(error)
            same = torch.equal(prediction, own_prediction) and all(
                torch.equal(a, b) for a, b in zip(tensors, own_tensors, strict=True))
            if same:
                continue
            reason = _counter_refusal(layout, own)
            if reason:
                return reason
            added = layout.added(own)
            if added:
                return (f"its state grows at every step ({', '.join(added)}), so no graph of "
                        "fixed inputs carries it")
            difference = float((prediction - own_prediction).abs().max())
            return ("its step on flat state tensors is not its own step (largest difference "
                    f"{difference:.3g})")
    return None


def _counter_refusal(layout: StateLayout, own: object) -> str | None:
    """The refusal for plain values of the state the step changes (counters), if it has any."""
    changed = [name for name, path, value in layout.constants
               if _value_at(own, path) != value]
    if not changed:
        return None
    return (f"its step reads the Python number{'s' if len(changed) > 1 else ''} "
            f"{', '.join(changed)} of its state, which a graph would fix at its first value")


def _value_at(state: object, path: pytree.KeyPath) -> object:
    try:
        return pytree.key_get(state, path)
    except (KeyError, IndexError, AttributeError, TypeError):
        return None


__all__ = ["SEED", "TOLERANCE", "Check", "StepCheck", "sample", "step_refusal"]
