"""The download helper: complete files only, checksums, interrupted and stale downloads.

No network: files are served by a local ``http.server`` in a thread, or ``urlopen`` is replaced.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from predlearn.datamodules import download as download_module
from predlearn.datamodules.download import ChecksumError, download_url, file_digest
from predlearn.datamodules.files import remove_stale_parts
from predlearn.files import written_atomically

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: more than one block of the copy loop


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _ShortHandler(http.server.BaseHTTPRequestHandler):
    """Announces more bytes than it sends, then closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD[:1000])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """Base URL of a local server for the folder ``tmp_path / "served"`` (holding data.bin)."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "data.bin").write_bytes(PAYLOAD)
    yield from _serve(functools.partial(_QuietHandler, directory=str(folder)))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_file_arrives_complete_with_its_checksums(served: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "data.bin"
    result = download_url(
        f"{served}/data.bin", target, md5=hashlib.md5(PAYLOAD).hexdigest(),
        sha256=hashlib.sha256(PAYLOAD).hexdigest().upper(),  # case does not matter
    )
    assert result == target and target.read_bytes() == PAYLOAD
    assert _leftovers(target.parent) == ["data.bin"]
    assert file_digest(target, "sha256") == hashlib.sha256(PAYLOAD).hexdigest()


def test_the_progress_bar_counts_bytes_against_content_length(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = []
    real_progress = download_module.progress

    def recording_progress(total, description, unit="it", **options):
        bar = real_progress(total, description, unit, **options)
        bars.append((total, description, unit, bar))
        return bar

    monkeypatch.setattr(download_module, "progress", recording_progress)
    download_url(f"{served}/data.bin", tmp_path / "data.bin")
    [(total, description, unit, bar)] = bars
    assert (total, description, unit, bar.n) == (len(PAYLOAD), "data.bin", "B", len(PAYLOAD))


def test_a_checksum_mismatch_is_named_and_leaves_nothing(served: str, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    wrong = "0" * 32
    url = f"{served}/data.bin"
    with pytest.raises(ChecksumError) as info:
        download_url(url, folder / "data.bin", md5=wrong)
    message = str(info.value)
    for part in ("data.bin", url, wrong, hashlib.md5(PAYLOAD).hexdigest()):
        assert part in message
    assert _leftovers(folder) == []


def test_a_failed_verification_leaves_nothing(served: str, tmp_path: Path) -> None:
    def refuse(path: Path) -> None:
        assert path.read_bytes() == PAYLOAD  # called on the complete temporary file
        raise ValueError("not an archive")

    with pytest.raises(ValueError, match="not an archive"):
        download_url(f"{served}/data.bin", tmp_path / "out" / "data.bin", verify=refuse)
    assert _leftovers(tmp_path / "out") == []


class _BrokenResponse(io.BytesIO):
    """A response that fails after its first block, as a dropped connection does."""

    headers: ClassVar[dict[str, str]] = {"Content-Length": str(len(PAYLOAD))}

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0:
            raise ConnectionResetError("connection reset by peer")
        return super().read(size)


def test_an_interrupted_download_leaves_no_file_and_no_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout: _BrokenResponse(PAYLOAD))
    folder = tmp_path / "out"
    with pytest.raises(ConnectionResetError):
        download_url("http://example.invalid/data.bin", folder / "data.bin")
    assert _leftovers(folder) == []


def test_a_body_shorter_than_announced_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    for base in _serve(_ShortHandler):
        with pytest.raises(urllib.error.ContentTooShortError, match="1000 of 1280000 bytes"):
            download_url(f"{base}/data.bin", folder / "data.bin", timeout=10)
    assert _leftovers(folder) == []


def test_an_unreachable_url_raises_urlerror(tmp_path: Path) -> None:
    with pytest.raises(urllib.error.URLError):
        download_url((tmp_path / "nowhere.bin").as_uri(), tmp_path / "out" / "nowhere.bin")
    assert _leftovers(tmp_path / "out") == []


def test_the_timeout_reaches_urlopen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_urlopen(url: str, timeout: float) -> io.BytesIO:
        seen.append(timeout)
        return io.BytesIO(b"abc")  # no headers: the size is unknown

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    download_url("http://example.invalid/x", tmp_path / "x", timeout=7.5, show_progress=False)
    assert seen == [7.5] and (tmp_path / "x").read_bytes() == b"abc"


def test_a_stale_part_does_not_stop_a_new_download(served: str, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "data.bin"
    # What a killed download leaves: a part of this file, long untouched, and one being written
    # right now by another process; plus a part of another file whose name starts the same.
    stale = folder / ".data.bin.4242.0123abcd.part"
    busy = folder / ".data.bin.4243.89abcdef.part"
    other = folder / ".data.bin.old.4244.00000000.part"
    for part in (stale, busy, other):
        part.write_bytes(b"half a file")
    day_ago = time.time() - 86400
    for part in (stale, other):
        os.utime(part, (day_ago, day_ago))
    download_url(f"{served}/data.bin", target, md5=hashlib.md5(PAYLOAD).hexdigest())
    assert target.read_bytes() == PAYLOAD
    assert _leftovers(folder) == sorted(["data.bin", busy.name, other.name])


def test_remove_stale_parts_matches_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "file.h5"
    with written_atomically(target) as tmp:
        tmp.write_bytes(b"x")
        os.utime(tmp, (0, 0))
        assert remove_stale_parts(target) == [tmp]
        tmp.write_bytes(b"y")  # the writer carries on; a fresh part is kept
        assert remove_stale_parts(target) == []
    assert target.read_bytes() == b"y" and _leftovers(tmp_path) == ["file.h5"]
