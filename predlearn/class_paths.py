"""Configs as checkpoints and the command line keep them: dotted class paths
(``predlearn.zoo.PredRNN``), with the one importer and the one lookup of a class path's registry
name, and plain values (``plain``) to store and compare."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any


def import_class(path: str) -> Any:
    """The object a dotted path names (``module.Class``); ``ValueError`` naming the path when
    it does not import."""
    module, _, name = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"{path!r} does not name an importable class ({error})") from None


def from_config(config: Mapping[str, Any], base: type) -> Any:
    """The object a ``{"class_path": ..., "init_args": {...}}`` config describes (as checkpoints
    keep predictors and schedules); ``TypeError`` unless its class is a ``base``."""
    cls = import_class(str(config.get("class_path", "")))
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{config.get('class_path')!r} is not a predlearn {base.__name__}")
    return cls(**dict(config.get("init_args") or {}))


def class_or_none(path: Any) -> Any:
    """``import_class(path)``, or None where the path does not import (or is no string)."""
    try:
        return import_class(str(path)) if path else None
    except ValueError:
        return None


def class_path(cls: type) -> str:
    """``module.Class`` of ``cls``, as a config names it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def registry_name(registry: Any, component: Any) -> str | None:
    """The name ``registry`` knows a class by; ``component`` is the class, its dotted path, or
    a parsed config entry with a ``class_path``. None when it is not registered (or does not
    import here and no registered class has that path)."""
    if hasattr(component, "get"):
        component = component.get("class_path")
    if isinstance(component, type):
        return registry.name_of(component)
    if not component:
        return None
    cls = class_or_none(component)
    if cls is not None:
        return registry.name_of(cls)
    return next((name for name in registry.names() if registry.path_of(name) == component),
                None)


def plain(value: Any) -> Any:
    """Namespaces and mappings as dicts, tuples as lists, all the way down: the plain YAML types
    that configs and ``hparams.yaml`` hold, and that compare equal however they were parsed."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def constructor_defaults(cls: type) -> dict[str, Any]:
    """The default values of ``cls``'s constructor arguments, as ``plain`` values."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {name: plain(p.default) for name, p in parameters.items()
            if p.default is not inspect.Parameter.empty}
