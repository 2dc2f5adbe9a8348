"""Read and write IDX files, the array format MNIST is distributed in (gzip-compressed or raw).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian 32-bit size per dimension, then the values in C order, big-endian. Files are
checked strictly so that a truncated download or a corrupted file fails with a message naming the
file and the problem instead of producing garbage digits.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from predlearn.datamodules.files import remove_stale_parts
from predlearn.errors import BadFileError, DataNotFoundError
from predlearn.files import written_atomically

__all__ = ["IDXFormatError", "read_idx", "write_idx"]

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dtype.kind, dtype.itemsize): code for code, dtype in _CODE_TO_DTYPE.items()
}


class IDXFormatError(BadFileError):
    """An IDX file is truncated, corrupted or not an IDX file at all."""


def _decompress_gzip(raw: bytes, path: Path) -> bytes:
    """Decompress every gzip member of ``raw``; reject truncated streams and trailing garbage."""
    parts: list[bytes] = []
    data = raw
    while True:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip wrapper, CRC checked
        try:
            parts.append(decompressor.decompress(data))
            parts.append(decompressor.flush())
        except zlib.error as err:
            raise IDXFormatError(f"{path}: corrupt gzip stream ({err})") from None
        if not decompressor.eof:
            raise IDXFormatError(
                f"{path}: gzip stream ends early (file truncated after {len(raw)} bytes)"
            )
        data = decompressor.unused_data
        if not data:
            return b"".join(parts)
        if data[:2] != GZIP_MAGIC:
            if not data.strip(b"\x00"):  # zero padding after a member is tolerated, as gzip does
                return b"".join(parts)
            raise IDXFormatError(
                f"{path}: {len(data)} bytes of trailing garbage after the gzip stream"
            )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip detected by its magic bytes, not by the name) into a numpy array.

    The array has the file's shape and a native-endian dtype (uint8 for MNIST). Raises
    ``DataNotFoundError`` (a ``FileNotFoundError``) for a missing file, ``IDXFormatError`` for a
    malformed one and ``BadFileError`` for one that cannot be read (a folder, no permission).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as error:
        raise DataNotFoundError(f"{path}: no such IDX file") from error
    except OSError as error:
        raise BadFileError(f"{path}: cannot read ({error.strerror or error})") from error
    data = _decompress_gzip(raw, path) if raw[:2] == GZIP_MAGIC else raw
    if len(data) < 4:
        raise IDXFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _CODE_TO_DTYPE:
        raise IDXFormatError(
            f"{path}: bad magic number 0x{data[:4].hex()} (expected 0x0000 followed by a type code "
            f"in {', '.join(f'0x{c:02x}' for c in _CODE_TO_DTYPE)} and the number of dimensions)"
        )
    if ndim == 0:
        raise IDXFormatError(f"{path}: the header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXFormatError(
            f"{path}: header truncated: {ndim} dimensions need {header_size} bytes, "
            f"found {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = _CODE_TO_DTYPE[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        what = "image data" if ndim == 3 else "data"
        detail = "file truncated" if found < expected else "trailing bytes after the data"
        raise IDXFormatError(
            f"{path}: expected {expected} bytes of {what}, found {found} "
            f"(header shape {tuple(shape)}; {detail})"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(
    path: str | os.PathLike, array: np.ndarray, compress: bool | None = None
) -> Path:
    """Write ``array`` as an IDX file; gzip it when ``compress`` is true.

    ``compress=None`` compresses when the name ends in ``.gz``. The gzip header carries no time
    stamp, so equal arrays give byte-identical files. The file is written to a temporary name and
    then renamed, so an interrupted write never leaves a partial file. Returns the path.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"an IDX array needs 1 to 255 dimensions, got {array.ndim}")
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"dtype {array.dtype} has no IDX type code; use uint8, int8, int16, int32, float32 "
            "or float64"
        )
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(f"dimension sizes must fit in 32 bits, got shape {array.shape}")
    payload = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    data = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape) + payload
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    remove_stale_parts(path)
    # open(..., "xb") rather than mkstemp so that the file gets the usual umask permissions.
    with written_atomically(path) as tmp, open(tmp, "xb") as handle:
        handle.write(data)
    return path
