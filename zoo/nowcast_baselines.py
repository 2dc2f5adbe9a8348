"""Nowcasting baselines without weights: Eulerian and Lagrangian persistence.

Every radar nowcasting model is scored against these two references (Germann and Zawadzki 2002;
pysteps, Pulkkinen et al. 2019): ``Persistence`` repeats the last observed frame ("Eulerian
persistence", the zero-skill reference), ``OpticalFlowExtrapolation`` moves it along the motion
estimated from the last observed frames ("Lagrangian persistence", the operational baseline that
a learned model has to beat). Neither has parameters (``trainable = False``): they are tested and
compared, never fitted.

``OpticalFlowExtrapolation`` runs pysteps, an optional extra: ``pip install 'predlearn[nowcast]'``.
pysteps is imported only when a prediction is made, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np
import torch
from lightning_utilities.core.imports import RequirementCache
from torch import Tensor

from predlearn.errors import OptionValueError, PredlearnError, require
from predlearn.predictor import Predictor, check_choice

#: pysteps (motion fields and semi-Lagrangian extrapolation): an optional extra of predlearn
#: (``pip install 'predlearn[nowcast]'``), needed only when ``OpticalFlowExtrapolation`` is used.
PYSTEPS = RequirementCache("pysteps>=1.10")
#: OpenCV, which pysteps' Lucas-Kanade method calls; any of its distributions (opencv-python,
#: opencv-python-headless, opencv-contrib-python) provides the module, so the module is checked.
OPENCV = RequirementCache(module="cv2")

#: the motion methods of pysteps offered (``pysteps.motion.get_method`` names)
MOTION_METHODS = ("LK", "DARTS", "proesmans")


class NowcastDependencyMissingError(PredlearnError, ModuleNotFoundError):
    """pysteps (or OpenCV, for the Lucas-Kanade method) is not installed; the message says how
    to install it."""


def _require_pysteps(method: str, user: str = "the optical-flow extrapolation baseline") -> None:
    """Raise ``NowcastDependencyMissingError`` unless pysteps (and OpenCV for "LK") is there;
    ``user`` names what needs it in the message."""
    install = ("pip install 'predlearn[nowcast]' (or pip install 'pysteps>=1.10' "
               "'opencv-python-headless>=4.5')")
    if not PYSTEPS:
        raise NowcastDependencyMissingError(
            f"{user} needs pysteps (motion fields and semi-Lagrangian extrapolation): "
            f"{install}; {PYSTEPS.message}")
    if method == "LK" and not OPENCV:
        raise NowcastDependencyMissingError(
            f"{user}'s Lucas-Kanade method (method='LK') needs OpenCV: {install}; "
            f"{OPENCV.message}")


def pysteps_module(name: str, method: str = "LK") -> ModuleType:
    """``pysteps.<name>`` (e.g. "nowcasts"), imported quietly once ``_require_pysteps(method)``
    passes: pysteps prints where it found its configuration file on first import, and importing
    must not change the process's warning filters."""
    _require_pysteps(method)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        return importlib.import_module(f"pysteps.{name}")


def _pysteps_modules(method: str) -> tuple[ModuleType, ModuleType]:
    """``(pysteps.motion, pysteps.extrapolation)``, imported quietly (``pysteps_module``)."""
    return pysteps_module("motion", method), pysteps_module("extrapolation", method)


class Baseline(Predictor):
    """A predictor without weights: ``predict`` maps the observed frames (B, J, C, H, W) to
    ``horizon`` frames. Teacher inputs (``targets``, ``teacher_mask``) are checked but ignored:
    nothing is fed back."""

    #: no parameters: nothing to train (the command line tests it, never fits it)
    trainable = False
    #: it has its own ``forward``; it does not predict the observed frames
    predicts_every_frame = False

    def forward(self, frames: Tensor, horizon: int, targets: Tensor | None = None,
                teacher_mask: Tensor | None = None) -> Tensor:
        self.check_inputs(frames, horizon, targets, teacher_mask)
        return self.predict(frames, horizon)

    def predict(self, frames: Tensor, horizon: int) -> Tensor:
        raise NotImplementedError


class Persistence(Baseline):
    """Eulerian persistence: every predicted frame is the last observed frame.

    The standard zero-skill reference of nowcasting (Germann and Zawadzki 2002): tomorrow's
    weather is today's. A learned model that does not beat it has learned nothing useful. The
    output is an exact copy (same dtype and device) of frame J, repeated ``horizon`` times.
    """

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """No arguments: the one instance is already tiny."""
        return {}

    def __init__(self) -> None:
        super().__init__()

    def predict(self, frames: Tensor, horizon: int) -> Tensor:
        """(B, J, C, H, W) -> (B, horizon, C, H, W), each a copy of ``frames[:, -1]``."""
        return frames[:, -1:].expand(-1, horizon, -1, -1, -1).clone()


