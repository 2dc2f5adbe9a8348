"""KTH action (paper §4.2; Schuldt et al. 2004; test protocol of Villegas et al. 2017).

Six actions by 25 persons in four scenarios, 160 x 120 gray AVI at 25 fps. Frames are decoded
with PyAV, converted to gray (the luma plane), resized to ``frame_size`` x ``frame_size`` by
bilinear interpolation with antialiasing (``torch.nn.functional.interpolate``, ``antialias=True``)
and rounded to uint8. Every decoded clip goes once into one HDF5 cache
(``root/cache/kth-v1-<size>px-<hash>.h5``); later runs only read it. The hash covers the options
that change the frames and a listing (names, sizes, modification times) of the source files, so
a changed source or option gives a new cache.

Windows (DESIGN 1.7): persons 1-16 train, 17-25 test. Training windows have 20 frames (10 -> 10)
at stride 1; test windows 30 frames (10 -> 20) at stride 3 for running and jogging, 20 for the
other actions. Running, jogging and walking clips are cut into the sub-clips of the published
annotation file ``00sequences.txt`` (the person is in view); boxing, hand waving and hand clapping
use whole clips. A window never crosses a sub-clip boundary. Windows index the cache: no frames
are copied.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from predlearn.datamodules.base import FrameWindows, HDF5Backed, SequenceDataModule
from predlearn.datamodules.files import progress, written_atomically
from predlearn.registry import register_datamodule

__all__ = [
    "ACTIONS",
    "ANNOTATION_FILE",
    "TRIMMED_ACTIONS",
    "ClipSource",
    "KTHDataModule",
    "KTHWindows",
    "build_cache",
    "cache_file_name",
    "decode_clip",
    "default_test_strides",
    "download_kth",
    "find_sources",
    "parse_clip_name",
    "parse_sequence_annotations",
    "resize_frames",
    "sub_clips",
    "window_counts",
    "window_starts",
]

ACTIONS = ("walking", "jogging", "running", "boxing", "handwaving", "handclapping")
# DESIGN 1.7 / Villegas et al.: these actions are cut to the annotated sub-clips.
TRIMMED_ACTIONS = ("walking", "jogging", "running")
FAST_ACTIONS = ("running", "jogging")  # test stride 3; the others 20
ANNOTATION_FILE = "00sequences.txt"
# md5 of the published annotation file, checked against a copy of the original distribution.
# No md5 is published for the six video archives, so none is pinned: a downloaded archive is
# verified by opening it (zipfile.testzip) instead.
ANNOTATION_MD5 = "0aec5008d61c403ff61a50a483abd6ed"
BASE_URL = "http://www.csc.kth.se/cvap/actions/"
CACHE_FORMAT_VERSION = 1
RESIZE_METHOD = "bilinear-antialias"
_CHUNK_FRAMES = 16

_CLIP_NAME = re.compile(r"^person(\d+)_([a-z]+)_d(\d+)$")
_AVI_NAME = re.compile(r"^(person\d+_[a-z]+_d\d+)_uncomp\.avi$", re.IGNORECASE)
_ANNOTATION_LINE = re.compile(r"^(person\d+_[a-z]+_d\d+)\s+frames\s+(.*)$", re.IGNORECASE)
_MISSING_LINE = re.compile(r"^person\d+_[a-z]+_d\d+\s+\*?missing\*?$", re.IGNORECASE)
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


# --------------------------------------------------------------------------------------------
# Annotations and clip names


def parse_clip_name(name: str) -> tuple[int, str, int]:
    """``personXX_action_dY`` -> (person, action, scenario)."""
    match = _CLIP_NAME.match(name)
    if match is None:
        raise ValueError(f"not a KTH clip name: {name!r} (expected personXX_<action>_dY)")
    return int(match[1]), match[2], int(match[3])


def parse_sequence_annotations(path: str | os.PathLike) -> dict[str, list[tuple[int, int]]]:
    """Read ``00sequences.txt``: clip name -> sorted 1-based inclusive frame ranges.

    Tolerates CRLF line ends, the free-text header, tabs and stray spaces, any number of ranges
    and ranges out of order. Ranges may touch (the real file has ``232-338, 338-432``); each
    stays its own sub-clip. A clip marked ``*missing*`` is left out. A line that starts with ``person`` but is not
    ``personXX_action_dY frames a-b, c-d, ...`` (or has a reversed or 0-based range, or repeats a
    clip) raises ``ValueError`` naming the file and line number.
    """
    path = Path(path)
    text = path.read_bytes().decode("latin-1")
    result: dict[str, list[tuple[int, int]]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line.lower().startswith("person") or not line[6:7].isdigit():
            continue  # header text (or blank line)

        def fail(reason: str, line: str = line, number: int = number) -> ValueError:
            return ValueError(f"{path}, line {number}: {reason}: {line!r}")

        if _MISSING_LINE.match(line):
            continue  # the real file marks its one absent clip 'personXX_action_dY *missing*'
        match = _ANNOTATION_LINE.match(line)
        if match is None:
            raise fail("expected 'personXX_<action>_dY  frames  a-b, c-d, ...'")
        name, spec = match[1].lower(), match[2]
        if name in result:
            raise fail(f"clip {name} is listed twice")
        ranges = []
        for part in spec.split(","):
            bounds = _RANGE.match(part.strip())
            if bounds is None:
                raise fail(f"bad frame range {part.strip()!r}")
            first, last = int(bounds[1]), int(bounds[2])
            if not 1 <= first <= last:
                raise fail(f"frame range {first}-{last} is empty or not 1-based")
            ranges.append((first, last))
        result[name] = sorted(ranges)
    return result


# --------------------------------------------------------------------------------------------
# Windows


def sub_clips(
    clip_lengths: Mapping[str, int],
    annotations: Mapping[str, Sequence[tuple[int, int]]],
    actions: Iterable[str] = ACTIONS,
    persons: Iterable[int] | None = None,
    trimmed_actions: Iterable[str] = TRIMMED_ACTIONS,
) -> list[tuple[str, int, int]]:
    """Sub-clips (clip, first, stop) as 0-based half-open frame ranges, sorted by clip.

    A clip of a trimmed action gives one sub-clip per annotated range (clipped to its length
    when the length is known; a clip without annotation is left out). A clip of another action
    is one whole sub-clip and counts only when its length is given.
    """
    actions, trimmed = set(actions), set(trimmed_actions)
    wanted = None if persons is None else set(persons)
    names = set(clip_lengths) | {n for n in annotations if parse_clip_name(n)[1] in trimmed}
    result = []
    for name in sorted(names):
        person, action, _ = parse_clip_name(name)
        if action not in actions or (wanted is not None and person not in wanted):
            continue
        length = clip_lengths.get(name)
        if action in trimmed:
            for first, last in annotations.get(name, ()):
                stop = last if length is None else min(last, length)
                if stop > first - 1:
                    result.append((name, first - 1, stop))
        elif length is not None and length > 0:
            result.append((name, 0, int(length)))
    return result


def window_starts(first: int, stop: int, length: int, stride: int) -> range:
    """Start frames of the windows of ``length`` frames at ``stride`` inside [first, stop)."""
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be positive; got {length}, {stride}")
    return range(first, max(first, stop - length + 1), stride)


def _stride_of(strides: int | Mapping[str, int], action: str) -> int:
    return strides if isinstance(strides, int) else strides[action]


def window_counts(
    clip_lengths: Mapping[str, int],
    annotations: Mapping[str, Sequence[tuple[int, int]]],
    persons: Iterable[int],
    length: int,
    strides: int | Mapping[str, int],
    actions: Iterable[str] = ACTIONS,
    trimmed_actions: Iterable[str] = TRIMMED_ACTIONS,
) -> dict[str, int]:
    """Windows per action of ``length`` frames at ``strides`` (one int or per action).

    The protocol's counts: ``window_counts(lengths, annotations, range(1, 17), 20, 1)`` for
    training and ``window_counts(lengths, annotations, range(17, 26), 30, default_test_strides())``
    for test. Trimmed actions need only the annotations (lengths just clip the ranges).
    """
    actions = tuple(actions)
    counts = dict.fromkeys(actions, 0)
    for name, first, stop in sub_clips(clip_lengths, annotations, actions, persons,
                                       trimmed_actions):
        action = parse_clip_name(name)[1]
        counts[action] += len(window_starts(first, stop, length, _stride_of(strides, action)))
    return counts


def default_test_strides(fast: int = 3, other: int = 20) -> dict[str, int]:
    """Test strides per action: ``fast`` for running and jogging, ``other`` for the rest."""
    return {action: fast if action in FAST_ACTIONS else other for action in ACTIONS}


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
            except zipfile.BadZipFile as err:
                raise ValueError(f"{archive} is not a readable zip archive ({err})") from err
            for member in members:
                match = _AVI_NAME.match(Path(member).name)
                if match and parse_clip_name(match[1].lower())[1] == action:
                    found[match[1].lower()] = ClipSource(match[1].lower(), "zip", archive, member)
        folder = root / action
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.is_dir() and entry.name.endswith("_uncomp"):
                    name = entry.name.removesuffix("_uncomp").lower()
                    if _CLIP_NAME.match(name) and any(entry.glob("image*.png")):
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
    try:
        with av.open(handle) as container:
            stream = container.streams.video[0]
            expected = stream.frames
            frames = [frame.to_ndarray(format="gray") for frame in container.decode(stream)]
    except (av.FFmpegError, IndexError, EOFError) as err:
        raise ValueError(f"{label}: cannot decode the video ({err}); the file may be damaged "
                         "or truncated: download it again") from err
    if not frames:
        raise ValueError(f"{label}: no frames decoded; the file is damaged or truncated")
    if expected and len(frames) < expected:
        raise ValueError(f"{label}: decoded {len(frames)} of the {expected} frames the header "
                         "lists; the file is truncated or damaged: download it again")
    return np.stack(frames)


def decode_clip(source: ClipSource, frame_size: int | None = None) -> np.ndarray:
    """All frames of a clip as uint8 gray (T, H, W), resized to ``frame_size`` when given.

    Raises ``ValueError`` naming the file when it cannot be decoded.
    """
    if source.kind == "avi":
        frames = _decode_video(str(source.path), str(source.path))
    elif source.kind == "zip":
        with zipfile.ZipFile(source.path) as zf:
            try:
                data = zf.read(source.member)
            except (zipfile.BadZipFile, OSError) as err:
                raise ValueError(f"{source.describe()}: cannot read ({err})") from err
        frames = _decode_video(io.BytesIO(data), source.describe())
    else:
        images = []
        for file in _png_files(source.path):
            try:
                with av.open(str(file)) as container:
                    images.append(next(container.decode(video=0)).to_ndarray(format="gray"))
            except (av.FFmpegError, StopIteration) as err:
                raise ValueError(f"{file}: cannot decode the image ({err})") from err
        if not images:
            raise ValueError(f"{source.path}: no image*.png frames")
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

    Layout: ``frames`` (N, S, S) uint8 (gzip, chunks of 16 frames) holds the clips one after
    the other; ``clip_names``, ``clip_offsets`` and ``clip_lengths`` say where each one is.
    """
    path = Path(path)
    bar = progress(len(sources), f"KTH: decoding {len(sources)} clips into {path.name}",
                   unit="clip")
    names, offsets, lengths = [], [], []
    try:
        with written_atomically(path) as tmp, h5py.File(tmp, "w") as h5:
            frames = h5.create_dataset(
                "frames", (0, frame_size, frame_size), maxshape=(None, frame_size, frame_size),
                dtype="u1", chunks=(_CHUNK_FRAMES, frame_size, frame_size), compression="gzip",
            )
            total = 0
            for name, source in sources.items():
                clip = decode_clip(source, frame_size)
                frames.resize(total + len(clip), axis=0)
                frames[total:] = clip
                names.append(name)
                offsets.append(total)
                lengths.append(len(clip))
                total += len(clip)
                bar.update(1)
            h5.create_dataset("clip_names", data=np.array(names, dtype="S"))
            h5.create_dataset("clip_offsets", data=np.array(offsets, dtype=np.int64))
            h5.create_dataset("clip_lengths", data=np.array(lengths, dtype=np.int64))
            h5.attrs.update({
                "format_version": CACHE_FORMAT_VERSION,
                "frame_size": frame_size,
                "resize": RESIZE_METHOD,
                "complete": True,
            })
    finally:
        bar.close()
    return path


