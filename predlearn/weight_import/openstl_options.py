"""The predictor options a source file implies: from OpenSTL's saved hyper-parameters where the
file has them, from the weights' own shapes where it does not (the authors' files, OpenSTL's plain
``.pth``), and always overridden by the options given on the command line.

OpenSTL's names (``openstl/utils/parser.py``, its ``configs/``): ``in_shape`` = [T, C, H, W],
``pre_seq_length`` / ``aft_seq_length`` (J / K), ``num_hidden`` ("128,128,128,128"),
``filter_size``, ``patch_size``, ``layer_norm`` (0 / 1), ``stride`` (1 only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from predlearn.errors import CheckpointError
from predlearn.weight_import.sources import SourceWeights

#: the authors' Moving MNIST scripts (mnist_script/*.sh): what a file without settings assumes
#: for what its weights cannot tell (frames 64 x 64, one channel, 10 observed, 10 predicted)
AUTHORS_MNIST = {"frame_size": [64, 64], "frame_channels": 1}
AUTHORS_FRAMES = (10, 10)


def hidden_list(value: Any) -> list[int]:
    """OpenSTL's ``num_hidden`` ("64,64" or a list) as a list of ints."""
    if isinstance(value, str):
        return [int(part) for part in value.split(",") if part.strip()]
    return [int(part) for part in value]


def frame_counts(weights: SourceWeights) -> tuple[int | None, int | None]:
    """(J, K) the file records: OpenSTL's ``pre_seq_length`` and ``aft_seq_length``."""
    hparams = weights.hparams
    context, horizon = hparams.get("pre_seq_length"), hparams.get("aft_seq_length")
    return (None if context is None else int(context), None if horizon is None else int(horizon))


def frame_options(weights: SourceWeights) -> dict[str, Any]:
    """``frame_channels`` and ``frame_size`` from OpenSTL's ``in_shape``; {} without one."""
    shape = weights.hparams.get("in_shape")
    if shape is None:
        return {}
    _, channels, height, width = (int(value) for value in shape)
    return {"frame_channels": channels, "frame_size": [height, width]}


def recurrent_options(weights: SourceWeights, given: Mapping[str, Any], *, input_key: str,
                      gates: int, hidden_keys: list[str], layer_norm: bool = True
                      ) -> dict[str, Any]:
    """The options of a stack of recurrent layers (``hidden_channels``, ``kernel_size``,
    ``patch_size``, ``frame_channels``, ``frame_size`` and, with ``layer_norm``, ``layer_norm``).

    From the file's hyper-parameters where it has them; else from the weights: ``hidden_keys``
    (one per layer, in order) are the layers' stacked input convolutions with ``gates`` chunks,
    and ``input_key`` the bottom layer's one, whose input channels are patch_size**2 x the frame's
    channels. The frame size, which no convolution shows, is the authors' 64 x 64 unless given.
    ``given`` (the command line's options) wins over both.
    """
    hparams = weights.hparams
    options: dict[str, Any] = {}
    if hparams:
        _refuse_stride(weights)
        options.update(frame_options(weights))
        for ours, theirs, convert in (("hidden_channels", "num_hidden", hidden_list),
                                      ("kernel_size", "filter_size", int),
                                      ("patch_size", "patch_size", int)):
            if theirs in hparams:
                options[ours] = convert(hparams[theirs])
        if layer_norm and "layer_norm" in hparams:
            options["layer_norm"] = bool(int(hparams["layer_norm"]))
    else:
        options.update(_from_shapes(weights, given, input_key, gates, hidden_keys, layer_norm))
    return {**options, **given}


def _from_shapes(weights: SourceWeights, given: Mapping[str, Any], input_key: str, gates: int,
                 hidden_keys: list[str], layer_norm: bool) -> dict[str, Any]:
    state = weights.state
    missing = [key for key in [input_key, *hidden_keys] if key not in state]
    if missing:
        raise CheckpointError(f"{weights.path}: no {missing[0]!r}; is --model the model this "
                              "file was trained as?")
    convs: list[Tensor] = [state[key] for key in hidden_keys]
    options: dict[str, Any] = {
        "hidden_channels": [int(conv.shape[0]) // gates for conv in convs],
        "kernel_size": int(convs[0].shape[-1]),
        "frame_channels": int(given.get("frame_channels", AUTHORS_MNIST["frame_channels"])),
    }
    patched = int(state[input_key].shape[1])
    patch = math.isqrt(patched // options["frame_channels"])
    if patch * patch * options["frame_channels"] != patched:
        raise CheckpointError(
            f"{weights.path}: the bottom layer reads {patched} channels, not patch_size**2 x "
            f"{options['frame_channels']} frame channels; give --model.predictor.frame_channels "
            "and --model.predictor.patch_size")
    options["patch_size"] = int(given.get("patch_size", patch))
    norm_key = input_key.rsplit(".", 2)[0] + ".1.weight"  # the LayerNorm after the convolution
    if layer_norm:
        options["layer_norm"] = norm_key in state
    size = AUTHORS_MNIST["frame_size"]
    if norm_key in state:  # a LayerNorm over (channels, H/p, W/p) shows the frame size
        grid = state[norm_key].shape[-2:]
        size = [int(grid[0]) * options["patch_size"], int(grid[1]) * options["patch_size"]]
    options["frame_size"] = list(given.get("frame_size", size))
    return options


def _refuse_stride(weights: SourceWeights) -> None:
    stride = weights.hparams.get("stride", 1)
    if int(stride) != 1:
        raise CheckpointError(f"{weights.path}: trained with stride={stride}; predlearn's "
                              "recurrent cells use stride 1 (OpenSTL's default) only")
