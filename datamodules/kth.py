"""KTH action (paper §4.2; Schuldt et al. 2004; test protocol of Villegas et al. 2017).

Six actions by 25 persons in four scenarios, 160 x 120 gray AVI at 25 fps, decoded once into an
HDF5 cache of ``frame_size`` x ``frame_size`` gray frames (``kth_video``). Windows (DESIGN 1.7,
``kth_annotations``): persons 1-16 train, 17-25 test. Training windows have 20 frames
(10 -> 10) at stride 1; test windows 30 frames (10 -> 20) at stride 3 for running and jogging,
20 for the other actions. Running, jogging and walking clips are cut into the sub-clips of the
published annotation file ``00sequences.txt``; the other actions use whole clips. A window
never crosses a sub-clip boundary. Windows index the cache: no frames are copied.

The layers: ``kth_annotations`` (clip names, the annotation file, window arithmetic),
``kth_video`` (finding, decoding and caching the clips), ``kth_download`` (downloads and the
offline message) and this module (the windows dataset and the Lightning data module). The
public names of all three are importable from here too.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from predlearn.datamodules.base import FrameWindows, HDF5Backed, SequenceDataModule
from predlearn.datamodules.kth_annotations import (
    ACTIONS,
    ANNOTATION_FILE,
    TRIMMED_ACTIONS,
    default_test_strides,
    parse_clip_name,
    parse_sequence_annotations,
    stride_of,
    sub_clips,
    window_counts,
    window_starts,
)
from predlearn.datamodules.kth_download import download_kth
from predlearn.datamodules.kth_video import (
    ClipSource,
    build_cache,
    cache_file_name,
    decode_clip,
    find_sources,
    read_index,
    resize_frames,
)

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
        if not path.exists() or read_index(path) is None:
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
        cache_file = self.cache_file
        index = read_index(cache_file)
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
            starts: list[int] = []
            for name, first, stop in sub_clips(lengths, annotations, self.actions, persons,
                                               self.trimmed_actions):
                stride = stride_of(strides, parse_clip_name(name)[1])
                offset = index[name][0]
                starts.extend(offset + s for s in window_starts(first, stop, length, stride))
            return KTHWindows(cache_file, starts, length)

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
