"""Build the OpenSTL import fixtures of PredRNN++, MIM, E3D-LSTM, MAU, PhyDNet, SimVP (IncepU and
gSTA) and TAU: OpenSTL's own network of each at a small size with random weights, saved as its
Lightning checkpoint, with its predictions of fixed frames; ``tests/test_import_openstl.py``
imports the files and compares predlearn's predictions with those.

    OMP_NUM_THREADS=1 python tests/reference/weights/make_openstl.py --scratch /tmp

``--scratch`` holds the folders that issue 29's scripts (``tests/reference/make_*.py``) use, each
with a slice of OpenSTL (commit c74deb5d4c3da585291f9f18281f3fefdbba3a54) importable as
``openstl``: ``ref-predrnn_pp``, ``ref-mim``, ``ref-e3d_lstm``, ``ref-mau``, ``ref-phydnet``
(needs numpy and scipy) and ``ref-simvp`` (with timm's ``layers/drop.py`` and
``layers/weight_init.py`` as a ``timm.layers`` package); their docstrings list the files.
``--openstl`` is a clone or bare mirror of OpenSTL at that commit: the run configs are read from
its ``openstl/utils/parser.py`` (``default_parser``'s values) and ``configs/mmnist/*.py``
(plain assignments, read as literals; no code of theirs runs for them). ``--only`` builds some.

Each checkpoint is what OpenSTL's ``Base_method`` writes: ``state_dict`` (the network under
``model.``) and ``hyper_parameters``, its run config: the parser's defaults updated by
``configs/mmnist/<Method>.py``, then the small sizes (16 x 16 frames, patches of 2 where the
model patches, two or three narrow layers, J = 3 and K = 2; SimVP and TAU J = 4 and K = 5, so
that OpenSTL's block-by-block rollout and its cut are exercised). The predictions are those of
OpenSTL's test path (its method's ``forward``: the closed loop, ``mask_true`` all zeros) in
float32. Before a fixture is written, the checkpoint is imported with
``predlearn.weight_import.import_weights`` and predlearn's prediction must agree within 1e-5.

PhyDNet: OpenSTL's ``PhyDNet_Model`` fixes its widths (64 latent channels, 49 filters of 7 x 7,
[128, 128, 64]); as in ``tests/reference/make_phydnet.py`` its parts are built here from
OpenSTL's classes at narrower widths, with fewer GroupNorm groups (2; 5 for the PhyCell's 25
filters), which no OpenSTL setting records: the fixture's ``options`` give ``norm_groups``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import functools
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from predlearn.weight_import import import_weights

HERE = Path(__file__).parent
OPENSTL_COMMIT = "c74deb5d4c3da585291f9f18281f3fefdbba3a54"
TOLERANCE = 1e-5
SIZE, BATCH = 16, 2


# -- OpenSTL's run config ------------------------------------------------------------------------


def git_show(repo: Path, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"{OPENSTL_COMMIT}:{path}"],
                          check=True, capture_output=True, text=True).stdout


def parser_defaults(repo: Path) -> dict[str, Any]:
    """The dictionary literal of ``default_parser()`` in OpenSTL's ``openstl/utils/parser.py``."""
    tree = ast.parse(git_show(repo, "openstl/utils/parser.py"))
    function = next(node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == "default_parser")
    assign = next(node for node in function.body if isinstance(node, ast.Assign))
    return dict(ast.literal_eval(assign.value))


def config_file(repo: Path, name: str) -> dict[str, Any]:
    """The assignments of ``configs/mmnist/<name>.py``, as literals."""
    tree = ast.parse(git_show(repo, f"configs/mmnist/{name}.py"))
    return {target.id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) for target in node.targets
            if isinstance(target, ast.Name)}


