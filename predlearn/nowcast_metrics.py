"""Nowcasting scores in physical units: categorical scores, the fractions skill score, and the
radially averaged power spectrum of predictions against observations.

Frames are (B, K, C, H, W) tensors in [0, 1] (K predicted lead times). An *event* at a pixel is
``value >= threshold``, the threshold given in dBZ or mm/h by the data's
``predlearn.units.ScoringSettings`` and turned into a value of x in [0, 1] (thresholding commutes
with the increasing value map, so this is exactly ``dBZ >= threshold`` on the stored values).

- ``CategoricalScores`` (registry name ``categorical``): CSI, POD, FAR, HSS and ETS per lead time
  and threshold, from the 2x2 contingency table pooled over every sequence scored (Jolliffe &
  Stephenson 2012, "Forecast Verification", 2nd ed., ch. 3). Pooled counts, not the mean of per
  batch or per sequence scores: a score of a ratio is not the mean of the ratios, and a sequence
  without any event has no score of its own.
- ``FractionsSkillScore`` (registry name ``fss``): Roberts & Lean 2008 (Mon. Wea. Rev. 136,
  78-97), its two sums pooled over the test set as pysteps' ``fss_accum``/``fss_compute`` do.
- ``PowerSpectrum`` (not a registered metric): mean radial power spectra of predictions and
  observations per lead time, to show the loss of small-scale power (blurring) with lead time.

A score whose denominator is 0 (e.g. CSI when no event is observed nor forecast) is undefined:
NaN, never 0 and never a division warning. Every state is a float64 sum reduced by ``sum``
across DDP ranks, so a score is the same on one process or on several.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from predlearn.units import THRESHOLD_UNITS, ScoringSettings, unit_tag

__all__ = [
    "CATEGORICAL_SCORES",
    "CORRECT_NEGATIVES",
    "FALSE_ALARMS",
    "HITS",
    "MISSES",
    "CategoricalScores",
    "FractionsSkillScore",
    "PowerSpectrum",
    "categorical_scores",
    "contingency_counts",
    "fss_sums",
    "neighbourhood_fractions",
    "plot_power_spectra",
    "radial_power_spectrum",
    "read_power_spectra_csv",
    "write_power_spectra_csv",
]

#: positions in the last dimension of ``contingency_counts``
HITS, MISSES, FALSE_ALARMS, CORRECT_NEGATIVES = 0, 1, 2, 3
#: the categorical scores, in key order, with whether higher is better
CATEGORICAL_SCORES: dict[str, bool] = {
    "csi": True, "pod": True, "far": False, "hss": True, "ets": True}
_SCORE_NAMES = {
    "csi": "CSI", "pod": "POD", "far": "FAR", "hss": "HSS", "ets": "ETS", "fss": "FSS"}
# unit tags as they appear in keys (``mmh``) -> the unit in words (``mm/h``)
_UNITS = {unit_tag(unit): unit for unit in THRESHOLD_UNITS}
_TAG = r"(?P<value>[-+0-9.e]+)(?P<unit>" + "|".join(map(re.escape, _UNITS)) + ")"
_CATEGORICAL_KEY = re.compile(r"^(?P<score>" + "|".join(CATEGORICAL_SCORES) + ")_" + _TAG + "$")
_FSS_KEY = re.compile(r"^fss_" + _TAG + r"_(?P<size>\d+)px$")


# --- pure functions --------------------------------------------------------------------------


def _check_pair(preds: Tensor, target: Tensor, who: str) -> None:
    if preds.shape != target.shape or preds.ndim != 5:
        raise ValueError(
            f"{who} needs predictions and targets of the same (B, K, C, H, W) shape; got "
            f"{tuple(preds.shape)} and {tuple(target.shape)}")


def _events(frames: Tensor, threshold: float) -> Tensor:
    """``frames >= threshold`` with the threshold in the frames' own dtype (so that a pixel stored
    exactly at the threshold counts as an event)."""
    return frames >= torch.tensor(threshold, dtype=frames.dtype, device=frames.device)


def contingency_counts(preds: Tensor, target: Tensor, thresholds: Sequence[float]) -> Tensor:
    """The 2x2 contingency table of each sequence, lead time and threshold: (B, K, T, 4) float64
    counts of hits, misses, false alarms and correct negatives (``HITS``, ``MISSES``,
    ``FALSE_ALARMS``, ``CORRECT_NEGATIVES``) over the C, H, W pixels of a frame.

    ``preds``, ``target``: (B, K, C, H, W); ``thresholds``: on the same scale as the frames (x in
    [0, 1]); an event is ``value >= threshold``.
    """
    _check_pair(preds, target, "contingency_counts")
    tables = []
    for threshold in thresholds:  # one threshold at a time: (B, K, T, C*H*W) could be large
        forecast = _events(preds, threshold).flatten(2)
        observed = _events(target, threshold).flatten(2)
        hits = (forecast & observed).sum(-1)
        misses = (~forecast & observed).sum(-1)
        false_alarms = (forecast & ~observed).sum(-1)
        negatives = forecast.shape[-1] - hits - misses - false_alarms
        tables.append(torch.stack([hits, misses, false_alarms, negatives], dim=-1))
    if not tables:
        raise ValueError("contingency_counts needs at least one threshold")
    return torch.stack(tables, dim=2).to(torch.float64)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, NaN (undefined) where the denominator is 0."""
    defined = denominator != 0
    safe = torch.where(defined, denominator, torch.ones_like(denominator))
    return torch.where(defined, numerator / safe, torch.full_like(numerator, math.nan))


