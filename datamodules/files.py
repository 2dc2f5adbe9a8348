"""File helpers of the data modules: the parts a killed write left behind, and progress bars.

Every long loop of the data modules (downloads, caches, ``prepare radar``) shows its bar
through ``progress``, so that all behave the same.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from predlearn.files import PART_TAIL, part_prefix

__all__ = ["progress", "remove_stale_parts"]


def remove_stale_parts(path: str | os.PathLike, older_than: float = 3600.0) -> list[Path]:
    """Delete temporary files of ``written_atomically(path)`` untouched for ``older_than`` s.

    Only a process killed mid-write (SIGKILL, power loss) leaves one. Parts written to recently
    are kept: they may belong to another process writing the same file right now (another node
    on a shared folder). Returns the deleted paths.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    deadline = time.time() - older_than
    removed = []
    prefix = part_prefix(path)
    for part in path.parent.iterdir():
        if not (part.name.startswith(prefix) and PART_TAIL.match(part.name[len(prefix):])):
            continue  # not a part of this file (another file's name may start like this one)
        try:
            if part.is_file() and part.stat().st_mtime < deadline:
                part.unlink()
                removed.append(part)
        except FileNotFoundError:  # its writer just finished or cleaned up
            continue
    return removed


def progress(
    total: int | None, description: str, unit: str = "it", *, disable: bool = False
) -> tqdm:
    """A tqdm bar over ``total`` items (None: unknown), written to stderr.

    With ``unit="B"`` the count is shown in KiB / MiB / GiB. Call ``update(n)`` as work is
    done and ``close()`` at the end (or use the bar as a context manager).
    """
    scaled = unit == "B"
    return tqdm(total=total, desc=description, unit=unit, unit_scale=scaled,
                unit_divisor=1024 if scaled else 1000, disable=disable)
