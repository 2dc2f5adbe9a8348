"""File helpers: atomic writes, outputs that would overwrite inputs, and progress bars.

Every file predlearn writes (a download, a cache, a prepared data set, predictions, a shipped
model) goes through ``written_atomically``, and every long loop shows its bar through
``progress``, so that both behave the same everywhere.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from predlearn.errors import OutputError

__all__ = ["progress", "refuse_overwriting", "remove_stale_parts", "written_atomically"]

PART_SUFFIX = ".part"
_PART_TAIL = re.compile(r"^\d+\.[0-9a-f]{8}\.part$")  # <pid>.<random>.part


def _part_prefix(path: Path) -> str:
    return f".{path.name}."


@contextmanager
def written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    An interrupted or failed write (exception, Ctrl-C) leaves no partial file behind, so a file
    at ``path`` is always complete. The temporary name (``.<name>.<pid>.<random>.part``) is
    unique to this write: two processes writing the same file never share one, and a leftover
    from a killed process is never taken for the file.

    Raises ``OutputError`` when ``path`` is a folder or its folder cannot be created.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give the name of the file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"cannot create the folder {path.parent} for {path.name} ({error.strerror or error})"
        ) from error
    tmp = path.with_name(f"{_part_prefix(path)}{os.getpid()}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def refuse_overwriting(
    output: str | os.PathLike, inputs: Iterable[str | os.PathLike], what: str = "output"
) -> None:
    """Raise ``OutputError`` when ``output`` is one of ``inputs`` (the same file once links
    and relative paths are resolved), before anything is read or written: an output written
    over its own input would destroy the input."""
    target = Path(output).expanduser().resolve()
    for source in inputs:
        source_path = Path(source).expanduser()
        same = source_path.resolve() == target
        if not same and target.exists() and source_path.exists():
            try:
                same = os.path.samefile(source_path, target)  # hard links
            except OSError:
                same = False
        if same:
            raise OutputError(
                f"the {what} {output} is also an input ({source}); writing it would destroy "
                "that input: choose another output name"
            )


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
    prefix = _part_prefix(path)
    for part in path.parent.iterdir():
        if not (part.name.startswith(prefix) and _PART_TAIL.match(part.name[len(prefix):])):
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
