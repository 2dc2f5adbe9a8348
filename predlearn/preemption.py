"""Placeholder: filled in by issue 30's work."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback


def preemption_callbacks(config: Any) -> list[Callback]:
    """The callbacks of this module for a fit run with config; none yet."""
    return []
