"""Radar products by format: detecting a file's format from its content, and reading any one.

Each reader (``radar_fmi``, ``radar_knmi``, ``radar_odim``) returns a ``RadarFrame``: the source
grid as float64 in its physical quantity (reflectivity in dBZ, or rain rate in mm/h), NaN where
there is no data, and the observation time in seconds since the epoch (UTC). The format is
detected from the file's content (``detect_format``), not from its name.

Refusals (``RadarFormatError``, a ``BadFileError``, naming the file): a PGM that is not 8-bit
with maxval 255 (FMI's encoding dBZ = 0.5 PV - 32 is defined for 8-bit values only, so a 16-bit
PGM is refused rather than rescaled), an ODIM file that is not an image (``what/object`` other
than ``COMP`` or ``IMAGE``: a polar volume ``PVOL`` or scan is not a frame), a file that is
truncated or damaged. A missing file raises ``DataNotFoundError``.
"""

from __future__ import annotations

import gzip
import os

import h5py

from predlearn.datamodules.radar_fmi import GZIP_MAGIC, read_fmi_pgm
from predlearn.datamodules.radar_frame import (
    Format,
    RadarFormatError,
    RadarFrame,
    attr_text,
    missing_file,
)
from predlearn.datamodules.radar_knmi import read_knmi_h5
from predlearn.datamodules.radar_odim import read_odim_h5
from predlearn.errors import BadFileError, DataNotFoundError

__all__ = ["HDF5_MAGIC", "detect_format", "read_frame"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def detect_format(path: str | os.PathLike) -> Format:
    """The format of ``path`` from its content: gzip/PGM magic or the HDF5 groups it holds."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head[:2] == GZIP_MAGIC:
            with gzip.open(path, "rb") as handle:
                head = handle.read(8)
    except FileNotFoundError as error:
        raise missing_file(path) from error
    except (OSError, EOFError) as error:
        raise RadarFormatError(f"{path}: cannot read the file ({error})") from error
    if head[:2] == b"P5":
        return "fmi_pgm"
    if head == HDF5_MAGIC:
        try:
            with h5py.File(path, "r") as h5:
                conventions = attr_text(h5.attrs.get("Conventions", ""))
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