def categorical_scores(counts: Tensor) -> dict[str, Tensor]:
    """CSI, POD, FAR, HSS and ETS from contingency counts (..., 4) in the order of
    ``contingency_counts`` (sum them over sequences first: scores of pooled counts).

    With a hits, b false alarms, c misses, d correct negatives and n = a + b + c + d
    (Jolliffe & Stephenson 2012, "Forecast Verification", ch. 3):

    - ``csi = a / (a + b + c)`` (critical success index, threat score);
    - ``pod = a / (a + c)`` (probability of detection, hit rate);
    - ``far = b / (a + b)`` (false alarm ratio; lower is better);
    - ``hss = 2 (ad - bc) / ((a + c)(c + d) + (a + b)(b + d))`` (Heidke skill score);
    - ``ets = (a - ar) / (a + b + c - ar)``, ``ar = (a + b)(a + c) / n`` (equitable threat score,
      Gilbert skill score; ``ar`` the hits expected by chance).

    A score whose denominator is 0 is undefined and returned as NaN: CSI, POD, FAR, ETS when no
    event is observed nor forecast; POD when none is observed; FAR when none is forecast; HSS
    and ETS also when every pixel is an event in both forecast and observation.
    """
    counts = counts.to(torch.float64)
    a = counts[..., HITS]
    c = counts[..., MISSES]
    b = counts[..., FALSE_ALARMS]
    d = counts[..., CORRECT_NEGATIVES]
    n = a + b + c + d
    chance = _ratio((a + b) * (a + c), n)
    return {
        "csi": _ratio(a, a + b + c),
        "pod": _ratio(a, a + c),
        "far": _ratio(b, a + b),
        "hss": _ratio(2 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d)),
        "ets": _ratio(a - chance, a + b + c - chance),
    }


def neighbourhood_fractions(binary: Tensor, size: int) -> Tensor:
    """The fraction of event pixels in the ``size`` x ``size`` window centred on each pixel of
    (..., H, W) fields, counting pixels outside the field as non-events (zero padding) and
    dividing by ``size * size`` everywhere, as ``scipy.ndimage.uniform_filter(mode="constant")``
    does (and pysteps' FSS with it). ``size``: odd, >= 1. Returns the binary tensor's float dtype
    (float32 for a boolean one)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"a neighbourhood is an odd size >= 1; got {size}")
    values = binary if binary.is_floating_point() else binary.float()
    if size == 1:
        return values
    shape = values.shape
    fields = values.reshape(-1, 1, *shape[-2:])
    fractions = F.avg_pool2d(fields, kernel_size=size, stride=1, padding=size // 2,
                             count_include_pad=True)
    return fractions.reshape(shape)


def fss_sums(preds: Tensor, target: Tensor, thresholds: Sequence[float],
             scales: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The two sums of the fractions skill score per lead time, threshold and neighbourhood
    size, each (K, T, S) float64, summed over sequences, channels and pixels:
    ``sum (Pf - Po)^2`` and ``sum (Pf^2 + Po^2)``, with ``Pf``, ``Po`` the forecast and
    observed event fractions of ``neighbourhood_fractions``.

    FSS = 1 - first / second (Roberts & Lean 2008, Mon. Wea. Rev. 136, 78-97), pooled over
    every sequence summed, as pysteps' ``fss_accum``/``fss_compute`` do; undefined (NaN) where
    the second sum is 0 (no event anywhere in forecast or observation).
    """
    _check_pair(preds, target, "fss_sums")
    k = preds.shape[1]
    differences = torch.zeros(k, len(thresholds), len(scales), dtype=torch.float64,
                              device=preds.device)
    references = torch.zeros_like(differences)
    for t, threshold in enumerate(thresholds):
        forecast = _events(preds, threshold).float()
        observed = _events(target, threshold).float()
        for s, size in enumerate(scales):
            pf = neighbourhood_fractions(forecast, size)
            po = neighbourhood_fractions(observed, size)
            # fractions in float32 (the size of the frames), summed in float64 over B (dim 0)
            # and C, H, W (dims 2..4): a (K,) column
            pixels = (0, 2, 3, 4)
            differences[:, t, s] = (pf - po).square().sum(dim=pixels, dtype=torch.float64)
            references[:, t, s] = (pf.square() + po.square()).sum(dim=pixels, dtype=torch.float64)
    return differences, references


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