def run_config(repo: Path, config: str, small: dict[str, Any], context: int, horizon: int,
               channels: int) -> dict[str, Any]:
    """What ``save_hyperparameters()`` stores: the parser's defaults, the config file, then the
    small sizes (plain Python values; ``method`` lower-cased as OpenSTL's experiment does)."""
    values = {**parser_defaults(repo), **config_file(repo, config), **small}
    values.update(method=str(values["method"]).lower(), device="cpu",
                  in_shape=[context, channels, SIZE, SIZE], pre_seq_length=context,
                  aft_seq_length=horizon, total_length=context + horizon,
                  metrics=["mse", "mae"], steps_per_epoch=1, save_dir="work_dirs/Debug")
    return values


# -- random weights ------------------------------------------------------------------------------


NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)
CONVS = (nn.Conv2d, nn.Conv3d)


def unit_scale(module: nn.Module, output_scale: float = 1.0) -> None:
    """Convolutions of unit-scale pre-activations, the last one (``conv_last``) N(0,
    ``output_scale``) so that the outputs are of order 1 and 1e-5 is a tight tolerance;
    LayerNorm scales near 1, all shifts and biases near 0."""
    with torch.no_grad():
        for name, part in module.named_modules():
            weight, bias = getattr(part, "weight", None), getattr(part, "bias", None)
            if isinstance(part, NORMS):
                weight.copy_(1 + 0.1 * torch.randn_like(weight))
            elif isinstance(part, CONVS):
                weight.normal_(0.0, output_scale if name == "conv_last"
                               else 1 / math.sqrt(weight[0].numel()))
            else:
                continue
            if bias is not None:
                bias.normal_(0.0, 0.1)


def uniform(module: nn.Module) -> None:
    """MIM: every weight U(-0.4, 0.4) (its peepholes start at zero), LayerNorm scales near 1,
    the output convolution N(0, 1)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.uniform_(-0.4, 0.4)
        for name, part in module.named_modules():
            if isinstance(part, nn.LayerNorm):
                part.weight.copy_(1 + 0.2 * torch.randn_like(part.weight))
        module.get_submodule("conv_last").weight.normal_(0.0, 1.0)


def layer_norms(module: nn.Module) -> None:
    """MAU: OpenSTL's init, its LayerNorms (which start at 1 and 0) made random, the head
    (``srcnn``) larger: outputs of order 1."""
    with torch.no_grad():
        for part in module.modules():
            if isinstance(part, nn.LayerNorm):
                part.weight.copy_(1 + 0.2 * torch.randn_like(part.weight))
                part.bias.normal_(0.0, 0.2)
        module.get_submodule("srcnn.0").weight.normal_(0.0, 2.0)


def everything(module: nn.Module) -> None:
    """PhyDNet: OpenSTL's init plus noise, so that the GroupNorms' 1 and 0 are random too."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))


