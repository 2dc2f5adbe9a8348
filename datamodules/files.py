"""File helpers shared by the data modules: atomic writes and progress bars."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    An interrupted or failed write (exception, Ctrl-C) leaves no partial file behind, so a file
    at ``path`` is always complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def progress(total: int, description: str, unit: str = "it") -> Any:
    """A tqdm bar (tqdm comes with lightning), or a stand-in printing the count."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PrintProgress(total, description)
    return tqdm(total=total, desc=description, unit=unit)


class _PrintProgress:
    def __init__(self, total: int, description: str) -> None:
        self.total, self.done, self.description = total, 0, description
        print(f"{description}: 0/{total}", flush=True)

    def update(self, count: int = 1) -> None:
        self.done += count
        print(f"{self.description}: {self.done}/{self.total}", flush=True)

    def close(self) -> None:
        pass
