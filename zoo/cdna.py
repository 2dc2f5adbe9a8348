"""CDNA: convolutional dynamic neural advection (Finn, Goodfellow, Levine 2016; paper §4.1).

See docs/models.md#cdna.

A ConvLSTM encoder-decoder predicts, at each step, a few normalised convolution kernels shared by
the whole image and per-pixel compositing masks. The next frame is the previous frame moved by each
kernel, blended by the masks together with a static background: the model predicts pixel motion,
not pixels from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.errors import require
from predlearn.predictor import (
    Predictor,
    check_choice,
    check_frame,
    check_kernel_size,
    check_positive,
)
from predlearn.zoo.cells.conv_lstm import ConvLSTMCell

# (h, c) of each of the seven ConvLSTM layers.
CDNAState = list[tuple[Tensor, Tensor]]

_DOWNSAMPLING = 8  # three stride-2 stages between the frame and the bottleneck


def apply_cdna(previous: Tensor, kernels: Tensor, masks: Tensor, background: Tensor) -> Tensor:
    """Composite the previous frame moved by each kernel, and the background, with the masks.

    ``out = sum_n masks[:, n] * (kernels[:, n] * previous) + masks[:, N] * background``, where
    ``*`` is a per-sample 2-D cross-correlation with zero padding ("same" size), each kernel
    applied to every channel of ``previous``. Shapes: ``previous`` and ``background``
    (B, C, H, W); ``kernels`` (B, N, k, k) with k odd; ``masks`` (B, N + 1, H, W), the background
    weight last. Normalisation is the caller's: with kernels and masks that sum to 1 (as the model
    makes them), the output is a convex combination of pixels of ``previous`` and ``background``.
    """
    if previous.ndim != 4 or background.shape != previous.shape:
        raise ValueError(
            "previous and background must both be (B, C, H, W); got "
            f"{tuple(previous.shape)} and {tuple(background.shape)}"
        )
    batch, channels, height, width = previous.shape
    if kernels.ndim != 4 or kernels.shape[0] != batch or kernels.shape[2] != kernels.shape[3]:
        raise ValueError(f"kernels must be (B, N, k, k) with B = {batch}; got {tuple(kernels.shape)}")
    num_kernels, size = kernels.shape[1], kernels.shape[-1]
    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd ('same' output); got {size}")
    if tuple(masks.shape) != (batch, num_kernels + 1, height, width):
        raise ValueError(
            f"masks must be (B, N + 1, H, W) = {(batch, num_kernels + 1, height, width)}; "
            f"got {tuple(masks.shape)}"
        )
    # One group per (sample, channel): its single input channel meets that sample's N kernels.
    weight = kernels.unsqueeze(1).expand(batch, channels, num_kernels, size, size)
    weight = weight.reshape(batch * channels * num_kernels, 1, size, size)
    moved = F.conv2d(previous.reshape(1, batch * channels, height, width), weight,
                     padding=size // 2, groups=batch * channels)
    moved = moved.view(batch, channels, num_kernels, height, width)
    blended = (moved * masks[:, None, :num_kernels]).sum(dim=2)
    return blended + masks[:, num_kernels:] * background


def _layer_norm(channels: int, enabled: bool) -> nn.Module:
    # GroupNorm with one group normalises over (C, H, W) with a per-channel scale and shift: the
    # layer normalisation of Finn et al.'s released TensorFlow code.
    return nn.GroupNorm(1, channels) if enabled else nn.Identity()


class CDNA(Predictor):
    """CDNA (Finn et al. 2016): a 7-layer ConvLSTM encoder-decoder predicting kernels and masks.

    Layout, as in the authors' released TensorFlow code (``prediction_model.py``): a 5x5 stride-2
    convolution (width ``widths[0]``), ConvLSTM 1-2, a 3x3 stride-2 convolution, ConvLSTM 3-4, a 3x3
    stride-2 convolution and a 1x1 convolution, ConvLSTM 5 (the bottleneck, 1/8 of the frame),
    then three 3x3 stride-2 transposed convolutions interleaved with ConvLSTM 6-7 and skip
    connections (ConvLSTM 6 output joined with the first stride-2 convolution's output, ConvLSTM 7
    output with the stem's). Convolutions use ReLU; layer normalisation follows the stem, every
    ConvLSTM and the last transposed convolution. A fully connected layer maps the flattened
    bottleneck to ``num_kernels`` kernels of ``kernel_size`` squared; a 1x1 convolution maps the
    last decoder layer to ``num_kernels + 1`` mask logits, softmax over them at every pixel.

    Choices and departures from the original (each an option where it matters):

    - Kernels are normalised by a softmax over each kernel's taps (Finn et al. 2016). The released
      code uses ``relu(x - 1e-7) + 1e-7`` then division by the sum: ``kernel_norm="relu"``.
    - Masks: the ``num_kernels`` moved images plus one background, the background weight last.
      ``background="first"`` (default) composites the first observed frame as the static
      background (Finn et al. 2016); the released code weights the *previous* frame with its mask 0:
      ``background="previous"``. The released code also blends an image generated from scratch
      (a sigmoid 1x1 convolution of the decoder), which is left out here (pure pixel motion), and
      its action/state inputs are dropped (these data sets have none); the 1x1 convolution that
      followed their concatenation is kept.
    - The mask convolution has no activation before the softmax (some versions of the released
      code applied slim's default ReLU there).
    - ConvLSTMs are ``predlearn.zoo.cells.ConvLSTMCell`` without peepholes (the released code's
      cell has none; ``peephole=True`` adds them) and with the forget-gate bias initialised to
      ``forget_bias``: the released code adds a constant 1.0 to a zero-initialised learned bias,
      which is the same function family. Other weights use PyTorch's default initialisation.
    - Frame sizes not divisible by 8: the frame is zero-padded at the bottom and right to the next
      multiple of 8 for the encoder, and the decoder output is cropped back to the frame size
      before the masks. Kernels and masks act on the unpadded frame.
    - The stem's width is ``widths[0]`` (32 in the released code, equal to its first ConvLSTM).

    Args:
        frame_channels: channels of a frame; the kernels act on every channel alike.
        frame_size: (height, width) of a frame; fixes the size of the kernel layer's input.
        widths: widths of the seven ConvLSTM layers, encoder then decoder.
        num_kernels: number of CDNA kernels (N).
        kernel_size: side of each kernel (odd).
        lstm_kernel_size: filter size of the ConvLSTM convolutions.
        background: ``"first"`` (first observed frame) or ``"previous"`` (the last input frame).
        kernel_norm: ``"softmax"`` or ``"relu"`` (the released code's normalisation).
        layer_norm: layer normalisation after the stem, the ConvLSTMs and the last decoder layer.
        peephole: ConvLSTM peepholes (Shi et al.); off in the released code.
        forget_bias: initial forget-gate bias of the ConvLSTMs.
    """

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model."""
        return {"widths": [2, 3, 2, 3, 4, 2, 3]}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: tuple[int, int] = (64, 64),
        widths: Sequence[int] = (32, 32, 64, 64, 128, 64, 32),  # Finn et al. code: lstm_size
        num_kernels: int = 10,  # Finn et al. 2016: 10 kernels
        kernel_size: int = 5,  # Finn et al. 2016: 5x5 kernels
        lstm_kernel_size: int = 5,  # Finn et al. code: 5x5 ConvLSTM filters
        background: Literal["first", "previous"] = "first",
        kernel_norm: Literal["softmax", "relu"] = "softmax",  # Finn et al. 2016: softmax-normalised
        layer_norm: bool = True,  # Finn et al. code: layer normalisation throughout
        peephole: bool = False,  # Finn et al. code: ConvLSTM without peepholes
        forget_bias: float = 1.0,  # Finn et al. code: forget bias 1.0
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        require(len(widths) == 7 and min(widths) >= 1, "widths",
                f"needs seven positive ConvLSTM widths; got {widths}", widths)
        check_kernel_size("kernel_size", kernel_size)
        check_kernel_size("lstm_kernel_size", lstm_kernel_size)
        check_positive("num_kernels", num_kernels)
        check_choice("background", background, ("first", "previous"))
        check_choice("kernel_norm", kernel_norm, ("softmax", "relu"))
        height, width = check_frame(frame_channels, frame_size)
        self.frame_channels = frame_channels
        self.frame_size = (height, width)
        self.widths = widths
        self.num_kernels = num_kernels
        self.kernel_size = kernel_size
        self.background = background
        self.kernel_norm = kernel_norm
        padded = [-(-s // _DOWNSAMPLING) * _DOWNSAMPLING for s in (height, width)]
        self.padded_size = (padded[0], padded[1])
        grids = [(padded[0] // f, padded[1] // f) for f in (2, 4, 8)]
        w0, w1, w2, w3, w4, w5, w6 = widths

        def lstm(inputs: int, hidden: int, grid: tuple[int, int]) -> ConvLSTMCell:
            cell = ConvLSTMCell(inputs, hidden, lstm_kernel_size, grid, peephole=peephole)
            with torch.no_grad():  # gate order g, i, f, o in the cell's stacked convolution
                cell.conv_x.bias[2 * hidden:3 * hidden] = forget_bias
            return cell

        self.stem = nn.Sequential(nn.Conv2d(frame_channels, w0, 5, stride=2, padding=2),
                                  _layer_norm(w0, layer_norm), nn.ReLU())
        # Layer input widths follow the skip connections of the released code.
        self.cells = nn.ModuleList([
            lstm(w0, w0, grids[0]),
            lstm(w0, w1, grids[0]),
            lstm(w1, w2, grids[1]),
            lstm(w2, w3, grids[1]),
            lstm(w3, w4, grids[2]),
            lstm(w4, w5, grids[1]),
            lstm(w5 + w1, w6, grids[0]),
        ])
        self.norms = nn.ModuleList(_layer_norm(w, layer_norm) for w in widths)
        self.down1 = nn.Sequential(nn.Conv2d(w1, w1, 3, stride=2, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(w3, w3, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(w3, w3, 1), nn.ReLU())
        self.up1 = nn.Sequential(_up(w4, w4), nn.ReLU())
        self.up2 = nn.Sequential(_up(w5 + w1, w5 + w1), nn.ReLU())
        self.up3 = nn.Sequential(_up(w6 + w0, w6 + w0), _layer_norm(w6 + w0, layer_norm),
                                 nn.ReLU())
        self.kernel_head = nn.Linear(w4 * grids[2][0] * grids[2][1],
                                     num_kernels * kernel_size**2)
        self.mask_head = nn.Conv2d(w6 + w0, num_kernels + 1, 1)

    def init_states(self, batch: int, reference: Tensor) -> CDNAState:
        """Zero (h, c) for every ConvLSTM layer, on the device and dtype of ``reference``."""
        # the ModuleList holds ConvLSTMCells but gives them to the type checker as modules
        cells = cast("Iterable[ConvLSTMCell]", self.cells)
        return [
            (reference.new_zeros(batch, cell.hidden_channels, *cell.spatial_size),) * 2
            for cell in cells
        ]

    def transform_parameters(
        self, frame: Tensor, states: CDNAState
    ) -> tuple[Tensor, Tensor, CDNAState]:
        """Advance the ConvLSTMs on ``frame``; return kernels, masks and the new states.

        Kernels are (B, N, k, k), non-negative and summing to 1; masks are (B, N + 1, H, W),
        summing to 1 over N + 1 at every pixel (the background weight last).
        """
        height, width = self.frame_size
        x = F.pad(frame, (0, self.padded_size[1] - width, 0, self.padded_size[0] - height))
        new_states = list(states)

        def run(layer: int, inputs: Tensor) -> Tensor:
            h, c, _ = self.cells[layer](inputs, *states[layer])
            new_states[layer] = (h, c)
            return self.norms[layer](h)

        enc0 = self.stem(x)
        hidden = run(1, run(0, enc0))
        enc1 = self.down1(hidden)
        bottleneck = run(4, self.down2(run(3, run(2, enc1))))
        hidden = run(5, self.up1(bottleneck))
        hidden = run(6, self.up2(torch.cat([hidden, enc1], dim=1)))
        decoded = self.up3(torch.cat([hidden, enc0], dim=1))[..., :height, :width]

        batch, k = frame.shape[0], self.kernel_size
        logits = self.kernel_head(bottleneck.flatten(1)).view(batch, self.num_kernels, k * k)
        if self.kernel_norm == "softmax":
            kernels = torch.softmax(logits, dim=-1)
        else:
            shifted = F.relu(logits - 1e-7) + 1e-7
            kernels = shifted / shifted.sum(dim=-1, keepdim=True)
        masks = torch.softmax(self.mask_head(decoded), dim=1)
        return kernels.view(batch, self.num_kernels, k, k), masks, new_states

    def step(
        self, frame: Tensor, background: Tensor, states: CDNAState
    ) -> tuple[Tensor, CDNAState]:
        """One step: the next frame predicted from ``frame`` (the previous one) and new states."""
        kernels, masks, states = self.transform_parameters(frame, states)
        return apply_cdna(frame, kernels, masks, background), states

    def initial_state(self, frames: Tensor) -> tuple[CDNAState, Tensor]:
        """Zero ConvLSTM states and the first observed frame (the static background)."""
        return self.init_states(frames.shape[0], frames), frames[:, 0]

    def transition(
        self, inputs: Tensor, state: tuple[CDNAState, Tensor], predict: bool = True
    ) -> tuple[Tensor, tuple[CDNAState, Tensor]]:
        """One step of the shared rollout: the previous frame moved by this step's kernels."""
        lstm_states, first = state
        background = first if self.background == "first" else inputs
        prediction, lstm_states = self.step(inputs, background, lstm_states)
        return prediction, (lstm_states, first)


def _up(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """A 3x3 stride-2 transposed convolution that exactly doubles the grid."""
    return nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)


__all__ = ["CDNA", "apply_cdna"]
