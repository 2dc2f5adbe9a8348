"""The reader of FMI's reflectivity composites: binary PGM, optionally gzip-compressed."""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from predlearn.datamodules.radar_frame import (
    RadarFormatError,
    RadarFrame,
    missing_file,
    stamp_from_name,
    utc_seconds,
)

__all__ = ["FMI_NODATA", "GZIP_MAGIC", "read_fmi_pgm"]

GZIP_MAGIC = b"\x1f\x8b"
FMI_NODATA = 255  # FMI PGM: pixel value 255 = no data (outside the radar coverage)


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
        raise missing_file(path) from error
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
            stamp = utc_seconds(comments["obstime"][:12], "%Y%m%d%H%M")
        except ValueError as error:
            raise RadarFormatError(
                f"{path}: bad 'obstime' header comment {comments['obstime']!r}"
            ) from error
    stamp = stamp if stamp is not None else stamp_from_name(path)
    if stamp is None:
        raise RadarFormatError(
            f"{path}: no observation time (no 'obstime' header comment, no YYYYMMDDHHMM in the name)"
        )
    values = 0.5 * image.astype(np.float64) - 32.0
    values[image == FMI_NODATA] = np.nan
    return RadarFrame(values, "dBZ", stamp, "fmi_pgm", str(path), "reflectivity")

