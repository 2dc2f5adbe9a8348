"""Refusals of ``fit | validate | test | predict`` as predlearn errors of one line.

Our own refusals are ``OptionValueError``s that carry their owner (``names_options_under``), so
the option is named as typed. The parser's (a wrong type, an unknown option) come from
jsonargparse as one nested message; ``condense`` reads its stable parts, its ``Parser key`` chain
and innermost reason: pyproject.toml bounds jsonargparse's version, tests/test_cli_errors.py
checks each kind of message. An option with a fixed set of values says them all; a misspelt or
abbreviated option, and an unknown name of a registry, get "did you mean" (``did_you_mean``).
"""

from __future__ import annotations

import difflib
import inspect
import re
from argparse import ArgumentError
from collections.abc import Iterable

from predlearn.errors import OptionValueError, PredlearnError, UsageError

_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_NOT_ACCEPTED = re.compile(r"^Option '([^']+)' is not accepted$")
_EXPECTED = re.compile(r"^Expected a (.+?)\. Got value: (.*)$")
#: jsonargparse's restricted numbers (``NonNegativeFloat``, ``PositiveInt``...)
_RESTRICTED = re.compile(r"^Not of type \w+: (.+?) does not conform to restriction v([<>]=?)(.+)$")
_CLASS_PATH = re.compile(r"^Problem with given class_path '([^']+)'")
_NOT_A_PATH = re.compile(r"^Expected a dot import path string: (\S+)$")
_LITERAL = re.compile(r"typing\.Literal\[(.*?)\]")
#: "unknown cell 'x'; known cells: a, b[; plugins that failed to load: c]" (registries) and
#: "unknown 'x'; known: a, b" (metrics)
_UNKNOWN_NAME = re.compile(r"unknown (?:(\w+) )?'([^']+)'; (known(?: \w+)?: ([\w, ]+).*)$")
#: lines of jsonargparse's nested messages that describe the structure, not the problem
_STRUCTURE = ("Does not validate against", "Subtypes:", "Errors:", "Given value",
              "Expected a <class 'NoneType'>", "Expected a path but", "Expected a <class 'bool'>",
              "Expected a <class 'collections.abc.Iterable'>")
#: the options whose value is a registry's name or a class path, and that registry
_REGISTRY_OPTIONS = {"model.predictor": "MODELS", "data": "DATAMODULES"}


def did_you_mean(given: str, known: Iterable[str], extra: dict[str, str] | None = None,
                 cutoff: float = 0.6) -> list[str]:
    """The names of ``known`` that ``given`` most likely meant (at most 3): one that differs
    only in case; else those it abbreviates (it is their start); else the closest spellings
    (those as close as the closest). ``extra`` maps more spellings (a class's name) to the name
    they stand for."""
    lowered = {name.lower(): name for name in sorted(set(known))}
    lowered.update({} if extra is None else {k.lower(): v for k, v in extra.items()})
    key = given.lower()
    if key in lowered:
        return [lowered[key]]
    starting = [lowered[name] for name in sorted(lowered, key=len) if name.startswith(key)]
    if starting:
        return list(dict.fromkeys(starting))[:3]
    scored = sorted(((difflib.SequenceMatcher(None, key, name).ratio(), name)
                     for name in lowered), reverse=True)
    best = scored[0][0] if scored else 0.0
    return list(dict.fromkeys(lowered[name] for ratio, name in scored
                              if ratio >= max(cutoff, best - 0.02)))[:3]


def meant(suggestions: list[str], quote: bool = False) -> str:
    """``suggestions`` as "; did you mean X?" ("X or Y"), or "" for none."""
    if not suggestions:
        return ""
    shown = [repr(s) if quote else s for s in suggestions]
    listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
    return f"; did you mean {listed}?"


def unknown_name(kind: str, given: str, names: Iterable[str],
                 extra: dict[str, str] | None = None, failed: Iterable[str] = ()) -> str:
    """The refusal of a name no registry of ``kind`` holds, as the registry words it (with the
    plugins that ``failed`` to load), with the names it likely meant first."""
    names = sorted(set(names))
    known = f"known {kind}s: {', '.join(names) or '(none)'}"
    if failed:
        known += f"; plugins that failed to load: {', '.join(sorted(failed))}"
    likely = meant(did_you_mean(given, names, extra), quote=True)
    return f"unknown {kind} {given!r}{likely} ({known})" if likely else (
        f"unknown {kind} {given!r}; {known}")


