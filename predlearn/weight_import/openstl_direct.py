"""PhyDNet, SimVP (translators IncepU and gSTA) and TAU from OpenSTL's checkpoints (commit
c74deb5): its networks' names, and what differs from predlearn's.

- PhyDNet (``PhyDNet_Model``): ``encoder.encoder_E.c<n>.main.{0,1}`` (convolution, GroupNorm),
  likewise ``encoder_Ep``, ``encoder_Er``, ``decoder_Dp``, ``decoder_Dr`` (``upc<n>``) and
  ``decoder_D`` (``upc3`` a bare transposed convolution); ``encoder.phycell.cell_list.0.F.
  {conv1,bn1,conv2}`` and ``.convgate`` (the PhyCell); ``encoder.convcell.cell_list.<l>.conv``
  (one convolution over [X, H] per ConvLSTM layer, gates i f o g), which predlearn splits into
  ``conv_x`` (with the bias) and ``conv_h`` in its order g i f o. The same PhyCell and ConvLSTM
  are stored a second time under ``phycell.`` and ``convcell.`` (the model holds them twice), and
  ``k2m._M*`` / ``k2m._invM*`` are constant moment matrices: dropped. OpenSTL fixes the widths
  (32, 64, [128, 128, 64], 7 x 7 filters), which the weights show, and GroupNorm(16, .)
  (predlearn's ``norm_groups`` default), which they do not; its ``patch_size`` is 2 or 4 (any
  other value runs as 4).
- SimVP / TAU (``SimVP_Model``): ``enc.enc.<i>.conv.{conv,norm}``, ``dec.dec.<i>.conv.{conv
  (.0 where it upsamples),norm}``, ``dec.readout``; ``hid.enc`` / ``hid.dec`` are the IncepU's
  down and up halves (``conv1`` the reduction, ``layers.<b>`` the branches), or, for gSTA and
  TAU, ``hid.enc.<i>`` the translator's blocks (``block.{norm1,attn,norm2,mlp,layer_scale_*}``,
  ``reduction`` where the width changes); names only differ, and BatchNorm's running statistics
  come along. The translator is OpenSTL's ``model_type`` ('IncepU', 'gSTA'; TAU's network is the
  SimVP with 'tau'); its fixed attention kernel (21) and inception branches ([3, 5, 7, 11],
  groups 8) are predlearn's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from predlearn.errors import CheckpointError
from predlearn.weight_import.openstl_options import frame_counts, frame_options
from predlearn.weight_import.renaming import Converted, Target, layer_index, renamed, unknown
from predlearn.weight_import.sources import SourceWeights

# -- PhyDNet -------------------------------------------------------------------------------------

PHYDNET_BLOCKS = {"encoder_E": "encoder", "encoder_Ep": "physics_encoder",
                  "encoder_Er": "residual_encoder", "decoder_Dp": "physics_decoder",
                  "decoder_Dr": "residual_decoder", "decoder_D": "decoder"}
PHYCELL = {"F.conv1": "derivatives", "F.bn1": "norm", "F.conv2": "combine", "convgate": "gate"}
#: for each of our ConvLSTM gates (g, i, f, o) its chunk in OpenSTL's (i, f, o, g)
CONVLSTM_ORDER = [3, 0, 1, 2]
#: OpenSTL's dcgan blocks: GroupNorm(16, .) (predlearn's norm_groups default)
OPENSTL_GROUPS = 16


def split_convlstm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with each ConvLSTM layer's convolution over [X, H]
    (``...convcell.cell_list.<l>.conv.weight``, 4 x hidden outputs) split along its inputs into
    ``conv.weight.x`` and ``conv.weight.h``."""
    out: dict[str, Tensor] = {}
    for name, value in state.items():
        if re.fullmatch(r"(encoder\.)?convcell\.cell_list\.\d+\.conv\.weight", name):
            hidden = value.shape[0] // 4
            inputs = value.shape[1] - hidden
            out[name + ".x"], out[name + ".h"] = value[:, :inputs], value[:, inputs:]
        else:
            out[name] = value
    return out


