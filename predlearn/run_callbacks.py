"""The callbacks every ``fit | validate | test | predict`` run gets besides the configured ones.

One place that lists them, each from its own module: preemption and the timed last checkpoint
(``predlearn.preemption``), the validation a fit owes at its end
(``predlearn.final_validation``) and the stop on a non-finite loss (``predlearn.finite_loss``).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback


def run_callbacks(subcommand: str, config: Any) -> list[Callback]:
    """The extra callbacks of a ``subcommand`` run with ``config`` (its LightningCLI namespace)."""
    callbacks: list[Callback] = []
    if subcommand != "fit":
        return callbacks
    from predlearn.final_validation import final_validation_callbacks
    from predlearn.finite_loss import finite_loss_callbacks
    from predlearn.preemption import preemption_callbacks

    callbacks.extend(preemption_callbacks(config))
    callbacks.extend(final_validation_callbacks(config))
    callbacks.extend(finite_loss_callbacks(config))
    return callbacks
