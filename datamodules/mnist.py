"""MNIST digit sources for Moving MNIST: download with checksums, offline instructions, splits.

Three sources give three disjoint pools of 28 x 28 uint8 digits (train, val, test):

- ``"mnist"`` (paper §4.1): training digits from the 60,000 MNIST training images minus the last
  5,000 (held out for validation), test digits from the 10,000 MNIST test images. Needs all four
  MNIST files; the labels are not used to draw digits, but their counts are checked against the
  images so that a mismatched or partial set of files is caught.
- ``"mnist_test"`` (deviation, for machines that only have the test set): the 10,000 test images
  split in file order into 7,000 train, 1,000 val and 2,000 test digits. Needs the two t10k files.
- ``"bundled"``: the 1,000 test digits shipped in ``predlearn.datamodules.bundled``, split 700 /
  100 / 200. Chosen explicitly only; never a fallback.

Files may be gzipped (official ``.gz`` names) or already extracted (the same names without
``.gz``). md5 sums are verified right after a download, not on every run for files already
present (hashing 55 MB each run would cost time, and it lets tests use small fake files).
"""

from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from importlib.resources import as_file
from pathlib import Path
from typing import Literal

import numpy as np

from predlearn.datamodules.bundled import BUNDLED_MD5, bundled_digit_files
from predlearn.datamodules.download import ChecksumError, download_url, file_digest
from predlearn.datamodules.idx import read_idx
from predlearn.errors import BadFileError, DataError, DataNotFoundError, OptionValueError

__all__ = [
    "MIRRORS",
    "MNIST_FILES",
    "ChecksumError",
    "DigitPools",
    "DigitSource",
    "download_file",
    "ensure_mnist_files",
    "find_mnist_file",
    "load_digits",
    "required_files",
]

DigitSource = Literal["mnist", "mnist_test", "bundled"]

# Official file names and md5 sums of the gzipped files.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Tried in order; the original site has at times refused automated downloads.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# "mnist": the last 1/12 of the training images (5,000 of 60,000) are the validation digits.
VAL_FRACTION_OF_TRAIN = 1 / 12
# "mnist_test" and "bundled": one file split in order 70 % / 10 % / 20 % (7,000 / 1,000 / 2,000).
SINGLE_FILE_SPLIT = (0.7, 0.1, 0.2)


@dataclass(frozen=True)
class DigitPools:
    """Disjoint pools of 28 x 28 uint8 digits for the train, val and test sequences."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            if len(getattr(self, split)) == 0:
                raise DataError(
                    f"the {split} digit pool of digits={self.source!r} is empty: the MNIST "
                    "files hold too few images; use the complete files"
                )

    def pool(self, split: str) -> np.ndarray:
        """The pool named ``split`` ("train", "val" or "test")."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return getattr(self, split)


def required_files(source: DigitSource) -> tuple[str, ...]:
    """The official MNIST file names that ``source`` needs (none for ``"bundled"``)."""
    if source == "mnist":
        return _TRAIN + _TEST
    if source == "mnist_test":
        return _TEST
    if source == "bundled":
        return ()
    raise OptionValueError("digits", f"must be 'mnist', 'mnist_test' or 'bundled'; got {source!r}",
                           source)