def simvp_perturbed(module: nn.Module) -> None:
    """SimVP / TAU: every bias, norm, layer scale and BatchNorm statistic perturbed, linear
    layers of unit scale, the attention convolutions N(0, 2 / fan-out) (as make_simvp.py)."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn_like(tensor)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand_like(tensor))
            elif name.endswith(("running_mean", "bias")):
                tensor.add_(0.1 * noise)
            elif "norm" in name and name.endswith("weight"):
                tensor.copy_(1 + 0.2 * noise)
            elif "layer_scale" in name:
                tensor.copy_(0.5 * noise)
            elif tensor.ndim == 2:
                tensor.copy_(noise / tensor.shape[1] ** 0.5)
            elif "spatial_gating_unit" in name and tensor.ndim == 4:
                fan_out = tensor.shape[0] * tensor.shape[2] * tensor.shape[3]
                if tensor.shape[1] == 1:
                    fan_out //= tensor.shape[0]
                tensor.copy_(noise * (2.0 / fan_out) ** 0.5)


# -- OpenSTL's test paths ------------------------------------------------------------------------


def recurrent_test(model: nn.Module, hp: dict[str, Any], x: Tensor, y: Tensor,
                   patched: bool = True) -> Tensor:
    """OpenSTL's PredRNN method's ``forward`` (PredRNN++, MIM and E3D-LSTM inherit it): the clip
    patched, ``real_input_flag`` all zeros, the last K predictions unpatched. ``patched=False``:
    its MAU method's, which feeds the clip as it is (patch_size 1) and gets frames back."""
    from openstl.utils import reshape_patch, reshape_patch_back

    patch, (_, channels, height, width) = hp["patch_size"], hp["in_shape"]
    clip = torch.cat([x, y], dim=1).permute(0, 1, 3, 4, 2).contiguous()
    flag = torch.zeros(x.shape[0], hp["total_length"] - hp["pre_seq_length"] - 1,
                       height // patch, width // patch, patch * patch * channels)
    if not patched:
        return model(clip, flag, return_loss=False)[0][:, -hp["aft_seq_length"]:]
    generated, _ = model(reshape_patch(clip, patch), flag, return_loss=False)
    generated = reshape_patch_back(generated, patch)
    return generated[:, -hp["aft_seq_length"]:].permute(0, 1, 4, 2, 3).contiguous()


def phydnet_test(model: nn.Module, hp: dict[str, Any], x: Tensor, y: Tensor) -> Tensor:
    """OpenSTL's PhyDNet method's ``forward``: ``inference`` without the loss."""
    k = model.encoder.phycell.cell_list[0].kernel_size[0]
    predictions, _ = model.inference(x, y, torch.zeros(k * k, k, k), return_loss=False)
    return predictions


def simvp_test(model: nn.Module, hp: dict[str, Any], x: Tensor, y: Tensor) -> Tensor:
    """OpenSTL's SimVP method's ``forward`` for K > J: whole blocks, each from the last, then
    the last block cut to K."""
    horizon, context = hp["aft_seq_length"], hp["pre_seq_length"]
    blocks, current = [], x
    for _ in range(horizon // context):
        current = model(current)
        blocks.append(current)
    if horizon % context:
        blocks.append(model(current)[:, :horizon % context])
    return torch.cat(blocks, dim=1)


# -- the networks --------------------------------------------------------------------------------


def recurrent_network(class_name: str) -> Callable[[dict[str, Any]], nn.Module]:
    def build(hp: dict[str, Any]) -> nn.Module:
        import openstl.models

        hidden = [int(part) for part in hp["num_hidden"].split(",")]
        configs = SimpleNamespace(**{**hp, "reverse_scheduled_sampling": 0})
        return getattr(openstl.models, class_name)(len(hidden), hidden, configs)
    return build


@contextlib.contextmanager
def regrouped(groups: dict[int, int]) -> Iterator[None]:
    """While building: ``nn.GroupNorm(g, c)`` gets ``groups[c]`` groups where given."""
    group_norm = nn.GroupNorm

    def build(num_groups: int, num_channels: int, *args: Any, **kwargs: Any) -> nn.Module:
        return group_norm(groups.get(num_channels, num_groups), num_channels, *args, **kwargs)

    nn.GroupNorm = build  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        nn.GroupNorm = group_norm  # type: ignore[misc]


PHYDNET = {"nf": 4, "latent": 8, "kernel": 5, "convlstm": [4, 8], "groups": 2}


def phydnet_network(hp: dict[str, Any]) -> nn.Module:
    """OpenSTL's PhyDNet_Model with its parts (same classes, same attribute names and order)
    at the PHYDNET widths."""
    from openstl.models import PhyDNet_Model
    from openstl.modules import K2M, PhyCell, PhyD_ConvLSTM, PhyD_EncoderRNN, phydnet_modules

    nf, latent, k = PHYDNET["nf"], PHYDNET["latent"], PHYDNET["kernel"]
    patch, (_, channels, height, width) = hp["patch_size"], hp["in_shape"]
    grid = (height // patch, width // patch)
    with regrouped({nf: PHYDNET["groups"], latent: PHYDNET["groups"], k * k: k}):
        model = PhyDNet_Model.__new__(PhyDNet_Model)
        nn.Module.__init__(model)
        model.pre_seq_length, model.aft_seq_length = hp["pre_seq_length"], hp["aft_seq_length"]
        model.phycell = PhyCell(input_shape=grid, input_dim=latent, F_hidden_dims=[k * k],
                                n_layers=1, kernel_size=(k, k), device="cpu")
        model.convcell = PhyD_ConvLSTM(input_shape=grid, input_dim=latent,
                                       hidden_dims=PHYDNET["convlstm"],
                                       n_layers=len(PHYDNET["convlstm"]), kernel_size=(3, 3),
                                       device="cpu")
        encoder = PhyD_EncoderRNN(model.phycell, model.convcell, in_channel=channels,
                                  patch_size=patch)
        encoder.encoder_E = phydnet_modules.encoder_E(nc=channels, nf=nf, patch_size=patch)
        for name in ("encoder_Ep", "encoder_Er"):
            setattr(encoder, name, phydnet_modules.encoder_specific(nc=latent, nf=latent))
        for name in ("decoder_Dp", "decoder_Dr"):
            setattr(encoder, name, phydnet_modules.decoder_specific(nc=latent, nf=latent))
        encoder.decoder_D = phydnet_modules.decoder_D(nc=channels, nf=nf, patch_size=patch)
        model.encoder = encoder
        model.k2m = K2M([k, k])
        model.criterion = nn.MSELoss()
    return model


def simvp_network(hp: dict[str, Any]) -> nn.Module:
    from openstl.models import SimVP_Model

    return SimVP_Model(**hp)  # as OpenSTL's SimVP method builds it, from the run config


@dataclass
class Fixture:
    """The scratch folder, predlearn's model, OpenSTL's config (configs/mmnist/) and the small
    sizes over it, J, K, channels, how OpenSTL's network is built, made random and run, and
    the options the import needs beyond the file."""

    folder: str
    model: str
    config: str
    small: dict[str, Any]
    context: int
    horizon: int
    channels: int
    build: Callable[[dict[str, Any]], nn.Module]
    randomise: Callable[[nn.Module], None]
    test: Callable[[nn.Module, dict[str, Any], Tensor, Tensor], Tensor]
    options: dict[str, Any] = field(default_factory=dict)


RECURRENT = {"filter_size": 3, "stride": 1, "patch_size": 2, "layer_norm": 0}
SIMVP = {"hid_S": 4, "hid_T": 16, "N_S": 4, "N_T": 3, "spatio_kernel_enc": 5,
         "spatio_kernel_dec": 3}
FIXTURES = {
    # three layers (one above the GHU), two channels (the patch channel order); its top
    # hidden state is small: a larger output scale
    "predrnn_pp": Fixture("ref-predrnn_pp", "predrnn_pp", "PredRNNpp",
                          {**RECURRENT, "num_hidden": "4,4,4"}, 3, 2, 2,
                          recurrent_network("PredRNNpp_Model"),
                          functools.partial(unit_scale, output_scale=5.0), recurrent_test),
    # three layers (a MIM-N fed by the one below), layer normalisation, two channels
    "mim": Fixture("ref-mim", "mim", "MIM", {**RECURRENT, "num_hidden": "3,3,3", "layer_norm": 1},
                   3, 2, 2, recurrent_network("MIM_Model"), uniform, recurrent_test),
    # its filters (2, 5, 5) are fixed in its code: filter_size stays the config's 5, unread
    "e3d_lstm": Fixture("ref-e3d_lstm", "e3d_lstm", "E3DLSTM",
                        {"stride": 1, "patch_size": 2, "layer_norm": 0, "num_hidden": "3,3"},
                        3, 2, 1, recurrent_network("E3DLSTM_Model"), unit_scale, recurrent_test),
    # OpenSTL's MAU method feeds unpatched frames: its config's patch_size 1; 4 steps > tau 2
    "mau": Fixture("ref-mau", "mau", "MAU", {"num_hidden": "4,4,4", "filter_size": 3, "tau": 2},
                   3, 2, 1, recurrent_network("MAU_Model"), layer_norms,
                   functools.partial(recurrent_test, patched=False)),
    "phydnet": Fixture("ref-phydnet", "phydnet", "PhyDNet", {}, 3, 2, 1, phydnet_network,
                       everything, phydnet_test, {"norm_groups": PHYDNET["groups"]}),
    "simvp_incepu": Fixture("ref-simvp", "simvp", "simvp/SimVP_IncepU", SIMVP, 4, 5, 1,
                            simvp_network, simvp_perturbed, simvp_test),
    "simvp_gsta": Fixture("ref-simvp", "simvp", "simvp/SimVP_gSTA", SIMVP, 4, 5, 1,
                          simvp_network, simvp_perturbed, simvp_test),
    "tau": Fixture("ref-simvp", "tau", "TAU", SIMVP, 4, 5, 1, simvp_network, simvp_perturbed,
                   simvp_test),
}


@contextlib.contextmanager
def reference(folder: Path) -> Iterator[None]:
    """``folder``'s ``openstl`` (and ``timm``) importable, and forgotten afterwards."""
    def forget() -> None:
        for name in [n for n in sys.modules if n.split(".")[0] in ("openstl", "timm")]:
            del sys.modules[name]

    forget()
    sys.path.insert(0, str(folder.resolve()))
    try:
        yield
    finally:
        sys.path.remove(str(folder.resolve()))
        forget()


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def make(name: str, scratch: Path, repo: Path, out: Path) -> float:
    """Build, save, import and compare one fixture; its max |ours - OpenSTL| in float32 (and,
    checked, in float64: the conversion is exact, whatever float32's rounding does)."""
    fixture = FIXTURES[name]
    hp = run_config(repo, fixture.config, fixture.small, fixture.context, fixture.horizon,
                    fixture.channels)
    horizon, shape = fixture.horizon, (BATCH, fixture.channels, SIZE, SIZE)
    path = out / f"{name}.ckpt"
    out.mkdir(parents=True, exist_ok=True)
    with reference(scratch / fixture.folder), torch.no_grad():
        torch.manual_seed(0)
        network = fixture.build(hp).eval()
        fixture.randomise(network)
        fresh = copy.deepcopy(network)  # MIM keeps a state on its modules between calls
        frames = torch.rand(shape[0], fixture.context, *shape[1:])
        targets = torch.rand(shape[0], horizon, *shape[1:])  # masked out: unused
        outputs = fixture.test(network, hp, frames, targets).detach().clone()
        state = {f"model.{key}": value.detach().clone()
                 for key, value in network.state_dict().items()}
        torch.save({"epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.9.0",
                    "state_dict": state, "hyper_parameters": hp}, path)
        imported = import_weights(path, "openstl", fixture.model, options=fixture.options)
        ours = imported.predictor(frames, horizon)
        with default_dtype(torch.float64):
            exact = (copy.deepcopy(imported.predictor).double()(frames.double(), horizon)
                     - fixture.test(fresh.double(), hp, frames.double(), targets.double())
                     ).abs().max().item()
    diff = (ours - outputs).abs().max().item()
    print(f"{name}: {len(state)} tensors ({path.stat().st_size / 1024:.0f} KB), max |output| "
          f"{outputs.abs().max().item():.2f}, max |ours - OpenSTL| {diff:.2e} (float64: "
          f"{exact:.1e})")
    assert ours.shape == outputs.shape and diff <= TOLERANCE and exact <= 1e-10, (name, diff)
    torch.save({"frames": frames, "horizon": horizon, "outputs": outputs,
                "model": fixture.model, "options": fixture.options,
                "openstl_commit": OPENSTL_COMMIT}, out / f"{name}.expected.pt")
    return diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp"),
                        help="the folder holding ref-<model>/ (see the docstring)")
    parser.add_argument("--openstl", type=Path,
                        default=Path("/work/.mirror/chengtan9907+OpenSTL/repo"),
                        help="a clone or mirror of OpenSTL holding its commit c74deb5")
    parser.add_argument("--out", type=Path, default=HERE / "openstl")
    parser.add_argument("--only", nargs="*", choices=sorted(FIXTURES), default=sorted(FIXTURES))
    args = parser.parse_args()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    for name in args.only:
        make(name, args.scratch, args.openstl, args.out)


if __name__ == "__main__":
    main()
