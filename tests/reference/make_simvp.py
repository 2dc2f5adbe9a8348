"""Make tests/reference/simvp_incepu.pt, simvp_gsta.pt and tau.pt: our SimVP (IncepU, gSTA) and
TAU against OpenSTL's ``SimVP_Model`` (commit c74deb5) at a small size, in fp32.

    python tests/reference/make_simvp.py --reference /tmp/ref-simvp

``--reference``: a folder holding OpenSTL's ``openstl/models/simvp_model.py``, the classes of
``openstl/modules/simvp_modules.py`` that IncepU, gSTA and TAU use (with ``MixMlp`` from
``openstl/modules/layers/van.py``), ``diff_div_reg`` of ``openstl/methods/tau.py`` as
``openstl/methods/tau_loss.py``, and timm's ``layers/drop.py`` and ``layers/weight_init.py``
(the ``DropPath`` and ``trunc_normal_`` they import) as a ``timm.layers`` package.

Both models get the same weights (the reference's init, then every bias, norm, layer scale and
BatchNorm statistic perturbed so that each piece shows in the outputs), copied from their names
to ours by ``our_name``. Each runs 4 -> 5 frames as OpenSTL's ``SimVP.forward`` does (one block
of J frames, then the next block from it, cut to the horizon), in eval mode (BatchNorm's running
statistics, dropout and drop path off) and in training mode (BatchNorm's batch statistics, drop
path on, the same random draws from the same seed; not for IncepU, which has none of them). The
loss whose gradients are compared is the
mean of the squared outputs, plus TAU's regularisation against random targets for TAU.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
CONTEXT, HORIZON, BATCH, CHANNELS, SIZE, SEED = 4, 5, 2, 1, 16, 0
SMALL = {"spatial_channels": 4, "temporal_channels": 16, "spatial_layers": 4,
         "temporal_layers": 3, "encoder_kernel_size": 5, "decoder_kernel_size": 3}
VARIANTS = {  # fixture: (their model_type, our class, our extra kwargs)
    "simvp_incepu": ("incepu", "SimVP", {"translator": "incepu"}),
    "simvp_gsta": ("gsta", "SimVP", {"translator": "gsta", "mlp_ratio": 2.0,
                                     "drop_path": 0.3}),
    "tau": ("tau", "TAU", {"mlp_ratio": 2.0, "drop_path": 0.3, "alpha": 0.1}),
}

def our_name(name: str) -> str:
    """Our name for one of the reference's parameters and buffers, by the converter's rule
    (``predlearn.weight_import.openstl_direct``)."""
    from predlearn.weight_import.openstl_direct import simvp_rule
    from predlearn.weight_import.renaming import unknown

    target = simvp_rule(name)
    if target is None or target is unknown():
        raise KeyError(f"no mapping for the reference's {name}")
    return target.name


def perturb(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Make every bias, norm affine, layer scale, BatchNorm statistic and linear layer (TAU's
    squeeze and excitation, whose ReLU would otherwise often be dead) non-trivial, and draw the
    attention convolutions as gSTA's init does (N(0, 2 / fan-out); OpenSTL's TAU keeps torch's
    smaller init there, which leaves their gradients too small to compare)."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():  # BatchNorm's num_batches_tracked
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith(("running_mean", "bias")):
                tensor.add_(0.1 * noise)
            elif "norm" in name and name.endswith("weight"):
                tensor.copy_(1 + 0.2 * noise)
            elif "layer_scale" in name:
                tensor.copy_(0.5 * noise)
            elif tensor.ndim == 2:  # nn.Linear weights
                tensor.copy_(noise / tensor.shape[1] ** 0.5)
            elif "spatial_gating_unit" in name and tensor.ndim == 4:
                fan_out = tensor.shape[0] * tensor.shape[2] * tensor.shape[3]
                if tensor.shape[1] == 1:  # depth-wise: fan-out / groups
                    fan_out //= tensor.shape[0]
                tensor.copy_(noise * (2.0 / fan_out) ** 0.5)


def reference_rollout(model: torch.nn.Module, frames: torch.Tensor, horizon: int) -> torch.Tensor:
    """OpenSTL's ``SimVP.forward`` (openstl/methods/simvp.py) for aft_seq_length > pre_seq_length:
    whole blocks, each from the previous one's output, then the last block cut."""
    blocks, current = [], frames
    for _ in range(horizon // frames.shape[1]):
        current = model(current)
        blocks.append(current)
    if horizon % frames.shape[1]:
        blocks.append(model(current)[:, :horizon % frames.shape[1]])
    return torch.cat(blocks, dim=1)


def run(model, frames, horizon, ours: bool, targets, alpha, regulariser):
    outputs = model(frames, horizon) if ours else reference_rollout(model, frames, horizon)
    loss = outputs.square().mean()
    term = None
    if regulariser is not None:
        term = regulariser(outputs, targets)
        loss = loss + alpha * term
    loss.backward()
    return outputs.detach(), term


def compare(name: str, out_dir: Path) -> None:
    from openstl.methods.tau_loss import diff_div_reg
    from openstl.models import SimVP_Model

    from predlearn.zoo.simvp import SimVP
    from predlearn.zoo.tau import TAU, divergence_regularisation

    model_type, our_class, extra = VARIANTS[name]
    torch.manual_seed(SEED)
    theirs = SimVP_Model((CONTEXT, CHANNELS, SIZE, SIZE), hid_S=SMALL["spatial_channels"],
                         hid_T=SMALL["temporal_channels"], N_S=SMALL["spatial_layers"],
                         N_T=SMALL["temporal_layers"], model_type=model_type,
                         mlp_ratio=extra.get("mlp_ratio", 8.0), drop=0.0,
                         drop_path=extra.get("drop_path", 0.0),
                         spatio_kernel_enc=SMALL["encoder_kernel_size"],
                         spatio_kernel_dec=SMALL["decoder_kernel_size"])
    generator = torch.Generator().manual_seed(SEED + 1)
    perturb(theirs, generator)
    config = {"context_frames": CONTEXT, "frame_channels": CHANNELS, "frame_size": [SIZE, SIZE],
              **SMALL, **extra}
    ours = {"SimVP": SimVP, "TAU": TAU}[our_class](**config)
    their_state = theirs.state_dict()
    mapped = {our_name(key): value for key, value in their_state.items()}
    assert len(mapped) == len(their_state)
    missing = set(ours.state_dict()) ^ set(mapped)
    assert not missing, f"unmatched names: {sorted(missing)}"
    ours.load_state_dict(mapped)
    state = {key: value.clone() for key, value in ours.state_dict().items()}
    frames = torch.rand(BATCH, CONTEXT, CHANNELS, SIZE, SIZE, generator=generator)
    targets = torch.rand(BATCH, HORIZON, CHANNELS, SIZE, SIZE, generator=generator)
    alpha = extra.get("alpha", 0.0)
    their_reg = diff_div_reg if name == "tau" else None
    our_reg = divergence_regularisation if name == "tau" else None
    record: dict = {"config": config, "frames": frames, "horizon": HORIZON, "state_dict": state}
    if name == "tau":
        record["targets"] = targets
    their_params = dict(theirs.named_parameters())
    modes = ("eval",) if name == "simvp_incepu" else ("eval", "train")  # IncepU: no BN/drop
    for mode in modes:
        theirs.load_state_dict(their_state)
        ours.load_state_dict(state)
        theirs.train(mode == "train")
        ours.train(mode == "train")
        theirs.zero_grad(set_to_none=True)
        ours.zero_grad(set_to_none=True)
        torch.manual_seed(SEED + 2)
        their_out, their_term = run(theirs, frames, HORIZON, False, targets, alpha, their_reg)
        torch.manual_seed(SEED + 2)
        our_out, our_term = run(ours, frames, HORIZON, True, targets, alpha, our_reg)
        grads = {our_name(key): p.grad.detach().clone() for key, p in their_params.items()}
        ours_grads = dict(ours.named_parameters())
        assert set(grads) == set(ours_grads)
        out_diff = (our_out - their_out).abs().max().item()
        grad_diff = max((ours_grads[k].grad - g).abs().max().item() for k, g in grads.items())
        relative = max(((ours_grads[k].grad - g).abs().max() / g.abs().max()).item()
                       for k, g in grads.items())
        smallest = min(g.abs().max().item() for g in grads.values())
        print(f"{name} {mode}: max |output diff| {out_diff:.2e} (outputs up to "
              f"{their_out.abs().max():.2f}), max |grad diff| {grad_diff:.2e} over "
              f"{len(grads)} parameters (each's largest |grad| >= {smallest:.1e}; the largest "
              f"diff relative to it {relative:.1e})")
        assert out_diff <= 1e-5 and grad_diff <= 1e-5 and relative <= 1e-4, (name, mode)
        entry = {"outputs": their_out, "grads": grads}
        if their_term is not None:
            term_diff = (our_term - their_term).abs().item()
            print(f"{name} {mode}: regularisation {their_term.item():.6f}, |diff| {term_diff:.2e}")
            assert term_diff <= 1e-6
            entry["prediction_loss"] = alpha * their_term.detach()
        if mode == "eval":
            record.update(entry)
        else:
            record["train"] = {"seed": SEED + 2, **entry}
    path = out_dir / f"{name}.pt"
    torch.save(record, path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="the scratch folder with OpenSTL's files (see the docstring)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "reference")
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference.resolve()))
    importlib.invalidate_caches()
    torch.set_num_threads(1)
    for name in VARIANTS:
        compare(name, args.out)


if __name__ == "__main__":
    main()
