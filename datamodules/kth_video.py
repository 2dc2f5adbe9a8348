"""KTH action files: finding the clips, decoding them, and the HDF5 cache of decoded frames.

Six actions by 25 persons in four scenarios, 160 x 120 gray AVI at 25 fps (paper §4.2; Schuldt
et al. 2004). Frames are decoded with PyAV, converted to gray (the luma plane), resized to
``frame_size`` x ``frame_size`` by bilinear interpolation with antialiasing
(``torch.nn.functional.interpolate``, ``antialias=True``) and rounded to uint8. Every decoded
clip goes once into one HDF5 cache (``root/cache/kth-v1-<size>px-<hash>.h5``); later runs only
read it. The hash covers the options that change the frames and a listing (names, sizes,
modification times) of the source files, so a changed source or option gives a new cache.

The cache carries a completeness marker written last, with the CRC-32 of its datasets
(``predlearn.datamodules.sealed``), and Fletcher-32 checksums on its chunks: a cache that is
truncated, damaged or unfinished (or was made by a predlearn without the marker) is rebuilt
with a warning when it is opened (``cache_problem``); a damaged chunk found later, while
reading, raises ``BadFileError`` saying to delete the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from lightning_utilities.core.imports import RequirementCache

from predlearn.datamodules import sealed
from predlearn.datamodules.files import progress, remove_stale_parts
from predlearn.datamodules.kth_annotations import ACTIONS, is_clip_name, parse_clip_name
from predlearn.errors import BadFileError, DataNotFoundError, OutputError, PredlearnError
from predlearn.files import written_atomically

__all__ = [
    "CACHE_FORMAT_VERSION",
    "RESIZE_METHOD",
    "ClipSource",
    "build_cache",
    "cache_file_name",
    "cache_problem",
    "decode_clip",
    "find_sources",
    "read_index",
    "resize_frames",
]

CACHE_FORMAT_VERSION = 1
RESIZE_METHOD = "bilinear-antialias"
_CHUNK_FRAMES = 16

_AVI_NAME = re.compile(r"^(person\d+_[a-z]+_d\d+)_uncomp\.avi$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class ClipSource:
    """Where one clip's frames are: an AVI file, a member of a zip archive or a PNG folder."""

    name: str
    kind: Literal["avi", "zip", "png"]
    path: Path
    member: str = ""

    def describe(self) -> str:
        """The file (and archive member) for messages."""
        return f"{self.path} (member {self.member})" if self.kind == "zip" else str(self.path)


def find_sources(root: str | os.PathLike, actions: Iterable[str] = ACTIONS) -> dict[str, ClipSource]:
    """Every clip of ``actions`` found under ``root``, by clip name.

    Looked for, in this order of preference: ``root/<action>/personXX_<action>_dY_uncomp.avi``
    (an extracted archive), ``root/<action>/personXX_<action>_dY_uncomp/image*.png`` (frames
    extracted to PNG) and the original archive ``root/<action>.zip``.
    """
    root = Path(root)
    found: dict[str, ClipSource] = {}
    for action in actions:
        archive = root / f"{action}.zip"
        if archive.is_file():
            try:
                with zipfile.ZipFile(archive) as zf:
                    members = zf.namelist()
            except (zipfile.BadZipFile, OSError) as err:
                raise BadFileError(
                    f"{archive} is not a readable zip archive ({err}); it is damaged or "
                    "truncated: download it again"
                ) from err
            for member in members:
                match = _AVI_NAME.match(Path(member).name)
                if match and parse_clip_name(match[1].lower())[1] == action:
                    found[match[1].lower()] = ClipSource(match[1].lower(), "zip", archive, member)
        folder = root / action
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.is_dir() and entry.name.endswith("_uncomp"):
                    name = entry.name.removesuffix("_uncomp").lower()
                    if is_clip_name(name) and any(entry.glob("image*.png")):
                        found[name] = ClipSource(name, "png", entry)
            for entry in sorted(folder.iterdir()):
                match = _AVI_NAME.match(entry.name)
                if match and entry.is_file():
                    found[match[1].lower()] = ClipSource(match[1].lower(), "avi", entry)
    return dict(sorted(found.items()))


