"""Build the import fixtures of PredRNN, PredRNN v2 (the authors' predrnn-pytorch and OpenSTL)
and ConvLSTM (OpenSTL): each source's network with random weights, saved in its own checkpoint
format, with its predictions of fixed frames; ``tests/test_import_weights.py`` imports the files
and compares predlearn's predictions with those.

    python tests/reference/weights/make_predrnn_family.py \
        --authors /tmp/ref-predrnn-pytorch --openstl /tmp/ref-openstl-family

``--authors``: a folder holding the authors' ``core/`` package (thuml/predrnn-pytorch, commit
49d3b0f3a2757ad9c299716ec455a96868455d67); ``core/utils/tsne.py`` (matplotlib, scikit-learn) is
replaced by a stub, since only its name is imported. ``--openstl``: a folder with OpenSTL's
``openstl/models/{convlstm,predrnn,predrnnv2}_model.py``, ``openstl/modules/`` of the same three
and ``openstl/utils/predrnn_utils.py``, with ``__init__.py`` files that import only those
(OpenSTL commit c74deb5d4c3da585291f9f18281f3fefdbba3a54).

Small networks (16 x 16 frames, patches of 2, two or three layers of 4 channels, J = 3, K = 2,
batch 2) run in float32 in each source's test path: the closed loop, ``mask_true`` all zeros,
``reverse_scheduled_sampling`` 0. The authors' PredRNN has three channels and layer
normalisation, so that the patch channel order and the LayerNorms are exercised. Before a fixture
is written, the file is imported with ``predlearn.weight_import.import_weights`` and predlearn's
prediction must agree within 1e-5.
"""

from __future__ import annotations

import argparse
import math
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from predlearn.weight_import import import_weights

HERE = Path(__file__).parent
TOLERANCE = 1e-5
SIZE, PATCH, CONTEXT, HORIZON, BATCH = 16, 2, 3, 2, 2
AUTHORS_COMMIT = "49d3b0f3a2757ad9c299716ec455a96868455d67"
OPENSTL_COMMIT = "c74deb5d4c3da585291f9f18281f3fefdbba3a54"


