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

from predlearn.weight_import.openstl_recurrent import mim_rule, split_peepholes
from predlearn.weight_import.renaming import renamed
from predlearn.weight_import.sources import SourceWeights
from predlearn.zoo.mim import MIM

FIXTURE = Path(__file__).with_name("mim.pt")
TOLERANCE = 1e-5
RELATIVE = 1e-4  # max |grad diff| / max |grad|
KERNEL, PATCH, SIZE, CONTEXT, HORIZON, BATCH = 3, 4, 16, 3, 3, 2

def to_ours(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Their tensors (parameters or gradients) under our names, in our gate order, by the
    converter's rule (``predlearn.weight_import.openstl_recurrent``: ``ct_weight`` split into
    W_ci and W_cf; the MIM-N's ``conv_last``, built but never used, left out; one frame channel,
    so no patch channels to reorder)."""
    split = split_peepholes(tensors)
    return renamed(SourceWeights(Path("openstl"), "openstl", split), mim_rule, "mim")


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
    ours.load_state_dict(to_ours(theirs.state_dict()), strict=True)

    frames = torch.rand(BATCH, CONTEXT, 1, SIZE, SIZE)
    reference = run_reference(theirs, frames)
    reference.pow(2).mean().backward()
    outputs = ours.rollout(frames, HORIZON, every_frame=True).outputs
    outputs.pow(2).mean().backward()

    grads = to_ours({name: parameter.grad for name, parameter in theirs.named_parameters()
                     if parameter.grad is not None})
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
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    fixture = compare(args.reference, [4, 4, 4], layer_norm=False, seed=0)
    fixture["layer_norm"] = compare(args.reference, [2, 2, 2], layer_norm=True, seed=1)
    torch.save(fixture, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
