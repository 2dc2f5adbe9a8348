"""Build tests/reference/mim.pt: MIM against OpenSTL's implementation.

    python tests/reference/make_mim.py --reference /tmp/ref-mim

``--reference`` is a folder holding OpenSTL's ``openstl/models/mim_model.py``,
``openstl/modules/mim_modules.py``, ``openstl/modules/predrnn_modules.py`` (its
``SpatioTemporalLSTMCell``) and ``openstl/utils/predrnn_utils.py`` (``reshape_patch``), with
``__init__.py`` files that import only those (OpenSTL commit
c74deb5d4c3da585291f9f18281f3fefdbba3a54). It builds OpenSTL's ``MIM_Model`` at a small size
(16 x 16 frames, patches of 4, 3 x 3 filters, J=3, K=3, batch 2; three layers, so that a MIM-N
fed by the MIM-N below is exercised, of 4 channels, or 2 with layer normalisation) with random
weights (peepholes included), copies them into our ``MIM`` and runs both in float32 in the
closed loop (OpenSTL's test path: ``mask_true`` all zeros, ``reverse_scheduled_sampling=0``). It
checks that every next-frame prediction (frames 2 .. J+K) and the gradients of
mean(prediction^2) w.r.t. every parameter agree within 1e-5 (and within 1e-4 of the largest
gradient), without and with layer normalisation, and writes the fixture (the variant with layer
normalisation under ``"layer_norm"``, with the same keys).

OpenSTL's ``MIMBlock`` keeps the stationary cell S on the module between calls; a fresh
reference model is built for each comparison, so that S starts at zero as ours does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from predlearn.zoo.mim import MIM

FIXTURE = Path(__file__).with_name("mim.pt")
TOLERANCE = 1e-5
RELATIVE = 1e-4  # max |grad diff| / max |grad|
KERNEL, PATCH, SIZE, CONTEXT, HORIZON, BATCH = 3, 4, 16, 3, 3, 2

# Their stacked convolutions split their outputs in one gate order, ours in another: for each of
# our chunks (along dim 0) its chunk there.
ST_LSTM = {  # OpenSTL's SpatioTemporalLSTMCell -> our first layer (predlearn's ST-LSTM)
    "conv_x": ("conv_x", 0, [2, 0, 1, 5, 3, 4, 6]),  # i f g i' f' g' o -> g i f g' i' f' o
    "conv_h": ("conv_h", 1, [2, 0, 1, 3]),  # i f g o -> g i f o
    "conv_m": ("conv_m", 2, [2, 0, 1]),  # i' f' g' -> g' i' f'
    "conv_o": ("conv_o", 3, [0]),
}
BLOCK = {  # OpenSTL's MIMBlock -> our MIMBlock
    "conv_x_cc": ("conv_x", 0, [1, 0, 2, 3]),  # i g f' o -> g i f' o
    "conv_t_cc": ("conv_h", 1, [1, 0, 2]),  # i g o -> g i o
    "conv_s_cc": ("conv_m", 2, [1, 0, 2, 3]),  # i' g' f' o -> g' i' f' o
    "conv_x_concat": ("stationary.conv_x", 0, [1, 0, 2, 3]),  # MIM-S, i g f o -> g i f o
    "conv_h_concat": ("stationary.conv_h", 1, [1, 0, 2, 3]),
}
MIMN = {  # OpenSTL's MIMN -> our block's MIM-N
    "conv_x_concat": ("conv_x", 0, [1, 0, 2, 3]),
    "conv_h_concat": ("conv_h", 1, [1, 0, 2, 3]),
}


def reorder(value: Tensor, order: list[int]) -> Tensor:
    chunks = torch.chunk(value, len(order), dim=0)
    return torch.cat([chunks[i] for i in order], dim=0)


def peepholes(prefix: str, module: str, value: Tensor) -> dict[str, Tensor]:
    """OpenSTL's ``ct_weight`` holds W_ci and W_cf stacked; ``oc_weight`` is W_co."""
    if module == "oc_weight":
        return {f"{prefix}w_co": value}
    w_ci, w_cf = torch.chunk(value, 2, dim=0)
    return {f"{prefix}w_ci": w_ci, f"{prefix}w_cf": w_cf}


def convolution(prefix: str, table: dict, parts: list[str], value: Tensor) -> dict[str, Tensor]:
    """A stacked convolution ``module.0.weight`` or its LayerNorm ``module.1.{weight,bias}``."""
    ours, norm, order = table[parts[0]]
    if parts[1] == "1":  # the LayerNorm after the convolution
        path = ours.rsplit(".", 1)[0] + "." if "." in ours else ""
        ours = f"{path}norms.{norm}"
    return {f"{prefix}{ours}.{parts[-1]}": reorder(value, order)}


