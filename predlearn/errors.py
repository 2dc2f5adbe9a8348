"""predlearn's errors: what went wrong, in one line that names the file, option or shape.

Every refusal predlearn makes on bad input raises one of these; the console script prints it as
``predlearn: error: <message>`` without a traceback (``--debug`` or ``PREDLEARN_DEBUG=1`` shows
it) and exits with the error's ``exit_code``: 2 for a command line that cannot be run as given
(usage), 1 for everything else: data, files, checkpoints, the machine's resources, a training that
diverged. Each class also derives from the built-in exception Python code would expect
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so callers that catch those keep working.
What Lightning and torch raise while a run runs (a trainer setting they refuse, an out-of-memory,
a full disk, a process group that cannot start) becomes one of these in the console script
(``predlearn.runtime_errors``); any other exception keeps its traceback, a bug stays visible.

    PredlearnError
    +-- UsageError              bad command, option or option value (exit 2)
    |   +-- OptionValueError    one option's value is refused; ``option`` names it
    +-- DataError               data that cannot be used (exit 1)
    |   +-- DataNotFoundError   a file or folder is missing; the message says what to put where
    |   +-- BadFileError        a file is corrupt, truncated, of the wrong format or shape
    |   +-- ChecksumError     a file's checksum is not the expected one
    +-- CheckpointError         a checkpoint that cannot be used for this run (exit 1)
    +-- OutputError             an output would overwrite an input, or cannot be written (exit 1)
    +-- ResourceError           the machine cannot give what the run needs (exit 1)
    |   +-- NotEnoughMemoryError    out of GPU or CPU memory; says what to lower
    |   +-- DiskFullError           no space or quota left where a file is written; names it
    |   +-- DistributedSetupError   a DDP process group cannot start; names the variable
    +-- TrainingDivergedError   the training loss turned NaN or infinite; names the step (exit 1)

``ArgumentParser`` is the parser of predlearn's own subcommands (``compare``, ``sweep``,
``prepare``): its refusals are ``UsageError``s too.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any


class PredlearnError(Exception):
    """Base of predlearn's errors; ``exit_code`` is what the console script exits with."""

    exit_code = 1


class UsageError(PredlearnError, ValueError):
    """A command line that cannot be run as given: unknown command, option or name."""

    exit_code = 2


class OptionValueError(UsageError):
    """An option's value is refused: ``option`` names it as on the command line (e.g.
    ``--data.batch_size``), the message says what it must be."""

    def __init__(self, option: str, message: str, value: Any = None,
                 owner: str | None = None) -> None:
        self.option, self.message, self.value = option, message, value
        #: the prefix of the options of the object that refused it (``model.predictor``,
        #: ``data``), given or set by ``names_options_under``; the command line names the option
        #: by it
        self.owner = owner
        super().__init__(f"{option}: {message}")

    def as_typed(self) -> OptionValueError:
        """The refusal with its option as on the command line (``--model.predictor.kernel_size``
        for ``kernel_size`` of the predictor); unchanged without an owner, or when the option
        is already written so."""
        if self.owner is None or self.option.startswith("-"):
            return self
        return OptionValueError(f"--{self.owner}.{self.option}", self.message, self.value)


class DataError(PredlearnError):
    """Data that cannot be used; the message names the file and what to do."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file or folder is missing; the message says what to put where."""

    def __str__(self) -> str:  # FileNotFoundError(message) prints just the message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class BadFileError(DataError, ValueError):
    """A file is corrupt, truncated, or not of the format or shape expected."""


class ChecksumError(BadFileError):
    """A file's checksum is not the one expected (a damaged or different download)."""


class CheckpointError(PredlearnError, ValueError):
    """A checkpoint that cannot be used for this run (another model, damaged, not predlearn's)."""


class OutputError(PredlearnError, ValueError):
    """An output that would overwrite an input, or that cannot be written where asked."""


class ResourceError(PredlearnError, RuntimeError):
    """The machine cannot give what the run needs (memory, disk space, a network for the
    processes of a DDP run); the message says which, and what to change."""


class NotEnoughMemoryError(ResourceError):
    """Out of GPU or CPU memory; the message names the options that need less."""


class DiskFullError(ResourceError):
    """No space, or no quota, left on the disk a file is written to; the message names it."""


class DistributedSetupError(ResourceError):
    """The processes of a DDP run cannot form their group (a port in use, an unreachable
    ``MASTER_ADDR``, a gloo or NCCL failure); the message names the variable or option."""


class TrainingDivergedError(PredlearnError, FloatingPointError):
    """The training loss turned NaN or infinite: the fit stopped at that step (its weights
    unchanged, no checkpoint of non-finite weights written); the message names the step and the
    likely causes."""


def require(condition: bool, option: str, message: str, value: Any = None,
            owner: str | None = None) -> None:
    """Raise ``OptionValueError(option, message)`` unless ``condition``: one line per check in
    constructors that validate their arguments (``owner``: for checks made outside them)."""
    if not condition:
        raise OptionValueError(option, message, value, owner)


def names_options_under(prefix: str, init: Callable[..., None]) -> Callable[..., None]:
    """``init`` (a constructor) whose ``OptionValueError``s, raised by it or by what it builds,
    get ``prefix`` as their owner unless something nearer set one: the command line then names
    the option as typed (``OptionValueError.as_typed``). The bases of predictors, data modules
    and sampling schedules wrap every subclass's constructor with it."""

    @functools.wraps(init)
    def naming_init(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except OptionValueError as error:
            if error.owner is None:
                error.owner = prefix
            raise

    return naming_init


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose refusals (a wrong value, an unknown or missing option)
    raise ``UsageError``, printed in one line like every other refusal, instead of argparse's
    usage text and exit."""

    def error(self, message: str) -> Any:  # argparse's signature says NoReturn
        raise UsageError(f"{self.prog}: {message} (`{self.prog} --help` lists the options)")
