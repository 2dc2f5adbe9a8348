"""The frame every radar reader returns, its refusal error, and the helpers the readers share."""

from __future__ import annotations

import calendar
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from predlearn.errors import BadFileError, DataNotFoundError

__all__ = [
    "FORMATS",
    "Format",
    "Quantity",
    "RadarFormatError",
    "RadarFrame",
    "attr_number",
    "attr_text",
    "missing_file",
    "open_h5",
    "read_dataset",
    "stamp_from_name",
    "utc_seconds",
]

Format = Literal["fmi_pgm", "knmi_h5", "odim_h5"]
FORMATS: tuple[str, ...] = ("fmi_pgm", "knmi_h5", "odim_h5")
Quantity = Literal["dBZ", "mm/h"]

_STAMP = re.compile(r"(?<!\d)(\d{12}|\d{14})(?!\d)")  # YYYYMMDDHHMM[SS] in a file name


class RadarFormatError(BadFileError):
    """A radar file is unreadable, of an unknown format, or lacks what its format needs."""


@dataclass
class RadarFrame:
    """One radar image in its physical quantity.

    Attributes:
        values: (H, W) float64 in ``quantity``; NaN = no data (missing / outside coverage).
        quantity: ``"dBZ"`` (reflectivity) or ``"mm/h"`` (rain rate).
        timestamp: observation time, integer seconds since 1970-01-01 UTC.
        source_format: one of ``FORMATS``.
        path: the file read.
        product: the product's own name of what it measures (ODIM ``RATE`` or ``DBZH``, KNMI
            ``image_geo_parameter``, FMI ``param``): frames of different products must not be
            mixed in one data set even when they share a unit.
    """

    values: np.ndarray
    quantity: Quantity
    timestamp: int
    source_format: str
    path: str
    product: str = ""


def missing_file(path: str | os.PathLike) -> DataNotFoundError:
    """The error for a radar file that is not there."""
    return DataNotFoundError(f"{path}: no such radar file")


def utc_seconds(text: str, pattern: str) -> int:
    """``text`` in ``time.strptime`` ``pattern``, a UTC time, as seconds since the epoch."""
    return int(calendar.timegm(time.strptime(text, pattern)))


def stamp_from_name(path: str | os.PathLike) -> int | None:
    """The time of a YYYYMMDDHHMM[SS] stamp in the file's name (UTC); None if there is none."""
    match = _STAMP.search(Path(path).name)
    if match is None:
        return None
    digits = match.group(1)
    try:
        return utc_seconds(digits, "%Y%m%d%H%M%S" if len(digits) == 14 else "%Y%m%d%H%M")
    except ValueError:
        return None


def attr_text(value: object) -> str:
    """An HDF5 attribute (bytes, numpy string, 1-element array) as ``str``."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("ascii", "replace").strip("\x00 ")
    return str(value).strip()


def attr_number(value: object) -> float:
    """An HDF5 attribute (number or 1-element array) as ``float``."""
    return float(np.asarray(value).reshape(-1)[0])


def open_h5(path: str | os.PathLike) -> h5py.File:
    """``path`` opened for reading; a missing or unreadable file raises a predlearn error."""
    if not Path(path).exists():
        raise missing_file(path)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise RadarFormatError(f"{path}: cannot open as HDF5 ({error}); it is truncated, "
                               "damaged or not HDF5") from error


def read_dataset(h5: h5py.File, name: str, path: str | os.PathLike) -> np.ndarray:
    """Dataset ``name`` in full; a damaged one raises ``RadarFormatError`` naming the file."""
    try:
        return np.asarray(h5[name][()])
    except (OSError, ValueError, TypeError) as error:
        raise RadarFormatError(f"{path}: cannot read '{name}' ({error}); the file is damaged")\
            from error