class OpticalFlowExtrapolation(Baseline):
    """Lagrangian persistence: the last observed frame advected along the estimated motion.

    The operational nowcasting baseline (Germann and Zawadzki 2002; pysteps' "extrapolation"
    nowcast), computed with pysteps on the CPU in float64, one sequence at a time:

    - motion: one field (2, H, W) per sequence, in pixels per frame (x to the right, y down),
      estimated from the last ``motion_frames`` observed frames averaged over channels, by
      ``pysteps.motion.get_method(method)``: dense Lucas-Kanade ("LK", pysteps' default, needs
      OpenCV), "DARTS" or "proesmans" (which uses exactly two frames). ``method_options`` go to
      that function as keyword arguments; ``verbose`` is False unless given. Non-finite motion
      vectors are set to 0. Where the method finds nothing to track (a field without echoes or
      features) pysteps returns zero motion and the prediction is persistence. pysteps' warning
      of a singular matrix in LK's outlier test (where all vectors agree, as in a uniform
      motion; pysteps keeps them) is silenced;
    - advection: every channel of frame J moved 1 .. ``horizon`` steps along that field by
      pysteps' semi-Lagrangian backward scheme (``pysteps.extrapolation.get_method(
      "semilagrangian")``) with interpolation of order ``interp_order``. Pixels advected in from
      outside the field take 0 (no echo: ``outval=0``); any nan left is set to 0, and the
      result is clipped to [0, 1];
    - the result comes back on the input's device and dtype. No gradient flows (the computation
      is numpy); teacher inputs (``targets``, ``teacher_mask``) are checked but ignored.

    Defaults fitted to small frames where pysteps' own would fail: "DARTS" takes N_t =
    min(4, motion_frames - 2) and N_x, N_y at most what the frame holds; "proesmans" takes at
    most the pyramid levels the frame size allows (pysteps' C code crashes the process on frames
    smaller than 2**(num_levels - 1), so a ``num_levels`` given that large is refused).

    Args:
        method: pysteps motion method, "LK", "DARTS" or "proesmans".
        motion_frames: how many of the last observed frames the motion is estimated from (at
            least 2; exactly 2 for "proesmans"; at most the observed frames J).
        interp_order: spline order of the advection's interpolation (0 nearest, 1 linear,
            3 cubic; 0..5).
        method_options: keyword arguments of the motion method (e.g. ``{"fd_kwargs":
            {"quality_level": 0.05}}`` for "LK").
    """

    export_refusal = ("it estimates the motion with pysteps (OpenCV) in NumPy, outside "
                      "PyTorch, so no graph holds it")

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """The defaults: the method has no size to shrink."""
        return {}

    def __init__(
        self,
        method: str = "LK",  # pysteps' default motion method (dense Lucas-Kanade)
        motion_frames: int = 3,  # pysteps' examples estimate the motion from 3 radar frames
        interp_order: int = 1,  # pysteps' default: linear interpolation
        method_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_choice("method", method, MOTION_METHODS)
        require(isinstance(motion_frames, int) and motion_frames >= 2, "motion_frames",
                f"must be an integer of at least 2 (motion needs two frames); got {motion_frames}",
                motion_frames)
        require(method != "proesmans" or motion_frames == 2, "motion_frames",
                "method 'proesmans' estimates the motion from exactly two frames: set "
                f"motion_frames=2; got {motion_frames}", motion_frames)
        require(isinstance(interp_order, int) and 0 <= interp_order <= 5, "interp_order",
                f"must be a spline order from 0 to 5; got {interp_order}", interp_order)
        require(method_options is None or isinstance(method_options, Mapping), "method_options",
                f"must be a mapping of keyword arguments; got {method_options!r}", method_options)
        options = dict(method_options or {})
        if method == "DARTS" and "N_t" in options:
            require(int(options["N_t"]) < motion_frames - 1, "method_options",
                    f"DARTS needs N_t < motion_frames - 1 = {motion_frames - 1}; got "
                    f"N_t={options['N_t']}", method_options)
        _require_pysteps(method)
        self.method = method
        self.motion_frames = motion_frames
        self.interp_order = interp_order
        self.method_options = options

    def predict(self, frames: Tensor, horizon: int) -> Tensor:
        """(B, J, C, H, W) -> (B, horizon, C, H, W): frame J advected 1 .. horizon steps."""
        self._check_context(frames.shape[1])
        with torch.no_grad():
            observed = frames.detach().to("cpu", torch.float64).numpy()
            predicted = np.stack([self._extrapolate(sequence, horizon) for sequence in observed])
        return torch.from_numpy(predicted).to(device=frames.device, dtype=frames.dtype)

    def motion(self, frames: Tensor) -> Tensor:
        """The motion field (2, H, W) of one sequence's observed frames (J, C, H, W), in pixels
        per frame: [0] to the right (x), [1] down (y); float64, on the frames' device."""
        if frames.ndim != 4:
            raise ValueError("frames must be one sequence, (time, channels, height, width); "
                             f"got shape {tuple(frames.shape)}")
        self._check_context(frames.shape[0])
        with torch.no_grad():
            sequence = frames.detach().to("cpu", torch.float64).numpy()
        return torch.from_numpy(self._motion_field(sequence)).to(frames.device)

    # -- the numpy part ---------------------------------------------------------------------

    def _check_context(self, observed: int) -> None:
        if observed < self.motion_frames:
            raise OptionValueError(
                "motion_frames", f"needs {self.motion_frames} observed frames to estimate the "
                f"motion, but only {observed} are observed: lower motion_frames or observe more "
                "frames", self.motion_frames, owner="model.predictor")

    def _motion_field(self, sequence: np.ndarray) -> np.ndarray:
        """(J, C, H, W) float64 -> the finite motion field (2, H, W) of its last frames."""
        motion, _ = _pysteps_modules(self.method)
        fields = np.ascontiguousarray(sequence[-self.motion_frames:].mean(axis=1))  # (T, H, W)
        estimate = motion.get_method(self.method)
        with warnings.catch_warnings():
            # LK's outlier test inverts the covariance of neighbouring vectors: singular where
            # they all agree (a uniform motion), when pysteps keeps them and warns, every time
            warnings.filterwarnings("ignore", message=".*during outlier detection",
                                    category=UserWarning)
            velocity = estimate(fields, **self._method_options(fields.shape))
        return np.nan_to_num(np.asarray(velocity, dtype=np.float64), nan=0.0, posinf=0.0,
                             neginf=0.0)

    def _method_options(self, shape: tuple[int, ...]) -> dict[str, Any]:
        """``method_options`` with quiet output and defaults that fit fields (T, H, W)."""
        frames, height, width = shape
        options = {"verbose": False, **self.method_options}
        if self.method == "DARTS":
            # pysteps' N_x = N_y = 50, N_t = 4 need 50 + M < the side and N_t < T - 1
            options.setdefault("N_t", min(4, frames - 2))
            options.setdefault("N_x", max(0, min(50, width - 1 - int(options.get("M_x", 2)))))
            options.setdefault("N_y", max(0, min(50, height - 1 - int(options.get("M_y", 2)))))
        elif self.method == "proesmans":
            # pysteps' C code needs a side of at least 2 ** (num_levels - 1) (else it crashes)
            fits = int(math.log2(min(height, width))) + 1
            levels = int(options.setdefault("num_levels", min(6, fits)))
            require(levels <= fits, "method_options",
                    f"proesmans with num_levels={levels} needs frames of at least "
                    f"{2 ** (levels - 1)} pixels a side; got {height} x {width}: give "
                    f"num_levels <= {fits}", self.method_options, owner="model.predictor")
        return options

    def _extrapolate(self, sequence: np.ndarray, horizon: int) -> np.ndarray:
        """(J, C, H, W) float64 -> (horizon, C, H, W): frame J advected along the motion."""
        last = sequence[-1]
        velocity = self._motion_field(sequence)
        if not velocity.any():  # nothing to track: no motion, exactly persistence
            return np.clip(np.repeat(last[None], horizon, axis=0), 0.0, 1.0)
        _, extrapolation = _pysteps_modules(self.method)
        extrapolate = extrapolation.get_method("semilagrangian")
        channels = [extrapolate(channel, velocity, horizon, outval=0.0,
                                interp_order=self.interp_order) for channel in last]
        predicted = np.stack(channels, axis=1)  # (horizon, C, H, W)
        return np.clip(np.nan_to_num(predicted, nan=0.0), 0.0, 1.0)


__all__ = ["MOTION_METHODS", "NowcastDependencyMissingError", "OpticalFlowExtrapolation",
           "Persistence", "pysteps_module"]
