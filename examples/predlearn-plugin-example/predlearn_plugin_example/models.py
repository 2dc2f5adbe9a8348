"""The ``convgru`` predictor: stacked ConvGRU cells in predlearn's shared rollout loop."""

from __future__ import annotations

from predlearn import register_model
from predlearn.zoo import RecurrentStack

# Importing the cells registers ``conv_gru`` even where only the model entry point is loaded.
from predlearn_plugin_example import cells as _cells  # noqa: F401


@register_model("convgru")
class ConvGRU(RecurrentStack):
    """Stacked ConvGRUs: each layer keeps only its hidden state H, from t-1 to t.

    Every argument is ``RecurrentStack``'s (``frame_channels``, ``frame_size``,
    ``hidden_channels``, ``kernel_size``, ``patch_size``, ``cell_options``).
    """

    cell = "conv_gru"
