"""PredRNN++, MIM, E3D-LSTM and MAU from OpenSTL's checkpoints (commit c74deb5), whose networks
read patched frames channels-last and return every next-frame prediction. Their names, and what
differs from predlearn's:

- PredRNN++ (``PredRNNpp_Model``): ``cell_list.<l>.conv_{x,h,c,m,c2m,om}.0.weight`` (``.1.*``
  their LayerNorm), ``cell_list.<l>.conv_last.weight`` (the cell's 1x1 over [H, M]),
  ``gradient_highway.{x,z}_concat.0.weight`` (the GHU), ``conv_last.weight`` (the 1x1 to patched
  pixels). Stacked gates: theirs i f g (i' f' g')(o), ours g i f (g' i' f')(o); their ``conv_c2m``
  i' g' f' o, ours g' i' f' o. ``conv_o`` is built but never used: dropped. OpenSTL's model cannot
  run ``layer_norm=1`` (its GHU's LayerNorm has half its convolution's channels): refused.
- MIM (``MIM_Model``): ``stlstm_layer.0`` an ST-LSTM (our ``first``), ``stlstm_layer.<l>`` the
  MIM blocks (our ``blocks.<l-1>``: ``conv_{x,t,s}_cc`` and the MIM-S's ``conv_{x,h}_concat``),
  ``stlstm_layer_diff.<l>`` their MIM-N (our ``blocks.<l>.nonstationary``). Peepholes:
  ``ct_weight`` holds W_ci and W_cf stacked (split), ``oc_weight`` is W_co. Gate orders as in the
  tables below; the MIM-N's ``conv_last`` is built but never used: dropped.
- E3D-LSTM (``E3DLSTM_Model``): ``cell_list.<l>.conv_{x,h,gm,new_cell,new_gm}.0.conv3d.weight``,
  ``cell_list.<l>._norm_c_t`` (the recall's LayerNorm, which shows the grid's size),
  ``cell_list.<l>.conv_last.conv3d.weight``, ``conv_last.weight``; theirs i g r o i' g' f' along
  ``conv_x``, ours g i r g' i' f' o. Its filters (2, 5, 5) and window 2 are fixed in its code
  (``filter_size`` is not read): taken from the weights; predlearn's ``variant: openstl``.
- MAU (``MAU_Model``): ``cell_list.<l>.conv_{t,t_next,s,s_next}`` (convolution and LayerNorm,
  renamed to what they compute), ``encoders.<i>.<name>`` / ``decoders.<i>.<name>`` (one
  convolution each), ``srcnn.0`` (the head). ``merge`` and ``conv_last_sr`` are built but never
  used: dropped. Its LayerNorms over the grid of H / (patch_size * sr_size) show the frame size.

Every source tensor has a counterpart (no bias to fill in), and their patches are ordered
(py, px, c), ``pixel_unshuffle``'s (c, py, px): the bottom layer's input and the head's output
are reordered (nothing changes with one channel).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from predlearn.errors import CheckpointError
from predlearn.weight_import.openstl_options import (
    AUTHORS_MNIST,
    frame_counts,
    recurrent_options,
)
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

# -- PredRNN++ -----------------------------------------------------------------------------------

#: OpenSTL's Causal LSTM convolution -> (ours, for each of our chunks its chunk there)
CAUSAL_LSTM = {
    "conv_x": ("x", [2, 0, 1, 5, 3, 4, 6]),  # i f g i' f' g' o -> g i f g' i' f' o
    "conv_h": ("h", [2, 0, 1, 3]),  # i f g o -> g i f o
    "conv_c": ("c", [2, 0, 1]),  # i f g -> g i f
    "conv_m": ("m", [2, 0, 1]),  # i' f' m -> m i' f'
    "conv_c2m": ("cc", [1, 0, 2, 3]),  # i' g' f' o -> g' i' f' o
    "conv_om": ("mo", None),
}


def predrnn_pp_rule(name: str) -> Target | None:
    """OpenSTL's PredRNN++ names -> ours (its unused ``conv_o``: None)."""
    if name == "conv_last.weight":
        return Target("head.weight")
    highway = re.fullmatch(r"gradient_highway\.([xz])_concat\.0\.weight", name)
    if highway:
        return Target(f"highway.conv_{highway[1]}.weight")
    cell = re.fullmatch(r"cell_list\.(\d+)\.(\w+)\.(0\.weight|1\.weight|1\.bias|weight)", name)
    if not cell:
        return unknown()
    layer, conv, rest = cell.groups()
    if conv == "conv_o":
        return None
    if conv == "conv_last" and rest == "weight":
        return Target(f"cells.{layer}.conv_1x1.weight")
    ours, order = CAUSAL_LSTM[conv]
    if rest == "0.weight":
        return Target(f"cells.{layer}.convs.{ours}.weight", order)
    if rest.startswith("1."):  # the LayerNorm after the convolution
        return Target(f"cells.{layer}.norms.{ours}.{rest[2:]}", order)
    return unknown()