def _png_files(folder: Path) -> list[Path]:
    def frame_number(path: Path) -> tuple[int, str]:
        digits = re.sub(r"\D", "", path.stem)
        return (int(digits) if digits else 0, path.name)

    return sorted(folder.glob("image*.png"), key=frame_number)


def _source_listing(sources: Mapping[str, ClipSource]) -> list[list[Any]]:
    """(clip, kind, file, size, mtime) of every file the clips are read from."""
    listing = []
    for name, source in sources.items():
        files = _png_files(source.path) if source.kind == "png" else [source.path]
        for file in files:
            stat = file.stat()
            listing.append([name, source.kind, file.name, stat.st_size, stat.st_mtime_ns])
    return listing


#: PyAV, the FFmpeg binding that decodes the KTH videos: an optional extra of predlearn
#: (``pip install "predlearn[kth]"``), needed only when a clip is decoded.
PYAV = RequirementCache("av>=12")


class PyAVMissingError(PredlearnError, ModuleNotFoundError):
    """PyAV, needed to decode the KTH videos, is not installed; the message says how to."""


def _pyav() -> Any:
    """The ``av`` module, or an error that says how to install it."""
    if not PYAV:
        raise PyAVMissingError(
            "decoding the KTH videos needs PyAV (the FFmpeg binding): pip install "
            f"'predlearn[kth]' (or pip install 'av>=12'); {PYAV.message}")
    import av

    return av


