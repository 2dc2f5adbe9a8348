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

from predlearn.weight_import.openstl_recurrent import mau_rule
from predlearn.weight_import.renaming import patched_input, patched_output, renamed
from predlearn.weight_import.sources import SourceWeights
from predlearn.zoo.mau import MAU

FIXTURE = Path(__file__).with_name("mau.pt")
TOLERANCE = 1e-5
SIZE, BATCH = 16, 2


def to_ours(tensors: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
    """Their tensors (parameters or gradients) under our names, by the converter's rule
    (``predlearn.weight_import.openstl_recurrent``; the unused ``merge`` and ``conv_last_sr``
    left out), the encoder's input and the head's output in ``pixel_unshuffle``'s patch
    channel order."""
    ours = renamed(SourceWeights(Path("openstl"), "openstl", tensors), mau_rule, "mau")
    patch, channels = config["patch_size"], config["frame_channels"]
    ours["encoders.0.0.weight"] = patched_input(ours["encoders.0.0.weight"], patch, channels)
    for key in ("head.weight", "head.bias"):
        ours[key] = patched_output(ours[key], patch, channels)
    return ours


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
    ours.load_state_dict(to_ours(theirs.state_dict(), config), strict=True)

    frames = torch.rand(BATCH, context, config["frame_channels"], SIZE, SIZE)
    reference = run_reference(theirs, frames, horizon, config["patch_size"])
    reference.pow(2).mean().backward()
    outputs = ours.rollout(frames, horizon, every_frame=True).outputs
    outputs.pow(2).mean().backward()

    grads = to_ours({name: parameter.grad for name, parameter in theirs.named_parameters()
                     if parameter.grad is not None}, config)
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
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    base = {"frame_size": [SIZE, SIZE], "kernel_size": 3, "sr_size": 4}
    main_config = {**base, "frame_channels": 1, "hidden_channels": [6, 6, 6], "patch_size": 1,
                   "tau": 3, "cell_mode": "normal", "model_mode": "normal"}
    recall_config = {**base, "frame_channels": 2, "hidden_channels": [4, 4], "patch_size": 2,
                     "tau": 2, "cell_mode": "residual", "model_mode": "recall"}
    fixture = compare(args.reference, main_config, context=4, horizon=3, seed=0)
    fixture["recall"] = compare(args.reference, recall_config, context=3, horizon=3, seed=1)
    torch.save(fixture, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
