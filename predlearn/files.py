"""Files written safely: atomically, and never over one of their inputs.

Every file predlearn writes (predictions, a shipped model; in the data modules a download, a
cache, a prepared data set) goes through ``written_atomically``, so a file at its path is always
complete. ``predlearn.datamodules.files`` removes the parts a killed write left behind.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from predlearn.errors import OutputError

__all__ = ["PART_TAIL", "part_prefix", "refuse_overwriting", "written_atomically"]

PART_SUFFIX = ".part"
PART_TAIL = re.compile(r"^\d+\.[0-9a-f]{8}\.part$")  # <pid>.<random>.part


def part_prefix(path: Path) -> str:
    """The start of the name of every part ``written_atomically(path)`` writes."""
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
    tmp = path.with_name(f"{part_prefix(path)}{os.getpid()}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}")
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


def sha256_of(*paths: str | os.PathLike) -> str:
    """The SHA-256 (hex) of the files' bytes, one after the other, read in blocks."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
