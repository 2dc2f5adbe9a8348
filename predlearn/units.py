"""Physical units of data scaled to [0, 1]: the value mapping a prepared radar file records.

Frames reach the models in [0, 1]; scores that meteorologists read (CSI at 30 dBZ, a rain rate
in mm/h) need the physical value back. ``ValueMapping`` is the linear map that ``predlearn
prepare radar`` applied (``x = (dBZ - low) / (high - low)``, clipped to [0, 1]) and the Z-R
relation it used for rain rates (Marshall-Palmer ``Z = 200 R^1.6`` by default), so that a
threshold in dBZ or mm/h becomes a threshold on x, and x becomes dBZ or mm/h again.

Thresholding commutes with the map (both are increasing), so "x >= threshold_to_unit(30,
'dBZ')" is exactly "dBZ >= 30" on the stored values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from torch import Tensor

from predlearn.errors import OptionValueError, require

__all__ = [
    "DEFAULT_THRESHOLDS", "RAIN_RATE", "REFLECTIVITY", "THRESHOLD_UNITS", "ScoringSettings",
    "ValueMapping", "check_scoring_options", "unit_tag",
]

REFLECTIVITY = "dBZ"
RAIN_RATE = "mm/h"
THRESHOLD_UNITS = (REFLECTIVITY, RAIN_RATE)

ArrayLike = TypeVar("ArrayLike", Tensor, np.ndarray, float)


def unit_tag(unit: str) -> str:
    """A unit as it appears in a logged key (no slash: ``mm/h`` -> ``mmh``)."""
    return unit.replace("/", "")


@dataclass(frozen=True)
class ValueMapping:
    """``x`` in [0, 1] <-> a physical value: ``value = low + x * (high - low)`` in ``unit``.

    For reflectivity (``unit="dBZ"``) the rain rate follows from ``Z = zr_a * R ** zr_b``
    (``Z = 10 ** (dBZ / 10)`` in mm^6 m^-3, R in mm/h).
    """

    unit: str = REFLECTIVITY
    low: float = 0.0
    high: float = 70.0
    zr_a: float = 200.0  # Marshall-Palmer (1948)
    zr_b: float = 1.6

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"a value mapping needs high > low; got {self.low} .. {self.high}")
        if self.zr_a <= 0 or self.zr_b <= 0:
            raise ValueError(f"Z = a R^b needs a, b > 0; got a={self.zr_a}, b={self.zr_b}")

    @classmethod
    def from_radar_attrs(cls, attrs: Mapping[str, Any]) -> ValueMapping:
        """The mapping a ``predlearn prepare radar`` file records (``dbz_min``, ``dbz_max``,
        ``zr_a``, ``zr_b`` attributes)."""
        return cls(REFLECTIVITY, float(attrs["dbz_min"]), float(attrs["dbz_max"]),
                   float(attrs["zr_a"]), float(attrs["zr_b"]))

    def describe(self) -> str:
        """The mapping in words, for logs and figures."""
        text = f"x in [0, 1] = ({self.unit} - {self.low:g}) / {self.high - self.low:g}"
        if self.unit == REFLECTIVITY:
            text += f"; rain rate by Z = {self.zr_a:g} R^{self.zr_b:g}"
        return text

    def to_physical(self, x: ArrayLike) -> ArrayLike:
        """[0, 1] -> the physical unit (e.g. dBZ)."""
        return x * (self.high - self.low) + self.low

    def to_unit_interval(self, value: ArrayLike) -> ArrayLike:
        """The physical unit -> [0, 1] (not clipped)."""
        return (value - self.low) / (self.high - self.low)

    def to_rain_rate(self, x: ArrayLike) -> ArrayLike:
        """[0, 1] -> rain rate in mm/h through the Z-R relation (reflectivity only)."""
        self._need_reflectivity()
        dbz = self.to_physical(x)
        return (10.0 ** (dbz / 10.0) / self.zr_a) ** (1.0 / self.zr_b)

    def rain_rate_to_dbz(self, rate: float) -> float:
        """mm/h -> dBZ through the Z-R relation."""
        self._need_reflectivity()
        if rate <= 0:
            raise ValueError(f"a rain-rate threshold must be positive; got {rate} mm/h")
        return 10.0 * math.log10(self.zr_a * rate ** self.zr_b)

    def threshold_to_unit_interval(self, threshold: float, unit: str) -> float:
        """A threshold in ``unit`` (``dBZ`` or ``mm/h``) as a value of x."""
        if unit == self.unit:
            return float(self.to_unit_interval(threshold))
        if unit == RAIN_RATE:
            return float(self.to_unit_interval(self.rain_rate_to_dbz(threshold)))
        raise ValueError(
            f"thresholds in {unit!r} do not apply to data in {self.unit}; use "
            f"{self.unit!r}" + (f" or {RAIN_RATE!r}" if self.unit == REFLECTIVITY else ""))

    def _need_reflectivity(self) -> None:
        if self.unit != REFLECTIVITY:
            raise ValueError(f"rain rates need reflectivity (dBZ) data; this data is {self.unit}")


#: event thresholds of the categorical scores and the FSS when none are given, by unit (dBZ: the
#: usual light / moderate / heavy echo levels; mm/h: the rain rates of HKO-7-style scoring)
DEFAULT_THRESHOLDS = {REFLECTIVITY: (20.0, 30.0, 40.0), RAIN_RATE: (1.0, 5.0, 10.0)}


def check_scoring_options(thresholds: Sequence[float] | None, threshold_unit: str | None,
                          fss_scales: Sequence[int]) -> None:
    """The scoring options of a data module with physical units, checked before its data is
    read (``OptionValueError`` named by the argument; the unit is checked against the data's
    mapping by ``ScoringSettings.of``)."""
    require(threshold_unit is None or threshold_unit in THRESHOLD_UNITS, "threshold_unit",
            f"must be one of {', '.join(map(repr, THRESHOLD_UNITS))} (or null: the data's unit); "
            f"got {threshold_unit!r}", threshold_unit)
    require(thresholds is None or len(thresholds) > 0, "thresholds",
            "give at least one threshold (or null: the defaults)", thresholds)
    require(len(fss_scales) > 0 and all(isinstance(n, int) and n >= 1 and n % 2 == 1
                                        for n in fss_scales),
            "fss_scales", f"must be odd neighbourhood sizes in pixels (1, 3, 5, ...); got "
            f"{list(fss_scales)}", fss_scales)


@dataclass(frozen=True)
class ScoringSettings:
    """What the scores in physical units need: the data's value mapping, the event thresholds
    (in ``threshold_unit``: ``dBZ`` or ``mm/h``) and the neighbourhood sizes of the fractions
    skill score (odd side lengths in pixels). Metrics with ``physical_units = True`` are built
    as ``cls(horizon, settings)``."""

    mapping: ValueMapping
    thresholds: tuple[float, ...] = (20.0, 30.0, 40.0)
    threshold_unit: str = REFLECTIVITY
    fss_scales: tuple[int, ...] = (1, 5, 9)

    def __post_init__(self) -> None:
        check_scoring_options(self.thresholds, self.threshold_unit, self.fss_scales)
        for threshold in self.thresholds:  # raises for a unit that does not apply
            self.mapping.threshold_to_unit_interval(threshold, self.threshold_unit)

    @classmethod
    def of(cls, mapping: ValueMapping, thresholds: Sequence[float] | None,
           threshold_unit: str | None, fss_scales: Sequence[int]) -> ScoringSettings:
        """The settings for data with ``mapping``: the unit defaults to the data's and the
        thresholds to ``DEFAULT_THRESHOLDS`` of that unit (``OptionValueError`` for a unit or
        threshold that does not apply to the data)."""
        unit = threshold_unit or mapping.unit
        chosen = tuple(float(t) for t in thresholds) if thresholds else DEFAULT_THRESHOLDS.get(unit)
        if chosen is None:
            raise OptionValueError("thresholds", f"no default thresholds for data in {unit}; "
                                   "give them (--data.thresholds=[...])", None)
        try:
            return cls(mapping, chosen, unit, tuple(int(n) for n in fss_scales))
        except ValueError as error:
            raise OptionValueError("threshold_unit", str(error), unit) from None

    def threshold_tags(self) -> list[str]:
        """Each threshold as it appears in a logged key: ``20dBZ``, ``0.5mmh``."""
        return [f"{t:g}{unit_tag(self.threshold_unit)}" for t in self.thresholds]

    def unit_thresholds(self) -> list[float]:
        """The thresholds as values of x in [0, 1]."""
        return [self.mapping.threshold_to_unit_interval(t, self.threshold_unit)
                for t in self.thresholds]