def _read_index(path: Path) -> dict[str, tuple[int, int]] | None:
    """clip -> (offset, length) of a complete cache, or None when unreadable."""
    try:
        with h5py.File(path, "r") as h5:
            if not h5.attrs.get("complete", False):
                return None
            names = [n.decode() for n in h5["clip_names"][()]]
            offsets, lengths = h5["clip_offsets"][()], h5["clip_lengths"][()]
            if len(names) and offsets[-1] + lengths[-1] != h5["frames"].shape[0]:
                return None
    except (OSError, KeyError, ValueError):
        return None
    return {n: (int(o), int(k)) for n, o, k in zip(names, offsets, lengths)}


# --------------------------------------------------------------------------------------------
# Download and offline messages


def _fetch(url: str, target: Path, timeout: float = 60.0) -> Path:
    with written_atomically(target) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        if target.suffix == ".zip":
            try:
                with zipfile.ZipFile(tmp) as zf:
                    bad = zf.testzip()
            except zipfile.BadZipFile as err:
                raise ValueError(f"{url}: the download is not a zip archive ({err})") from err
            if bad is not None:
                raise ValueError(f"{url}: member {bad} of the download is damaged")
        elif target.name == ANNOTATION_FILE:
            actual = hashlib.md5(tmp.read_bytes()).hexdigest()
            if actual != ANNOTATION_MD5:
                raise ValueError(f"{url}: md5 {actual}, expected {ANNOTATION_MD5}")
    return target