# --- metrics ---------------------------------------------------------------------------------


def _threshold_words(value: str, unit: str) -> str:
    return f"event >= {value} {_UNITS[unit]}"


class _NowcastMetric(Metric):
    """What the registered nowcasting metrics share: the shape checks of ``update``, a count of
    sequences (to refuse scores before any update, after the DDP sum) and ``curves()``."""

    full_state_update = False
    higher_is_better: bool | None = None  # per key: ``directions()``
    #: built as ``cls(horizon, settings)`` with the data's ``ScoringSettings``
    physical_units = True
    count: Tensor

    def __init__(self, horizon: int, settings: ScoringSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if horizon < 1:
            raise ValueError(f"a horizon is at least 1 predicted step; got {horizon}")
        self.horizon = horizon
        self.settings = settings
        self.tags = settings.threshold_tags()
        self.thresholds = settings.unit_thresholds()
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _checked(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Shape checks; returns predictions (detached, clamped to [0, 1]) and targets."""
        _check_pair(preds, target, type(self).__name__)
        if preds.shape[1] != self.horizon:
            raise ValueError(
                f"{type(self).__name__} was built for {self.horizon} predicted steps; got "
                f"{preds.shape[1]} (shape {tuple(preds.shape)})")
        return preds.detach().float().clamp(0, 1), target.detach().float()

    def _need_updates(self) -> None:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__}: scores asked for before any update")

    def curves(self) -> dict[str, Tensor]:
        """Logged key -> (K,) float64 curve per lead time (synced across DDP ranks)."""
        # torchmetrics squeezes one-element results; a curve keeps its (K,) shape
        return {key: value.reshape(self.horizon) for key, value in self.compute().items()}


class CategoricalScores(_NowcastMetric):
    """CSI, POD, FAR, HSS and ETS per lead time at each event threshold, from contingency counts
    pooled over every sequence scored (``categorical_scores``). Keys: ``<score>_<tag>`` with the
    threshold tags of the settings, e.g. ``csi_20dBZ``, ``far_1mmh``."""

    counts: Tensor

    def __init__(self, horizon: int, settings: ScoringSettings, **kwargs: Any) -> None:
        super().__init__(horizon, settings, **kwargs)
        self.add_state("counts", torch.zeros(horizon, len(self.thresholds), 4, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = self._checked(preds, target)
        self.counts += contingency_counts(preds, target, self.thresholds).sum(dim=0)
        self.count += preds.shape[0]

    def compute(self) -> dict[str, Tensor]:
        self._need_updates()
        scores = categorical_scores(self.counts)  # each (K, T)
        return {f"{name}_{tag}": scores[name][:, t]
                for name in CATEGORICAL_SCORES for t, tag in enumerate(self.tags)}

    def directions(self) -> dict[str, bool]:
        """Logged key -> whether higher is better (all but FAR)."""
        return {f"{name}_{tag}": higher
                for name, higher in CATEGORICAL_SCORES.items() for tag in self.tags}

    @classmethod
    def describe_key(cls, key: str) -> str | None:
        """``csi_20dBZ`` -> ``CSI, event >= 20 dBZ``; None for a key this metric does not log."""
        match = _CATEGORICAL_KEY.match(key)
        if match is None:
            return None
        words = _threshold_words(match["value"], match["unit"])
        return f"{_SCORE_NAMES[match['score']]}, {words}"


class FractionsSkillScore(_NowcastMetric):
    """The fractions skill score (Roberts & Lean 2008) per lead time at each threshold and
    neighbourhood size, its sums pooled over every sequence scored (``fss_sums``). Keys:
    ``fss_<tag>_<n>px``, e.g. ``fss_30dBZ_5px`` (a 5x5-pixel neighbourhood); NaN where no event
    is forecast nor observed at any pixel of any sequence."""

    higher_is_better = True
    differences: Tensor
    references: Tensor

    def __init__(self, horizon: int, settings: ScoringSettings, **kwargs: Any) -> None:
        super().__init__(horizon, settings, **kwargs)
        self.scales = tuple(settings.fss_scales)
        shape = (horizon, len(self.thresholds), len(self.scales))
        self.add_state("differences", torch.zeros(shape, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("references", torch.zeros(shape, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def keys(self) -> list[str]:
        """The logged keys, threshold by threshold, each neighbourhood size in turn."""
        return [f"fss_{tag}_{size}px" for tag in self.tags for size in self.scales]

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = self._checked(preds, target)
        differences, references = fss_sums(preds, target, self.thresholds, self.scales)
        self.differences += differences
        self.references += references
        self.count += preds.shape[0]

    def compute(self) -> dict[str, Tensor]:
        self._need_updates()
        fss = 1.0 - _ratio(self.differences, self.references)  # NaN stays NaN
        return {f"fss_{tag}_{size}px": fss[:, t, s]
                for t, tag in enumerate(self.tags) for s, size in enumerate(self.scales)}

    def directions(self) -> dict[str, bool]:
        """Logged key -> whether higher is better (always)."""
        return dict.fromkeys(self.keys(), True)

    @classmethod
    def describe_key(cls, key: str) -> str | None:
        """``fss_20dBZ_5px`` -> ``FSS, event >= 20 dBZ, 5x5 px``; None for other keys."""
        match = _FSS_KEY.match(key)
        if match is None:
            return None
        size = match["size"]
        return f"FSS, {_threshold_words(match['value'], match['unit'])}, {size}x{size} px"


class PowerSpectrum(Metric):
    """Mean radial power spectra (``radial_power_spectrum``) of predictions and of observations,
    per lead time, over every sequence scored (channels averaged). Not a registered metric: a
    diagnostic of small-scale power lost with lead time (blurring).

    ``frame_size``: (H, W) of the frames, which fixes the number of wavenumber bins
    (``min(H, W) // 2``) so the states exist before the first update (DDP sums them).
    ``compute()`` -> ``{"wavenumber": (n_bins,), "predicted": (K, n_bins), "observed": (K,
    n_bins)}``, float64.
    """

    full_state_update = False
    higher_is_better = None
    predicted: Tensor
    observed: Tensor
    count: Tensor

    def __init__(self, horizon: int, frame_size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        height, width = frame_size
        if min(height, width) < 2:
            raise ValueError(f"a power spectrum needs frames of at least 2x2; got {frame_size}")
        self.horizon = horizon
        self.frame_size = (int(height), int(width))
        self.n_bins = min(height, width) // 2
        for name in ("predicted", "observed"):
            self.add_state(name, torch.zeros(horizon, self.n_bins, dtype=torch.float64),
                           dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        _check_pair(preds, target, type(self).__name__)
        if preds.shape[1] != self.horizon or tuple(preds.shape[-2:]) != self.frame_size:
            raise ValueError(
                f"{type(self).__name__} was built for {self.horizon} predicted steps of "
                f"{self.frame_size[0]}x{self.frame_size[1]} frames; got shape {tuple(preds.shape)}")
        _, predicted = radial_power_spectrum(preds.detach().float().clamp(0, 1))
        _, observed = radial_power_spectrum(target.detach().float())
        # (B, K, C, n_bins) -> channels averaged, sequences summed
        self.predicted += predicted.to(torch.float64).mean(dim=2).sum(dim=0)
        self.observed += observed.to(torch.float64).mean(dim=2).sum(dim=0)
        self.count += preds.shape[0]

    def compute(self) -> dict[str, Tensor]:
        if self.count == 0:
            raise RuntimeError("PowerSpectrum: spectra asked for before any update")
        return {
            "wavenumber": torch.arange(1, self.n_bins + 1, dtype=torch.float64,
                                       device=self.count.device),
            "predicted": self.predicted / self.count,
            "observed": self.observed / self.count,
        }

    def spectra(self) -> dict[str, Tensor]:
        """``compute()`` with its shapes kept ((n_bins,), (K, n_bins), (K, n_bins)) where
        torchmetrics would squeeze a one-element result."""
        values = self.compute()
        return {"wavenumber": values["wavenumber"].reshape(self.n_bins),
                "predicted": values["predicted"].reshape(self.horizon, self.n_bins),
                "observed": values["observed"].reshape(self.horizon, self.n_bins)}


# --- power spectra: figure and table ---------------------------------------------------------


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
