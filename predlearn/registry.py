"""Name registries for models, recurrent cells and data modules, with entry-point plugins.

timm-style: a decorator registers a class under a lowercase name; ``list_models`` and
``create_model`` look names up. Installed packages add entries through the entry-point groups
``predlearn.models``, ``predlearn.cells`` and ``predlearn.datamodules``. A plugin that fails to
import, or that clashes with a registered name, is reported by name (a ``PluginWarning`` and
``failed_plugins()``) and never stops the others from loading.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

T = TypeVar("T")

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# Modules whose import registers the built-in entries.
_BUILTIN_MODULES = ("predlearn.zoo", "predlearn.datamodules")


class PluginWarning(UserWarning):
    """A plugin entry point could not be loaded or registered."""


class UnknownNameError(KeyError):
    """A name is not in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    """A mapping from lowercase names to classes (or factories) of one kind."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Any] = {}
        self._plugins_loaded = False
        self.failed: dict[str, str] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated class under ``name`` (default: lowercased class name)."""

        def decorator(obj: T) -> T:
            self.add(name or obj.__name__.lower(), obj)
            return obj

        return decorator

    def add(self, name: str, obj: Any) -> None:
        if not _NAME_PATTERN.match(name):
            raise ValueError(
                f"{self.kind} name {name!r} must be lowercase letters, digits and underscores, "
                "starting with a letter"
            )
        existing = self._entries.get(name)
        if existing is not None and existing is not obj:
            raise ValueError(
                f"{self.kind} name {name!r} is already registered by "
                f"{_qualname(existing)}; cannot register {_qualname(obj)} under it"
            )
        self._entries[name] = obj

    def get(self, name: str) -> Any:
        """The entry registered as ``name``; unknown names fail listing the known ones."""
        self._ensure_loaded()
        key = name.lower()
        if key not in self._entries:
            known = ", ".join(sorted(self._entries)) or "(none)"
            hint = ""
            if self.failed:
                hint = f"; plugins that failed to load: {', '.join(sorted(self.failed))}"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}{hint}")
        return self._entries[key]

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style ``pattern``."""
        self._ensure_loaded()
        names = sorted(self._entries)
        return fnmatch.filter(names, pattern) if pattern else names

    def name_of(self, obj: Any) -> str | None:
        """The name an object is registered under, if any."""
        self._ensure_loaded()
        return next((n for n, o in self._entries.items() if o is obj), None)

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name.lower() in self._entries

    def _ensure_loaded(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        for entry_point in entry_points(group=self.group):
            self.load_entry_point(entry_point)

    def load_entry_point(self, entry_point: EntryPoint) -> bool:
        """Load one plugin; report (not raise) a failure. Returns whether it loaded."""
        label = f"{entry_point.name!r} ({entry_point.value}, group {self.group})"
        try:
            obj = entry_point.load()
            # An entry point may name a module (registering through decorators) or a class; a
            # class that registered itself through its decorator is already there.
            if not isinstance(obj, type(importlib)):
                self.add(entry_point.name.lower(), obj)  # raises on a clash with another object
        except Exception as err:  # noqa: BLE001 -- a broken plugin must not break the others
            reason = f"{type(err).__name__}: {err}"
            self.failed[entry_point.name] = reason
            warnings.warn(f"predlearn plugin {label} failed to load: {reason}", PluginWarning,
                          stacklevel=2)
            return False
        return True


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


MODELS = Registry("model", "predlearn.models")
CELLS = Registry("cell", "predlearn.cells")
DATAMODULES = Registry("datamodule", "predlearn.datamodules")


def register_model(name: str | None = None) -> Callable[[T], T]:
    """Register a predictor class (``forward(frames, horizon, targets=None, teacher_mask=None)``)."""
    return MODELS.register(name)


def register_cell(name: str | None = None) -> Callable[[T], T]:
    """Register a recurrent cell class (one step of one layer)."""
    return CELLS.register(name)


def register_datamodule(name: str | None = None) -> Callable[[T], T]:
    """Register a LightningDataModule class yielding (B, T, C, H, W) float batches in [0, 1]."""
    return DATAMODULES.register(name)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered predictor names, e.g. ``list_models("predrnn*")``."""
    return MODELS.names(pattern)


def list_cells(pattern: str | None = None) -> list[str]:
    return CELLS.names(pattern)


def list_datamodules(pattern: str | None = None) -> list[str]:
    return DATAMODULES.names(pattern)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the predictor registered as ``name`` with keyword arguments."""
    return MODELS.get(name)(**kwargs)


def create_cell(name: str, **kwargs: Any) -> Any:
    return CELLS.get(name)(**kwargs)


def failed_plugins() -> dict[str, str]:
    """Plugins that failed to load, by entry-point name, with the reason."""
    for registry in (MODELS, CELLS, DATAMODULES):
        registry._ensure_loaded()
    return {**MODELS.failed, **CELLS.failed, **DATAMODULES.failed}