def init_parameters(cls: type) -> set[str]:
    """The constructor parameters of ``cls`` and its bases: the options of its group."""
    names: set[str] = set()
    for klass in getattr(cls, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        try:
            parameters = inspect.signature(init).parameters if init is not None else {}
        except (TypeError, ValueError):  # a builtin's __init__
            continue
        names |= {name for name, parameter in parameters.items() if name != "self" and
                  parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}
    return names


def condense(message: str, options: Iterable[str] = ()) -> tuple[str | None, str]:
    """jsonargparse's (nested, multi-line) parse error as (the option as typed, or None; what
    is wrong, in one line). ``options``: the parser's options, to suggest for unknown ones."""
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
    choices = _literal_choices(message)
    not_accepted = _NOT_ACCEPTED.match(detail)
    expected = _EXPECTED.match(detail)
    not_a_path = _NOT_A_PATH.match(detail)
    restricted = _RESTRICTED.match(detail)
    if choices is not None:
        detail = choices
    elif not_accepted:
        keys.append(not_accepted.group(1))
        cls = _class_or_none(owner)
        likely = did_you_mean(keys[-1], init_parameters(cls)) if cls is not None else []
        prefix = "--" + ".".join(keys[:-1]) + "."
        detail = (f"no such option of {owner.rpartition('.')[2] or 'it'}"
                  f"{meant([prefix + name for name in likely])} (--help lists the options)")
    elif expected:
        wanted, value = expected.groups()
        literal = re.match(r"typing\.Literal\[(.*)\]$", wanted)
        wanted = f"one of {literal.group(1)}" if literal else re.sub(
            r"<class '(?:[\w.]*\.)?(\w+)'>", r"\1", wanted)
        detail = f"expected {wanted}; got {value!r}"
    elif restricted:
        value, relation, bound = restricted.groups()
        detail = f"must be a number {relation} {bound.strip()}; got {value}"
    elif not_a_path and ".".join(keys) in _REGISTRY_OPTIONS:
        detail = _unknown_class(".".join(keys), not_a_path.group(1))
    elif owner:
        detail = f"cannot use {owner}: {detail}"
    if detail.startswith("unrecognized arguments"):
        detail = _unrecognized(detail, options)
    return ("--" + ".".join(keys) if keys else None), detail


def as_predlearn_error(error: BaseException) -> PredlearnError | None:
    """What ``error``, raised while LightningCLI parsed or built the run, means as a predlearn
    error: a parse error condensed, our own refusal (jsonargparse wraps what a constructor
    raises) with its option as typed; None for anything else. An unknown registry name gets the
    names it likely meant."""
    if isinstance(error, ArgumentError):
        option, message = condense(str(error), _parser_options(error))
        return OptionValueError(option, message) if option else UsageError(message)
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OptionValueError):
            return _suggesting(current.as_typed())
        if isinstance(current, PredlearnError):
            return _suggesting(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _suggesting(error: PredlearnError) -> PredlearnError:
    """``error`` with "did you mean" after an unknown name its message lists the known ones of
    (a cell, a metric), or itself where none is close."""
    text = error.message if isinstance(error, OptionValueError) else str(error)
    found = _UNKNOWN_NAME.search(text)
    if found is None or "did you mean" in text:
        return error
    names = [name.strip() for name in found.group(4).split(",") if name.strip()]
    hint = meant(did_you_mean(found.group(2), names), quote=True)
    if not hint:
        return error
    text = f"{text[:found.end(2) + 1]}{hint} ({found.group(3)})"
    if isinstance(error, OptionValueError):
        return OptionValueError(error.option, text, error.value)
    try:
        return type(error)(text)
    except TypeError:  # a class with other arguments: as it is
        return error


def _literal_choices(message: str) -> str | None:
    """"expected one of ...; got ..." for a value refused by a union of ``Literal``s (e.g.
    ``--trainer.precision``): every value it allows, not only the first type's."""
    subtypes = next((line.strip() for line in message.splitlines()
                     if line.strip().startswith("Subtypes: [")), None)
    if subtypes is None:
        return None
    literals = _LITERAL.findall(subtypes)
    rest = _LITERAL.sub("", subtypes[len("Subtypes: ["):-1])
    if not literals or re.sub(r"<class 'NoneType'>|[,\s]", "", rest):
        return None
    values: dict[str, str] = {}
    for group in literals:
        for value in group.split(", "):
            values.setdefault(value.strip("'\""), value)
    given = re.search(r"^\s*Given value: (.*)$", message, re.MULTILINE)
    got = f"; got {given.group(1).strip()!r}" if given else ""
    return f"expected one of {', '.join(values.values())}{got}"


def _unrecognized(detail: str, options: Iterable[str]) -> str:
    """"unrecognized arguments: ..." with the options each unknown one likely meant."""
    known = [option for option in options if option.startswith("--")]
    given = [arg.split("=", 1)[0] for arg in detail.partition(":")[2].split()
             if arg.startswith("--")]
    likely = {arg: did_you_mean(arg, known, cutoff=0.75) for arg in given}
    likely = {arg: found for arg, found in likely.items() if found}
    if len(likely) == 1 and len(given) == 1:
        detail += meant(next(iter(likely.values())))
    elif likely:
        detail += "; did you mean " + ", ".join(
            f"{found[0]} for {arg}" for arg, found in likely.items()) + "?"
    return detail + " (--help lists the options)"


def _unknown_class(key: str, value: str) -> str:
    """The refusal of a value of ``--model.predictor`` or ``--data`` that is neither a class
    path nor a class's name: the registered names it likely meant."""
    from predlearn import registry

    names = getattr(registry, _REGISTRY_OPTIONS[key])
    classes = {names.path_of(name).rpartition(".")[2]: name for name in names.names()}
    return unknown_name(names.kind, value, names.names(), classes, names.failed)


def _parser_options(error: BaseException) -> set[str]:
    """Every option of the parsers (the main one and its subcommands') on ``error``'s
    traceback: the ones an unknown option is compared with."""
    from jsonargparse import ArgumentParser

    parsers: list[ArgumentParser] = []
    trace = error.__traceback__
    while trace is not None:
        for name in ("self", "parser"):
            found = trace.tb_frame.f_locals.get(name)
            if isinstance(found, ArgumentParser) and all(found is not p for p in parsers):
                parsers.append(found)
        trace = trace.tb_next
    options: set[str] = set()
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            options.update(action.option_strings)
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                parsers.extend(p for p in choices.values() if isinstance(p, ArgumentParser))
    return options


def _class_or_none(path: str) -> type | None:
    from predlearn.class_paths import class_or_none

    cls = class_or_none(path)
    return cls if isinstance(cls, type) else None
