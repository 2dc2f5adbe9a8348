"""KTH action (paper §4.2; Schuldt et al. 2004; test protocol of Villegas et al. 2017).

Six actions by 25 persons in four scenarios, 160 x 120 gray AVI at 25 fps, decoded once into an
HDF5 cache of ``frame_size`` x ``frame_size`` gray frames (``kth_video``). Windows (paper §4.2,
``kth_annotations``): persons 1-16 train, 17-25 test. Training windows have 20 frames
(10 -> 10) at stride 1; test windows 30 frames (10 -> 20) at stride 3 for running and jogging,
20 for the other actions. Running, jogging and walking clips are cut into the sub-clips of the
published annotation file ``00sequences.txt``; the other actions use whole clips. A window
never crosses a sub-clip boundary. Windows index the cache: no frames are copied.

A partial set of clips is refused: a clip the annotation file lists (for the actions and
persons in use) that is not under ``root`` raises ``DataNotFoundError`` naming the missing
clips, unless ``allow_missing_clips=True``, which uses the clips there are with a warning (the
window counts then differ from the paper's). A split without windows is refused when it is
used (``setup("test")`` with no test windows raises ``DataError``; ``setup("fit")`` warns that
the test split is empty, so that ``--test_after_fit`` is not a surprise).

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
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from predlearn.datamodules import sealed
from predlearn.datamodules.base import (
    FrameWindows,
    HDF5Backed,
    SequenceDataModule,
    is_whole_number,
    require_positive_int,
)
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
    cache_problem,
    decode_clip,
    find_sources,
    read_index,
    resize_frames,
)
from predlearn.errors import DataError, DataNotFoundError, require
from predlearn.paper import CONTEXT_FRAMES, HORIZON

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

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            return FrameWindows.__getitem__(self, index)
        except OSError as error:  # a chunk failed its Fletcher-32 check, or the file shrank
            raise sealed.unreadable(self.path, error,
                                    "Delete it and run again: the cache will be rebuilt.") \
                from error


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
        train_persons: persons of the training windows (paper §4.2: 1-16), less ``val_persons``.
        test_persons: persons of the test windows (paper §4.2: 17-25).
        val_persons: training persons held out for validation (default 16); ``[]`` trains on all
            training persons and has no validation loader.
        actions: actions to use (default all six).
        trimmed_actions: actions cut to the annotated sub-clips (paper §4.2: walking, jogging,
            running); the others use whole clips.
        train_stride: stride of the training windows (paper §4.2: 1).
        test_strides: stride of test and validation windows, per action (dict) or as two ints
            (fast actions running and jogging, others); default 3 and 20 (paper §4.2).
        download: download missing archives; when false a missing file raises
            ``DataNotFoundError`` saying which files to put where.
        allow_missing_clips: use the clips there are when some that the annotation file lists
            (for the actions and persons in use) are missing, with a warning naming them;
            by default a partial set of clips is refused (``DataNotFoundError``).
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
        train_persons: Sequence[int] = tuple(range(1, 17)),  # paper §4.2: persons 1-16
        test_persons: Sequence[int] = tuple(range(17, 26)),  # paper §4.2: persons 17-25
        val_persons: Sequence[int] = (16,),
        actions: Sequence[str] = ACTIONS,
        trimmed_actions: Sequence[str] = TRIMMED_ACTIONS,
        train_stride: int = 1,  # paper §4.2: stride 1
        test_strides: Mapping[str, int] | Sequence[int] = (3, 20),  # paper §4.2
        download: bool = True,
        batch_size: int = 8,  # paper §4: batch size 8
        num_workers: int = 0,
        context_frames: int = CONTEXT_FRAMES,  # paper §4.2: 10 input frames
        horizon: int = HORIZON,  # paper §4.2: 10 predicted frames in training
        test_horizon: int | None = 20,  # paper §4.2: 20 predicted frames at test
        allow_missing_clips: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, context_frames, horizon, test_horizon)
        for name, chosen in (("actions", actions), ("trimmed_actions", trimmed_actions)):
            unknown = [a for a in chosen if a not in ACTIONS]
            require(not isinstance(chosen, str) and not unknown, name,
                    f"must be a list of actions among {', '.join(ACTIONS)}; got {chosen!r}",
                    chosen)
        require(len(actions) > 0, "actions", "must name at least one action", actions)
        require_positive_int("frame_size", frame_size)
        require_positive_int("train_stride", train_stride)
        for name, persons in (("train_persons", train_persons), ("val_persons", val_persons),
                              ("test_persons", test_persons)):
            bad = [p for p in persons if not is_whole_number(p) or not 1 <= p <= 25]
            require(not bad, name, f"KTH persons are numbered 1 to 25; got {bad}", persons)
        overlap = set(test_persons) & (set(train_persons) | set(val_persons))
        require(not overlap, "test_persons",
                f"persons {sorted(overlap)} are also training or validation persons; a test "
                "person must not be seen in training", test_persons)
        require(not Path(root).expanduser().is_file(), "root",
                f"{root} is a file; give the folder of the KTH files", root)
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
        self.allow_missing_clips = allow_missing_clips
        self.cache_file: Path | None = None
        self.train_set: KTHWindows | None = None
        self.val_set: KTHWindows | None = None
        self.test_set: KTHWindows | None = None
        self._announced = False

    def _strides(self, strides: Mapping[str, int] | Sequence[int]) -> dict[str, int]:
        if isinstance(strides, Mapping):
            missing = [a for a in self.actions if a not in strides]
            require(not missing, "test_strides", f"has no stride for {missing}", strides)
            result = {a: strides[a] for a in self.actions}
        else:
            require(not isinstance(strides, str) and len(strides) == 2, "test_strides",
                    "must be two strides (running and jogging, the other actions) or a mapping "
                    f"action -> stride; got {strides!r}", strides)
            fast, other = strides
            result = {a: s for a, s in default_test_strides(fast, other).items()
                      if a in self.actions}
        bad = {a: s for a, s in result.items() if not is_whole_number(s) or s < 1}
        require(not bad, "test_strides", f"strides must be positive whole numbers; got {bad}",
                strides)
        return {a: int(s) for a, s in result.items()}

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def ensure_cache(self) -> Path:
        """The cache file, downloading missing files and decoding the clips if needed.

        A cache that is damaged, truncated or unfinished (``cache_problem``) is rebuilt with a
        warning saying why.
        """
        download_kth(self.root, self.actions, self.download, self.trimmed_actions)
        sources = find_sources(self.root, self.actions)
        path = self.cache_dir / cache_file_name(self.frame_size, sources)
        if path.exists():
            reason = cache_problem(path)
            if reason is None:
                return path
            warnings.warn(f"KTH: rebuilding the cache {path}: {reason}", stacklevel=2)
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

    def _check_clips(self, present: Sequence[str],
                     annotations: Mapping[str, object]) -> None:
        """Refuse (or, with ``allow_missing_clips``, warn about) clips that the annotation file
        lists for the actions and persons in use but that are not under ``root``."""
        if not annotations and (self.root / ANNOTATION_FILE).is_file():
            annotations = parse_sequence_annotations(self.root / ANNOTATION_FILE)
        persons = {*self.train_persons, *self.val_persons, *self.test_persons}
        listed = [n for n in annotations
                  if parse_clip_name(n)[1] in self.actions and parse_clip_name(n)[0] in persons]
        missing = sorted(set(listed) - set(present))
        if not missing:
            return
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8
                                          else "")
        what = (f"KTH: {len(missing)} of the {len(listed)} clips that {ANNOTATION_FILE} lists "
                f"for these actions and persons are not in {self.root}: {shown}")
        if self.allow_missing_clips:
            if not self._announced:
                warnings.warn(f"{what}; using the {len(listed) - len(missing)} there are "
                              "(allow_missing_clips=True): window counts differ from the "
                              "paper's", stacklevel=3)
            return
        raise DataNotFoundError(
            f"{what}. Extract or download the archives again (<action>.zip from "
            "http://www.csc.kth.se/cvap/actions/), or set --data.allow_missing_clips=true to use "
            "the clips there are (the window counts then differ from the paper's)"
        )

    def frame_shape(self) -> tuple[int, int, int]:
        return (1, self.frame_size, self.frame_size)

    def setup(self, stage: str | None = None) -> None:
        """Build the window indices of all splits (building the cache if it is missing).

        Refuses a partial set of clips (see ``allow_missing_clips``) and a split without windows
        that ``stage`` uses: ``DataError`` for no training windows at ``"fit"``, no validation
        windows at ``"validate"``, no test windows at ``"test"`` or ``"predict"``. At
        ``"fit"`` an empty test split (and an empty validation split when ``val_persons`` are
        given) is a warning.
        """
        if self.cache_file is None:
            self.cache_file = self.ensure_cache()
        cache_file = self.cache_file
        index = read_index(cache_file)
        if index is None:
            raise DataError(f"{cache_file}: the KTH cache is damaged ({cache_problem(cache_file)}"
                            "); delete it and run again to rebuild it")
        lengths = {name: length for name, (_, length) in index.items()}
        annotations = self.annotations()
        self._check_clips(list(index), annotations)
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
                if name not in index:
                    continue  # listed but absent: refused or warned about by _check_clips
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
        self._check_splits(stage)

    def _no_windows(self, split: str, persons: Sequence[int], length: int) -> str:
        return (f"KTH: no {split} windows of {length} frames: the clips of persons "
                f"{list(persons)} for actions {list(self.actions)} in {self.root} give none "
                f"(missing, or shorter than {length} frames)")

    def _check_splits(self, stage: str | None) -> None:
        assert self.train_set is not None and self.val_set is not None
        assert self.test_set is not None
        test = self._no_windows("test", self.test_persons, self.test_sequence_length)
        if stage in ("test", "predict") and not len(self.test_set):
            raise DataError(f"{test}; put the test persons' clips there, or choose "
                            "--data.test_persons")
        if stage == "validate" and not len(self.val_set):
            raise DataError(self._no_windows("validation", self.val_persons,
                                             self.sequence_length) + "; choose --data.val_persons")
        if stage != "fit":
            return
        if not len(self.train_set):
            raise DataError(self._no_windows("training", self.train_persons,
                                             self.sequence_length)
                            + "; put their clips there, or choose --data.train_persons")
        if not len(self.test_set):
            warnings.warn(f"{test}: testing after this fit (--test_after_fit) will fail",
                          stacklevel=3)
        if self.val_persons and not len(self.val_set):
            warnings.warn(self._no_windows("validation", self.val_persons, self.sequence_length)
                          + ": this fit runs without validation", stacklevel=3)

    def _require(self, name: str) -> KTHWindows:
        if getattr(self, name) is None:
            self.setup({"train_set": "fit", "val_set": "validate"}.get(name, "test"))
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
