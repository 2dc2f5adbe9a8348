"""Readers of radar products: FMI PGM reflectivity, KNMI HDF5 precipitation, OPERA ODIM_H5.

Each reader returns a ``RadarFrame``: the source grid as float64 in its physical quantity
(reflectivity in dBZ, or rain rate in mm/h), NaN where there is no data, and the observation time
in seconds since the epoch (UTC). The format is detected from the file's content
(``detect_format``), not from its name.

Refusals (``RadarFormatError``, a ``BadFileError``, naming the file): a PGM that is not 8-bit
with maxval 255 (FMI's encoding dBZ = 0.5 PV - 32 is defined for 8-bit values only, so a 16-bit
PGM is refused rather than rescaled), an ODIM file that is not an image (``what/object`` other
than ``COMP`` or ``IMAGE``: a polar volume ``PVOL`` or scan is not a frame), a file that is
truncated or damaged. A missing file raises ``DataNotFoundError``.
"""

from __future__ import annotations

import calendar
import gzip
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from predlearn.errors import BadFileError, DataNotFoundError

__all__ = [
    "FORMATS",
    "RadarFormatError",
    "RadarFrame",
    "detect_format",
    "read_fmi_pgm",
    "read_frame",
    "read_knmi_h5",
    "read_odim_h5",
]

Format = Literal["fmi_pgm", "knmi_h5", "odim_h5"]
FORMATS: tuple[str, ...] = ("fmi_pgm", "knmi_h5", "odim_h5")
Quantity = Literal["dBZ", "mm/h"]

GZIP_MAGIC = b"\x1f\x8b"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FMI_NODATA = 255  # FMI PGM: pixel value 255 = no data (outside the radar coverage)
ODIM_REFLECTIVITY = ("DBZH", "DBZV", "TH", "TV", "DBZ")
ODIM_IMAGES = ("COMP", "IMAGE")  # what/object of a 2-D image; PVOL, SCAN, ... are not frames
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


def _missing(path: str | os.PathLike) -> DataNotFoundError:
    return DataNotFoundError(f"{path}: no such radar file")


def _utc(text: str, pattern: str) -> int:
    return int(calendar.timegm(time.strptime(text, pattern)))


def _stamp_from_name(path: str | os.PathLike) -> int | None:
    match = _STAMP.search(Path(path).name)
    if match is None:
        return None
    digits = match.group(1)
    try:
        return _utc(digits, "%Y%m%d%H%M%S" if len(digits) == 14 else "%Y%m%d%H%M")
    except ValueError:
        return None


def _text(value: object) -> str:
    """An HDF5 attribute (bytes, numpy string, 1-element array) as ``str``."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("ascii", "replace").strip("\x00 ")
    return str(value).strip()


def _number(value: object) -> float:
    return float(np.asarray(value).reshape(-1)[0])


def detect_format(path: str | os.PathLike) -> Format:
    """The format of ``path`` from its content: gzip/PGM magic or the HDF5 groups it holds."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head[:2] == GZIP_MAGIC:
            with gzip.open(path, "rb") as handle:
                head = handle.read(8)
    except FileNotFoundError as error:
        raise _missing(path) from error
    except (OSError, EOFError) as error:
        raise RadarFormatError(f"{path}: cannot read the file ({error})") from error
    if head[:2] == b"P5":
        return "fmi_pgm"
    if head == HDF5_MAGIC:
        try:
            with h5py.File(path, "r") as h5:
                conventions = _text(h5.attrs.get("Conventions", ""))
                if conventions.startswith("ODIM_H5"):
                    return "odim_h5"
                if "image1" in h5 or "overview" in h5:
                    return "knmi_h5"
                prepared = "frames" in h5 and "timestamps" in h5
        except OSError as error:
            raise RadarFormatError(f"{path}: cannot open as HDF5 ({error})") from error
        if prepared:
            raise RadarFormatError(
                f"{path}: this is a prepared radar file (frames and timestamps, the output of "
                "`predlearn prepare radar`), not a radar product; give the original files"
            )
        raise RadarFormatError(
            f"{path}: HDF5 file is neither ODIM_H5 (no 'Conventions' attribute starting with "
            "'ODIM_H5') nor KNMI (no 'image1' group)"
        )
    raise RadarFormatError(
        f"{path}: unknown format (expected a binary PGM 'P5' file, possibly gzip-compressed, or "
        f"HDF5); the file starts with {head!r}"
    )