def phydnet_rule(name: str) -> Target | None:
    """OpenSTL's PhyDNet names (ConvLSTM convolutions split) -> ours; the second copies of the
    PhyCell and ConvLSTM and the moment matrices: None."""
    if name.startswith(("phycell.", "convcell.", "k2m.")):
        return None
    if not name.startswith("encoder."):
        return unknown()
    name = name[len("encoder."):]
    block = re.fullmatch(r"(\w+)\.(c|upc)(\d)\.main\.([01])\.(weight|bias)", name)
    if block:
        return Target(f"{PHYDNET_BLOCKS[block[1]]}.{int(block[3]) - 1}.{block[4]}.{block[5]}")
    if name in ("decoder_D.upc3.weight", "decoder_D.upc3.bias"):
        return Target("decoder.2." + name.rsplit(".", 1)[1])
    cell = re.fullmatch(r"phycell\.cell_list\.0\.(F\.conv1|F\.bn1|F\.conv2|convgate)\.(\w+)", name)
    if cell:
        return Target(f"phycell.{PHYCELL[cell[1]]}.{cell[2]}")
    conv = re.fullmatch(r"convcell\.cell_list\.(\d+)\.conv\.(bias|weight\.x|weight\.h)", name)
    if conv:
        ours = {"bias": "conv_x.bias", "weight.x": "conv_x.weight", "weight.h": "conv_h.weight"}
        return Target(f"convlstm.{conv[1]}.{ours[conv[2]]}", CONVLSTM_ORDER)
    return unknown()