def convert_predrnn_pp(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """OpenSTL's PredRNN++ (Causal LSTMs and the GHU)."""
    layers = _layers(weights, "cell_list.")
    if _layer_norm_in_file(weights, "cell_list.0.conv_x.1.weight"):
        raise CheckpointError(
            f"{weights.path}: trained with layer_norm=1, which OpenSTL's PredRNN++ cannot run "
            "(its GHU's LayerNorm does not fit its convolutions); only layer_norm=0 converts")
    options = recurrent_options(
        weights, given, input_key="cell_list.0.conv_x.0.weight", gates=7,
        hidden_keys=[f"cell_list.{layer}.conv_x.0.weight" for layer in layers])
    options.setdefault("layer_norm", False)
    state = renamed(weights, predrnn_pp_rule, "predrnn_pp")
    _patches_in_our_order(state, options, "cells.0.convs.x.weight", ["head.weight"])
    return Converted(options, state, *frame_counts(weights))


# -- MIM -----------------------------------------------------------------------------------------

#: their convolution -> (ours, the index of its LayerNorm in our ``norms``, our chunks' order)
ST_LSTM = {"conv_x": ("conv_x", 0, [2, 0, 1, 5, 3, 4, 6]),  # i f g i' f' g' o -> g i f ...
           "conv_h": ("conv_h", 1, [2, 0, 1, 3]),  # i f g o -> g i f o
           "conv_m": ("conv_m", 2, [2, 0, 1]),  # i' f' g' -> g' i' f'
           "conv_o": ("conv_o", 3, None)}
MIM_BLOCK = {"conv_x_cc": ("conv_x", 0, [1, 0, 2, 3]),  # i g f' o -> g i f' o
             "conv_t_cc": ("conv_h", 1, [1, 0, 2]),  # i g o -> g i o
             "conv_s_cc": ("conv_m", 2, [1, 0, 2, 3]),  # i' g' f' o -> g' i' f' o
             "conv_x_concat": ("stationary.conv_x", 0, [1, 0, 2, 3]),  # MIM-S: i g f o
             "conv_h_concat": ("stationary.conv_h", 1, [1, 0, 2, 3])}
MIM_N = {"conv_x_concat": ("conv_x", 0, [1, 0, 2, 3]), "conv_h_concat": ("conv_h", 1, [1, 0, 2, 3])}
#: the peepholes, once ``ct_weight`` is split (``split_peepholes``)
PEEPHOLES = {"ct_weight.ci": "w_ci", "ct_weight.cf": "w_cf", "oc_weight": "w_co"}


def split_peepholes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with each ``<x>.ct_weight`` (W_ci and W_cf stacked along dim 0) as
    ``<x>.ct_weight.ci`` and ``<x>.ct_weight.cf``."""
    out: dict[str, Tensor] = {}
    for name, value in state.items():
        if name.endswith(".ct_weight"):
            out[name + ".ci"], out[name + ".cf"] = torch.chunk(value, 2, dim=0)
        else:
            out[name] = value
    return out


def _mim_conv(prefix: str, table: dict, conv: str, rest: str) -> Target | None:
    ours, norm, order = table[conv]
    if rest == "0.weight":
        return Target(f"{prefix}{ours}.weight", order)
    if rest in ("1.weight", "1.bias"):  # the LayerNorm after the convolution
        path = ours.rsplit(".", 1)[0] + "." if "." in ours else ""
        return Target(f"{prefix}{path}norms.{norm}.{rest[2:]}", order)
    return unknown()


def mim_rule(name: str) -> Target | None:
    """OpenSTL's MIM names (peepholes split) -> ours (the MIM-N's unused ``conv_last``: None)."""
    if name == "conv_last.weight":
        return Target("head.weight")
    peephole = re.fullmatch(r"(stlstm_layer|stlstm_layer_diff)\.(\d+)\.(ct_weight\.c[if]|oc_weight)",
                            name)
    if peephole:  # the MIM-N's (stlstm_layer_diff) or the MIM-S's; the ST-LSTM has none
        stack, layer = peephole[1], int(peephole[2])
        if stack == "stlstm_layer" and layer == 0:
            return unknown()
        owner = (f"blocks.{layer}.nonstationary" if stack == "stlstm_layer_diff"
                 else f"blocks.{layer - 1}.stationary")
        return Target(f"{owner}.{PEEPHOLES[peephole[3]]}")
    found = re.fullmatch(r"(stlstm_layer|stlstm_layer_diff)\.(\d+)\.(\w+)\.(.+)", name)
    if not found:
        return unknown()
    stack, layer, module, rest = found[1], int(found[2]), found[3], found[4]
    if stack == "stlstm_layer_diff":
        if module == "conv_last":
            return None
        return _mim_conv(f"blocks.{layer}.nonstationary.", MIM_N, module, rest)
    prefix = "first." if layer == 0 else f"blocks.{layer - 1}."
    if module == "conv_last" and rest == "weight":
        return Target(f"{prefix}conv_1x1.weight")
    return _mim_conv(prefix, ST_LSTM if layer == 0 else MIM_BLOCK, module, rest)


def convert_mim(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """OpenSTL's MIM (an ST-LSTM, then MIM blocks of a MIM-N and a MIM-S)."""
    layers = _layers(weights, "stlstm_layer.")
    hidden_keys = ["stlstm_layer.0.conv_h.0.weight"] + [
        f"stlstm_layer.{layer}.conv_h_concat.0.weight" for layer in layers[1:]]
    options = recurrent_options(weights, given, input_key="stlstm_layer.0.conv_x.0.weight",
                                gates=4, hidden_keys=hidden_keys)
    peephole = weights.state.get("stlstm_layer.1.oc_weight")
    if not weights.hparams and "frame_size" not in given and peephole is not None:
        options["frame_size"] = _grid_to_frame(peephole, int(options["patch_size"]))
    split = SourceWeights(weights.path, weights.source, split_peepholes(weights.state))
    state = renamed(split, mim_rule, "mim")
    _patches_in_our_order(state, options, "first.conv_x.weight", ["head.weight"])
    return Converted(options, state, *frame_counts(weights))


