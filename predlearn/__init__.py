"""predlearn: spatiotemporal predictive learning (PredRNN and its baselines) on PyTorch Lightning.

The model zoo installs as ``predlearn.zoo`` and the data modules as ``predlearn.datamodules``.
"""

from predlearn.denormals import set_flush_denormal
from predlearn.pretrained import list_pretrained, load_pretrained
from predlearn.registry import (
    create_cell,
    create_model,
    failed_plugins,
    list_cells,
    list_datamodules,
    list_models,
    register_cell,
    register_datamodule,
    register_model,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "__version__",
    "create_cell",
    "create_model",
    "failed_plugins",
    "list_cells",
    "list_datamodules",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "register_cell",
    "register_datamodule",
    "register_model",
    "set_flush_denormal",
]
