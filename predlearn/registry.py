"""Name registries for models, recurrent cells and data modules, with entry-point plugins.

timm-style: ``list_models`` and ``create_model`` look lowercase names up. Entries come from the
entry-point groups ``predlearn.models``, ``predlearn.cells`` and ``predlearn.datamodules`` of
every installed package, predlearn's own built-ins included (its ``pyproject.toml`` declares
them: this module imports no model or data module by name), and from the ``register_*``
decorators. predlearn's own entries are imported only when first used, so listing names costs
no import of torch or Lightning; other packages' entries are imported when the registry is
first read, so that a plugin that fails to import, or that clashes with a registered name, is
reported by name at once (a ``PluginWarning`` and ``failed_plugins()``) and never stops the
others from loading.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from predlearn.class_paths import class_path
from predlearn.errors import UsageError

#: what a registry holds: classes, or factories (functions); both have a ``__name__``
T = TypeVar("T", bound=Callable[..., Any])

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
#: the distribution whose entry points are imported lazily (its own built-ins)
_OWN_DISTRIBUTION = "predlearn"


class PluginWarning(UserWarning):
    """A plugin entry point could not be loaded or registered."""


class UnknownNameError(UsageError, KeyError):
    """A name is not in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    """A mapping from lowercase names to classes (or factories) of one kind."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Any] = {}
        #: declared by an entry point of predlearn itself, not imported yet: name -> entry point
        self._declared: dict[str, EntryPoint] = {}
        self._plugins_loaded = False
        self.failed: dict[str, str] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated class under ``name`` (default: lowercased class name)."""

        def decorator(obj: T) -> T:
            self.add(name or obj.__name__.lower(), obj)
            return obj

        return decorator

    def add(self, name: str, obj: Any) -> None:
        _check_name(self.kind, name)
        declared = self._declared.get(name)
        if declared is not None:
            if _object_path(declared.value) != class_path(obj):
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered by "
                    f"{_object_path(declared.value)}; cannot register {class_path(obj)} under it"
                )
            del self._declared[name]  # the declared class itself, now imported
        existing = self._entries.get(name)
        if existing is not None and existing is not obj:
            raise ValueError(
                f"{self.kind} name {name!r} is already registered by "
                f"{class_path(existing)}; cannot register {class_path(obj)} under it"
            )
        self._entries[name] = obj

    def get(self, name: str) -> Any:
        """The entry registered as ``name``; unknown names fail listing the known ones."""
        self._ensure_loaded()
        key = name.lower()
        if key in self._declared:
            self.load_entry_point(self._declared[key])
        if key not in self._entries:
            known = ", ".join(sorted({*self._entries, *self._declared})) or "(none)"
            hint = ""
            if self.failed:
                hint = f"; plugins that failed to load: {', '.join(sorted(self.failed))}"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}{hint}")
        return self._entries[key]

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style ``pattern``."""
        self._ensure_loaded()
        names = sorted({*self._entries, *self._declared})
        return fnmatch.filter(names, pattern) if pattern else names

    def path_of(self, name: str) -> str:
        """``module.Class`` of the entry ``name``, without importing it."""
        self._ensure_loaded()
        key = name.lower()
        if key in self._declared:
            return _object_path(self._declared[key].value)
        return class_path(self.get(key))

    def name_of(self, obj: Any) -> str | None:
        """The name an object is registered under, if any."""
        self._ensure_loaded()
        found = next((n for n, o in self._entries.items() if o is obj), None)
        if found is None:  # a declared entry of the same path is this object, once imported
            path = class_path(obj)
            found = next((n for n, ep in self._declared.items()
                          if _object_path(ep.value) == path), None)
            if found is not None and self.get(found) is not obj:
                return None
        return found

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name.lower() in self._entries or name.lower() in self._declared

    def load_all(self) -> None:
        """Import every declared entry (a failure is reported in ``failed``)."""
        self._ensure_loaded()
        for entry_point in list(self._declared.values()):
            self.load_entry_point(entry_point)

    def _ensure_loaded(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry_point in entry_points(group=self.group):
            if _is_own(entry_point) and ":" in entry_point.value:
                self.declare(entry_point)
            else:
                self.load_entry_point(entry_point)

    def declare(self, entry_point: EntryPoint) -> None:
        """Record an entry point of predlearn itself under its name; imported on first use."""
        name = entry_point.name.lower()
        _check_name(self.kind, name)
        self._declared[name] = entry_point

    def load_entry_point(self, entry_point: EntryPoint) -> bool:
        """Load one plugin; report (not raise) a failure. Returns whether it loaded."""
        label = f"{entry_point.name!r} ({entry_point.value}, group {self.group})"
        if self._declared.get(entry_point.name.lower()) is entry_point:
            del self._declared[entry_point.name.lower()]  # imported now, registered below
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


def _object_path(value: str) -> str:
    """An entry point's ``module:Class`` as ``module.Class``."""
    return value.replace(":", ".")


def _is_own(entry_point: EntryPoint) -> bool:
    dist = getattr(entry_point, "dist", None)
    return dist is not None and dist.name == _OWN_DISTRIBUTION


def _check_name(kind: str, name: str) -> None:
    if not _NAME_PATTERN.match(name):
        raise ValueError(
            f"{kind} name {name!r} must be lowercase letters, digits and underscores, "
            "starting with a letter"
        )


MODELS = Registry("model", "predlearn.models")
CELLS = Registry("cell", "predlearn.cells")
DATAMODULES = Registry("datamodule", "predlearn.datamodules")
METRICS = Registry("metric", "predlearn.metrics")


def register_model(name: str | None = None) -> Callable[[T], T]:
    """Register a predictor class (``forward(frames, horizon, targets=None, teacher_mask=None)``)."""
    return MODELS.register(name)


def register_cell(name: str | None = None) -> Callable[[T], T]:
    """Register a recurrent cell class (one step of one layer)."""
    return CELLS.register(name)


def register_datamodule(name: str | None = None) -> Callable[[T], T]:
    """Register a LightningDataModule class yielding (B, T, C, H, W) float batches in [0, 1]."""
    return DATAMODULES.register(name)


def register_metric(name: str | None = None) -> Callable[[T], T]:
    """Register a per-step metric class (``predlearn.metrics.PerStepMetric``: its ``key``,
    direction and curve ``label`` go with it)."""
    return METRICS.register(name)


def list_metrics(pattern: str | None = None) -> list[str]:
    return METRICS.names(pattern)


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
    """Plugins that failed to load, by entry-point name, with the reason (every entry is
    imported to find out)."""
    for registry in (MODELS, CELLS, DATAMODULES, METRICS):
        registry.load_all()
    return {**MODELS.failed, **CELLS.failed, **DATAMODULES.failed, **METRICS.failed}
