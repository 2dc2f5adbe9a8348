"""Build tests/reference/e3d_lstm.pt: E3D-LSTM against OpenSTL's implementation.

    python tests/reference/make_e3d_lstm.py --reference /tmp/ref-e3d_lstm

``--reference`` is a folder holding OpenSTL's ``openstl/models/e3dlstm_model.py``,
``openstl/modules/e3dlstm_modules.py`` and ``openstl/utils/predrnn_utils.py`` (its
``reshape_patch``), with ``__init__.py`` files that import only those (OpenSTL commit
c74deb5d4c3da585291f9f18281f3fefdbba3a54). It builds OpenSTL's ``E3DLSTM_Model`` at a small size
(16 x 16 frames, patches of 2, two layers of 3 channels, its fixed 2 x 5 x 5 filters and window
of 2, J=3, K=2, batch 2) with random weights, copies them into our ``E3DLSTM(variant="openstl")``
and runs both in float32 in the closed loop (OpenSTL's test path: ``mask_true`` all zeros,
``reverse_scheduled_sampling=0``). It checks that the outputs (every next-frame prediction) and
the gradients of mean(prediction^2) w.r.t. every parameter agree within 1e-5, and writes the
fixture. OpenSTL's ``layer_norm=1`` is compared on one cell (smaller than a model with it).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from predlearn.weight_import.openstl_recurrent import e3d_lstm_rule
from predlearn.weight_import.renaming import Rule, Target, renamed
from predlearn.weight_import.sources import SourceWeights
from predlearn.zoo.cells.eidetic_lstm import EideticLSTMCell
from predlearn.zoo.e3d_lstm import E3DLSTM

FIXTURE = Path(__file__).with_name("e3d_lstm.pt")
TOLERANCE = 1e-5
HIDDEN, PATCH, SIZE, CONTEXT, HORIZON, BATCH = [3, 3], 2, 16, 3, 2, 2

def our_cell_name(theirs: str) -> Target | None:
    """The package's rule for one cell's names (those of OpenSTL's layer 0)."""
    target = e3d_lstm_rule("cell_list.0." + theirs)
    return None if target is None else Target(target.name.removeprefix("cells.0."),
                                              target.order)


def translate(named: dict[str, Tensor], rule: Rule) -> dict[str, Tensor]:
    """Their tensors (parameters or gradients) under our names and in our gate order, by the
    converter's rule (``predlearn.weight_import.openstl_recurrent``; one frame channel, so no
    patch channels to reorder)."""
    return renamed(SourceWeights(Path("openstl"), "openstl", named), rule, "e3d_lstm")


def randomise(module: nn.Module) -> None:
    """Convolution weights of unit-scale pre-activations, the output convolution's larger
    (outputs of order 1, so that 1e-5 is a tight tolerance); LayerNorm scales near 1 and shifts
    near 0."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name == "conv_last.weight":  # the model's output convolution
                p.normal_(0.0, 1.0)
            elif p.ndim == 5:  # the convolutions (LayerNorm weights have 4 dimensions)
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.1)


def max_diff(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max((a[k] - b[k]).abs().max().item() for k in a)


def compare_model() -> dict:
    from openstl.models import E3DLSTM_Model
    from openstl.utils import reshape_patch, reshape_patch_back

    torch.manual_seed(0)
    configs = SimpleNamespace(in_shape=(CONTEXT + HORIZON, 1, SIZE, SIZE), patch_size=PATCH,
                              stride=1, layer_norm=0, pre_seq_length=CONTEXT,
                              aft_seq_length=HORIZON, reverse_scheduled_sampling=0)
    theirs = E3DLSTM_Model(len(HIDDEN), HIDDEN, configs)
    randomise(theirs)
    config = {"frame_channels": 1, "frame_size": [SIZE, SIZE], "hidden_channels": HIDDEN,
              "kernel_size": 5, "temporal_kernel_size": 2, "window_length": 2,
              "patch_size": PATCH, "layer_norm": False, "variant": "openstl"}
    ours = E3DLSTM(**config)
    ours.load_state_dict(translate(dict(theirs.named_parameters()), e3d_lstm_rule), strict=True)

    frames = torch.rand(BATCH, CONTEXT, 1, SIZE, SIZE)
    # OpenSTL's test path: the J frames and K (unused) targets, patched, mask_true all zeros
    clip = torch.cat([frames, torch.rand(BATCH, HORIZON, 1, SIZE, SIZE)], dim=1)
    patched = reshape_patch(clip.permute(0, 1, 3, 4, 2), PATCH)
    mask = torch.zeros(BATCH, HORIZON - 1, *patched.shape[2:])
    generated, _ = theirs(patched, mask, return_loss=False)
    every = reshape_patch_back(generated, PATCH).permute(0, 1, 4, 2, 3)  # frames 2 .. J + K
    predicted = every[:, -HORIZON:]
    predicted.square().mean().backward()
    grads = translate({n: p.grad for n, p in theirs.named_parameters()}, e3d_lstm_rule)

    rollout = ours.rollout(frames, HORIZON, every_frame=True)
    rollout.outputs[:, -HORIZON:].square().mean().backward()
    our_grads = {n: p.grad for n, p in ours.named_parameters()}
    diffs = {"outputs": (rollout.outputs - every).abs().max().item(),
             "grads": max_diff(our_grads, grads)}
    with torch.no_grad():
        diffs["forward"] = (ours(frames, HORIZON) - predicted).abs().max().item()
    scale = max(g.abs().max().item() for g in grads.values())
    print(f"model: {len(grads)} parameters compared (max |grad| {scale:.2f}, max |output| "
          f"{every.abs().max().item():.2f}); max |diff| outputs {diffs['outputs']:.2e}, "
          f"forward {diffs['forward']:.2e}, gradients {diffs['grads']:.2e}")
    assert max(diffs.values()) <= TOLERANCE, diffs
    return {"config": config, "frames": frames, "horizon": HORIZON,
            "state_dict": {k: v.detach().clone() for k, v in ours.state_dict().items()},
            "outputs": predicted.detach().clone(), "every_frame_outputs": every.detach().clone(),
            "grads": grads, "max_diff": diffs}


def compare_layer_norm_cell() -> dict:
    """One cell with layer normalisation and a history of three C states, against OpenSTL's
    ``Eidetic3DLSTMCell`` (its M output is the M it was given; ours, the new one: compared
    are H and C)."""
    from openstl.modules import Eidetic3DLSTMCell as TheirCell

    torch.manual_seed(1)
    grid, width, inputs, window = 4, 3, 4, 2
    theirs = TheirCell(inputs, width, window, grid, grid, (2, 3, 3), 1, True)
    randomise(theirs)
    options = {"input_channels": inputs, "hidden_channels": width, "window_length": window,
               "kernel_size": 3, "temporal_kernel_size": 2, "spatial_size": [grid, grid],
               "layer_norm": True, "variant": "openstl"}
    ours = EideticLSTMCell(**options)
    ours.load_state_dict(translate(dict(theirs.named_parameters()), our_cell_name), strict=True)
    x = torch.randn(BATCH, inputs, window, grid, grid)
    h, c, m = (torch.randn(BATCH, width, window, grid, grid) for _ in range(3))
    history = [torch.randn(BATCH, width, window, grid, grid) for _ in range(3)]
    h_t, c_t, _ = theirs(x, h, c, m, torch.cat(history, dim=1))
    outputs = [h_t, c_t]
    sum(o.square().mean() for o in outputs).backward()
    grads = translate({n: p.grad for n, p in theirs.named_parameters()}, our_cell_name)
    our_outputs = ours(x, h, c, m, history)[:2]
    sum(o.square().mean() for o in our_outputs).backward()
    diffs = {"outputs": max((a - b).abs().max().item() for a, b in zip(our_outputs, outputs)),
             "grads": max_diff({n: p.grad for n, p in ours.named_parameters()}, grads)}
    scale = max(g.abs().max().item() for g in grads.values())
    print(f"layer-norm cell (max |grad| {scale:.2f}): max |diff| outputs {diffs['outputs']:.2e}, "
          f"gradients {diffs['grads']:.2e}")
    assert max(diffs.values()) <= TOLERANCE, diffs
    return {"options": options, "inputs": [x, h, c, m], "history": history,
            "state_dict": {k: v.detach().clone() for k, v in ours.state_dict().items()},
            "outputs": [o.detach().clone() for o in outputs], "grads": grads, "max_diff": diffs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="folder with OpenSTL's E3D-LSTM files (see the module docstring)")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference.resolve()))
    torch.set_default_dtype(torch.float32)
    fixture = compare_model()
    fixture["layer_norm_cell"] = compare_layer_norm_cell()
    torch.save(fixture, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
