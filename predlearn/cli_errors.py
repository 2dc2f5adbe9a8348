"""Refusals of ``fit | validate | test | predict`` as predlearn errors of one line.

Our own refusals are ``OptionValueError``s that carry their owner (``names_options_under``), so
the option is named as typed. The parser's (a wrong type, an unknown option) come from
jsonargparse as one nested message; ``condense`` reads its stable parts, its ``Parser key`` chain
and innermost reason: pyproject.toml bounds jsonargparse's version, tests/test_cli_errors.py
checks each kind of message.
"""

from __future__ import annotations

import re
from argparse import ArgumentError

from predlearn.errors import OptionValueError, PredlearnError, UsageError

_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_NOT_ACCEPTED = re.compile(r"^Option '([^']+)' is not accepted$")
_EXPECTED = re.compile(r"^Expected a (.+?)\. Got value: (.*)$")
_CLASS_PATH = re.compile(r"^Problem with given class_path '([^']+)'")
#: lines of jsonargparse's nested messages that describe the structure, not the problem
_STRUCTURE = ("Does not validate against", "Subtypes:", "Errors:", "Given value",
              "Expected a <class 'NoneType'>", "Expected a path but", "Expected a <class 'bool'>",
              "Expected a <class 'collections.abc.Iterable'>")


def condense(message: str) -> tuple[str | None, str]:
    """jsonargparse's (nested, multi-line) parse error as (the option as typed, or None; what
    is wrong, in one line)."""
    keys: list[str] = []
    detail = owner = ""
    for raw in message.splitlines():
        line = raw.strip().lstrip("- ").strip()
        key, path = _PARSER_KEY.match(line), _CLASS_PATH.match(line)
        if key:
            keys.append(key.group(1))
            detail = key.group(2)
        elif path:
            owner = path.group(1)
        elif line and not line.startswith(_STRUCTURE):
            detail = line
        if detail:
            break
    if not keys and not detail:
        return None, " ".join(message.split())
    not_accepted = _NOT_ACCEPTED.match(detail)
    expected = _EXPECTED.match(detail)
    if not_accepted:
        keys.append(not_accepted.group(1))
        detail = f"no such option of {owner.rpartition('.')[2] or 'it'} (--help lists the options)"
    elif expected:
        wanted, value = expected.groups()
        literal = re.match(r"typing\.Literal\[(.*)\]$", wanted)
        wanted = f"one of {literal.group(1)}" if literal else re.sub(
            r"<class '(?:[\w.]*\.)?(\w+)'>", r"\1", wanted)
        detail = f"expected {wanted}; got {value!r}"
    elif owner:
        detail = f"cannot use {owner}: {detail}"
    if detail.startswith("unrecognized arguments"):
        detail += " (--help lists the options)"
    return ("--" + ".".join(keys) if keys else None), detail


def as_predlearn_error(error: BaseException) -> PredlearnError | None:
    """What ``error``, raised while LightningCLI parsed or built the run, means as a predlearn
    error: a parse error condensed, our own refusal (jsonargparse wraps what a constructor
    raises) with its option as typed; None for anything else."""
    if isinstance(error, ArgumentError):
        option, message = condense(str(error))
        return OptionValueError(option, message) if option else UsageError(message)
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OptionValueError):
            return current.as_typed()
        if isinstance(current, PredlearnError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
