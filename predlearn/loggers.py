"""Weights & Biases by default, offline automatically when no credentials are set."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info


def wandb_credentials_available() -> bool:
    """True when W&B can log in: ``WANDB_API_KEY`` or a ``wandb login`` entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        hosts = netrc.netrc(str(netrc_path)).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


class AutoWandbLogger(WandbLogger):
    """``WandbLogger`` that runs offline when there are no credentials (or WANDB_MODE=offline).

    Offline runs are kept under ``save_dir/wandb/``; a one-line hint at the start says why and how
    to upload them later (``wandb sync DIR``; W&B repeats the exact command at the end). Pass ``offline=False`` to insist on logging online.

    Args:
        project: W&B project name.
        save_dir: folder for the run files.
        offline: None chooses automatically; True / False force it.
        kwargs: anything else ``lightning.pytorch.loggers.WandbLogger`` takes (name, group, tags...).
    """

    def __init__(self, project: str = "predlearn", save_dir: str = "runs",
                 offline: bool | None = None, **kwargs: Any) -> None:
        if offline is None:
            mode = os.environ.get("WANDB_MODE", "").lower()
            offline = mode in ("offline", "dryrun") or (
                mode != "online" and not wandb_credentials_available()
            )
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(project=project, save_dir=save_dir, offline=offline, **kwargs)
        self.offline = offline
        if offline:
            rank_zero_info(
                f"W&B logs offline under {Path(save_dir) / 'wandb'} (no credentials: set "
                "WANDB_API_KEY or run `wandb login` to log online); upload a run later with "
                "`wandb sync <its offline-run-... folder>`"
            )
