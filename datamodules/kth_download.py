"""KTH action downloads: the six archives and the annotation file, or what to put where.

No md5 is published for the six video archives, so none is pinned: a downloaded archive is
verified by opening it (``zipfile.testzip``) instead. The annotation file is checked against
the md5 of a copy of the original distribution.
"""

from __future__ import annotations

import os
import urllib.error
import zipfile
from collections.abc import Sequence
from pathlib import Path

from predlearn.datamodules.download import download_url
from predlearn.datamodules.kth_annotations import (
    ACTIONS,
    ANNOTATION_FILE,
    TRIMMED_ACTIONS,
    parse_clip_name,
)
from predlearn.datamodules.kth_video import find_sources
from predlearn.errors import BadFileError, DataNotFoundError, OutputError

__all__ = ["ANNOTATION_MD5", "BASE_URL", "download_kth"]

# md5 of the published annotation file, checked against a copy of the original distribution.
ANNOTATION_MD5 = "0aec5008d61c403ff61a50a483abd6ed"
BASE_URL = "http://www.csc.kth.se/cvap/actions/"


def _check_zip(path: Path, url: str) -> None:
    """Raise ``BadFileError`` unless ``path`` is a zip archive whose members all read."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise BadFileError(f"{url}: the download is not a zip archive ({err})") from err
    if bad is not None:
        raise BadFileError(f"{url}: member {bad} of the download is damaged")


def _fetch(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Download one KTH file: archives verified by reading them, the annotation file by md5."""
    if target.suffix == ".zip":
        return download_url(url, target, timeout=timeout,
                            verify=lambda tmp: _check_zip(tmp, url))
    md5 = ANNOTATION_MD5 if target.name == ANNOTATION_FILE else None
    return download_url(url, target, md5=md5, timeout=timeout)


def _needed_files(actions: Sequence[str], trimmed: Sequence[str]) -> list[str]:
    files = [f"{action}.zip" for action in actions]
    if any(action in trimmed for action in actions):
        files.append(ANNOTATION_FILE)
    return files


def _offline_message(root: Path, missing: list[str], needed: list[str], reason: str) -> str:
    lines = [f"KTH action needs these files in the folder {root}:"]
    for name in needed:
        flag = "  (missing)" if name in missing else ""
        lines.append(f"  {name}{flag}  <- {BASE_URL}{name}")
    lines += [
        (
            "Each <action>.zip may instead be extracted to the folder "
            f"{root}/<action>/ (personXX_<action>_dY_uncomp.avi), or given as frames "
            f"{root}/<action>/personXX_<action>_dY_uncomp/image*.png."
        ),
        reason,
        (
            "Or let predlearn download them (--data.download=true, the default) on a machine "
            "with internet access."
        ),
    ]
    return "\n".join(lines)


def download_kth(
    root: str | os.PathLike,
    actions: Sequence[str] = ACTIONS,
    download: bool = True,
    trimmed_actions: Sequence[str] = TRIMMED_ACTIONS,
) -> None:
    """Make sure every action has a source and the annotation file is there (if needed).

    Downloads what is missing when ``download`` is true (archives are verified by reading them,
    the annotation file by its md5); otherwise, or when that fails, raises
    ``DataNotFoundError`` (a ``FileNotFoundError``) listing the files and where they go.
    """
    root = Path(root).expanduser().resolve()
    sources = find_sources(root, actions)
    present = {parse_clip_name(name)[1] for name in sources}
    needed = _needed_files(actions, trimmed_actions)
    missing = [f"{a}.zip" for a in actions if a not in present]
    if ANNOTATION_FILE in needed and not (root / ANNOTATION_FILE).is_file():
        missing.append(ANNOTATION_FILE)
    if not missing:
        return
    if not download:
        reason = "Downloading is off (download=False)."
        raise DataNotFoundError(_offline_message(root, missing, needed, reason))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the KTH folder {root} ({err.strerror or err})") \
            from err
    for name in missing:
        try:
            _fetch(BASE_URL + name, root / name)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = f"The download of {BASE_URL + name} failed ({err})."
            raise DataNotFoundError(_offline_message(root, missing, needed, reason)) from err
