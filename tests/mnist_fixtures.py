"""Tiny fake MNIST files in the real format and names, for tests that must run offline.

``write_fake_mnist(root)`` writes the four official file names with digit-like 28 x 28 images
(a few thick random strokes, blurred edges) and random labels. Their md5 sums are not the official
ones, which is fine: the loader verifies md5 only right after a download.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from predlearn.datamodules.idx import write_idx

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def fake_digits(count: int, seed: int = 0) -> np.ndarray:
    """``count`` uint8 images (count, 28, 28): 2-4 thick strokes inside the central 20 x 20."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.mgrid[0:28, 0:28], axis=-1).astype(np.float64)  # (28, 28, 2)
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    for i in range(count):
        points = rng.uniform(5.0, 23.0, size=(rng.integers(3, 6), 2))
        distance = np.full((28, 28), np.inf)
        for a, b in itertools.pairwise(points):
            ab = b - a
            t = np.clip(((grid - a) @ ab) / max(ab @ ab, 1e-9), 0.0, 1.0)
            nearest = a + t[..., None] * ab
            distance = np.minimum(distance, np.linalg.norm(grid - nearest, axis=-1))
        intensity = np.clip(2.5 - distance, 0.0, 1.0)  # ~2 px stroke, soft edge
        images[i] = np.round(255 * intensity).astype(np.uint8)
    return images


def write_fake_mnist(root: Path, n_train: int = 60, n_test: int = 30, gzip: bool = True) -> Path:
    """Write fake MNIST train and test files into ``root``; returns ``root``.

    With ``gzip`` the names end in ``.gz`` (as downloaded), otherwise they are the extracted names.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    suffix = ".gz" if gzip else ""
    files = {
        TRAIN_IMAGES: fake_digits(n_train, seed=2),
        TRAIN_LABELS: rng.integers(0, 10, n_train).astype(np.uint8),
        TEST_IMAGES: fake_digits(n_test, seed=3),
        TEST_LABELS: rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, array in files.items():
        write_idx(root / f"{name}{suffix}", array, compress=gzip)
    return root
