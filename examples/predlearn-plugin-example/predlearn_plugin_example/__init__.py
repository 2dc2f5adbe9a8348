"""An example predlearn plugin: the ``conv_gru`` cell and the ``convgru`` predictor.

Installed, it is found through its entry points (see ``pyproject.toml``); importing it also
registers both names.
"""

from predlearn_plugin_example.cells import ConvGRUCell
from predlearn_plugin_example.models import ConvGRU

__all__ = ["ConvGRU", "ConvGRUCell"]