# --- FMI PGM -------------------------------------------------------------------------------------


def _parse_pgm(data: bytes, path: str | os.PathLike) -> tuple[np.ndarray, dict[str, str]]:
    """Pixels (rows, cols) and header comments (``# key value`` lines) of a binary PGM."""
    if data[:2] != b"P5":
        raise RadarFormatError(f"{path}: bad PGM header: does not start with 'P5'")
    comments: dict[str, str] = {}
    fields: list[int] = []
    pos = 2
    while len(fields) < 3:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if pos >= len(data):
            raise RadarFormatError(f"{path}: bad PGM header: ends before width, height and maxval")
        if data[pos : pos + 1] == b"#":
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            line = data[pos + 1 : end].decode("ascii", "replace").strip()
            key, _, value = line.partition(" ")
            comments.setdefault(key, value.strip())
            pos = end + 1
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        token = data[pos:end]
        if not token.isdigit():
            raise RadarFormatError(
                f"{path}: bad PGM header: expected width, height and maxval, got {token[:20]!r}"
            )
        fields.append(int(token))
        pos = end
    width, height, maxval = fields
    if width < 1 or height < 1 or not 0 < maxval < 65536:
        raise RadarFormatError(
            f"{path}: bad PGM header: width {width}, height {height}, maxval {maxval} "
            "(need positive sizes and 0 < maxval < 65536)"
        )
    if maxval != 255:
        bits = "16-bit" if maxval > 255 else "8-bit"
        raise RadarFormatError(
            f"{path}: {bits} PGM with maxval {maxval}; FMI reflectivity composites are 8-bit "
            "with maxval 255 (dBZ = 0.5 PV - 32, 255 = no data), and other encodings are "
            "refused rather than rescaled: convert the file to that encoding"
        )
    pos += 1  # the single whitespace byte after maxval
    pixels = data[pos : pos + width * height]
    if len(pixels) != width * height:
        raise RadarFormatError(
            f"{path}: PGM truncated: {len(pixels)} pixel bytes, header says {width} x {height}"
        )
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width)
    return image, comments


