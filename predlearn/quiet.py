"""Quiet by default: what a ``fit | validate | test | predict`` run hides, and why.

A run prints predlearn's messages, the progress bar and Lightning's summary (the devices used,
the model's size, why the fit stopped, which checkpoint was loaded). ``quiet()`` hides, for the
duration of one command, only the third-party warnings that the user can do nothing about:
each is matched by the module that raises it, its category and the start of its message
(``FILTERED``), never by a blanket ignore, so the same text raised elsewhere still shows, and
every warning that is not listed here still shows. Lightning's advertisement lines
(``QUIET_INFO``) are dropped from Lightning's own logger, its other lines stay.

Fixed at their cause instead of hidden (so not listed here): the per-key "It is recommended to
use `sync_dist=True`" of a DDP validation or test (``PredictiveModule`` logs its synced metrics
with ``sync_dist``) and W&B's "The anonymous setting has no effect" (``AutoWandbLogger`` no
longer passes that setting).

The filters live in this process: processes that a command starts by re-running it (``ddp``,
torchrun) apply them too; those started with ``spawn`` (``ddp_spawn``, loader workers where
``spawn`` is the default start method) do not.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Lightning's warning about an iterable data set that defines ``len()`` (shown with loader
#: workers); predlearn's training streams give an exact ``len()`` (in batches, split over the
#: workers by their ``__iter__``; ``predlearn.datamodules.stream``)
STREAM_LENGTH_WARNING = "Your `IterableDataset` has `__len__` defined"


@dataclass(frozen=True)
class Filter:
    """One hidden warning: the regular expressions its module name and message start match
    (as ``warnings.filterwarnings`` takes them), its category, and why the user cannot act."""

    module: str
    message: str
    category: type[Warning]
    why: str


FILTERED: tuple[Filter, ...] = (
    Filter(r"lightning\.pytorch\.utilities\._pytree\Z",
           r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning,
           "Lightning 2.6 builds torch's deprecated LeafSpec in its own pytree helper at every "
           "batch transfer; nothing in predlearn or the command line calls it"),
    Filter(r"lightning\.pytorch\.utilities\.data\Z", STREAM_LENGTH_WARNING, UserWarning,
           "predlearn's training streams define an exact len() and split the sequences over "
           "the loader workers themselves, which is what the warning asks for"),
    Filter(r"lightning\.fabric\.utilities\.seed\Z", r"No seed found, seed set to ", UserWarning,
           "LightningCLI's default --seed_everything=true seeds every run (with 0, or "
           "PL_GLOBAL_SEED), which is no mistake; the next line, \"Seed set to N\", stays, and "
           "config.yaml records the seed"),
    Filter(r"lightning\.pytorch\.cli\Z",
           r"\s*(``ArgumentParser\.add_instantiator``|``instantiate_classes``|skip_none "
           r"parameter) was deprecated in v4\.49", DeprecationWarning,
           "LightningCLI 2.6 calls jsonargparse functions that jsonargparse 4.49 deprecated; "
           "only a newer Lightning can change the call"),
    Filter(r"lightning\.pytorch\.cli\Z",
           r"\s*By default only one JsonargparseDeprecationWarning per type is shown",
           DeprecationWarning,
           "jsonargparse's note that comes with the first of the deprecations above"),
)

#: where Lightning's ``rank_zero_info`` lines go (its summary and its tips)
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"
#: the starts of Lightning's info lines that are advertisements, not the run's summary
#: ("💡 Tip: ... try installing litlogger / litmodels"): dropped
QUIET_INFO: tuple[str, ...] = ("💡 Tip:",)


class _DropInfo(logging.Filter):
    """Drops the log records whose message starts with one of ``QUIET_INFO``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(QUIET_INFO)


def hide_own_checkpoints_warning(dirpath: str | Path) -> None:
    """Hide, for the rest of the ``quiet()`` block that calls it (its filters are restored at
    the end), Lightning's "Checkpoint directory <dirpath> exists and is not empty" for this one
    folder: a resumed fit goes on writing its own run's checkpoints there, which is what the
    user asked. The same warning for any other folder (an existing ``--checkpoint.dirpath``)
    still shows."""
    shown = os.path.realpath(os.path.expanduser(dirpath))  # as ModelCheckpoint names it
    warnings.filterwarnings(
        "ignore", message=re.escape(f"Checkpoint directory {shown} exists and is not empty"),
        category=UserWarning, module=r"lightning\.pytorch\.callbacks\.model_checkpoint\Z")


@contextmanager
def quiet() -> Iterator[None]:
    """Within: the warnings of ``FILTERED`` and Lightning's info lines of ``QUIET_INFO`` are
    hidden; everything else shows as it would (the filters are put first, so they hold under
    ``-W error`` too, and the previous filters are back at the end)."""
    dropper = _DropInfo()
    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    with warnings.catch_warnings():
        for hidden in FILTERED:
            warnings.filterwarnings("ignore", message=hidden.message, category=hidden.category,
                                    module=hidden.module)
        logger.addFilter(dropper)
        try:
            yield
        finally:
            logger.removeFilter(dropper)