# --------------------------------------------------------------------------------------------
# Decoding and the cache


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, H, W) -> uint8 (T, size, size): bilinear with antialiasing, rounded."""
    if frames.shape[1:] == (size, size):
        return np.ascontiguousarray(frames, dtype=np.uint8)
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).float()[:, None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=True)
    return resized[:, 0].round_().clamp_(0, 255).to(torch.uint8).numpy()


def _decode_video(handle: Any, label: str) -> np.ndarray:
    av = _pyav()
    try:
        with av.open(handle) as container:
            stream = container.streams.video[0]
            expected = stream.frames
            frames = [frame.to_ndarray(format="gray") for frame in container.decode(stream)]
    except (av.FFmpegError, IndexError, EOFError) as err:
        raise BadFileError(f"{label}: cannot decode the video ({err}); the file may be "
                           "damaged or truncated: download it again") from err
    if not frames:
        raise BadFileError(f"{label}: no frames decoded; the file is damaged or truncated: "
                           "download it again")
    if expected and len(frames) < expected:
        raise BadFileError(f"{label}: decoded {len(frames)} of the {expected} frames the "
                           "header lists; the file is truncated or damaged: download it again")
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise BadFileError(f"{label}: frames of different sizes {sorted(shapes)}; the file is "
                           "damaged: download it again")
    return np.stack(frames)


def decode_clip(source: ClipSource, frame_size: int | None = None) -> np.ndarray:
    """All frames of a clip as uint8 gray (T, H, W), resized to ``frame_size`` when given.

    Raises ``BadFileError`` (a ``ValueError``) naming the file when it cannot be decoded, and
    ``DataNotFoundError`` when it is gone.
    """
    av = _pyav()
    if not source.path.exists():
        raise DataNotFoundError(f"{source.path}: the KTH clip {source.name} is gone (moved or "
                                "deleted while predlearn ran?)")
    if source.kind == "avi":
        frames = _decode_video(str(source.path), str(source.path))
    elif source.kind == "zip":
        try:
            with zipfile.ZipFile(source.path) as zf:
                data = zf.read(source.member)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as err:
            raise BadFileError(f"{source.describe()}: cannot read ({err}); the archive is "
                               "damaged or truncated: download it again") from err
        frames = _decode_video(io.BytesIO(data), source.describe())
    else:
        images = []
        for file in _png_files(source.path):
            try:
                with av.open(str(file)) as container:
                    images.append(next(container.decode(video=0)).to_ndarray(format="gray"))
            except (av.FFmpegError, StopIteration, OSError) as err:
                raise BadFileError(f"{file}: cannot decode the image ({err}); the file is "
                                   "damaged: extract it again") from err
        if not images:
            raise DataNotFoundError(f"{source.path}: no image*.png frames")
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise BadFileError(f"{source.path}: frames of different sizes {sorted(shapes)}; "
                               "every image*.png of a clip must have the same size")
        frames = np.stack(images)
    return frames if frame_size is None else resize_frames(frames, frame_size)


def cache_file_name(frame_size: int, sources: Mapping[str, ClipSource]) -> str:
    """``kth-v1-<size>px-<hash>.h5``; the hash covers the options and the source listing."""
    key = {
        "version": CACHE_FORMAT_VERSION,
        "frame_size": frame_size,
        "resize": RESIZE_METHOD,
        "sources": _source_listing(sources),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"kth-v{CACHE_FORMAT_VERSION}-{frame_size}px-{digest}.h5"


def build_cache(path: str | os.PathLike, sources: Mapping[str, ClipSource], frame_size: int) -> Path:
    """Decode every clip once into one HDF5 file (written to a temporary name, then renamed).

    Layout: ``frames`` (N, S, S) uint8 (gzip, chunks of 16 frames, Fletcher-32) holds the clips
    one after the other; ``clip_names``, ``clip_offsets`` and ``clip_lengths`` say where each one
    is; the completeness marker (``sealed.seal``) is written last. Temporary files of builds
    killed long ago are deleted first.
    """
    path = Path(path)
    remove_stale_parts(path)
    bar = progress(len(sources), f"KTH: decoding {len(sources)} clips into {path.name}",
                   unit="clip")
    names, offsets, lengths = [], [], []
    sums = sealed.Checksums()
    try:
        with written_atomically(path) as tmp, h5py.File(tmp, "w") as h5:
            frames = h5.create_dataset(
                "frames", (0, frame_size, frame_size), maxshape=(None, frame_size, frame_size),
                dtype="u1", chunks=(_CHUNK_FRAMES, frame_size, frame_size), compression="gzip",
                fletcher32=True,
            )
            total = 0
            for name, source in sources.items():
                clip = decode_clip(source, frame_size)
                frames.resize(total + len(clip), axis=0)
                frames[total:] = clip
                sums.update("frames", clip)
                names.append(name)
                offsets.append(total)
                lengths.append(len(clip))
                total += len(clip)
                bar.update(1)
            index = {"clip_names": np.array(names, dtype="S"),
                     "clip_offsets": np.array(offsets, dtype=np.int64),
                     "clip_lengths": np.array(lengths, dtype=np.int64)}
            for key, array in index.items():
                h5.create_dataset(key, data=array)
                sums.update(key, array)
            h5.attrs.update({
                "format_version": CACHE_FORMAT_VERSION,
                "frame_size": frame_size,
                "resize": RESIZE_METHOD,
                "complete": True,
            })
            sealed.seal(h5, sums)
    except PredlearnError:
        raise
    except OSError as error:  # the cache folder is not writable, the disk is full, ...
        raise OutputError(f"cannot write the KTH cache {path} ({error}); make {path.parent} "
                          "writable, or give another --data.root") from error
    finally:
        bar.close()
    return path


def _index(path: str | os.PathLike) -> tuple[dict[str, tuple[int, int]] | None, str | None]:
    """(clip -> (offset, length), None) of a complete cache, or (None, why not)."""
    reason = sealed.problem(path, required=("frames", "clip_names", "clip_offsets",
                                            "clip_lengths"))
    if reason is not None:
        return None, reason
    try:
        with h5py.File(path, "r") as h5:
            arrays = {key: h5[key][()] for key in ("clip_names", "clip_offsets", "clip_lengths")}
            for key, array in arrays.items():
                reason = reason or sealed.checksum_problem(h5, key, array)
            total = h5["frames"].shape[0]
    except (OSError, KeyError, ValueError) as error:
        return None, f"its index cannot be read ({error})"
    if reason is not None:
        return None, reason
    names = [n.decode() for n in arrays["clip_names"]]
    offsets, lengths = arrays["clip_offsets"], arrays["clip_lengths"]
    if not len(names) == len(offsets) == len(lengths) or (
            len(names) and offsets[-1] + lengths[-1] != total):
        return None, "its index does not match its frames"
    return {n: (int(o), int(k)) for n, o, k in zip(names, offsets, lengths)}, None


def cache_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete KTH cache, or None when it is (cheap checks only)."""
    return _index(path)[1]


def read_index(path: str | os.PathLike) -> dict[str, tuple[int, int]] | None:
    """clip -> (offset, length) of a complete cache, or None when it is not one
    (``cache_problem`` says why)."""
    return _index(path)[0]