# -- E3D-LSTM ------------------------------------------------------------------------------------

#: their convolution -> (ours, our chunks' order)
EIDETIC = {"conv_x": ("conv_x", [1, 0, 2, 5, 4, 6, 3]),  # i g r o i' g' f' -> g i r g' i' f' o
           "conv_h": ("conv_h", [1, 0, 2, 3]),  # i g r o -> g i r o
           "conv_gm": ("conv_m", [2, 0, 1, 3]),  # i' f' g' W_mm -> g' i' f' W_mm
           "conv_new_cell": ("conv_co", None), "conv_new_gm": ("conv_mo", None)}
EIDETIC_NORMS = {"conv_x": "x", "conv_h": "h", "conv_gm": "m", "conv_new_cell": "co",
                 "conv_new_gm": "mo"}


def e3d_lstm_rule(name: str) -> Target | None:
    """OpenSTL's E3D-LSTM names -> ours."""
    if name == "conv_last.weight":
        return Target("head.weight")
    found = re.fullmatch(r"cell_list\.(\d+)\.(\w+)\.(.+)", name)
    if not found:
        return unknown()
    layer, module, rest = found.groups()
    cell = f"cells.{layer}."
    if module == "_norm_c_t" and rest in ("weight", "bias"):
        return Target(f"{cell}norm_c.{rest}")
    if module == "conv_last" and rest == "conv3d.weight":
        return Target(f"{cell}conv_1x1.conv.weight")
    ours, order = EIDETIC[module]
    if rest == "0.conv3d.weight":
        return Target(f"{cell}{ours}.conv.weight", order)
    if rest in ("1.weight", "1.bias"):  # the LayerNorm after the convolution
        return Target(f"{cell}norms.{EIDETIC_NORMS[module]}.{rest[2:]}", order)
    return unknown()