def read_fmi_pgm(path: str | os.PathLike) -> RadarFrame:
    """An FMI reflectivity composite (PGM P5, optionally gzip): dBZ = 0.5 * PV - 32, 255 no data.

    The time is the ``obstime`` header comment (YYYYMMDDHHMM, UTC), else the file name's stamp.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if data[:2] == GZIP_MAGIC:
            data = gzip.decompress(data)
    except FileNotFoundError as error:
        raise _missing(path) from error
    except (OSError, EOFError, zlib.error) as error:
        raise RadarFormatError(f"{path}: cannot read the file ({error}); it is truncated or "
                               "damaged") from error
    image, comments = _parse_pgm(data, path)
    param = comments.get("param", "")
    if param and "reflectivity" not in param.lower():
        raise RadarFormatError(f"{path}: PGM product 'param {param}' is not a reflectivity")
    stamp = None
    if "obstime" in comments:
        try:
            stamp = _utc(comments["obstime"][:12], "%Y%m%d%H%M")
        except ValueError as error:
            raise RadarFormatError(
                f"{path}: bad 'obstime' header comment {comments['obstime']!r}"
            ) from error
    stamp = stamp if stamp is not None else _stamp_from_name(path)
    if stamp is None:
        raise RadarFormatError(
            f"{path}: no observation time (no 'obstime' header comment, no YYYYMMDDHHMM in the name)"
        )
    values = 0.5 * image.astype(np.float64) - 32.0
    values[image == FMI_NODATA] = np.nan
    return RadarFrame(values, "dBZ", stamp, "fmi_pgm", str(path), "reflectivity")


# --- HDF5 ---------------------------------------------------------------------------------------


def _open_h5(path: str | os.PathLike) -> h5py.File:
    """``path`` opened for reading; a missing or unreadable file raises a predlearn error."""
    if not Path(path).exists():
        raise _missing(path)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise RadarFormatError(f"{path}: cannot open as HDF5 ({error}); it is truncated, "
                               "damaged or not HDF5") from error


def _read(h5: h5py.File, name: str, path: str | os.PathLike) -> np.ndarray:
    """Dataset ``name`` in full; a damaged one raises ``RadarFormatError`` naming the file."""
    try:
        return np.asarray(h5[name][()])
    except (OSError, ValueError, TypeError) as error:
        raise RadarFormatError(f"{path}: cannot read '{name}' ({error}); the file is damaged")\
            from error


# --- KNMI HDF5 -----------------------------------------------------------------------------------

_FORMULA = re.compile(
    r"^\s*GEO\s*=\s*([-+0-9.eE]+)\s*\*\s*PV\s*(?:([-+])\s*([0-9.eE]+))?\s*$", re.IGNORECASE
)


def _knmi_time(h5: h5py.File) -> int | None:
    for group, key in (("image1", "image_datetime_valid"), ("overview", "product_datetime_end")):
        if group in h5 and key in h5[group].attrs:
            text = _text(h5[group].attrs[key])
            try:
                return _utc(text[:20], "%d-%b-%Y;%H:%M:%S")
            except ValueError:
                continue
    return None


def _knmi_interval_minutes(h5: h5py.File) -> float:
    """Accumulation length from ``overview`` start/end times; 5 minutes if absent."""
    attrs = h5["overview"].attrs if "overview" in h5 else {}
    try:
        start = _utc(_text(attrs["product_datetime_start"])[:20], "%d-%b-%Y;%H:%M:%S")
        end = _utc(_text(attrs["product_datetime_end"])[:20], "%d-%b-%Y;%H:%M:%S")
    except (KeyError, ValueError):
        return 5.0
    return (end - start) / 60.0 if end > start else 5.0


def read_knmi_h5(path: str | os.PathLike) -> RadarFrame:
    """A KNMI precipitation product: ``image1/image_data`` through ``calibration_formulas``.

    ``GEO = a * PV + b`` gives mm accumulated over the product interval (5 minutes); it is
    returned as a rate in mm/h (mm * 60 / interval). ``calibration_missing_data`` and
    ``calibration_out_of_image`` (65535) are no data. Reflectivity products
    (``image_geo_parameter`` containing DBZ) are returned in dBZ. The time is
    ``image1/image_datetime_valid`` or ``overview/product_datetime_end``, else the file name.
    """
    with _open_h5(path) as h5:
        if "image1/image_data" not in h5:
            raise RadarFormatError(f"{path}: KNMI HDF5 without the dataset 'image1/image_data'")
        raw = _read(h5, "image1/image_data", path)
        if "image1/calibration" not in h5:
            raise RadarFormatError(f"{path}: KNMI HDF5 without the group 'image1/calibration'")
        calibration = h5["image1/calibration"].attrs
        if "calibration_formulas" not in calibration:
            raise RadarFormatError(
                f"{path}: KNMI HDF5 without the attribute 'image1/calibration/calibration_formulas'"
            )
        formula = _text(calibration["calibration_formulas"])
        match = _FORMULA.match(formula)
        if match is None:
            raise RadarFormatError(
                f"{path}: cannot parse calibration_formulas {formula!r} (expected 'GEO=a*PV+b')"
            )
        gain = float(match.group(1))
        offset = float(match.group(3) or 0.0) * (-1.0 if match.group(2) == "-" else 1.0)
        missing = {
            int(_number(calibration[key]))
            for key in ("calibration_missing_data", "calibration_out_of_image")
            if key in calibration
        } or {65535}
        parameter = _text(h5["image1"].attrs.get("image_geo_parameter", "")).upper()
        minutes = _knmi_interval_minutes(h5)
        stamp = _knmi_time(h5)
    if raw.ndim != 2:
        raise RadarFormatError(f"{path}: 'image1/image_data' has shape {raw.shape}, expected 2-D")
    stamp = stamp if stamp is not None else _stamp_from_name(path)
    if stamp is None:
        raise RadarFormatError(
            f"{path}: no time (no 'overview/product_datetime_end', no YYYYMMDDHHMM in the name)"
        )
    values = gain * raw.astype(np.float64) + offset
    values[np.isin(raw, list(missing))] = np.nan
    if "DBZ" in parameter:
        return RadarFrame(values, "dBZ", stamp, "knmi_h5", str(path), parameter)
    if "PRECIP" not in parameter and parameter:
        raise RadarFormatError(
            f"{path}: unsupported KNMI image_geo_parameter {parameter!r} "
            "(expected accumulated precipitation [MM] or reflectivity [DBZ])"
        )
    return RadarFrame(values * 60.0 / minutes, "mm/h", stamp, "knmi_h5", str(path),
                      parameter or "PRECIPITATION")


# --- ODIM_H5 -------------------------------------------------------------------------------------


def read_odim_h5(path: str | os.PathLike) -> RadarFrame:
    """An ODIM_H5 composite: ``dataset1/data1/data`` * gain + offset (from ``dataset1/what``, or
    ``dataset1/data1/what``).

    ``undetect`` means measured, no echo: 0 mm/h, or -inf dBZ (both map to 0);
    ``nodata`` means not measured: NaN. Quantities: RATE (mm/h) or reflectivity (DBZH, TH, ...).
    The time is the root ``what`` date/time, else ``dataset1/what`` enddate/endtime. Only images
    are frames: the root ``what/object`` must be ``COMP`` or ``IMAGE``; a polar volume
    (``PVOL``), a scan or a file without ``what/object`` is refused.
    """
    with _open_h5(path) as h5:
        root_what = h5["what"].attrs if "what" in h5 else {}
        kind = _text(root_what["object"]).upper() if "object" in root_what else ""
        if kind not in ODIM_IMAGES:
            found = f"what/object {kind!r}" if kind else "no what/object attribute"
            raise RadarFormatError(
                f"{path}: ODIM_H5 with {found}; only images (object COMP or IMAGE) are radar "
                "frames: a polar volume (PVOL) or scan must first be made into a composite "
                "image (e.g. with the BALTRAD or wradlib tools)"
            )
        if "dataset1/data1/data" not in h5:
            raise RadarFormatError(f"{path}: ODIM_H5 file without the dataset 'dataset1/data1/data'")
        what: dict[str, object] = {}
        for group in ("dataset1/what", "dataset1/data1/what"):  # the innermost wins
            if group in h5:
                what.update(h5[group].attrs.items())
        if "quantity" not in what:
            raise RadarFormatError(f"{path}: ODIM_H5 without a 'quantity' in dataset1 'what'")
        quantity = _text(what["quantity"]).upper()
        gain = _number(what.get("gain", 1.0))
        offset = _number(what.get("offset", 0.0))
        raw = _read(h5, "dataset1/data1/data", path)
        stamp = None
        for group, date, clock in (("what", "date", "time"),
                                   ("dataset1/what", "enddate", "endtime")):
            attrs = h5[group].attrs if group in h5 else {}
            if date in attrs and clock in attrs:
                try:
                    stamp = _utc(_text(attrs[date]) + _text(attrs[clock])[:6], "%Y%m%d%H%M%S")
                    break
                except ValueError:
                    continue
    if raw.ndim != 2:
        raise RadarFormatError(f"{path}: 'dataset1/data1/data' has shape {raw.shape}, expected 2-D")
    stamp = stamp if stamp is not None else _stamp_from_name(path)
    if stamp is None:
        raise RadarFormatError(f"{path}: no time (no root 'what' date/time attributes)")
    values = raw.astype(np.float64) * gain + offset
    if "nodata" in what:
        values[raw == _number(what["nodata"])] = np.nan
    undetect = raw == _number(what["undetect"]) if "undetect" in what else np.zeros(raw.shape, bool)
    if quantity == "RATE":
        values[undetect] = 0.0
        return RadarFrame(values, "mm/h", stamp, "odim_h5", str(path), quantity)
    if quantity in ODIM_REFLECTIVITY:
        values[undetect] = -np.inf
        return RadarFrame(values, "dBZ", stamp, "odim_h5", str(path), quantity)
    raise RadarFormatError(
        f"{path}: unsupported ODIM quantity {quantity!r} (supported: RATE, "
        f"{', '.join(ODIM_REFLECTIVITY)})"
    )


_READERS = {"fmi_pgm": read_fmi_pgm, "knmi_h5": read_knmi_h5, "odim_h5": read_odim_h5}


def read_frame(path: str | os.PathLike, source_format: str | None = None) -> RadarFrame:
    """Read one radar file of ``source_format`` (detected from the content when None).

    Anything unexpected inside a file (an attribute of the wrong type, say) is a
    ``RadarFormatError`` naming the file, never a bare exception from deep inside.
    """
    source_format = source_format or detect_format(path)
    try:
        return _READERS[source_format](path)
    except (BadFileError, DataNotFoundError):
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError) as error:
        raise RadarFormatError(f"{path}: cannot read as {source_format} "
                               f"({type(error).__name__}: {error})") from error