def phydnet_options(weights: SourceWeights, given: Mapping[str, Any]) -> dict[str, Any]:
    """PhyDNet's widths and kernels from the weights (OpenSTL's settings do not hold them), the
    frames and ``patch_size`` from its settings where the file has them; ``given`` wins."""
    state = weights.state
    encoder = state.get("encoder.encoder_E.c1.main.0.weight")
    latent = state.get("encoder.encoder_Ep.c1.main.0.weight")
    derivatives = state.get("encoder.phycell.cell_list.0.F.conv1.weight")
    convs = [state[f"encoder.convcell.cell_list.{layer}.conv.weight"] for layer in sorted(
        {layer_index(key, "encoder.convcell.cell_list.") for key in state
         if key.startswith("encoder.convcell.cell_list.")})]
    if encoder is None or latent is None or derivatives is None or not convs:
        raise CheckpointError(f"{weights.path}: no 'encoder.encoder_E', 'encoder.phycell' or "
                              "'encoder.convcell' weights; is --model=phydnet the model this "
                              "file was trained as?")
    options: dict[str, Any] = {
        "frame_channels": int(encoder.shape[1]), "encoder_channels": int(encoder.shape[0]),
        "latent_channels": int(latent.shape[0]),
        "phycell_kernel_size": int(derivatives.shape[-1]),
        "convlstm_channels": [int(conv.shape[0]) // 4 for conv in convs],
        "convlstm_kernel_size": int(convs[0].shape[-1]),
        **frame_options(weights)}
    if "patch_size" in weights.hparams:  # OpenSTL runs any value but 2 and 4 as 4
        patch = int(weights.hparams["patch_size"])
        options["patch_size"] = patch if patch in (2, 4) else 4
    return {**options, **given}


def convert_phydnet(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """OpenSTL's PhyDNet (a PhyCell and a ConvLSTM between a shared encoder and decoder)."""
    options = phydnet_options(weights, given)
    widths = {key: options[key] for key in ("encoder_channels", "latent_channels")}
    if "norm_groups" not in options and any(width % OPENSTL_GROUPS for width in widths.values()):
        raise CheckpointError(
            f"{weights.path}: widths {widths} are not multiples of OpenSTL's {OPENSTL_GROUPS} "
            "GroupNorm "
            "groups, so its network was built with other groups, which the file does not "
            "record: give --model.predictor.norm_groups")
    split = SourceWeights(weights.path, weights.source, split_convlstm(weights.state))
    state = renamed(split, phydnet_rule, "phydnet")
    return Converted(options, state, *frame_counts(weights))


# -- SimVP and TAU -------------------------------------------------------------------------------

#: OpenSTL's names -> ours: regular expressions, the first that matches applies
SIMVP_NAMES = [
    (r"enc\.enc\.(\d+)\.conv\.conv\.(weight|bias)", r"encoder.layers.\1.conv.\2"),
    (r"enc\.enc\.(\d+)\.conv\.norm\.(\w+)", r"encoder.layers.\1.norm.\2"),
    (r"dec\.dec\.(\d+)\.conv\.conv\.(?:0\.)?(weight|bias)", r"decoder.layers.\1.conv.\2"),
    (r"dec\.dec\.(\d+)\.conv\.norm\.(\w+)", r"decoder.layers.\1.norm.\2"),
    (r"dec\.readout\.(weight|bias)", r"decoder.readout.\1"),
    # IncepU: hid.enc / hid.dec, the U-Net's halves
    (r"hid\.enc\.(\d+)\.conv1\.(.+)", r"translator.down.\1.reduce.\2"),
    (r"hid\.dec\.(\d+)\.conv1\.(.+)", r"translator.up.\1.reduce.\2"),
    (r"hid\.enc\.(\d+)\.layers\.(\d+)\.(.+)", r"translator.down.\1.branches.\2.\3"),
    (r"hid\.dec\.(\d+)\.layers\.(\d+)\.(.+)", r"translator.up.\1.branches.\2.\3"),
    # gSTA / TAU: hid.enc.<i>, the translator's blocks
    (r"hid\.enc\.(\d+)\.block\.norm1\.(.+)", r"translator.blocks.\1.attention_norm.\2"),
    (r"hid\.enc\.(\d+)\.block\.norm2\.(.+)", r"translator.blocks.\1.mlp_norm.\2"),
    (r"hid\.enc\.(\d+)\.block\.layer_scale_1", r"translator.blocks.\1.attention_scale"),
    (r"hid\.enc\.(\d+)\.block\.layer_scale_2", r"translator.blocks.\1.mlp_scale"),
    (r"hid\.enc\.(\d+)\.block\.attn\.proj_1\.(.+)", r"translator.blocks.\1.attention.proj_in.\2"),
    (r"hid\.enc\.(\d+)\.block\.attn\.proj_2\.(.+)", r"translator.blocks.\1.attention.proj_out.\2"),
    (r"hid\.enc\.(\d+)\.block\.attn\.spatial_gating_unit\.conv0\.(.+)",
     r"translator.blocks.\1.attention.mixer.convs.local.\2"),
    (r"hid\.enc\.(\d+)\.block\.attn\.spatial_gating_unit\.conv_spatial\.(.+)",
     r"translator.blocks.\1.attention.mixer.convs.dilated.\2"),
    (r"hid\.enc\.(\d+)\.block\.attn\.spatial_gating_unit\.conv1\.(.+)",
     r"translator.blocks.\1.attention.mixer.convs.pointwise.\2"),
    (r"hid\.enc\.(\d+)\.block\.attn\.spatial_gating_unit\.fc\.0\.(.+)",
     r"translator.blocks.\1.attention.mixer.squeeze.\2"),
    (r"hid\.enc\.(\d+)\.block\.attn\.spatial_gating_unit\.fc\.2\.(.+)",
     r"translator.blocks.\1.attention.mixer.excite.\2"),
    (r"hid\.enc\.(\d+)\.block\.mlp\.fc1\.(.+)", r"translator.blocks.\1.mlp.expand.\2"),
    (r"hid\.enc\.(\d+)\.block\.mlp\.dwconv\.dwconv\.(.+)", r"translator.blocks.\1.mlp.depthwise.\2"),
    (r"hid\.enc\.(\d+)\.block\.mlp\.fc2\.(.+)", r"translator.blocks.\1.mlp.project.\2"),
    (r"hid\.enc\.(\d+)\.reduction\.(.+)", r"translator.blocks.\1.project.\2"),
]
_SIMVP_NAMES = [(re.compile(pattern), replacement) for pattern, replacement in SIMVP_NAMES]
#: predlearn's option -> (OpenSTL's setting, its type)
SIMVP_SETTINGS = {"spatial_channels": ("hid_S", int), "temporal_channels": ("hid_T", int),
                  "spatial_layers": ("N_S", int), "temporal_layers": ("N_T", int),
                  "encoder_kernel_size": ("spatio_kernel_enc", int),
                  "decoder_kernel_size": ("spatio_kernel_dec", int),
                  "mlp_ratio": ("mlp_ratio", float), "dropout": ("drop", float),
                  "drop_path": ("drop_path", float)}
#: OpenSTL's model_type (lower case) -> predlearn's model and translator
MODEL_TYPES = {"incepu": ("simvp", "incepu"), "gsta": ("simvp", "gsta"), "tau": ("tau", None)}


def simvp_rule(name: str) -> Target | None:
    """OpenSTL's SimVP_Model names -> ours (SimVP and TAU alike)."""
    for pattern, replacement in _SIMVP_NAMES:
        if pattern.fullmatch(name):
            return Target(pattern.sub(replacement, name))
    return unknown()


def model_type(weights: SourceWeights) -> str | None:
    """The file's OpenSTL ``model_type`` in lower case: its setting (OpenSTL's default 'gSTA'
    where it is None), else what its translator's weights show (None: it has none)."""
    if "model_type" in weights.hparams:
        return str(weights.hparams["model_type"] or "gsta").lower()
    if not any(key.startswith("hid.enc.0.") for key in weights.state):
        return None
    if "hid.enc.0.conv1.weight" in weights.state:
        return "incepu"
    if any(".spatial_gating_unit.fc." in key for key in weights.state):
        return "tau"
    return "gsta"


def _check_model_type(weights: SourceWeights, model: str) -> str | None:
    """The translator of a file of OpenSTL's ``model_type`` converted as ``model``; refuses a
    model_type predlearn's ``model`` does not have, naming the one that has it."""
    found = model_type(weights)
    if found is None:  # no translator: refused by the options' reading, naming a missing key
        return None
    if found not in MODEL_TYPES:
        raise CheckpointError(
            f"{weights.path}: OpenSTL's SimVP with model_type={found!r}; predlearn converts "
            "model_type 'IncepU' and 'gSTA' (--model=simvp) and 'tau' (--model=tau) only")
    ours, translator = MODEL_TYPES[found]
    if ours != model:
        raise CheckpointError(f"{weights.path}: an OpenSTL SimVP with model_type={found!r}, "
                              f"which is predlearn's {ours}: --model={ours}")
    return translator


def simvp_options(weights: SourceWeights, given: Mapping[str, Any]) -> dict[str, Any]:
    """SimVP's (and TAU's) options: from OpenSTL's settings where the file has them, else from
    the weights' shapes (the frame size, which no weight shows, is then the default);
    ``given`` wins."""
    hparams = weights.hparams
    if hparams:
        options = frame_options(weights)
        if "in_shape" in hparams:  # OpenSTL's T is the J frames of one call
            options["context_frames"] = int(hparams["in_shape"][0])
        for ours, (theirs, convert) in SIMVP_SETTINGS.items():
            if hparams.get(theirs) is not None:
                options[ours] = convert(hparams[theirs])
    else:
        options = _simvp_from_shapes(weights)
    return {**options, **given}


def _simvp_from_shapes(weights: SourceWeights) -> dict[str, Any]:
    state = weights.state
    incepu = "hid.enc.0.conv1.weight" in state
    width = "hid.enc.{}.conv1.weight" if incepu else "hid.enc.{}.block.norm1.weight"
    decoder = next((key for key in ("dec.dec.0.conv.conv.0.weight", "dec.dec.0.conv.conv.weight")
                    if key in state), "dec.dec.0.conv.conv.0.weight")
    keys = ["enc.enc.0.conv.conv.weight", decoder, width.format(0), width.format(1)]
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(f"{weights.path}: no {missing[0]!r}; is --model the model this "
                              "file was trained as?")
    first, decoder_conv, width_in, width_hid = (state[key] for key in keys)
    spatial = int(first.shape[0])
    options: dict[str, Any] = {
        "frame_channels": int(first.shape[1]), "spatial_channels": spatial,
        "spatial_layers": _count(state, "enc.enc."), "temporal_layers": _count(state, "hid.enc."),
        "encoder_kernel_size": int(first.shape[-1]),
        "decoder_kernel_size": int(decoder_conv.shape[-1]),
        "context_frames": int(width_in.shape[1 if incepu else 0]) // spatial,
        "temporal_channels": int(width_hid.shape[1 if incepu else 0])}
    expand = state.get("hid.enc.0.block.mlp.fc1.weight")
    if expand is not None:
        options["mlp_ratio"] = float(expand.shape[0]) / float(expand.shape[1])
    return options


def _count(state: Mapping[str, Tensor], prefix: str) -> int:
    return len({layer_index(key, prefix) for key in state if key.startswith(prefix)})


def convert_simvp(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """OpenSTL's SimVP of model_type 'IncepU' (translator incepu) or 'gSTA' (gsta)."""
    translator = _check_model_type(weights, "simvp")
    options = simvp_options(weights, {**({"translator": translator} if translator else {}),
                                      **given})
    return Converted(options, renamed(weights, simvp_rule, "simvp"), *frame_counts(weights))


def convert_tau(weights: SourceWeights, given: dict[str, Any]) -> Converted:
    """OpenSTL's TAU (its SimVP_Model of model_type 'tau'), with its ``alpha``."""
    _check_model_type(weights, "tau")
    settings = {"alpha": float(weights.hparams["alpha"])} if "alpha" in weights.hparams else {}
    options = simvp_options(weights, {**settings, **given})
    return Converted(options, renamed(weights, simvp_rule, "tau"), *frame_counts(weights))


__all__ = ["convert_phydnet", "convert_simvp", "convert_tau", "model_type", "phydnet_options",
           "phydnet_rule", "simvp_options", "simvp_rule", "split_convlstm"]
