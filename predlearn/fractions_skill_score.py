"""The fractions skill score (Roberts & Lean 2008), pooled over every sequence scored.

``FractionsSkillScore`` (registry name ``fss``): Roberts & Lean 2008 (Mon. Wea. Rev. 136,
78-97), its two sums pooled over the test set as pysteps' ``fss_accum``/``fss_compute`` do.
Events and undefined scores: ``predlearn.nowcast_scoring``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from predlearn.masked import checked_valid
from predlearn.nowcast_scoring import (
    THRESHOLD_TAG,
    EventMetric,
    check_frame_pair,
    events_at,
    ratio_or_nan,
    threshold_words,
)
from predlearn.units import ScoringSettings

_FSS_KEY = re.compile(r"^fss_" + THRESHOLD_TAG + r"_(?P<size>\d+)px$")


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


def _window_sums(values: Tensor, size: int) -> Tensor:
    """The sum of float (..., H, W) fields over the ``size`` x ``size`` window centred on each
    pixel (zero outside the field); exact for counts."""
    fields = values.reshape(-1, 1, *values.shape[-2:])
    sums = F.avg_pool2d(fields, kernel_size=size, stride=1, padding=size // 2,
                        count_include_pad=True, divisor_override=1)
    return sums.reshape(values.shape)


def masked_neighbourhood_fractions(binary: Tensor, valid: Tensor, size: int) -> Tensor:
    """``neighbourhood_fractions`` of boolean (..., H, W) events over the valid pixels only: in
    each ``size`` x ``size`` window, the valid events over the valid pixels, pixels outside the
    field counting as valid non-events (as without a mask: the denominator is ``size * size``
    less the masked pixels of the window). 0 at a masked pixel, which has no fraction of its own
    (and so adds nothing to the FSS sums). float32."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"a neighbourhood is an odd size >= 1; got {size}")
    events = (binary & valid).float()
    if size == 1:
        return events
    counted = size * size - _window_sums((~valid).float(), size)  # >= 1 at a valid pixel
    fractions = _window_sums(events, size) / counted.clamp(min=1)
    return torch.where(valid, fractions, torch.zeros_like(fractions))


def fss_sequence_sums(preds: Tensor, target: Tensor, thresholds: Sequence[float],
                      scales: Sequence[int], valid: Tensor | None = None
                      ) -> tuple[Tensor, Tensor]:
    """``fss_sums`` of each sequence: two (B, K, T, S) float64 sums over its channels and
    pixels (their sum over sequences is ``fss_sums``)."""
    check_frame_pair(preds, target, "fss_sums")
    valid = checked_valid(valid, preds, "fss_sums")
    b, k = preds.shape[:2]
    differences = torch.zeros(b, k, len(thresholds), len(scales), dtype=torch.float64,
                              device=preds.device)
    references = torch.zeros_like(differences)
    for t, threshold in enumerate(thresholds):
        forecast, observed = events_at(preds, threshold), events_at(target, threshold)
        for s, size in enumerate(scales):
            if valid is None:
                pf = neighbourhood_fractions(forecast.float(), size)
                po = neighbourhood_fractions(observed.float(), size)
            else:
                pf = masked_neighbourhood_fractions(forecast, valid, size)
                po = masked_neighbourhood_fractions(observed, valid, size)
            # fractions in float32 (the size of the frames), summed in float64 over C, H, W
            # (dims 2..4): a (B, K) column
            pixels = (2, 3, 4)
            differences[:, :, t, s] = (pf - po).square().sum(dim=pixels, dtype=torch.float64)
            references[:, :, t, s] = (pf.square() + po.square()).sum(dim=pixels,
                                                                     dtype=torch.float64)
    return differences, references


def fss_sums(preds: Tensor, target: Tensor, thresholds: Sequence[float],
             scales: Sequence[int], valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The two sums of the fractions skill score per lead time, threshold and neighbourhood
    size, each (K, T, S) float64, summed over sequences, channels and pixels:
    ``sum (Pf - Po)^2`` and ``sum (Pf^2 + Po^2)``, with ``Pf``, ``Po`` the forecast and
    observed event fractions of ``neighbourhood_fractions``.

    FSS = 1 - first / second (Roberts & Lean 2008, Mon. Wea. Rev. 136, 78-97), pooled over
    every sequence summed, as pysteps' ``fss_accum``/``fss_compute`` do; undefined (NaN) where
    the second sum is 0 (no event anywhere in forecast or observation).

    ``valid``: a boolean mask of the observed pixels. Masked pixels are non-events in both
    fields, the fractions are over the valid pixels of each window
    (``masked_neighbourhood_fractions``), and the sums are over the valid pixels only.
    """
    differences, references = fss_sequence_sums(preds, target, thresholds, scales, valid)
    return differences.sum(dim=0), references.sum(dim=0)


class FractionsSkillScore(EventMetric):
    """The fractions skill score (Roberts & Lean 2008) per lead time at each threshold and
    neighbourhood size, its sums pooled over every sequence scored (``fss_sums``). Keys:
    ``fss_<tag>_<n>px``, e.g. ``fss_30dBZ_5px`` (a 5x5-pixel neighbourhood); NaN where no event
    is forecast nor observed at any pixel of any sequence."""

    higher_is_better = True
    differences: Tensor
    references: Tensor
    sum_states = ("differences", "references", "count")

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

    def update(self, preds: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        """Add the FSS sums of (B, K, C, H, W) frames; ``valid``: a boolean mask of the observed
        pixels (``fss_sums``)."""
        preds, target = self._checked(preds, target)
        differences, references = fss_sequence_sums(preds, target, self.thresholds,
                                                    self.scales, valid)
        self._accumulate({"differences": differences, "references": references,
                          "count": self._sequences(preds.shape[0], differences)})

    def _curves_of(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        fss = 1.0 - ratio_or_nan(sums["differences"], sums["references"])  # NaN stays NaN
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
        return f"FSS, {threshold_words(match['value'], match['unit'])}, {size}x{size} px"
