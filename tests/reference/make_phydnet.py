"""Build tests/reference/phydnet.pt: PhyDNet against OpenSTL's implementation.

    python tests/reference/make_phydnet.py --reference /tmp/ref-phydnet

``--reference`` is a folder holding OpenSTL's ``openstl/modules/phydnet_modules.py`` and
``openstl/models/phydnet_model.py`` (from github.com/chengtan9907/OpenSTL) with minimal
``__init__.py`` files that import only them; they need numpy and scipy. The script builds the
reference at a small size from OpenSTL's own classes, copies its random weights into ours, runs
both in float32 and checks that they agree (outputs, gradients, OpenSTL's training loss with and
without teacher forcing, the moment matrices of 7 x 7 filters), then writes the fixture that
tests/test_phydnet.py reads offline.

OpenSTL's ``PhyDNet_Model`` hard-codes its sizes (64 latent channels, 49 filters of 7 x 7,
GroupNorm(16, .) and GroupNorm(7, 49)). For a fixture of a few hundred kilobytes the reference is
assembled here from the same classes at smaller widths (``encoder_E(nf=4)``,
``encoder_specific(8, 8)``, ``PhyCell(F_hidden_dims=[25], kernel_size=(5, 5))``, ...) and its
GroupNorm layers are built with fewer groups (2 and 5, the values our ``norm_groups`` and
``phycell_kernel_size`` give; ``group_counts``); their forward code runs unchanged. OpenSTL's
moment constraint at its own size (K2M([7, 7]) of 49 filters) is checked separately.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("phydnet.pt")

BATCH, CONTEXT, HORIZON, SIZE = 2, 3, 3, 16
CONFIG = {"frame_channels": 1, "frame_size": [SIZE, SIZE], "patch_size": 4,
          "encoder_channels": 4, "latent_channels": 8, "norm_groups": 2,
          "phycell_kernel_size": 5, "convlstm_channels": [4, 8], "convlstm_kernel_size": 3,
          "moment_weight": 1.0}


@contextlib.contextmanager
def group_counts(groups: dict[int, int]) -> Iterator[None]:
    """While building: ``nn.GroupNorm(g, c)`` (OpenSTL's constant g) is built with
    ``groups[c]`` groups instead (where given)."""
    group_norm = nn.GroupNorm

    def regrouped(num_groups: int, num_channels: int, *args: Any, **kwargs: Any) -> nn.Module:
        return group_norm(groups.get(num_channels, num_groups), num_channels, *args, **kwargs)

    nn.GroupNorm = regrouped  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        nn.GroupNorm = group_norm  # type: ignore[misc]


def build_reference(modules: Any) -> nn.Module:
    """OpenSTL's PhyD_EncoderRNN at the CONFIG size, from OpenSTL's classes."""
    nf, latent, k = (CONFIG["encoder_channels"], CONFIG["latent_channels"],
                     CONFIG["phycell_kernel_size"])
    g = CONFIG["norm_groups"]
    with group_counts({nf: g, latent: g, k * k: k}):
        return _build_reference(modules, nf, latent, k)


def _build_reference(modules: Any, nf: int, latent: int, k: int) -> nn.Module:
    grid = (SIZE // CONFIG["patch_size"], SIZE // CONFIG["patch_size"])
    phycell = modules.PhyCell(input_shape=grid, input_dim=latent, F_hidden_dims=[k * k],
                              n_layers=1, kernel_size=(k, k), device="cpu")
    convcell = modules.PhyD_ConvLSTM(input_shape=grid, input_dim=latent,
                                     hidden_dims=CONFIG["convlstm_channels"],
                                     n_layers=len(CONFIG["convlstm_channels"]),
                                     kernel_size=(3, 3), device="cpu")
    encoder = modules.PhyD_EncoderRNN(phycell, convcell, in_channel=1,
                                      patch_size=CONFIG["patch_size"])
    # the widths PhyD_EncoderRNN fixes (nf = 32, 64 latent channels), from the same classes
    encoder.encoder_E = modules.encoder_E(nc=1, nf=nf, patch_size=CONFIG["patch_size"])
    encoder.encoder_Ep = modules.encoder_specific(nc=latent, nf=latent)
    encoder.encoder_Er = modules.encoder_specific(nc=latent, nf=latent)
    encoder.decoder_Dp = modules.decoder_specific(nc=latent, nf=latent)
    encoder.decoder_Dr = modules.decoder_specific(nc=latent, nf=latent)
    encoder.decoder_D = modules.decoder_D(nc=1, nf=nf, patch_size=CONFIG["patch_size"])
    return encoder


def to_ours(reference: nn.Module, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Tensors by OpenSTL's parameter names in PhyD_EncoderRNN (weights or their gradients) ->
    by ours, by the converter's rule (``predlearn.weight_import.openstl_direct``, which reads
    them under PhyDNet_Model's ``encoder.``; the ConvLSTM's convolutions split into their input
    and hidden parts, gates reordered)."""
    from predlearn.weight_import.openstl_direct import phydnet_rule, split_convlstm
    from predlearn.weight_import.renaming import renamed
    from predlearn.weight_import.sources import SourceWeights

    split = split_convlstm({f"encoder.{name}": value for name, value in tensors.items()})
    return renamed(SourceWeights(Path("openstl"), "openstl", split), phydnet_rule, "phydnet")


def reference_rollout(encoder: nn.Module, frames: Tensor, horizon: int) -> Tensor:
    """OpenSTL's ``PhyDNet_Model.inference`` loop without its ``torch.no_grad``: every
    next-frame prediction, the J - 1 made while reading plus the K closed-loop ones."""
    outputs = []
    for t in range(frames.shape[1] - 1):
        outputs.append(encoder(frames[:, t], t == 0)[2])
    inputs = frames[:, -1]
    for _ in range(horizon):
        inputs = encoder(inputs, False, False)[2]
        outputs.append(inputs)
    return torch.stack(outputs, dim=1)


def constraints(k: int) -> Tensor:
    """OpenSTL's ``PhyDNet._get_constraints`` for k x k filters (it writes k = 7)."""
    values = torch.zeros(k * k, k, k)
    for i in range(k):
        for j in range(k):
            values[k * i + j, i, j] = 1
    return values


def openstl_loss(model_class, encoder: nn.Module, k2m: nn.Module, frames: Tensor,
                 targets: Tensor, ratio: float) -> Tensor:
    """OpenSTL's ``PhyDNet_Model.forward`` (the training loss: the per-frame MSEs summed, plus
    the moment loss) on the small encoder."""
    model = model_class.__new__(model_class)
    nn.Module.__init__(model)
    model.pre_seq_length, model.aft_seq_length = CONTEXT, HORIZON
    model.encoder, model.k2m, model.criterion = encoder, k2m, nn.MSELoss()
    return model(frames, targets, constraints(CONFIG["phycell_kernel_size"]), ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference))
    sys.path.insert(0, str(REPO))
    from openstl.models import phydnet_model  # type: ignore[import-not-found]
    from openstl.modules import phydnet_modules  # type: ignore[import-not-found]

    from predlearn.zoo.phydnet import PhyDNet, kernel_moments, moment_loss

    torch.manual_seed(0)
    reference = build_reference(phydnet_modules)
    for parameter in reference.parameters():  # GroupNorm starts at 1 / 0: make it random too
        with torch.no_grad():
            parameter.add_(0.1 * torch.randn_like(parameter))
    ours = PhyDNet(**CONFIG)
    weights = to_ours(reference, dict(reference.named_parameters()))
    assert set(weights) == set(ours.state_dict()), set(weights) ^ set(ours.state_dict())
    ours.load_state_dict({name: value.detach().clone() for name, value in weights.items()})
    frames = torch.rand(BATCH, CONTEXT, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets = torch.rand(BATCH, HORIZON, 1, SIZE, SIZE,
                         generator=torch.Generator().manual_seed(2))
    report = {}

    # closed-loop outputs and gradients of mean(outputs ** 2)
    reference_all = reference_rollout(reference, frames, HORIZON)
    reference_outputs = reference_all[:, CONTEXT - 1:]
    reference_outputs.pow(2).mean().backward()
    reference_grads = to_ours(reference, {n: p.grad for n, p in reference.named_parameters()})
    ours.eval()
    outputs = ours(frames, HORIZON)
    outputs.pow(2).mean().backward()
    report["outputs"] = (outputs - reference_outputs).abs().max().item()
    report["grads"] = max((p.grad - reference_grads[n]).abs().max().item()
                          for n, p in ours.named_parameters())
    with torch.no_grad():
        report["every_frame"] = (ours.rollout(frames, HORIZON, every_frame=True).outputs
                                 - reference_all).abs().max().item()

    # OpenSTL's training loss = (J - 1 + K) x (our l2 loss over every frame + auxiliary_loss)
    k2m = phydnet_modules.K2M([CONFIG["phycell_kernel_size"]] * 2)
    ours.train()
    steps = CONTEXT - 1 + HORIZON
    with torch.no_grad():
        random.seed(0)
        losses = {"closed": openstl_loss(phydnet_model.PhyDNet_Model, reference, k2m, frames,
                                         targets, 0.0),
                  "teacher": openstl_loss(phydnet_model.PhyDNet_Model, reference, k2m, frames,
                                          targets, 1.0)}
        always = torch.ones(BATCH, HORIZON - 1, dtype=torch.bool)
        for key, mask in (("closed", None), ("teacher", always)):
            rollout = ours.rollout(frames, HORIZON, targets=targets, teacher_mask=mask,
                                   every_frame=True)
            truth = torch.cat([frames[:, 1:], targets], dim=1)
            total = steps * (F.mse_loss(rollout.outputs, truth) + rollout.auxiliary_loss)
            report[f"loss_{key}"] = (total - losses[key]).abs().item()

    # OpenSTL's moment constraint at its own size: K2M([7, 7]) of 49 filters per channel
    kernels = torch.randn(49, 2, 7, 7, generator=torch.Generator().manual_seed(3))
    k2m7 = phydnet_modules.K2M([7, 7])
    reference_moments = torch.stack([k2m7(kernels[:, b].double()).float() for b in range(2)], 1)
    reference_moment_loss = sum(F.mse_loss(reference_moments[:, b], constraints(7))
                                for b in range(2))
    report["moments7"] = (kernel_moments(kernels.double()).float()
                          - reference_moments).abs().max().item()
    report["moment_loss7"] = abs(moment_loss(kernels).item() - reference_moment_loss.item())

    for key, value in report.items():
        print(f"max |ours - OpenSTL| {key}: {value:.3g}")
    scale = {"loss_closed": losses["closed"].item(), "loss_teacher": losses["teacher"].item(),
             "moment_loss7": reference_moment_loss.item()}
    bad = {k: v for k, v in report.items() if v > 1e-5 * max(1.0, scale.get(k, 1.0))}
    if bad:
        raise SystemExit(f"ours and OpenSTL's differ: {bad}")
    fixture = {
        "config": CONFIG, "frames": frames, "targets": targets, "horizon": HORIZON,
        "state_dict": {n: v.detach().clone() for n, v in weights.items()},
        "outputs": reference_outputs.detach(), "every_frame": reference_all.detach(),
        "grads": {n: g.detach().clone() for n, g in reference_grads.items()},
        "loss": {key: value.detach() for key, value in losses.items()},
        "kernels7": kernels, "moments7": reference_moments,
        "moment_loss7": reference_moment_loss.detach(),
    }
    torch.save(fixture, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
