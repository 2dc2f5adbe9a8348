"""The radially averaged power spectrum of frames, and its mean per lead time over a test set.

``PowerSpectrum`` (not a registered metric): mean radial power spectra of predictions and
observations per lead time, to show the loss of small-scale power (blurring) with lead time;
their log-log figure and their CSV table, written and read back.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from predlearn.masked import UNIT_BOUNDS, Bounds, checked_valid, clamped, frame_is_whole
from predlearn.nowcast_scoring import check_frame_pair


def _radial_bins(height: int, width: int, device: torch.device) -> tuple[Tensor, int]:
    """Each Fourier mode's radial-wavenumber bin (flattened (H*W,) long; ``n_bins`` for a mode
    in no bin) and the number of bins ``min(H, W) // 2``."""
    side = min(height, width)
    n_bins = side // 2
    ky = torch.fft.fftfreq(height, device=device, dtype=torch.float64) * side
    kx = torch.fft.fftfreq(width, device=device, dtype=torch.float64) * side
    radius = torch.sqrt(ky[:, None].square() + kx[None, :].square())
    # the annulus of integer wavenumber k holds the modes with k - 1/2 <= |k| < k + 1/2
    index = torch.floor(radius + 0.5).long() - 1
    index = torch.where((index >= 0) & (index < n_bins), index, torch.full_like(index, n_bins))
    return index.flatten(), n_bins


def radial_power_spectrum(frames: Tensor) -> tuple[Tensor, Tensor]:
    """The radially averaged power spectrum of (..., H, W) fields: (wavenumbers (n_bins,) float64,
    power (..., n_bins)), with ``n_bins = min(H, W) // 2`` (at least 2x2 fields).

    Each field's mean is removed, then ``P(k) = |FFT(field)|^2`` with the orthonormal FFT
    (``norm="ortho"``: the powers of all modes sum to the field's sum of squares, Parseval), and
    the power of bin k is the mean of P over the modes of the annulus ``k - 1/2 <= |k| < k + 1/2``,
    for integer radial wavenumbers k = 1 .. min(H, W) // 2 in cycles per frame width (per
    min(H, W) pixels on a non-square frame). White noise of variance s^2 is flat at s^2; a
    field blurred loses power at high wavenumbers (small scales). The power has the frames'
    float dtype (float32 for float32 frames).
    """
    height, width = frames.shape[-2:]
    if min(height, width) < 2:
        raise ValueError(f"a power spectrum needs fields of at least 2x2; got {height}x{width}")
    values = frames if frames.is_floating_point() else frames.float()
    values = values - values.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(values, norm="ortho").abs().square().flatten(-2)
    index, n_bins = _radial_bins(height, width, frames.device)
    sums = torch.zeros(*power.shape[:-1], n_bins + 1, dtype=power.dtype, device=power.device)
    sums.index_add_(-1, index, power)
    modes = torch.bincount(index, minlength=n_bins + 1)[:n_bins].to(power.dtype)
    wavenumbers = torch.arange(1, n_bins + 1, dtype=torch.float64, device=frames.device)
    return wavenumbers, sums[..., :n_bins] / modes


