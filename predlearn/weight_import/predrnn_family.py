"""ConvLSTM, PredRNN and PredRNN v2 from the authors' predrnn-pytorch and from OpenSTL, whose
networks (OpenSTL's are ports of the authors') share their names:

- ``cell_list.<l>.conv_x.0.weight`` (and ``.1.*``, the LayerNorm with ``layer_norm``), likewise
  ``conv_h``, ``conv_m``, ``conv_o``; ``cell_list.<l>.conv_last.weight`` (the cell's 1x1 over
  [C, M]); ``conv_last.weight`` (the 1x1 to patched pixels); ``adapter.weight`` (v2).
- Their stacked gates are ordered i, f, g(, i', f', g')(, o); predlearn's g, i, f(, g', i', f')(,
  o). Their convolutions have no bias: ours are set to zero. Their ST-LSTM adds a forget bias of
  1.0 (``cell_options.forget_bias``); their ConvLSTM cell none, and no peepholes
  (``cell_options.peephole: false``); OpenSTL's ConvLSTM cell builds a ``conv_o`` and a
  ``conv_last`` that its forward never uses, which are dropped.
- Their patches are ordered (py, px, c), ``pixel_unshuffle``'s (c, py, px): the same for one
  channel, reordered for more.
"""

from __future__ import annotations

from typing import Any

from predlearn.errors import CheckpointError
from predlearn.weight_import.openstl_options import frame_counts, recurrent_options
from predlearn.weight_import.renaming import (
    Converted,
    Target,
    layer_index,
    patched_input,
    patched_output,
    renamed,
    unknown,
)
from predlearn.weight_import.sources import SourceWeights

#: the source's chunk for each of ours, per stacked convolution
ST_LSTM_ORDER = {"conv_x": [2, 0, 1, 5, 3, 4, 6], "conv_h": [2, 0, 1, 3], "conv_m": [2, 0, 1],
                 "conv_o": None}
ST_LSTM_NORMS = {"conv_x": 0, "conv_h": 1, "conv_m": 2, "conv_o": 3}
CONV_LSTM_ORDER = {"conv_x": [2, 0, 1, 3], "conv_h": [2, 0, 1, 3]}
#: ours the sources leave out, set to zero: the input convolutions' and the head's biases
ZERO_FILLED = (r"cells\.\d+\.conv_x\.bias", r"head\.bias")


def _cell_parts(name: str) -> tuple[int, str, list[str]] | None:
    """``cell_list.<l>.<conv>.<rest>`` -> (l, conv, rest); None for any other name."""
    if not name.startswith("cell_list."):
        return None
    _, layer, conv, *rest = name.split(".")
    return int(layer), conv, rest


def st_lstm_rule(name: str) -> Target | None:
    """The authors' (and OpenSTL's) PredRNN / PredRNN v2 names -> ours."""
    if name in ("conv_last.weight", "adapter.weight"):
        return Target("head.weight" if name == "conv_last.weight" else name)
    parts = _cell_parts(name)
    if parts is None:
        return unknown()
    layer, conv, rest = parts
    if conv == "conv_last" and rest == ["weight"]:
        return Target(f"cells.{layer}.conv_1x1.weight")
    order = ST_LSTM_ORDER[conv]
    if rest == ["0", "weight"]:
        return Target(f"cells.{layer}.{conv}.weight", order)
    if rest[0] == "1" and len(rest) == 2:
        return Target(f"cells.{layer}.norms.{ST_LSTM_NORMS[conv]}.{rest[1]}", order)
    return unknown()


def conv_lstm_rule(name: str) -> Target | None:
    """OpenSTL's ConvLSTM names -> ours (its unused ``conv_o`` and cell ``conv_last``: None)."""
    if name == "conv_last.weight":
        return Target("head.weight")
    parts = _cell_parts(name)
    if parts is None:
        return unknown()
    layer, conv, rest = parts
    if conv in ("conv_o", "conv_last"):
        return None
    if rest == ["0", "weight"]:
        return Target(f"cells.{layer}.{conv}.weight", CONV_LSTM_ORDER[conv])
    return unknown()


def _patches_in_our_order(state: dict, options: dict[str, Any]) -> None:
    """The bottom layer's input and the head's output channels in ``pixel_unshuffle`` order."""
    patch, channels = int(options["patch_size"]), int(options["frame_channels"])
    state["cells.0.conv_x.weight"] = patched_input(state["cells.0.conv_x.weight"], patch,
                                                   channels)
    state["head.weight"] = patched_output(state["head.weight"], patch, channels)


def _converted(weights: SourceWeights, given: dict[str, Any], rule, model: str, gates: int,
               cell_options: dict[str, Any]) -> Converted:
    layers = sorted({layer_index(key, "cell_list.") for key in weights.state
                     if key.startswith("cell_list.")})
    options = recurrent_options(
        weights, {key: value for key, value in given.items() if key != "layer_norm"},
        input_key="cell_list.0.conv_x.0.weight", gates=gates,
        hidden_keys=[f"cell_list.{layer}.conv_x.0.weight" for layer in layers])
    layer_norm = bool(options.pop("layer_norm", False) or given.get("layer_norm", False))
    if layer_norm and model == "convlstm":
        raise CheckpointError(f"{weights.path}: trained with layer_norm=1; predlearn's "
                              "conv_lstm cell has no layer normalisation")
    if layer_norm:
        cell_options = {**cell_options, "layer_norm": True}
    options["cell_options"] = {**cell_options, **(given.get("cell_options") or {})}
    state = renamed(weights, rule, model)
    _patches_in_our_order(state, options)
    context, horizon = frame_counts(weights)
    return Converted(options, state, context, horizon, zero=ZERO_FILLED)


def convert_predrnn(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """PredRNN (ST-LSTM stack) of either source."""
    return _converted(weights, given, st_lstm_rule, "predrnn", 7, {"forget_bias": 1.0})


def convert_predrnn_v2(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """PredRNN v2 of either source (its cells also add the forget bias of 1.0)."""
    converted = _converted(weights, given, st_lstm_rule, "predrnn_v2", 7, {"forget_bias": 1.0})
    if "decouple_beta" in weights.hparams and "decouple_beta" not in given:
        converted.options["decouple_beta"] = float(weights.hparams["decouple_beta"])
    return converted


def convert_convlstm(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """OpenSTL's ConvLSTM: no peepholes, no forget bias."""
    return _converted(weights, given, conv_lstm_rule, "convlstm", 4, {"peephole": False})

