"""Real MNIST test digits shipped for the quickstart and offline demos.

Selected only by ``digits="bundled"`` (``--data.digits=bundled``); never used as a silent fallback
when the MNIST files are missing. Provenance and licence: ``README.md`` and ``LICENSE-MNIST`` here.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is new in Python 3.11
    from importlib.resources.abc import Traversable

BUNDLED_IMAGES = "mnist_digits_1000-images-idx3-ubyte.gz"
BUNDLED_LABELS = "mnist_digits_1000-labels-idx1-ubyte.gz"
# md5 of the two files as written by tests/data/make_bundled_digits.py (checked on load).
BUNDLED_MD5 = {
    BUNDLED_IMAGES: "c3379f275b566375ab4528689c1795c4",
    BUNDLED_LABELS: "1d88dbe1fbee9022616057ede4463181",
}


def bundled_digit_files() -> tuple[Traversable, Traversable]:
    """The bundled (images, labels) IDX files, located through ``importlib.resources``."""
    package = files(__name__)
    return package / BUNDLED_IMAGES, package / BUNDLED_LABELS
