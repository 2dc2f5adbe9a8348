"""The argument parser of predlearn's own subcommands (``compare``, ``sweep``, ``prepare``)."""

from __future__ import annotations

import argparse
from typing import Any

from predlearn.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose refusals (a wrong value, an unknown or missing option)
    raise ``UsageError``, so that ``predlearn.cli.main`` prints them as one line like every
    other refusal, instead of argparse's usage text and exit."""

    def error(self, message: str) -> Any:  # argparse's signature says NoReturn
        raise UsageError(f"{self.prog}: {message} (`{self.prog} --help` lists the options)")
