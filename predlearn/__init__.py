"""predlearn: spatiotemporal predictive learning (PredRNN and its baselines) on PyTorch Lightning.

The model zoo installs as ``predlearn.zoo`` and the data modules as ``predlearn.datamodules``.
The names below are imported on first use (PEP 562), so ``import predlearn`` and the command
line's help start without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0.dev0"

#: public name -> the module that defines it
_EXPORTS = {
    "set_flush_denormal": "predlearn.denormals",
    "list_pretrained": "predlearn.pretrained",
    "load_pretrained": "predlearn.pretrained",
    "save_pretrained": "predlearn.pretrained_folder",
    "from_pretrained": "predlearn.pretrained_folder",
    **{name: "predlearn.registry" for name in (
        "create_cell", "create_model", "failed_plugins", "list_cells", "list_datamodules",
        "list_metrics", "list_models", "register_cell", "register_datamodule",
        "register_metric", "register_model")},
}

__all__ = [
    "__version__", "create_cell", "create_model", "failed_plugins", "from_pretrained",
    "list_cells", "list_datamodules", "list_metrics", "list_models", "list_pretrained",
    "load_pretrained", "register_cell", "register_datamodule", "register_metric",
    "register_model", "save_pretrained", "set_flush_denormal",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'predlearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