def convert_e3d_lstm(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """OpenSTL's E3D-LSTM (predlearn's ``variant: openstl``)."""
    conv_x = [f"cell_list.{layer}.conv_x.0.conv3d.weight"
              for layer in _layers(weights, "cell_list.")]
    options = recurrent_options(weights, given, input_key="cell_list.0.conv_x.0.conv3d.weight",
                                gates=7, hidden_keys=conv_x, layer_norm=False)
    state = weights.state
    facts: dict[str, Any] = {"variant": "openstl"}
    if conv_x and conv_x[0] in state:  # its fixed filters and window, whatever filter_size says
        temporal, _, spatial = (int(size) for size in state[conv_x[0]].shape[-3:])
        facts.update(temporal_kernel_size=temporal, kernel_size=spatial)
    if "conv_last.weight" in state:  # a (window, 1, 1) convolution over the window
        facts["window_length"] = int(state["conv_last.weight"].shape[2])
    norm = state.get("cell_list.0._norm_c_t.weight")
    if not weights.hparams:
        facts["layer_norm"] = "cell_list.0.conv_x.1.weight" in state
        if norm is not None:
            facts["frame_size"] = _grid_to_frame(norm, int(options["patch_size"]))
    elif "layer_norm" in weights.hparams:
        facts["layer_norm"] = bool(int(weights.hparams["layer_norm"]))
    options = {**options, **facts, **given}
    state = renamed(weights, e3d_lstm_rule, "e3d_lstm")
    _patches_in_our_order(state, options, "cells.0.conv_x.conv.weight", ["head.weight"])
    return Converted(options, state, *frame_counts(weights))


# -- MAU -----------------------------------------------------------------------------------------

MAU_CELL = {"conv_t": "temporal_fusion", "conv_t_next": "motion_gate", "conv_s": "spatial_fusion",
            "conv_s_next": "spatial_query"}
MAU_UNUSED = ("merge.", "conv_last_sr.")
#: predlearn's option -> (OpenSTL's setting, its type), besides those ``recurrent_options``
#: reads; a file without settings leaves them at predlearn's defaults (those of OpenSTL's
#: configs/mmnist/MAU.py) unless given, except sr_size, which its encoder's depth shows
MAU_SETTINGS = {"tau": ("tau", int), "cell_mode": ("cell_mode", str),
                "model_mode": ("model_mode", str), "sr_size": ("sr_size", int)}


def mau_rule(name: str) -> Target | None:
    """OpenSTL's MAU names -> ours (its unused ``merge`` and ``conv_last_sr``: None)."""
    if name.startswith(MAU_UNUSED):
        return None
    cell = re.fullmatch(r"cell_list\.(\d+)\.(conv_t|conv_t_next|conv_s|conv_s_next)\.(.+)", name)
    if cell:
        return Target(f"cells.{cell[1]}.{MAU_CELL[cell[2]]}.{cell[3]}")
    if re.fullmatch(r"srcnn\.0\.(weight|bias)", name):
        return Target("head." + name.rsplit(".", 1)[1])
    coder = re.fullmatch(r"(encoders|decoders)\.(\d+)\.[\w-]+\.(weight|bias)", name)
    if coder:
        return Target(f"{coder[1]}.{coder[2]}.0.{coder[3]}")
    return unknown()


def convert_mau(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """OpenSTL's MAU (attention over the last ``tau`` steps, an encoder and decoder around it)."""
    if weights.hparams:  # read from the settings alone (no shapes are looked at then)
        options = recurrent_options(weights, {}, input_key="", gates=3, hidden_keys=[],
                                    layer_norm=False)
        for ours, (theirs, convert) in MAU_SETTINGS.items():
            if theirs in weights.hparams:
                options[ours] = convert(weights.hparams[theirs])
        options = {**options, **given}
    else:
        options = {**_mau_from_shapes(weights, given), **given}
    state = renamed(weights, mau_rule, "mau")
    _patches_in_our_order(state, options, "encoders.0.0.weight", ["head.weight", "head.bias"])
    return Converted(options, state, *frame_counts(weights))


def _mau_from_shapes(weights: SourceWeights, given: Mapping[str, Any]) -> dict[str, Any]:
    """MAU's options from a plain state dict: widths and kernel from the cells' convolutions,
    ``sr_size`` from the encoder's depth, the frame size from the cells' LayerNorms."""
    state = weights.state
    layers = _layers(weights, "cell_list.")
    keys = [f"cell_list.{layer}.conv_t.0.weight" for layer in layers]
    first = next((key for key in state if key.startswith("encoders.0.")
                  and key.endswith(".weight")), None)
    missing = [key for key in keys[:1] if key not in state] or ([] if first else ["encoders.0"])
    if not keys or missing:
        raise CheckpointError(f"{weights.path}: no {(missing or ['cell_list.0'])[0]!r}; is "
                              "--model=mau the model this file was trained as?")
    channels = int(given.get("frame_channels", AUTHORS_MNIST["frame_channels"]))
    patched = int(state[str(first)].shape[1])
    patch = int(given.get("patch_size", math.isqrt(patched // channels)))
    if patch * patch * channels != patched:
        raise CheckpointError(
            f"{weights.path}: the encoder reads {patched} channels, not patch_size**2 x "
            f"{channels} frame channels; give --model.predictor.frame_channels and "
            "--model.predictor.patch_size")
    encoders = {layer_index(key, "encoders.") for key in state if key.startswith("encoders.")}
    sr_size = 2 ** (len(encoders) - 1)
    options: dict[str, Any] = {
        "hidden_channels": [int(state[key].shape[0]) // 3 for key in keys],
        "kernel_size": int(state[keys[0]].shape[-1]), "frame_channels": channels,
        "patch_size": patch, "sr_size": sr_size}
    norm = state.get("cell_list.0.conv_t.1.weight")
    if norm is not None:
        options["frame_size"] = _grid_to_frame(norm, patch * sr_size)
    return options


# -- shared --------------------------------------------------------------------------------------


def _layers(weights: SourceWeights, prefix: str) -> list[int]:
    """The layer numbers of ``prefix.<n>.*`` names, in order."""
    return sorted({layer_index(key, prefix) for key in weights.state if key.startswith(prefix)})


def _layer_norm_in_file(weights: SourceWeights, norm_key: str) -> bool:
    """Whether the file was trained with layer normalisation: its setting, else its tensors."""
    if "layer_norm" in weights.hparams:
        return bool(int(weights.hparams["layer_norm"]))
    return norm_key in weights.state


def _grid_to_frame(value: Tensor, scale: int) -> list[int]:
    """The frame size of a tensor over the (H / scale, W / scale) grid (its last two dims)."""
    return [int(value.shape[-2]) * scale, int(value.shape[-1]) * scale]


def _patches_in_our_order(state: dict[str, Tensor], options: Mapping[str, Any], reads: str,
                          writes: list[str]) -> None:
    """The patch channels read by ``reads`` (dim 1) and written by ``writes`` (dim 0) in
    ``pixel_unshuffle``'s order."""
    patch, channels = int(options.get("patch_size", 1)), int(options.get("frame_channels", 1))
    if reads in state:
        state[reads] = patched_input(state[reads], patch, channels)
    for key in writes:
        if key in state:
            state[key] = patched_output(state[key], patch, channels)


__all__ = ["convert_e3d_lstm", "convert_mau", "convert_mim", "convert_predrnn_pp",
           "e3d_lstm_rule", "mau_rule", "mim_rule", "predrnn_pp_rule", "split_peepholes"]
