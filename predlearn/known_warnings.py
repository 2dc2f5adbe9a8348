"""Warnings predlearn knows to be false alarms, hidden while a command runs (importing predlearn
sets no warning filter)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

#: Lightning warns that len() of an IterableDataset may be wrong with several workers; the
#: training streams' (``predlearn.datamodules.stream``) is in batches, and the batches are split
#: over the workers by their ``__iter__``, so it is exact.
STREAM_LENGTH_WARNING = "Your `IterableDataset` has `__len__` defined"


@contextlib.contextmanager
def quiet_known_warnings() -> Iterator[None]:
    """Within the block, hide the warnings predlearn knows to be false alarms."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=STREAM_LENGTH_WARNING, category=UserWarning)
        yield
