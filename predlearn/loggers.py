"""Weights & Biases by default, offline automatically when no credentials are set; CSV files in
the run's folder itself with ``--trainer.logger=CSVLogger`` (``RunCSVLogger``)."""

from __future__ import annotations

import csv
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from predlearn.metric_keys import is_step_key


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

    The run's files go to ``save_dir/wandb/`` (the command line makes ``save_dir`` the run's own
    folder, ``predlearn.runs``), created when the W&B run starts, not before: a run that fails
    before it starts leaves no folder. Offline, a one-line hint at the start says why and how to
    upload the run later (``wandb sync DIR``; W&B repeats the exact command at the end).

    What predlearn sends is in ``predlearn.wandb_report``; the per-step scalars that the CSV
    logger keeps (``test/psnr/step_03``) are not sent: W&B gets each curve as one chart instead.

    Args:
        project: W&B project name.
        save_dir: folder for the run files.
        offline: None chooses automatically; True / False force it.
        log_checkpoints: online, log the best and the last checkpoint as W&B artifacts (type
            ``model``, aliases ``best`` and ``latest``) when fitting ends; False keeps them
            local. Offline nothing is logged (``wandb sync`` would upload them later unasked).
        kwargs: anything else ``lightning.pytorch.loggers.WandbLogger`` takes (name, group, tags...).
    """

    def __init__(self, project: str = "predlearn", save_dir: str = "runs",
                 offline: bool | None = None, log_checkpoints: bool = True,
                 **kwargs: Any) -> None:
        if offline is None:
            mode = os.environ.get("WANDB_MODE", "").lower()
            offline = mode in ("offline", "dryrun") or (
                mode != "online" and not wandb_credentials_available()
            )
        kwargs.setdefault("log_model", log_checkpoints and not offline)
        super().__init__(project=project, save_dir=save_dir, offline=offline, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            # Lightning passes anonymous=None, which W&B (0.31 here) answers with "The
            # anonymous setting has no effect" at every run: the setting is left out instead
            self._wandb_init.pop("anonymous", None)
        self.offline = offline
        self.folder_made = False
        if offline:
            rank_zero_info(
                f"W&B logs offline under {Path(save_dir) / 'wandb'} (no credentials: set "
                "WANDB_API_KEY or run `wandb login` to log online); upload a run later with "
                "`wandb sync <its offline-run-... folder>`"
            )

    @property
    def experiment(self) -> Any:
        """The W&B run, started on first use, in ``save_dir`` (made then)."""
        if not self.folder_made and getattr(rank_zero_only, "rank", 0) == 0 and self.save_dir:
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
            self.folder_made = True
        return super().experiment

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Lightning's metrics, without the per-step scalars of the curves."""
        super().log_metrics({key: value for key, value in metrics.items()
                             if not is_step_key(key)}, step)


class RunCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` writing ``metrics.csv`` and ``hparams.yaml`` into ``save_dir``
    itself, not into ``save_dir/<name>/version_N``: with ``--trainer.logger=CSVLogger`` and no
    ``name`` or ``version`` the command line puts this logger in the class's place and makes
    ``save_dir`` the run's folder (``predlearn.runs``), so that a CSV run lives in one folder as a
    W&B run does. A resumed run (same folder) keeps the rows that the run before it logged for
    the steps before the one it resumes from; Lightning's would delete the file."""

    @property
    def root_dir(self) -> str:
        return self.save_dir

    @property
    def log_dir(self) -> str:
        return self.save_dir

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.log_dir, exist_ok=True)
            self._experiment = _ResumingWriter(self.log_dir)
        return self._experiment


class _ResumingWriter(ExperimentWriter):
    """``metrics.csv`` that goes on from the rows already in the run's folder: on its first
    save, the earlier rows of the steps before the first step logged now are kept (those of
    later steps were logged by steps that this resumed run repeats); until then the file stays
    as it was."""

    def _check_log_dir_exists(self) -> None:
        # the run's folder holds its config and checkpoints (so no warning about a folder that
        # is not empty), and maybe the metrics of the run this one resumes
        self.earlier: list[dict[str, Any]] | None = None  # the rows, as read: strings
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as handle:
                self.earlier = list(csv.DictReader(handle))

    def save(self) -> None:
        if self.earlier is not None:
            first = min((float(row["step"]) for row in self.metrics), default=float("inf"))
            kept = [{key: value for key, value in row.items() if value != ""}
                    for row in self.earlier if float(row.get("step") or 0) < first]
            self.metrics = [*kept, *self.metrics]
            self.earlier = None
            os.remove(self.metrics_file_path)  # written again, with the kept rows first
        super().save()
