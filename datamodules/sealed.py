"""A verified-complete marker for the HDF5 files predlearn writes (caches, prepared radar files).

Why: a cache that a killed build, a full disk or a partial copy left damaged should be found out
when it is opened, with a message, not deep inside h5py in the middle of an epoch.

How: the writer calls ``seal(h5, checksums)`` last, after all data. It stores the attribute
``predlearn_complete``: JSON with the shape and dtype of every top-level dataset and, for those
given, the CRC-32 of their content (C order, as stored). ``problem(path)`` is the cheap check made
on every open: the file opens as HDF5 (HDF5 itself refuses a file shorter than it should be), the
marker is there, every dataset has the recorded shape and dtype, and the first and last entries of
each read. ``checksum_problem`` compares data already in memory with the recorded CRC-32 (the
prepared radar file, read whole anyway). The caches' datasets are also written with HDF5's
Fletcher-32 filter, so a damaged chunk fails its own read (``unreadable``) instead of returning
garbage; checking every CRC-32 of a multi-gigabyte cache on each open would not be cheap.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import h5py
import numpy as np

from predlearn.errors import BadFileError

__all__ = ["MARKER", "Checksums", "checksum_problem", "problem", "read_marker", "seal",
           "unreadable"]

MARKER = "predlearn_complete"
MARKER_VERSION = 1


class Checksums:
    """Running CRC-32 per dataset name, fed with arrays in the order they are written."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def update(self, name: str, array: Any) -> None:
        """Add ``array``'s bytes (C order) to the CRC-32 of ``name``."""
        self.values[name] = zlib.crc32(_bytes(array), self.values.get(name, 0))


def _bytes(array: Any) -> memoryview:
    """An array's bytes in C order, without a copy when it is contiguous already."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def crc32(array: Any) -> int:
    """CRC-32 of an array's bytes in C order, as ``Checksums`` computes it."""
    return zlib.crc32(_bytes(array))


def seal(h5: h5py.File, checksums: Checksums | Mapping[str, int] | None = None) -> None:
    """Write the completeness marker; call it last, once every dataset is written in full."""
    sums = checksums.values if isinstance(checksums, Checksums) else dict(checksums or {})
    datasets: dict[str, dict[str, Any]] = {}
    for name, item in h5.items():
        if isinstance(item, h5py.Dataset):
            record: dict[str, Any] = {"shape": list(item.shape), "dtype": str(item.dtype)}
            if name in sums:
                record["crc32"] = int(sums[name])
            datasets[name] = record
    h5.flush()
    h5.attrs[MARKER] = json.dumps({"version": MARKER_VERSION, "datasets": datasets})


def read_marker(h5: h5py.File) -> dict[str, Any] | None:
    """The marker of an open file, or None when it has none (or an unreadable one)."""
    raw = h5.attrs.get(MARKER)
    if raw is None:
        return None
    try:
        marker = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (ValueError, UnicodeDecodeError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("datasets"), dict) \
        else None


def _probe(dataset: h5py.Dataset) -> None:
    """Read the first and last entries (along the first axis) of a dataset."""
    if dataset.shape is None or dataset.size == 0:
        return
    if dataset.ndim == 0:
        dataset[()]
        return
    dataset[0]
    dataset[-1]


def problem(path: str | os.PathLike, required: Iterable[str] = ()) -> str | None:
    """Why ``path`` is not a complete file sealed by ``seal``, or None when it is.

    ``required`` names datasets that must be there. Cheap: no content is read beyond the first
    and last entries of each dataset.
    """
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        return f"it cannot be opened as HDF5 ({error}); it is truncated, damaged or not HDF5"
    with h5:
        marker = read_marker(h5)
        if marker is None:
            return ("it has no completeness marker (its writing was interrupted, or an older "
                    "predlearn wrote it)")
        recorded: dict[str, Any] = marker["datasets"]
        for name in required:
            if name not in recorded:
                return f"it has no dataset {name!r}"
        for name, record in recorded.items():
            if name not in h5 or not isinstance(h5[name], h5py.Dataset):
                return f"its dataset {name!r} is missing"
            dataset = h5[name]
            if list(dataset.shape) != record.get("shape") or str(dataset.dtype) != record.get(
                    "dtype"):
                return (f"its dataset {name!r} is {dataset.dtype} {tuple(dataset.shape)}; the "
                        f"completeness marker says {record.get('dtype')} "
                        f"{tuple(record.get('shape') or ())}")
            try:
                _probe(dataset)
            except (OSError, ValueError, RuntimeError) as error:
                return f"its dataset {name!r} cannot be read ({error})"
    return None


def checksum_problem(h5: h5py.File, name: str, data: np.ndarray) -> str | None:
    """Why ``data`` (dataset ``name`` of ``h5``, read whole) differs from its recorded CRC-32,
    or None when it matches or no CRC-32 was recorded."""
    marker = read_marker(h5)
    record = (marker or {}).get("datasets", {}).get(name, {})
    if "crc32" not in record:
        return None
    actual = crc32(data)
    if actual != record["crc32"]:
        return (f"the content of its dataset {name!r} has CRC-32 {actual:08x}, not the "
                f"{record['crc32']:08x} recorded when it was written: the file is damaged")
    return None


def unreadable(path: str | os.PathLike, error: BaseException, remedy: str) -> BadFileError:
    """The error for a read that failed inside a file that passed its open check (a damaged
    chunk found by its Fletcher-32 checksum, say): names the file and what to do."""
    return BadFileError(f"{path}: cannot read part of this file ({error}); it is damaged. "
                        f"{remedy}")
