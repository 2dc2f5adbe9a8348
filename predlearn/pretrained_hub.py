"""Pretrained folders on the Hugging Face Hub: ``predlearn.from_pretrained("hf://owner/name")``
(``@revision`` optional; a bare ``owner/name`` that is no local path works there too) and
``--ckpt_path=hf://owner/name`` download the folder's three files through huggingface-hub (the
``hub`` extra) into its cache and load them as any folder: config.json's SHA-256 of the weights is
checked (``predlearn.pretrained_folder``), and loading runs no code.

Nothing is downloaded unless a hub name is given; offline (``HF_HUB_OFFLINE=1`` or no network) a
folder already in the cache is used, and one that is not is refused in one line saying so.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lightning_utilities.core.imports import RequirementCache

from predlearn.errors import CheckpointError, UsageError

HUB = RequirementCache("huggingface-hub>=0.23")
PREFIX = "hf://"
#: owner/name[@revision], as the Hub spells repository names
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")
#: the files of a pretrained folder (``predlearn.pretrained_folder``)
_FILES = ["config.json", "model.safetensors", "README.md"]


def is_hub_id(value: str, bare: bool = True) -> bool:
    """Whether ``value`` names a Hub model: ``hf://owner/name``, or (``bare``) ``owner/name``
    where no such local path exists."""
    if value.startswith(PREFIX):
        return True
    return bare and not os.path.exists(value) and _HUB_ID.fullmatch(value) is not None \
        and not value.endswith((".ckpt", ".pt", ".pth", ".json", ".safetensors"))


def hub_folder(value: str) -> Path:
    """The local folder of the Hub model ``value``, downloaded (or found in the cache)."""
    name = value.removeprefix(PREFIX)
    if _HUB_ID.fullmatch(name) is None:
        raise UsageError(f"{value}: a Hub model is named hf://owner/name (or "
                         "hf://owner/name@revision)")
    if not HUB:
        raise UsageError(f"{value}: downloading from the Hugging Face Hub needs the `hub` extra: "
                         "pip install 'predlearn[hub]'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from predlearn import __version__

    repo, _, revision = name.partition("@")
    try:
        path = snapshot_download(repo, revision=revision or None, allow_patterns=_FILES,
                                 library_name="predlearn", library_version=__version__)
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"{PREFIX}{name}: not in the local Hugging Face cache, and the Hub cannot be reached "
            f"({_first_line(error)}); connect and run again (unset HF_HUB_OFFLINE), or download "
            "the folder where there is a network and give its path") from error
    except RevisionNotFoundError as error:
        raise CheckpointError(f"{PREFIX}{name}: the Hub model has no revision {revision!r}"
                              ) from error
    except RepositoryNotFoundError as error:
        raise CheckpointError(f"{PREFIX}{name}: no such model on the Hugging Face Hub (a private "
                              "one needs `hf auth login` first)") from error
    except HfHubHTTPError as error:
        raise CheckpointError(f"{PREFIX}{name}: the download failed ({_first_line(error)})"
                              ) from error
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{PREFIX}{name}: the Hub model has no config.json, so it is not a "
                              "predlearn pretrained folder (write one with "
                              "predlearn.save_pretrained and upload that folder)")
    return folder


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