def _needed_files(actions: Sequence[str], trimmed: Sequence[str]) -> list[str]:
    files = [f"{action}.zip" for action in actions]
    if any(action in trimmed for action in actions):
        files.append(ANNOTATION_FILE)
    return files


def _offline_message(root: Path, missing: list[str], needed: list[str], reason: str) -> str:
    lines = [f"KTH action needs these files in the folder {root}:"]
    for name in needed:
        flag = "  (missing)" if name in missing else ""
        lines.append(f"  {name}{flag}  <- {BASE_URL}{name}")
    lines += [
        (
            "Each <action>.zip may instead be extracted to the folder "
            f"{root}/<action>/ (personXX_<action>_dY_uncomp.avi), or given as frames "
            f"{root}/<action>/personXX_<action>_dY_uncomp/image*.png."
        ),
        reason,
        (
            "Or let predlearn download them (--data.download=true, the default) on a machine "
            "with internet access."
        ),
    ]
    return "\n".join(lines)


def download_kth(
    root: str | os.PathLike,
    actions: Sequence[str] = ACTIONS,
    download: bool = True,
    trimmed_actions: Sequence[str] = TRIMMED_ACTIONS,
) -> None:
    """Make sure every action has a source and the annotation file is there (if needed).

    Downloads what is missing when ``download`` is true (archives are verified by reading them,
    the annotation file by its md5); otherwise, or when that fails, raises
    ``FileNotFoundError`` listing the files and where they go.
    """
    root = Path(root).expanduser().resolve()
    sources = find_sources(root, actions)
    present = {parse_clip_name(name)[1] for name in sources}
    needed = _needed_files(actions, trimmed_actions)
    missing = [f"{a}.zip" for a in actions if a not in present]
    if ANNOTATION_FILE in needed and not (root / ANNOTATION_FILE).is_file():
        missing.append(ANNOTATION_FILE)
    if not missing:
        return
    if not download:
        reason = "Downloading is off (download=False)."
        raise FileNotFoundError(_offline_message(root, missing, needed, reason))
    root.mkdir(parents=True, exist_ok=True)
    for name in missing:
        try:
            _fetch(BASE_URL + name, root / name)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = f"The download of {BASE_URL + name} failed ({err})."
            raise FileNotFoundError(_offline_message(root, missing, needed, reason)) from err