def randomise(module: nn.Module, output_scale: float = 1.0) -> None:
    """Unit-scale pre-activations; the last 1x1 convolution larger (``output_scale``: outputs of
    order 1, so that 1e-5 is a tight tolerance); LayerNorm scales near 1, shifts near 0."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name == "conv_last.weight":
                p.normal_(0.0, output_scale)
            elif p.ndim == 4:
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()))
            elif name.endswith("weight") and p.ndim > 1:  # LayerNorm over (C, H, W)
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.1)


def patched(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> the sources' (B, T, H/p, W/p, p*p*C), their (py, px, c) order."""
    b, t, c, h, w = frames.shape
    x = frames.permute(0, 1, 3, 4, 2).reshape(b, t, h // PATCH, PATCH, w // PATCH, PATCH, c)
    return x.transpose(3, 4).reshape(b, t, h // PATCH, w // PATCH, PATCH * PATCH * c)


def unpatched(x: torch.Tensor, channels: int) -> torch.Tensor:
    b, t, hp, wp, _ = x.shape
    x = x.reshape(b, t, hp, wp, PATCH, PATCH, channels).transpose(3, 4)
    return x.reshape(b, t, hp * PATCH, wp * PATCH, channels).permute(0, 1, 4, 2, 3)


def closed_loop(network: nn.Module, frames: torch.Tensor, channels: int, openstl: bool
                ) -> torch.Tensor:
    """The source's test path: J frames and K unused targets in, the last K predictions out."""
    torch.manual_seed(3)
    clip = torch.cat([frames, torch.rand(BATCH, HORIZON, channels, SIZE, SIZE)], dim=1)
    inputs = patched(clip)
    mask = torch.zeros(BATCH, HORIZON - 1, *inputs.shape[2:])
    with torch.no_grad():
        out = network(inputs, mask, return_loss=False) if openstl else network(inputs, mask)
    return unpatched(out[0], channels)[:, -HORIZON:]


def check_and_write(network: nn.Module, path: Path, contents: dict, source: str, model: str,
                    frames: torch.Tensor, outputs: torch.Tensor, options: dict) -> float:
    """Save ``contents`` (the source's checkpoint format), import it, compare, write the
    expected predictions beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(contents, path)
    imported = import_weights(path, source, model, options=options)
    with torch.no_grad():
        ours = imported.predictor(frames, HORIZON)
    diff = (ours - outputs).abs().max().item()
    print(f"{source} {model}: {len(contents.get('net_param', contents.get('state_dict', {})))} "
          f"tensors, max |output| {outputs.abs().max().item():.2f}, max |diff| {diff:.2e}")
    assert diff <= TOLERANCE, diff
    expected = {"frames": frames, "horizon": HORIZON, "outputs": outputs, "options": options,
                "source_commit": AUTHORS_COMMIT if source == "predrnn-pytorch" else OPENSTL_COMMIT}
    torch.save(expected, path.with_name(path.name.split(".")[0] + ".expected.pt"))
    return diff


def authors(folder: Path) -> None:
    sys.path.insert(0, str(folder.resolve()))
    sys.modules["core.utils.tsne"] = types.SimpleNamespace(visualization=None)  # type: ignore
    from core.models import predrnn, predrnn_v2

    for model, module, channels, layer_norm in (("predrnn", predrnn, 3, 1),
                                                ("predrnn_v2", predrnn_v2, 1, 0)):
        torch.manual_seed(0)
        configs = SimpleNamespace(
            patch_size=PATCH, img_channel=channels, img_width=SIZE, filter_size=3, stride=1,
            layer_norm=layer_norm, device="cpu", input_length=CONTEXT,
            total_length=CONTEXT + HORIZON, reverse_scheduled_sampling=0, visual=0,
            visual_path="", decouple_beta=0.1)
        network = module.RNN(2, [4, 4], configs).eval()
        randomise(network)
        frames = torch.rand(BATCH, CONTEXT, channels, SIZE, SIZE)
        outputs = closed_loop(network, frames, channels, openstl=False)
        # what a user of the authors' scripts gives: the channels and the frame size
        options = {"frame_channels": channels, "frame_size": [SIZE, SIZE]}
        check_and_write(network, HERE / "predrnn-pytorch" / f"{model}.ckpt-1",
                        {"net_param": network.state_dict()}, "predrnn-pytorch", model, frames,
                        outputs, options)
    sys.path.remove(str(folder.resolve()))


def openstl(folder: Path) -> None:
    sys.path.insert(0, str(folder.resolve()))  # parser.py (OpenSTL's defaults) lies beside it
    from openstl.models import ConvLSTM_Model, PredRNN_Model, PredRNNv2_Model
    from parser import default_parser  # type: ignore[import-not-found]

    # ConvLSTM's top hidden state is small (no zigzag memory feeds it): a larger output scale
    for model, cls, method, layers, scale in (("convlstm", ConvLSTM_Model, "ConvLSTM", 3, 15.0),
                                              ("predrnn", PredRNN_Model, "PredRNN", 2, 1.0),
                                              ("predrnn_v2", PredRNNv2_Model, "PredRNNv2", 2, 1.0)):
        torch.manual_seed(1)
        # OpenSTL's run config: its parser defaults, configs/mmnist/<method>.py, then the small
        # sizes; Base_method.save_hyperparameters() stores it as the checkpoint's hyper_parameters
        hparams = {**default_parser(), "method": method, "reverse_scheduled_sampling": 0,
                   "scheduled_sampling": 1, "num_hidden": ",".join(["4"] * layers),
                   "filter_size": 3, "stride": 1, "patch_size": PATCH, "layer_norm": 0,
                   "lr": 5e-4, "in_shape": [CONTEXT + HORIZON, 1, SIZE, SIZE],
                   "pre_seq_length": CONTEXT, "aft_seq_length": HORIZON,
                   "total_length": CONTEXT + HORIZON, "device": "cpu"}
        if method == "PredRNNv2":
            hparams.update(reverse_scheduled_sampling=1, decouple_beta=0.1)
        configs = SimpleNamespace(**{**hparams, "reverse_scheduled_sampling": 0})
        network = cls(layers, [4] * layers, configs).eval()
        randomise(network, scale)
        frames = torch.rand(BATCH, CONTEXT, 1, SIZE, SIZE)
        outputs = closed_loop(network, frames, 1, openstl=True)
        contents = {"epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.9.0",
                    "state_dict": {f"model.{k}": v for k, v in network.state_dict().items()},
                    "hyper_parameters": hparams}
        check_and_write(network, HERE / "openstl" / f"{model}.ckpt", contents, "openstl", model,
                        frames, outputs, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", type=Path, required=True)
    parser.add_argument("--openstl", type=Path, required=True)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float32)
    np.random.seed(0)
    authors(args.authors)
    openstl(args.openstl)


if __name__ == "__main__":
    main()