def to_ours(theirs: str, value: Tensor) -> dict[str, Tensor]:
    """Our parameters (names and values) for one of theirs; empty for OpenSTL's MIMN
    ``conv_last``, built but never used in its forward."""
    parts = theirs.split(".")
    if parts[0] == "conv_last":
        return {"head.weight": value}
    layer, module, rest = int(parts[1]), parts[2], parts[2:]
    if parts[0] == "stlstm_layer_diff":  # the MIM-N of our block ``layer``
        prefix = f"blocks.{layer}.nonstationary."
        if module == "conv_last":
            return {}
        if module in ("ct_weight", "oc_weight"):
            return peepholes(prefix, module, value)
        return convolution(prefix, MIMN, rest, value)
    if layer == 0:
        if module == "conv_last":
            return {"first.conv_1x1.weight": value}
        return convolution("first.", ST_LSTM, rest, value)
    prefix = f"blocks.{layer - 1}."
    if module == "conv_last":
        return {f"{prefix}conv_1x1.weight": value}
    if module in ("ct_weight", "oc_weight"):  # MIM-S's peepholes
        return peepholes(prefix + "stationary.", module, value)
    return convolution(prefix, BLOCK, rest, value)


def reference_model(root: Path, hidden: list[int], layer_norm: bool) -> Any:
    sys.path.insert(0, str(root))
    from openstl.models import MIM_Model  # the reference, imported on demand

    configs = SimpleNamespace(
        in_shape=(CONTEXT + HORIZON, 1, SIZE, SIZE), patch_size=PATCH, filter_size=KERNEL,
        stride=1, layer_norm=int(layer_norm), pre_seq_length=CONTEXT, aft_seq_length=HORIZON,
        reverse_scheduled_sampling=0)
    return MIM_Model(len(hidden), hidden, configs)


def randomise(model: torch.nn.Module) -> None:
    """Random weights everywhere (the peepholes start at zero in both, so would test nothing)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".1.weight"):  # a LayerNorm scale
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            else:
                parameter.uniform_(-0.4, 0.4)


def run_reference(model: Any, frames: Tensor) -> Tensor:
    """OpenSTL's closed loop: (B, J, C, H, W) -> every next-frame prediction (B, J-1+K, ...)."""
    from openstl.utils import reshape_patch, reshape_patch_back

    batch, _, channels, height, width = frames.shape
    future = frames.new_zeros(batch, HORIZON, channels, height, width)  # masked out: unused
    sequence = torch.cat([frames, future], dim=1).permute(0, 1, 3, 4, 2)
    mask = frames.new_zeros(batch, HORIZON - 1, height // PATCH, width // PATCH,
                            PATCH * PATCH * channels)
    out, _ = model(reshape_patch(sequence, PATCH), mask, return_loss=False)
    return reshape_patch_back(out, PATCH).permute(0, 1, 4, 2, 3)


def compare(root: Path, hidden: list[int], layer_norm: bool, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    theirs = reference_model(root, hidden, layer_norm)
    randomise(theirs)
    config = {"frame_channels": 1, "frame_size": [SIZE, SIZE], "hidden_channels": hidden,
              "kernel_size": KERNEL, "patch_size": PATCH, "layer_norm": layer_norm}
    ours = MIM(**config)
    mapped: dict[str, Tensor] = {}
    for name, value in theirs.state_dict().items():
        mapped.update(to_ours(name, value))
    ours.load_state_dict(mapped, strict=True)

    frames = torch.rand(BATCH, CONTEXT, 1, SIZE, SIZE)
    reference = run_reference(theirs, frames)
    reference.pow(2).mean().backward()
    outputs = ours.rollout(frames, HORIZON, every_frame=True).outputs
    outputs.pow(2).mean().backward()

    grads: dict[str, Tensor] = {}
    for name, parameter in theirs.named_parameters():
        if parameter.grad is not None:
            grads.update({k: v.clone() for k, v in to_ours(name, parameter.grad).items()})
    ours_grads = dict(ours.named_parameters())
    assert set(grads) == set(ours_grads), set(grads) ^ set(ours_grads)
    out_diff = (outputs - reference).abs().max().item()
    grad_diff = max((ours_grads[n].grad - g).abs().max().item() for n, g in grads.items())
    grad_size = max(g.abs().max().item() for g in grads.values())
    print(f"layer_norm={layer_norm}: max |output diff| {out_diff:.2e} (outputs up to "
          f"{reference.abs().max().item():.2f}), max |grad diff| {grad_diff:.2e} over "
          f"{len(grads)} parameters (gradients up to {grad_size:.2e}; relative "
          f"{grad_diff / grad_size:.1e})")
    assert out_diff <= TOLERANCE and grad_diff <= TOLERANCE
    assert grad_diff <= RELATIVE * grad_size  # the gradients are small: relative to their size
    return {"config": config, "frames": frames, "horizon": HORIZON,
            "state_dict": {k: v.detach().clone() for k, v in ours.state_dict().items()},
            "outputs": reference.detach(), "grads": grads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True)
    args = parser.parse_args()
    fixture = compare(args.reference, [4, 4, 4], layer_norm=False, seed=0)
    fixture["layer_norm"] = compare(args.reference, [2, 2, 2], layer_norm=True, seed=1)
    torch.save(fixture, FIXTURE)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
