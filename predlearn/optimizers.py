"""The optimiser and learning-rate schedule of a ``PredictiveModule``, as Lightning wants them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def configure_optimizers(parameters: Iterable[torch.nn.Parameter], learning_rate: float,
                         optimizer_config: Any = None, lr_scheduler_config: Any = None) -> Any:
    """Adam at ``learning_rate`` (paper §4), or the ``optimizer`` config (a class path and its
    arguments); with an ``lr_scheduler`` config, that schedule too, stepped every step
    (``ReduceLROnPlateau``: at each epoch's end, on the latest ``val/loss``)."""
    from lightning.pytorch.cli import instantiate_class  # jsonargparse: only when asked

    if optimizer_config is None:
        optimizer = torch.optim.Adam(parameters, lr=learning_rate)  # paper §4
    else:
        optimizer = instantiate_class(parameters, optimizer_config)
    if lr_scheduler_config is None:
        return optimizer
    scheduler = instantiate_class(optimizer, lr_scheduler_config)
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        # skipped, with a warning, before any validation
        config = {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch",
                  "strict": False}
    else:
        config = {"scheduler": scheduler, "interval": "step"}
    return {"optimizer": optimizer, "lr_scheduler": config}
