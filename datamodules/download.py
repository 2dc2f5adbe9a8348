"""Downloads for the data modules: atomic, checksummed, with a progress bar.

``download_url`` streams a URL into a temporary ``.part`` file beside the target (see
``predlearn.files.written_atomically``) and renames it only once the whole body has
arrived and passed its checks, so a file at the target path is always complete: an interrupted,
short or corrupted download leaves neither the target nor a ``.part`` file. The data sets keep
their own messages saying which files to put where when a download is off or fails.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from predlearn.datamodules.files import progress, remove_stale_parts
from predlearn.errors import ChecksumError
from predlearn.files import written_atomically

__all__ = ["ChecksumError", "download_url", "file_digest"]

__all__ = ["ChecksumError", "download_url", "file_digest"]

_BLOCK = 1 << 20  # bytes read and written at a time




def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a file (read in blocks, so large files need little memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_length(response: Any) -> int | None:
    """The body size the server announced, or None when it did not (or not as a number)."""
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _cut_short(message: str) -> urllib.error.ContentTooShortError:
    """The error of a download that stopped early. Its ``content`` is None: nothing is kept."""
    # typeshed types ``content`` as what urlretrieve passes, (filename, headers); the class keeps
    # any value, and here there is no file to name
    return urllib.error.ContentTooShortError(message, None)  # type: ignore[arg-type]


def download_url(
    url: str,
    target: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    verify: Callable[[Path], None] | None = None,
    timeout: float = 60.0,
    show_progress: bool = True,
) -> Path:
    """Download ``url`` to ``target`` atomically and return ``target``.

    Args:
        url: what to download (any scheme ``urllib`` opens, ``file://`` included).
        target: where the file goes; its folder is created if needed.
        md5, sha256: expected hex digests; a mismatch raises ``ChecksumError`` naming the
            file, the URL and both sums, and nothing is kept.
        verify: called with the temporary file once it is complete and the checksums match;
            an exception from it discards the download (e.g. a check that a zip archive reads).
        timeout: seconds to wait for the server to connect or to send more data.
        show_progress: show a tqdm bar in bytes (its total from Content-Length when known).

    Raises ``urllib.error.URLError`` (an ``OSError``) when the URL cannot be read, and
    ``urllib.error.ContentTooShortError`` when fewer bytes arrive than announced. Temporary
    files that a killed download left behind long ago are deleted first; none is ever taken
    for the file.
    """
    target = Path(target)
    expected = {name: value.lower() for name, value in (("md5", md5), ("sha256", sha256))
                if value is not None}
    remove_stale_parts(target)
    with written_atomically(target) as tmp:
        digests = {name: hashlib.new(name) for name in expected}
        received = 0
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = _content_length(response)
            bar = progress(total, target.name, unit="B", disable=not show_progress)
            try:
                with open(tmp, "wb") as out:
                    while block := response.read(_BLOCK):
                        out.write(block)
                        for digest in digests.values():
                            digest.update(block)
                        received += len(block)
                        bar.update(len(block))
            except http.client.IncompleteRead as err:  # a chunked body cut short
                raise _cut_short(
                    f"{url}: the download stopped after {received} bytes ({err!r})"
                ) from err
            finally:
                bar.close()
        if total is not None and received < total:
            raise _cut_short(f"{url}: the download stopped after {received} of {total} bytes")
        for name, digest in digests.items():
            actual = digest.hexdigest()
            if actual != expected[name]:
                raise ChecksumError(
                    f"{target.name} downloaded from {url} has {name} {actual}, expected "
                    f"{expected[name]}; the download was deleted. Try again, or fetch the file "
                    "by hand and check it."
                )
        if verify is not None:
            verify(tmp)
    return target
