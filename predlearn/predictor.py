"""The interface every registered predictor implements."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from predlearn.class_paths import class_path, from_config, plain
from predlearn.errors import BadFileError, OptionValueError, names_options_under, require


class Rollout(NamedTuple):
    """What one unrolled pass produced.

    ``outputs``: the frames predicted at every step, (B, T, C, H, W). With ``every_frame`` T is
    J - 1 + K: the predictions of frames 2 .. J + K (one per input frame); otherwise T = K, the
    predictions of frames J + 1 .. J + K. ``auxiliary_loss``: a training term the predictor adds
    to the loss (e.g. PredRNN v2's decoupling loss), or None.
    """

    outputs: Tensor
    auxiliary_loss: Tensor | None = None


class Predictor(nn.Module):
    """Maps J observed frames to K predicted frames (docs/models.md#the-predictor-interface).

    ``forward(frames, horizon, targets=None, teacher_mask=None)``: ``frames`` is (B, J, C, H, W);
    the result is (B, K, C, H, W) with K = ``horizon``. After the J observed frames the predictor
    feeds back its own predictions (closed loop, paper §1.2: "we predict sequence from sequence").
    Only where ``teacher_mask[b, k]`` is true does it feed the ground truth ``targets[b, k]``
    instead of its own k-th prediction (scheduled sampling, an extension; shape (B, K - 1)).

    The loop is written once, in ``rollout``. A predictor gives its pieces:

    - ``initial_state(frames)``: the recurrent state before the first frame (it sees the observed
      frames, e.g. to keep the first one as a background);
    - ``transition(inputs, state, predict) -> (next_frame, state)``: one time step on one
      (encoded) input frame, returning its prediction of the next frame and the new state. When
      ``predict`` is false the caller does not need the prediction (a step on an observed frame
      whose output no loss uses): the predictor may return None and skip its output layers;
    - optionally ``encode(frames)``: a per-frame encoder applied to every input before
      ``transition`` ((N, C, H, W) -> anything with N first; the observed frames are encoded in
      one batch), and ``auxiliary_loss(state)``: a training term computed from the final state.

    A predictor may instead override ``forward`` alone; then only closed-loop prediction and
    scheduled sampling are available to it (the training recipes that need every step's output
    raise a clear error).
    """

    #: whether ``transition`` predicts the next frame at every step, observed frames included
    #: (needed by the loss over every frame and by reverse scheduled sampling)
    predicts_every_frame: bool = True
    #: whether it has weights to fit (False: a baseline, e.g. persistence: tested, never fitted)
    trainable: bool = True
    #: whether it feeds its predictions back one frame at a time, so that teacher forcing can
    #: replace them by the truth (False: ``DirectPredictor``s, which predict a block at once)
    feeds_back_frames: bool = True
    #: why ``predlearn export`` cannot write this model as a graph (e.g. it computes in NumPy),
    #: said in one line before anything is tried; None: it may be exported (docs/deploy.md)
    export_refusal: str | None = None
    #: whether the predictor draws ensemble members itself (``predict_members``, e.g. STEPS);
    #: False: ``--model.ensemble_members=M`` perturbs its inputs with learnt noise instead
    #: (``predlearn.ensemble``, docs/nowcasting.md)
    native_ensemble: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make every subclass record the arguments it was built with (``config``), and name
        the options it refuses as ``--model.predictor.<argument>`` on the command line."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            # deliberately replaces the subclass's own constructor by its recording wrapper
            cls.__init__ = names_options_under(  # type: ignore[method-assign]
                "model.predictor", _recording_init(cls.__dict__["__init__"]))

    @classmethod
    def tiny_config(cls) -> dict[str, Any] | None:
        """Constructor arguments of a tiny instance of this predictor (a few channels; the frame
        size and channels left to their defaults), so that the generic tests (shapes, gradients,
        closed loop, bf16, a fit through the command line) run every registered model, plugins
        included, in seconds. None: not given; the generic tests then fail for this model with a
        message that asks for it."""
        return None

    @property
    def config(self) -> dict[str, Any] | None:
        """How to build this predictor again: ``{"class_path": ..., "init_args": {...}}``, the
        arguments of its constructor as called (defaults filled in), in the form LightningCLI
        configs use; ``build_predictor(config)`` builds it. A checkpoint stores it, so it
        rebuilds its model however that model was made (command line or Python). None for a
        subclass without its own ``__init__``."""
        return self.__dict__.get("_predictor_config")

    def check_inputs(
        self, frames: Tensor, horizon: int, targets: Tensor | None, teacher_mask: Tensor | None
    ) -> None:
        """``check_predictor_inputs``, plus the frame shape the predictor was built for (its
        ``frame_channels`` and ``frame_size`` attributes, where it has them)."""
        check_predictor_inputs(frames, horizon, targets, teacher_mask)
        channels, size = getattr(self, "frame_channels", None), getattr(self, "frame_size", None)
        if channels is None or size is None:
            return
        expected = (channels, *size)
        if tuple(frames.shape[2:]) != expected:
            # data of another shape than the model's (a BadFileError: exit 1 on the command line)
            raise BadFileError(
                f"{type(self).__name__} was built for frames (C, H, W) = {expected}; "
                f"got {tuple(frames.shape[2:])}. Set frame_channels and frame_size "
                "(--model.predictor.frame_size=[H,W]) to the data's, or give data of that size."
            )

    # -- the pieces a predictor gives -------------------------------------------------------

    def initial_state(self, frames: Tensor) -> Any:
        """The state before the first frame; ``frames`` are the observed (B, J, C, H, W)."""
        raise self._missing_pieces()

    def transition(
        self, inputs: Tensor, state: Any, predict: bool = True
    ) -> tuple[Tensor | None, Any]:
        """One time step: (the prediction of the next frame, or None if not ``predict``; the new
        state)."""
        raise self._missing_pieces()

    def _missing_pieces(self) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} defines neither initial_state/transition (the one-step "
            "update the shared rollout runs) nor its own forward"
        )

    def encode(self, frames: Tensor) -> Tensor:
        """Per-frame encoder applied to every input frame, (N, C, H, W) -> (N, ...)."""
        return frames

    def auxiliary_loss(self, state: Any) -> Tensor | None:
        """A training term from the final state of a rollout (None: no such term)."""
        return None

    def predict_members(self, frames: Tensor, horizon: int, members: int) -> Tensor:
        """``members`` forecasts of ``horizon`` frames, (B, M, K, C, H, W), drawn by the
        predictor itself; only for predictors with ``native_ensemble`` (STEPS). Random draws
        come from torch's global generator, so ``seed_everything`` makes them reproducible."""
        raise NotImplementedError(
            f"{type(self).__name__} does not draw ensemble members itself (native_ensemble is "
            "False): the module perturbs its inputs instead")

    def prediction_loss(self, predictions: Tensor, targets: Tensor) -> Tensor | None:
        """A training term on a rollout's predictions and their targets (e.g. TAU's
        differential divergence regularisation), added to the loss (None: no such term)."""
        return None

    # -- the loop -----------------------------------------------------------------------------

    def forward(self, frames: Tensor, horizon: int, targets: Tensor | None = None,
                teacher_mask: Tensor | None = None) -> Tensor:
        return self.rollout(frames, horizon, targets=targets, teacher_mask=teacher_mask).outputs

    def uses_shared_rollout(self) -> bool:
        """Whether this predictor runs the shared loop (it does not override ``forward``)."""
        return type(self).forward is Predictor.forward

    def rollout(
        self,
        frames: Tensor,
        horizon: int,
        *,
        targets: Tensor | None = None,
        teacher_mask: Tensor | None = None,
        context_mask: Tensor | None = None,
        every_frame: bool = False,
        perturb: Callable[[Tensor], Tensor] | None = None,
    ) -> Rollout:
        """Read the J observed frames, then predict ``horizon`` frames, feeding back predictions.

        ``teacher_mask`` (B, K - 1): feed ``targets[:, k]`` instead of the k-th prediction where
        true (scheduled sampling). ``context_mask`` (B, J - 1): where *false*, feed the model's own
        prediction of observed frame t + 2 instead of the frame itself (reverse scheduled
        sampling, PredRNN v2); None feeds every observed frame. ``every_frame``: also return the
        predictions made while reading the observed frames (``Rollout.outputs`` is then
        (B, J - 1 + K, ...), the next-frame predictions of frames 2 .. J + K). ``perturb``: a
        function applied to every input frame before it is encoded, observed or fed back (the
        learnt noise of an ensemble, ``predlearn.ensemble.MemberNoise``); a predictor with its
        own ``forward`` gets it on its observed frames.
        """
        if not self.uses_shared_rollout():
            if context_mask is not None or every_frame:
                raise ValueError(
                    f"{type(self).__name__} has its own forward, not the shared rollout: it cannot "
                    "return its predictions of observed frames (loss_frames='all') or be fed "
                    "them (reverse scheduled sampling)"
                )
            return Rollout(self(frames if perturb is None else perturb(frames), horizon,
                                targets, teacher_mask))
        self.check_inputs(frames, horizon, targets, teacher_mask)
        batch, context = frames.shape[:2]
        if (context_mask is not None or every_frame) and not self.predicts_every_frame:
            raise ValueError(
                f"{type(self).__name__} does not predict the observed frames while it reads them, "
                "so the loss over every frame (loss_frames='all') and reverse scheduled sampling "
                "do not apply to it"
            )
        if context_mask is not None and tuple(context_mask.shape) != (batch, context - 1):
            raise ValueError(
                f"context_mask must be (batch, context_frames - 1) = {(batch, context - 1)}; "
                f"got {tuple(context_mask.shape)}"
            )
        # The observed frames go through the encoder together (one batch, not J small ones).
        keep: Callable[[Tensor], Tensor] = perturb or _unchanged
        encoded = self.encode(keep(frames.flatten(0, 1))).unflatten(0, (batch, context))
        state = self.initial_state(frames)
        inputs = encoded[:, 0]
        outputs: list[Tensor] = []
        truth: Tensor | None
        last_step = context + horizon - 2
        needs_context_predictions = every_frame or context_mask is not None
        for t in range(last_step + 1):
            wanted = needs_context_predictions or t >= context - 1
            prediction, state = self.transition(inputs, state, wanted)
            if prediction is None:
                if wanted:
                    raise RuntimeError(
                        f"{type(self).__name__}.transition predicted nothing at step {t}")
                inputs = encoded[:, t + 1]  # not wanted: the next observed frame, fed as it is
                continue
            if every_frame or t >= context - 1:
                outputs.append(prediction)
            if t == last_step:
                break
            if t + 1 < context and context_mask is None:
                inputs = encoded[:, t + 1]  # the next observed frame
                continue
            if t + 1 < context:  # reverse scheduled sampling: an observed frame, or our own
                truth, mask, index = frames[:, 1:], context_mask, t
            else:  # closed loop (paper §1.2): our prediction, unless teacher-forced here
                truth, mask, index = targets, teacher_mask, t + 1 - context
            inputs = self.encode(keep(select_next_input(prediction, index, truth, mask)))
        return Rollout(torch.stack(outputs, dim=1), self.auxiliary_loss(state))


def _unchanged(frames: Tensor) -> Tensor:
    return frames


def _recording_init(init: Any) -> Any:
    """``init`` that first records its bound arguments as the predictor's ``config``; only the
    outermost constructor (the one of the class being built, or the nearest parent's if it has
    none) records, not the ``super().__init__`` calls it makes."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self: Predictor, *args: Any, **kwargs: Any) -> None:
        if "_predictor_config" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            init_args: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    init_args.update(value)
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    init_args[name] = value
            init_args = plain(init_args)
            object.__setattr__(self, "_predictor_config", {
                "class_path": class_path(type(self)),
                "init_args": init_args})
        init(self, *args, **kwargs)

    return recording_init


def build_predictor(config: Mapping[str, Any]) -> Predictor:
    """The predictor a ``Predictor.config`` describes (``class_path`` must name a Predictor)."""
    return from_config(config, Predictor)


# -- constructor checks shared by the predictors -----------------------------------------------
# Each raises ``OptionValueError`` named by the constructor argument; on the command line it comes
# out as ``--model.predictor.<argument>: ...`` (``predlearn.lightning_cli``).


def check_frame(frame_channels: int, frame_size: Sequence[int]) -> tuple[int, int]:
    """``frame_size`` as (height, width), after checking that both and ``frame_channels`` are
    positive."""
    require(frame_channels >= 1, "frame_channels", f"must be positive; got {frame_channels}",
            frame_channels)
    size = tuple(frame_size)
    require(len(size) == 2 and min(size) >= 1, "frame_size",
            f"must be two positive sizes, [height, width]; got {list(size)}", frame_size)
    return int(size[0]), int(size[1])


def check_patch_size(patch_size: int, height: int, width: int,
                     name: str = "patch_size") -> None:
    """A patch (or other downscaling) side: positive and dividing the frame size."""
    require(patch_size >= 1 and height % patch_size == 0 and width % patch_size == 0, name,
            f"{name} {patch_size} must divide the frame size {height}x{width}", patch_size)


def check_positive(name: str, value: float) -> None:
    """``value`` (the constructor argument ``name``) must be positive."""
    require(value > 0, name, f"must be positive; got {value}", value)


def check_kernel_size(name: str, value: int) -> None:
    """A convolution's filter size: odd (for 'same' padding) and positive."""
    require(value >= 1 and value % 2 == 1, name,
            f"must be odd and positive ('same' padding); got {value}", value)


def check_widths(name: str, widths: Sequence[int], count: int | None = None) -> list[int]:
    """Layer widths as a list: at least one (or exactly ``count``), every one positive."""
    values = [int(w) for w in widths]
    wanted = f"{count} positive widths" if count else "at least one positive width"
    require(bool(values) and (count is None or len(values) == count) and min(values) >= 1,
            name, f"needs {wanted}; got {values}", widths)
    return values


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise OptionValueError(name, f"must be one of {', '.join(map(repr, choices))}; "
                                     f"got {value!r}", value)


def check_predictor_inputs(
    frames: Tensor, horizon: int, targets: Tensor | None, teacher_mask: Tensor | None
) -> None:
    """Raise a clear error when the inputs of ``Predictor.forward`` do not fit together."""
    if frames.ndim != 5:
        raise ValueError(
            f"frames must be (batch, time, channels, height, width); got shape {tuple(frames.shape)}"
        )
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1; got {horizon}")
    if teacher_mask is None:
        return
    if targets is None:
        raise ValueError("teacher_mask needs targets: the ground truth frames to feed")
    batch = frames.shape[0]
    if tuple(teacher_mask.shape) != (batch, horizon - 1):
        raise ValueError(
            f"teacher_mask must be (batch, horizon - 1) = {(batch, horizon - 1)}; "
            f"got {tuple(teacher_mask.shape)}"
        )
    if targets.shape[1] < horizon - 1 or targets.shape[2:] != frames.shape[2:]:
        raise ValueError(
            f"targets must be (batch, >= horizon - 1, {', '.join(map(str, frames.shape[2:]))}); "
            f"got {tuple(targets.shape)}"
        )


def select_next_input(
    prediction: Tensor, step: int, targets: Tensor | None, teacher_mask: Tensor | None
) -> Tensor:
    """The frame fed after predicted step ``step``: the prediction, or the truth where masked."""
    if teacher_mask is None:
        return prediction
    if targets is None:
        raise ValueError("teacher_mask needs targets: the ground truth frames to feed")
    use_truth = teacher_mask[:, step].view(-1, *([1] * (prediction.ndim - 1)))
    return torch.where(use_truth, targets[:, step], prediction)


__all__ = ["Predictor", "Rollout", "check_choice", "check_frame", "check_kernel_size",
           "check_patch_size", "check_positive", "check_predictor_inputs", "check_widths", "select_next_input"]