# --------------------------------------------------------------------------------------------
# Dataset and data module


class KTHWindows(HDF5Backed, FrameWindows):
    """Windows of a KTH cache; items are float32 (T, 1, S, S) in [0, 1].

    ``starts`` are frame indices into the cache's ``frames``; nothing is copied.
    """

    def __init__(self, path: str | os.PathLike, starts: Sequence[int] | np.ndarray,
                 length: int) -> None:
        HDF5Backed.__init__(self, path)
        FrameWindows.__init__(self, starts, length)

    @property
    def frames(self) -> h5py.Dataset:
        return self.h5["frames"]


@rank_zero_only
def _announce(message: str) -> None:
    print(message, flush=True)


@register_datamodule("kth")
class KTHDataModule(SequenceDataModule):
    """KTH action, paper §4.2: 128 x 128 gray frames, train 10 -> 10, test 10 -> 20.

    Training batches are float32 (B, 20, 1, S, S), validation (B, 20, 1, S, S), test and
    predict (B, 30, 1, S, S), in [0, 1]. Validation windows come from ``val_persons``, which are
    taken out of the training persons (checkpoints are never chosen on test persons); they use
    the test strides. The predict loader is the test set.

    Args:
        root: folder of the KTH files (``<action>.zip`` or ``<action>/`` and
            ``00sequences.txt``); the cache goes to ``root/cache/``.
        frame_size: side of the square frames (paper §4.2: 128).
        train_persons: persons of the training windows (DESIGN 1.7: 1-16), less ``val_persons``.
        test_persons: persons of the test windows (DESIGN 1.7: 17-25).
        val_persons: training persons held out for validation (default 16); ``[]`` trains on all
            training persons and has no validation loader.
        actions: actions to use (default all six).
        trimmed_actions: actions cut to the annotated sub-clips (DESIGN 1.7: walking, jogging,
            running); the others use whole clips.
        train_stride: stride of the training windows (DESIGN 1.7: 1).
        test_strides: stride of test and validation windows, per action (dict) or as two ints
            (fast actions running and jogging, others); default 3 and 20 (DESIGN 1.7).
        download: download missing archives; when false a missing file raises
            ``FileNotFoundError`` saying which files to put where.
        batch_size: sequences per batch (paper §4: 8; the authors' KTH script used 4).
        num_workers: loader worker processes.
        context_frames: observed frames (paper §4.2: 10).
        horizon: predicted frames in training and validation (paper §4.2: 10).
        test_horizon: predicted frames at test time (paper §4.2: 20).
    """

    def __init__(
        self,
        root: str = "data/kth",
        frame_size: int = 128,  # paper §4.2: 128 x 128
        train_persons: Sequence[int] = tuple(range(1, 17)),  # DESIGN 1.7: persons 1-16
        test_persons: Sequence[int] = tuple(range(17, 26)),  # DESIGN 1.7: persons 17-25
        val_persons: Sequence[int] = (16,),
        actions: Sequence[str] = ACTIONS,
        trimmed_actions: Sequence[str] = TRIMMED_ACTIONS,
        train_stride: int = 1,  # DESIGN 1.7: stride 1
        test_strides: Mapping[str, int] | Sequence[int] = (3, 20),  # DESIGN 1.7
        download: bool = True,
        batch_size: int = 8,  # paper §4: batch size 8
        num_workers: int = 0,
        context_frames: int = 10,  # paper §4.2: 10 input frames
        horizon: int = 10,  # paper §4.2: 10 predicted frames in training
        test_horizon: int | None = 20,  # paper §4.2: 20 predicted frames at test
    ) -> None:
        super().__init__(batch_size, num_workers, context_frames, horizon, test_horizon)
        unknown = [a for a in (*actions, *trimmed_actions) if a not in ACTIONS]
        if unknown or not actions:
            raise ValueError(f"actions must be a non-empty subset of {ACTIONS}; got {unknown}")
        if frame_size < 1 or train_stride < 1:
            raise ValueError(f"frame_size and train_stride must be positive; got "
                             f"{frame_size}, {train_stride}")
        overlap = set(test_persons) & (set(train_persons) | set(val_persons))
        if overlap:
            raise ValueError(f"test persons {sorted(overlap)} are also training/validation "
                             "persons")
        self.save_hyperparameters()
        self.root = Path(root)
        self.frame_size = frame_size
        self.val_persons = tuple(val_persons)
        self.train_persons = tuple(p for p in train_persons if p not in self.val_persons)
        self.test_persons = tuple(test_persons)
        self.actions = tuple(actions)
        self.trimmed_actions = tuple(trimmed_actions)
        self.train_stride = train_stride
        self.test_strides = self._strides(test_strides)
        self.download = download
        self.cache_file: Path | None = None
        self.train_set: KTHWindows | None = None
        self.val_set: KTHWindows | None = None
        self.test_set: KTHWindows | None = None
        self._announced = False

    def _strides(self, strides: Mapping[str, int] | Sequence[int]) -> dict[str, int]:
        if isinstance(strides, Mapping):
            result = {a: int(strides[a]) for a in self.actions if a in strides}
            missing = [a for a in self.actions if a not in result]
            if missing:
                raise ValueError(f"test_strides has no stride for {missing}")
        else:
            fast, other = strides
            result = {a: s for a, s in default_test_strides(fast, other).items()
                      if a in self.actions}
        if min(result.values()) < 1:
            raise ValueError(f"test strides must be positive; got {result}")
        return result

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def ensure_cache(self) -> Path:
        """The cache file, downloading missing files and decoding the clips if needed."""
        download_kth(self.root, self.actions, self.download, self.trimmed_actions)
        sources = find_sources(self.root, self.actions)
        path = self.cache_dir / cache_file_name(self.frame_size, sources)
        if not path.exists() or _read_index(path) is None:
            build_cache(path, sources, self.frame_size)
        return path

    def prepare_data(self) -> None:
        """Download missing files and build the cache (rank 0)."""
        self.ensure_cache()

    def annotations(self) -> dict[str, list[tuple[int, int]]]:
        """The parsed annotation file (empty when no action is trimmed)."""
        if not any(a in self.trimmed_actions for a in self.actions):
            return {}
        return parse_sequence_annotations(self.root / ANNOTATION_FILE)

    def setup(self, stage: str | None = None) -> None:
        """Build the window indices of all splits (building the cache if it is missing)."""
        if self.cache_file is None:
            self.cache_file = self.ensure_cache()
        index = _read_index(self.cache_file)
        if index is None:
            raise ValueError(f"{self.cache_file}: the KTH cache is unreadable; delete it")
        lengths = {name: length for name, (_, length) in index.items()}
        annotations = self.annotations()
        trimmed = [n for n in lengths if parse_clip_name(n)[1] in self.trimmed_actions]
        unannotated = [n for n in trimmed if n not in annotations]
        if unannotated and not self._announced:
            warnings.warn(f"KTH: clips without annotated frame ranges are left out: "
                          f"{', '.join(unannotated)}", stacklevel=2)

        def windows(persons: Sequence[int], length: int,
                    strides: int | Mapping[str, int]) -> KTHWindows:
            starts = []
            for name, first, stop in sub_clips(lengths, annotations, self.actions, persons,
                                               self.trimmed_actions):
                stride = _stride_of(strides, parse_clip_name(name)[1])
                offset = index[name][0]
                starts.extend(offset + s for s in window_starts(first, stop, length, stride))
            return KTHWindows(self.cache_file, starts, length)

        self.train_set = windows(self.train_persons, self.sequence_length, self.train_stride)
        self.val_set = windows(self.val_persons, self.sequence_length, self.test_strides)
        self.test_set = windows(self.test_persons, self.test_sequence_length, self.test_strides)
        if not self._announced:
            self._announced = True
            _announce(f"KTH: {len(self.train_set)} training windows, {len(self.test_set)} test "
                      f"windows ({len(self.val_set)} validation windows)")

    def _require(self, name: str) -> KTHWindows:
        if getattr(self, name) is None:
            self.setup()
        return getattr(self, name)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._require("train_set"), shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        val_set = self._require("val_set")
        return self._loader(val_set) if len(val_set) else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._require("test_set"))

    def predict_dataloader(self) -> DataLoader:
        """The test set, in order."""
        return self._loader(self._require("test_set"))

    def teardown(self, stage: str | None = None) -> None:
        for dataset in (self.train_set, self.val_set, self.test_set):
            if dataset is not None:
                dataset.close()