class PowerSpectrum(Metric):
    """Mean radial power spectra (``radial_power_spectrum``) of predictions and of observations,
    per lead time, over every sequence scored (channels averaged). Not a registered metric: a
    diagnostic of small-scale power lost with lead time (blurring).

    ``frame_size``: (H, W) of the frames, which fixes the number of wavenumber bins
    (``min(H, W) // 2``) so the states exist before the first update (DDP sums them).
    ``bounds``: the range predictions are clamped to (None: no clamp). ``update(preds, target,
    valid=None)``: a frame with any masked pixel (``valid`` False) is left out, its spectrum
    undefined. ``compute()`` -> ``{"wavenumber": (n_bins,), "predicted": (K, n_bins),
    "observed": (K, n_bins)}``, float64 (NaN at a lead time without a whole frame).
    """

    full_state_update = False
    higher_is_better = None
    predicted: Tensor
    observed: Tensor
    count: Tensor  # frames per lead time
    sequences: Tensor

    def __init__(self, horizon: int, frame_size: tuple[int, int], *,
                 bounds: Bounds = UNIT_BOUNDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        height, width = frame_size
        if min(height, width) < 2:
            raise ValueError(f"a power spectrum needs frames of at least 2x2; got {frame_size}")
        self.horizon = horizon
        self.frame_size = (int(height), int(width))
        self.n_bins = min(height, width) // 2
        self.bounds = bounds
        for name in ("predicted", "observed"):
            self.add_state(name, torch.zeros(horizon, self.n_bins, dtype=torch.float64),
                           dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sequences", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        check_frame_pair(preds, target, type(self).__name__)
        if preds.shape[1] != self.horizon or tuple(preds.shape[-2:]) != self.frame_size:
            raise ValueError(
                f"{type(self).__name__} was built for {self.horizon} predicted steps of "
                f"{self.frame_size[0]}x{self.frame_size[1]} frames; got shape {tuple(preds.shape)}")
        valid = checked_valid(valid, preds, type(self).__name__)
        _, predicted = radial_power_spectrum(clamped(preds.detach().float(), self.bounds))
        _, observed = radial_power_spectrum(target.detach().float())
        # (B, K, C, n_bins) -> channels averaged, then (below) sequences summed
        predicted = predicted.to(torch.float64).mean(dim=2)
        observed = observed.to(torch.float64).mean(dim=2)
        if valid is None:
            self.count += preds.shape[0]
        else:  # only the frames without a masked pixel
            whole = frame_is_whole(valid)
            predicted = torch.where(whole[..., None], predicted, torch.zeros_like(predicted))
            observed = torch.where(whole[..., None], observed, torch.zeros_like(observed))
            self.count += whole.sum(dim=0)
        self.predicted += predicted.sum(dim=0)
        self.observed += observed.sum(dim=0)
        self.sequences += preds.shape[0]

    def compute(self) -> dict[str, Tensor]:
        if self.sequences == 0:
            raise RuntimeError("PowerSpectrum: spectra asked for before any update")
        frames = self.count[:, None]
        return {
            "wavenumber": torch.arange(1, self.n_bins + 1, dtype=torch.float64,
                                       device=self.count.device),
            "predicted": self.predicted / frames,
            "observed": self.observed / frames,
        }

    def spectra(self) -> dict[str, Tensor]:
        """``compute()`` with its shapes kept ((n_bins,), (K, n_bins), (K, n_bins)) where
        torchmetrics would squeeze a one-element result."""
        values = self.compute()
        return {"wavenumber": values["wavenumber"].reshape(self.n_bins),
                "predicted": values["predicted"].reshape(self.horizon, self.n_bins),
                "observed": values["observed"].reshape(self.horizon, self.n_bins)}


def _spectra_arrays(spectra: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(wavenumber (n,), predicted (K, n), observed (K, n)) as float64 numpy arrays."""
    import numpy as np

    def array(value: Any) -> Any:
        if isinstance(value, Tensor):
            value = value.detach().cpu().to(torch.float64).numpy()
        return np.asarray(value, dtype=np.float64)

    wavenumber = array(spectra["wavenumber"]).reshape(-1)
    n = wavenumber.shape[0]
    return (wavenumber, array(spectra["predicted"]).reshape(-1, n),
            array(spectra["observed"]).reshape(-1, n))


def _shown_steps(horizon: int) -> list[int]:
    """The first, middle and last lead times (0-based, without repeats)."""
    return sorted({0, (horizon - 1) // 2, horizon - 1})


def plot_power_spectra(spectra: dict[str, Any], path: str | Path,
                       lead_minutes: float | None = None, title: str = "") -> Path:
    """A log-log figure of power against wavenumber: the observed spectrum (mean over lead
    times) and the predicted one at the first, middle and last lead time, so that the loss of
    small-scale power with lead time shows. ``spectra``: ``PowerSpectrum.compute()`` (or
    ``read_power_spectra_csv``); ``lead_minutes``: the time between predicted frames, to label
    lead times in minutes. Returns the path written (PNG unless its suffix says otherwise)."""
    from matplotlib import colormaps

    from predlearn.visualize import new_figure, save_figure

    wavenumber, predicted, observed = _spectra_arrays(spectra)
    horizon = predicted.shape[0]
    fig, ax = new_figure(1, 1, figsize=(5.2, 4))
    ax.loglog(wavenumber, observed.mean(axis=0), color="black", linewidth=2,
              label="observed (mean over lead times)")
    steps = _shown_steps(horizon)
    colours = colormaps["viridis"]
    for i, step in enumerate(steps):
        lead = (f"+{(step + 1) * lead_minutes:g} min (step {step + 1})"
                if lead_minutes is not None else f"step {step + 1}")
        ax.loglog(wavenumber, predicted[step], linestyle="--", marker="o", markersize=2,
                  color=colours(i / max(1, len(steps) - 1) * 0.85),
                  label=f"predicted, {lead}")
    ax.set_xlabel("wavenumber (cycles per frame width)")
    ax.set_ylabel("power (mean |FFT|^2 per mode, orthonormal FFT)", fontsize=8)
    ax.set_title(title or "radially averaged power spectrum", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_power_spectra_csv(spectra: dict[str, Any], path: str | Path) -> Path:
    """A table of the spectra: one row per wavenumber; columns ``wavenumber``,
    ``observed_step_01`` .. and ``predicted_step_01`` .. (values written to round-trip exactly:
    ``read_power_spectra_csv`` reads them back)."""
    wavenumber, predicted, observed = _spectra_arrays(spectra)
    horizon = predicted.shape[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["wavenumber",
                         *(f"observed_step_{k + 1:02d}" for k in range(horizon)),
                         *(f"predicted_step_{k + 1:02d}" for k in range(horizon))])
        for i, k in enumerate(wavenumber):
            writer.writerow([repr(float(k)), *(repr(float(v)) for v in observed[:, i]),
                             *(repr(float(v)) for v in predicted[:, i])])
    return path


def read_power_spectra_csv(path: str | Path) -> dict[str, Tensor]:
    """The spectra a ``write_power_spectra_csv`` table holds, as ``PowerSpectrum.compute()``
    gives them (float64 tensors)."""
    with Path(path).open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    table = torch.tensor([[float(v) for v in row] for row in body], dtype=torch.float64)
    table = table.reshape(len(body), len(header))
    observed = [i for i, name in enumerate(header) if name.startswith("observed_step_")]
    predicted = [i for i, name in enumerate(header) if name.startswith("predicted_step_")]
    return {"wavenumber": table[:, header.index("wavenumber")],
            "predicted": table[:, predicted].T.contiguous(),
            "observed": table[:, observed].T.contiguous()}
