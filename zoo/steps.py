"""STEPS, the ensemble nowcasting baseline without weights (``--model=steps``).

The Short-Term Ensemble Prediction System (Seed 2003; Bowler, Pierce and Seed 2006) as pysteps
implements it (``pysteps.nowcasts.get_method("steps")``, Pulkkinen et al. 2019): the last
observed field is decomposed into a cascade of spatial scales, each scale is advected along
the estimated motion and evolved by its own AR(p) model, and stochastic noise shaped like the
field's power spectrum (and perturbations of the motion) makes every member a different,
plausible future. It is the reference an ensemble of learnt members (``predlearn.ensemble``) has
to beat, as Lagrangian persistence (``OpticalFlowExtrapolation``) is for one forecast.

pysteps is an optional extra (``pip install 'predlearn[nowcast]'``), imported only when a
prediction is made.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from predlearn.errors import OptionValueError, require
from predlearn.predictor import check_choice, check_positive, check_predictor_inputs
from predlearn.zoo.nowcast_baselines import (
    Baseline,
    OpticalFlowExtrapolation,
    _require_pysteps,
    pysteps_module,
)

#: pysteps' noise generators (``noise_method``; None: no noise, the members differ only by the
#: motion perturbations)
NOISE_METHODS = ("nonparametric", "parametric", "ssft", "nested", None)
#: pysteps' masks of the no-rain areas (``mask_method``)
MASK_METHODS = ("incremental", "obs", "sprog", None)
#: pysteps' matching of the forecast's statistics to the last observed field's
PROBMATCHING_METHODS = ("cdf", "mean", None)
#: pysteps' perturbations of the motion field (``vel_pert_method``)
VEL_PERT_METHODS = ("bps", None)
#: how far below ``precip_thr`` dry pixels are set: 5 dB on a 0..70 dBZ map, the margin of
#: pysteps' dB transform (its ``zerovalue`` is the threshold minus 5 dB)
DRY_OFFSET = 5 / 70


def cascade_levels_that_fit(height: int, width: int) -> int:
    """The most cascade levels a frame holds: each level spans at least an octave of
    wavenumbers up to the Nyquist one, max(H, W) / 2 (pysteps' filters need at least 3)."""
    return max(3, int(math.log2(max(height, width) / 2)))


class Steps(Baseline):
    """The STEPS ensemble nowcast of pysteps, member by member, on the CPU in float64.

    For each sequence (B, J, C, H, W) -> (M, K, C, H, W):

    - motion: one field per sequence, estimated exactly as ``OpticalFlowExtrapolation`` does
      (``method``, ``motion_frames``, ``method_options``: the same options, the same code);
    - values: the frames are a linear map of reflectivity (0 -> ``dbz_min``, 1 -> ``dbz_max``),
      already on the logarithmic scale where STEPS works (pysteps runs it on dBR), so they go
      in as they are. As in pysteps' examples, pixels below ``precip_thr`` (no rain) are set
      to one value below it, ``precip_thr - DRY_OFFSET``; on the way back pixels below
      ``precip_thr`` become 0, non-finite ones (advected in from outside) 0, and all are
      clipped to [0, 1];
    - channels: each channel is a separate STEPS run on the same motion field and seed;
    - randomness: each call draws one seed per sequence from torch's global generator, so
      ``seed_everything`` (or ``torch.manual_seed``) makes the members reproducible;
    - where STEPS has nothing to fit, pysteps is not called: a last frame without rain gives
      zeros (as pysteps' own no-rain forecast does), and a last frame without structure (one
      value) or frames that do not change give that frame repeated (pysteps' AR fit or noise
      would fail on them); where the AR(p) fit is singular (a cascade level perfectly
      correlated in time, as in frames that differ only in scale), AR(1), its limit, is used
      with a warning.

    ``predict`` (the deterministic forward, used when one forecast is asked) is the mean of
    ``mean_members`` members: 1 (the default) is one STEPS member, a sample, not a mean.

    Args:
        precip_thr: the rain threshold in the data's [0, 1] scale (default 10 dBZ on a 0..70
            dBZ map: 10 / 70).
        n_cascade_levels: cascade levels (at least 3); None: pysteps' 6, or fewer where the
            frame is smaller than 128 pixels (``cascade_levels_that_fit``).
        kmperpixel: pixel size in km (for the motion perturbations and the incremental mask).
        timestep: minutes between frames.
        ar_order: order p of the AR model of each level; needs p + 1 observed frames.
        noise_method, mask_method, probmatching_method, vel_pert_method: pysteps' options, with
            its defaults; None switches one off ("parametric" noise may fail to fit on small
            or smooth fields: a pysteps limitation).
        mean_members: how many members ``predict`` averages.
        method, motion_frames, method_options: the motion, as for ``OpticalFlowExtrapolation``.
    """

    native_ensemble = True
    export_refusal = ("it runs pysteps' STEPS (motion with OpenCV, cascades and noise) in "
                      "NumPy, outside PyTorch, so no graph holds it")

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """The defaults: they fit 16 x 16 to 64 x 64 frames (the cascade levels follow the size)."""
        return {}

    def __init__(
        self,
        precip_thr: float = 10 / 70,  # 10 dBZ on a 0..70 dBZ map
        n_cascade_levels: int | None = None,  # fitted to the frame: pysteps' 6 at 128 px
        kmperpixel: float = 1.0,  # a 1 km radar grid
        timestep: float = 5.0,  # 5 minutes between radar frames
        ar_order: int = 2,  # pysteps' default: AR(2)
        noise_method: str | None = "nonparametric",  # pysteps' defaults from here on
        mask_method: str | None = "incremental",
        probmatching_method: str | None = "cdf",
        vel_pert_method: str | None = "bps",
        mean_members: int = 1,
        method: str = "LK",
        motion_frames: int = 3,
        method_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        require(0 < precip_thr < 1, "precip_thr",
                f"must be a value inside the data's range (0, 1); got {precip_thr}", precip_thr)
        require(n_cascade_levels is None or (isinstance(n_cascade_levels, int)
                                             and n_cascade_levels >= 3), "n_cascade_levels",
                f"must be an integer of at least 3 (pysteps' filters) or null; got "
                f"{n_cascade_levels}", n_cascade_levels)
        check_positive("kmperpixel", kmperpixel)
        check_positive("timestep", timestep)
        require(isinstance(ar_order, int) and ar_order >= 1, "ar_order",
                f"must be an integer of at least 1; got {ar_order}", ar_order)
        check_choice("noise_method", noise_method, NOISE_METHODS)
        check_choice("mask_method", mask_method, MASK_METHODS)
        check_choice("probmatching_method", probmatching_method, PROBMATCHING_METHODS)
        require(probmatching_method != "mean" or mask_method is not None, "probmatching_method",
                "'mean' matches the mean inside the rain mask: it needs a mask_method",
                probmatching_method)
        check_choice("vel_pert_method", vel_pert_method, VEL_PERT_METHODS)
        require(isinstance(mean_members, int) and mean_members >= 1, "mean_members",
                f"must be an integer of at least 1; got {mean_members}", mean_members)
        _require_pysteps(method, "the STEPS ensemble baseline")
        self.flow = OpticalFlowExtrapolation(method=method, motion_frames=motion_frames,
                                             method_options=method_options)
        self.precip_thr = float(precip_thr)
        self.n_cascade_levels = n_cascade_levels
        self.kmperpixel, self.timestep = float(kmperpixel), float(timestep)
        self.ar_order = ar_order
        self.noise_method, self.mask_method = noise_method, mask_method
        self.probmatching_method, self.vel_pert_method = probmatching_method, vel_pert_method
        self.mean_members = mean_members

    def predict(self, frames: Tensor, horizon: int) -> Tensor:
        """(B, J, C, H, W) -> (B, horizon, C, H, W): the mean of ``mean_members`` members."""
        mean = self._members(frames, horizon, self.mean_members).mean(axis=1)
        return torch.from_numpy(mean).to(device=frames.device, dtype=frames.dtype)

    def predict_members(self, frames: Tensor, horizon: int, members: int) -> Tensor:
        """(B, J, C, H, W) -> (B, members, horizon, C, H, W): STEPS members in [0, 1]."""
        return torch.from_numpy(self._members(frames, horizon, members)).to(
            device=frames.device, dtype=frames.dtype)

    def cascade_levels(self, height: int, width: int) -> int:
        """The cascade levels used on frames (height, width); a one-line error if too many."""
        fits = cascade_levels_that_fit(height, width)
        if self.n_cascade_levels is None:
            return min(6, fits)
        if self.n_cascade_levels > fits:
            raise OptionValueError(
                "n_cascade_levels", f"{self.n_cascade_levels} levels need frames of at least "
                f"{2 ** (self.n_cascade_levels + 1)} pixels on their longer side (an octave of "
                f"wavenumbers each); got {height} x {width}: give n_cascade_levels <= {fits} or "
                "null", self.n_cascade_levels, owner="model.predictor")
        return self.n_cascade_levels

    # -- the numpy part ---------------------------------------------------------------------

    def _members(self, frames: Tensor, horizon: int, members: int) -> np.ndarray:
        """(B, J, C, H, W) -> float64 (B, M, K, C, H, W), after checking the inputs."""
        check_predictor_inputs(frames, horizon, None, None)
        if not isinstance(members, int) or members < 1:
            raise ValueError(f"members must be a positive integer; got {members!r}")
        if frames.shape[1] < self.ar_order + 1:
            raise OptionValueError(
                "ar_order", f"an AR({self.ar_order}) model needs {self.ar_order + 1} observed "
                f"frames, but only {frames.shape[1]} are observed: lower ar_order or observe "
                "more frames", self.ar_order, owner="model.predictor")
        levels = self.cascade_levels(*frames.shape[-2:])
        seeds = [int(torch.randint(0, 2**31 - 1, ())) for _ in range(frames.shape[0])]
        with torch.no_grad():
            observed = frames.detach().to("cpu", torch.float64)
        return np.stack([self._sequence(sequence, horizon, members, seed, levels)
                         for sequence, seed in zip(observed, seeds)])

    def _sequence(self, sequence: Tensor, horizon: int, members: int, seed: int,
                  levels: int) -> np.ndarray:
        """One sequence (J, C, H, W) -> (M, K, C, H, W): each channel along the same motion."""
        velocity = self.flow.motion(sequence).numpy()
        fields = sequence.numpy()[-(self.ar_order + 1):]  # the frames the AR(p) model reads
        return np.stack([self._forecast(fields[:, channel], velocity, horizon, members, seed,
                                        levels) for channel in range(fields.shape[1])], axis=2)

    def _forecast(self, fields: np.ndarray, velocity: np.ndarray, horizon: int, members: int,
                  seed: int, levels: int) -> np.ndarray:
        """One channel's fields (p + 1, H, W) -> members (M, K, H, W) in [0, 1]."""
        shape = (members, horizon, *fields.shape[1:])
        if not (fields[-1] > self.precip_thr).any():  # no rain: pysteps' zero forecast
            return np.zeros(shape)
        values = np.where(fields < self.precip_thr, self.precip_thr - DRY_OFFSET, fields)
        last = values[-1]
        if np.ptp(last) == 0 or all(np.array_equal(field, last) for field in values[:-1]):
            return np.broadcast_to(self._back(last), shape).copy()  # nothing to fit
        try:
            forecast = self._steps(values, velocity, horizon, members, seed, levels)
        except np.linalg.LinAlgError:
            if self.ar_order == 1:
                raise
            # a level whose frames are perfectly correlated (frames that differ only in scale):
            # the Yule-Walker system of AR(p > 1) is singular, AR(1) is its limit
            warnings.warn(f"STEPS: the AR({self.ar_order}) fit is singular on these frames "
                          "(perfectly correlated cascade levels); using AR(1) for them",
                          RuntimeWarning, stacklevel=2)
            forecast = self._steps(values[-2:], velocity, horizon, members, seed, levels)
        return self._back(np.asarray(forecast, dtype=np.float64).reshape(shape))

    def _steps(self, values: np.ndarray, velocity: np.ndarray, horizon: int, members: int,
               seed: int, levels: int) -> np.ndarray:
        """pysteps' STEPS on fields (p + 1, H, W), AR(p), quietly: (M, K, H, W)."""
        steps = pysteps_module("nowcasts", self.flow.method).get_method("steps")
        with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints its every step
            return steps(
                values, velocity, horizon, n_ens_members=members, n_cascade_levels=levels,
                precip_thr=self.precip_thr, kmperpixel=self.kmperpixel, timestep=self.timestep,
                noise_method=self.noise_method, ar_order=len(values) - 1,
                vel_pert_method=self.vel_pert_method, mask_method=self.mask_method,
                probmatching_method=self.probmatching_method, seed=seed, num_workers=1)

    def _back(self, values: np.ndarray) -> np.ndarray:
        """STEPS values -> the data's: no rain and non-finite -> 0, clipped to [0, 1]."""
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(np.where(values < self.precip_thr, 0.0, values), 0.0, 1.0)


__all__ = ["DRY_OFFSET", "MASK_METHODS", "NOISE_METHODS", "PROBMATCHING_METHODS",
           "VEL_PERT_METHODS", "Steps", "cascade_levels_that_fit"]