def find_mnist_file(root: str | os.PathLike, name: str) -> Path | None:
    """``root/name`` if present, else the extracted ``root/name`` without ``.gz``, else None."""
    root = Path(root)
    for candidate in (root / name, root / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def download_file(
    name: str,
    md5: str,
    folder: str | os.PathLike,
    mirrors: tuple[str, ...] | list[str] = MIRRORS,
    timeout: float = 30.0,
) -> Path:
    """Download ``name`` from the first mirror that answers into ``folder``, checking its md5.

    The file goes to a temporary name first and is moved into place only once its md5 matches
    (``predlearn.datamodules.download.download_url``), so an interrupted or corrupted download
    never leaves a file that looks complete. Raises ``ChecksumError`` (naming the file and both
    sums) on a mismatch, after deleting the download, and ``OSError`` when no mirror could be
    reached.
    """
    target = Path(folder) / name
    failures: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        try:
            return download_url(url, target, md5=md5, timeout=timeout)
        except ChecksumError:
            raise  # a wrong file is reported at once, not hidden by trying the next mirror
        except (urllib.error.URLError, OSError, ValueError) as err:
            failures.append(f"{url}: {err}")
    raise OSError(f"could not download {name}: " + "; ".join(failures))


def _offline_message(root: Path, source: DigitSource, missing: list[str], reason: str) -> str:
    needed = required_files(source)
    lines = [
        f"Moving MNIST with digits={source!r} needs these MNIST files in the folder {root}:",
        *(f"  {name}{'  (missing)' if name in missing else ''}" for name in needed),
        "Each may be gzipped (the name above) or already extracted (the name without .gz).",
        reason,
        f"Get them from {' or '.join(MIRRORS)} and put them in that folder.",
        "Or let predlearn download them (--data.download=true, the default) on a machine with "
        + "internet access.",
        "For an offline demo without any files, use --data.digits=bundled (1,000 MNIST test "
        + "digits shipped with predlearn; not the paper's protocol).",
    ]
    if source == "mnist":
        lines.append(
            "With only the two t10k files, --data.digits=mnist_test draws every digit from the "
            "test set (a deviation from the paper)."
        )
    return "\n".join(lines)


def ensure_mnist_files(
    source: DigitSource, root: str | os.PathLike, download: bool = True
) -> dict[str, Path]:
    """Paths of the files ``source`` needs, downloading the missing ones when allowed.

    Raises ``DataNotFoundError`` (a ``FileNotFoundError``) listing every needed file and the
    folder when a file is missing and ``download`` is false or the download fails.
    """
    root = Path(root).expanduser().resolve()
    found = {name: find_mnist_file(root, name) for name in required_files(source)}
    missing = [name for name, path in found.items() if path is None]
    if missing and not download:
        raise DataNotFoundError(
            _offline_message(root, source, missing, "Downloading is off (download=False).")
        )
    for name in missing:
        try:
            found[name] = download_file(name, MNIST_FILES[name], root)
        except OSError as err:  # unreachable mirrors; a ChecksumError propagates as it is
            raise DataNotFoundError(
                _offline_message(root, source, missing, f"The download failed ({err}).")
            ) from err
    return {name: path for name, path in found.items() if path is not None}


def _read_images(path: Path) -> np.ndarray:
    images = read_idx(path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise BadFileError(
            f"{path}: expected uint8 images shaped (N, 28, 28), got {images.dtype} "
            f"{images.shape}: not an MNIST images file; put the official file there"
        )
    return images


def _read_checked_pair(images_path: Path, labels_path: Path) -> np.ndarray:
    images = _read_images(images_path)
    labels = read_idx(labels_path)
    if labels.ndim != 1 or len(labels) != len(images):
        raise BadFileError(
            f"{labels_path} holds {labels.shape} labels but {images_path} holds {len(images)} "
            "images; the two files do not belong together"
        )
    return images


def _split_in_order(images: np.ndarray, source: str) -> DigitPools:
    n = len(images)
    n_train = round(n * SINGLE_FILE_SPLIT[0])
    n_val = round(n * SINGLE_FILE_SPLIT[1])
    return DigitPools(
        images[:n_train], images[n_train : n_train + n_val], images[n_train + n_val :], source
    )


def load_digits(
    source: DigitSource = "mnist", root: str | os.PathLike = "data/mnist", download: bool = True
) -> DigitPools:
    """Load the train / val / test digit pools of ``source`` (see the module docstring).

    Returns uint8 arrays shaped (N, 28, 28). Missing files are downloaded when ``download`` is
    true; otherwise (or when the download fails) a ``DataNotFoundError`` says what to put where.
    A damaged file raises ``BadFileError`` naming it; too few digits, ``DataError``.
    """
    if source == "bundled":
        images_file, labels_file = bundled_digit_files()
        with as_file(images_file) as images_path, as_file(labels_file) as labels_path:
            for path in (images_path, labels_path):
                if file_digest(path) != BUNDLED_MD5[path.name]:
                    raise BadFileError(f"{path}: the bundled digits file is damaged (md5 "
                                       "differs); reinstall predlearn")
            return _split_in_order(_read_checked_pair(images_path, labels_path), source)
    paths = ensure_mnist_files(source, root, download)
    test = _read_checked_pair(paths[_TEST[0]], paths[_TEST[1]])
    if source == "mnist_test":
        return _split_in_order(test, source)
    train = _read_checked_pair(paths[_TRAIN[0]], paths[_TRAIN[1]])
    n_val = round(len(train) * VAL_FRACTION_OF_TRAIN)
    return DigitPools(train[: len(train) - n_val], train[len(train) - n_val :], test, source)
