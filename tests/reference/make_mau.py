"""Build tests/reference/mau.pt: MAU against OpenSTL's implementation.

    python tests/reference/make_mau.py --reference /tmp/ref-mau

``--reference`` is a folder holding OpenSTL's ``openstl/models/mau_model.py``,
``openstl/modules/mau_modules.py`` (its ``MAUCell``) and ``openstl/utils/predrnn_utils.py``
(``reshape_patch``), with ``__init__.py`` files that import only those (OpenSTL commit
c74deb5d4c3da585291f9f18281f3fefdbba3a54). It builds OpenSTL's ``MAU_Model`` at small sizes
with random weights (layer norms included), copies them into our ``MAU`` and runs both in
float32 in the closed loop (OpenSTL's test path, ``MAU.forward`` of its method: ``mask_true``
all zeros, so every frame after the J observed ones is the model's own prediction). It checks
that every next-frame prediction (frames 2 .. J+K) and the gradients of mean(prediction^2)
w.r.t. every parameter agree within 1e-5, and writes the fixture.

Two set-ups, each with more steps (J + K - 1) than ``tau``, so that the attention window
slides past its initial zeros:

- the main one: OpenSTL's defaults in small (no patches, ``sr_size`` 4, so two encoder and two
  decoder levels, the first decoder level with its leaky ReLU; three layers, tau 3);
- ``"recall"`` (the same keys): two channels per frame with 2 x 2 patches (OpenSTL's patch
  channels come in another order than ``pixel_unshuffle``'s, which the weight mapping
  permutes), ``cell_mode='residual'`` and ``model_mode='recall'``.

OpenSTL's ``merge`` and ``conv_last_sr`` are built but never used in its forward: they have no
counterpart in ours (and no gradient there). ``MAU_Model`` reads patched frames channels-last,
(B, T, H/p, W/p, p*p*C), and returns its predictions channels-first, (B, T, p*p*C, H/p, W/p);
OpenSTL's MAU method feeds it unpatched frames (so only its ``patch_size`` 1 runs there), so
the frames are patched here with OpenSTL's own ``reshape_patch``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from predlearn.zoo.mau import MAU

FIXTURE = Path(__file__).with_name("mau.pt")
TOLERANCE = 1e-5
SIZE, BATCH = 16, 2
CELL = {"conv_t": "temporal_fusion", "conv_t_next": "motion_gate", "conv_s": "spatial_fusion",
        "conv_s_next": "spatial_query"}
UNUSED = ("merge", "conv_last_sr")


def patch_order(channels: int, patch: int) -> Tensor:
    """For each of our patch channels (``pixel_unshuffle``: c * p * p + q, q the position in
    the patch), its index in OpenSTL's ``reshape_patch`` order (q * C + c)."""
    return torch.tensor([q * channels + c for c in range(channels) for q in range(patch**2)])


def to_ours(theirs: str, value: Tensor, order: Tensor) -> dict[str, Tensor]:
    """Our parameter (name and value) for one of theirs; empty for the unused ones."""
    parts = theirs.split(".")
    if parts[0] in UNUSED:
        return {}
    if parts[0] == "cell_list":  # cell_list.i.conv_t.0.weight -> cells.i.temporal_fusion.0...
        return {f"cells.{parts[1]}.{CELL[parts[2]]}.{'.'.join(parts[3:])}": value}
    if parts[0] == "srcnn":  # its output channels are the patch's
        return {f"head.{parts[-1]}": value[order]}
    if parts[0] == "encoders" and parts[1] == "0" and parts[-1] == "weight":
        value = value[:, order]  # the first 1x1 convolution reads the patch's channels
    return {f"{parts[0]}.{parts[1]}.0.{parts[-1]}": value}


def reference_model(root: Path, config: dict[str, Any], context: int, horizon: int) -> Any:
    sys.path.insert(0, str(root))
    from openstl.models import MAU_Model  # the reference, imported on demand

    hidden = config["hidden_channels"]
    configs = SimpleNamespace(
        in_shape=(context + horizon, config["frame_channels"], SIZE, SIZE),
        patch_size=config["patch_size"], sr_size=config["sr_size"], tau=config["tau"],
        cell_mode=config["cell_mode"], model_mode=config["model_mode"],
        filter_size=config["kernel_size"], stride=1, total_length=context + horizon,
        pre_seq_length=context, aft_seq_length=horizon)
    return MAU_Model(len(hidden), hidden, configs)


def randomise(model: torch.nn.Module) -> None:
    """Random layer-norm scales and biases (they start at 1 and 0: would test nothing)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".1." in name and name.startswith("cell_list"):
                parameter.copy_((1 if name.endswith("weight") else 0)
                                + 0.2 * torch.randn_like(parameter))


def run_reference(model: Any, frames: Tensor, horizon: int, patch: int) -> Tensor:
    """OpenSTL's closed loop: (B, J, C, H, W) -> every next-frame prediction (B, J-1+K, ...)."""
    from openstl.utils import reshape_patch, reshape_patch_back

    batch, _, channels, height, width = frames.shape
    future = frames.new_zeros(batch, horizon, channels, height, width)  # masked out: unused
    sequence = torch.cat([frames, future], dim=1).permute(0, 1, 3, 4, 2)
    mask = frames.new_zeros(batch, horizon - 1, height // patch, width // patch,
                            patch * patch * channels)
    out, _ = model(reshape_patch(sequence, patch), mask, return_loss=False)
    # it reads patches channels-last but returns them channels-first, (B, T, p*p*C, H/p, W/p)
    return reshape_patch_back(out.permute(0, 1, 3, 4, 2), patch).permute(0, 1, 4, 2, 3)


def compare(root: Path, config: dict[str, Any], context: int, horizon: int,
            seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    theirs = reference_model(root, config, context, horizon)
    randomise(theirs)
    ours = MAU(**config)
    order = patch_order(config["frame_channels"], config["patch_size"])
    mapped: dict[str, Tensor] = {}
    for name, value in theirs.state_dict().items():
        mapped.update(to_ours(name, value, order))
    ours.load_state_dict(mapped, strict=True)

    frames = torch.rand(BATCH, context, config["frame_channels"], SIZE, SIZE)
    reference = run_reference(theirs, frames, horizon, config["patch_size"])
    reference.pow(2).mean().backward()
    outputs = ours.rollout(frames, horizon, every_frame=True).outputs
    outputs.pow(2).mean().backward()

    grads: dict[str, Tensor] = {}
    for name, parameter in theirs.named_parameters():
        if parameter.grad is not None:
            grads.update({k: v.clone() for k, v in to_ours(name, parameter.grad, order).items()})
    ours_grads = dict(ours.named_parameters())
    assert set(grads) == set(ours_grads), set(grads) ^ set(ours_grads)
    out_diff = (outputs - reference).abs().max().item()
    grad_diff = max((ours_grads[n].grad - g).abs().max().item() for n, g in grads.items())
    grad_size = max(g.abs().max().item() for g in grads.values())
    print(f"{config['cell_mode']}/{config['model_mode']}: max |output diff| {out_diff:.2e} "
          f"(outputs up to {reference.abs().max().item():.2f}), max |grad diff| "
          f"{grad_diff:.2e} over {len(grads)} parameters (gradients up to {grad_size:.2e})")
    assert out_diff <= TOLERANCE and grad_diff <= TOLERANCE
    return {"config": config, "frames": frames, "horizon": horizon,
            "state_dict": {k: v.detach().clone() for k, v in ours.state_dict().items()},
            "outputs": reference.detach(), "grads": grads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True)
    args = parser.parse_args()
    base = {"frame_size": [SIZE, SIZE], "kernel_size": 3, "sr_size": 4}
    main_config = {**base, "frame_channels": 1, "hidden_channels": [6, 6, 6], "patch_size": 1,
                   "tau": 3, "cell_mode": "normal", "model_mode": "normal"}
    recall_config = {**base, "frame_channels": 2, "hidden_channels": [4, 4], "patch_size": 2,
                     "tau": 2, "cell_mode": "residual", "model_mode": "recall"}
    fixture = compare(args.reference, main_config, context=4, horizon=3, seed=0)
    fixture["recall"] = compare(args.reference, recall_config, context=3, horizon=3, seed=1)
    torch.save(fixture, FIXTURE)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
