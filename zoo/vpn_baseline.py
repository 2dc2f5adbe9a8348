"""The VPN baseline (Kalchbrenner et al. 2017, "Video Pixel Networks"; paper §4.1).

See docs/models.md#vpn-baseline.

The Video Pixel Network's resolution-preserving encoder of residual multiplicative blocks and its
ConvLSTM over time, with the PixelCNN decoder replaced by a CNN that emits each frame in one pass
(a deterministic predictor, as the PredRNN paper's Table 1-2 baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
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


class MultiplicativeUnit(nn.Module):
    """The VPN's multiplicative unit (MU) on ``channels`` channels, resolution preserving.

    g1 = sigma(W1 * h), g2 = sigma(W2 * h), g3 = sigma(W3 * h), u = tanh(W4 * h),
    MU(h) = g1 o tanh(g2 o h + g3 o u). The four k x k convolutions (dilated by ``dilation``,
    'same' padding) are stacked in one convolution of 4 * channels outputs, in the order
    W1, W2, W3, W4. The VPN paper writes the equations without biases; ``bias`` adds them.
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, dilation: int = 1, bias: bool = True
    ) -> None:
        super().__init__()
        check_positive("channels", channels)
        check_positive("dilation", dilation)
        check_kernel_size("kernel_size", kernel_size)
        self.channels = channels
        self.dilation = dilation
        # VPN paper: all W are 3 x 3 convolutions (kernel_size default 3).
        self.conv = nn.Conv2d(channels, 4 * channels, kernel_size,
                              padding=dilation * (kernel_size // 2), dilation=dilation, bias=bias)

    def forward(self, h: Tensor) -> Tensor:
        g1, g2, g3, u = torch.chunk(self.conv(h), 4, dim=1)
        g1, g2, g3, u = torch.sigmoid(g1), torch.sigmoid(g2), torch.sigmoid(g3), torch.tanh(u)
        return g1 * torch.tanh(g2 * h + g3 * u)


class ResidualMultiplicativeBlock(nn.Module):
    """The VPN's residual multiplicative block (RMB) on 2c channels.

    A 1x1 convolution from 2c to c channels, two MUs, a 1x1 convolution back to 2c channels, plus
    the block's input. Both MUs use the block's ``dilation``.
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, dilation: int = 1, bias: bool = True
    ) -> None:
        super().__init__()
        self.channels = channels  # c; the block's input and output have 2c channels
        self.reduce = nn.Conv2d(2 * channels, channels, 1, bias=bias)
        self.mu1 = MultiplicativeUnit(channels, kernel_size, dilation, bias)
        self.mu2 = MultiplicativeUnit(channels, kernel_size, dilation, bias)
        self.expand = nn.Conv2d(channels, 2 * channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.expand(self.mu2(self.mu1(self.reduce(x))))


class VPNBaseline(Predictor):
    """Resolution-preserving RMB encoder per frame, ConvLSTM over time, one-pass RMB decoder.

    Each frame is encoded on its own: a ``input_kernel_size`` convolution from C to 2c channels,
    then one RMB per entry of ``dilations``. A ConvLSTM (``ConvLSTMCell`` of this repository)
    reads the encoded frames; from its hidden state after frame t the decoder emits frame t+1:
    a 1x1 convolution to 2c' channels (only where the ConvLSTM width is not already 2c'),
    ``decoder_blocks`` undilated, unmasked RMBs, and a 1x1 convolution to C channels. After the J
    observed frames each prediction is encoded and fed back (closed loop, paper §1.2), or the
    ground truth where ``teacher_mask`` says so. Nothing is down-sampled anywhere.

    Departures from the VPN and choices where the paper is not specific (each an option):

    - Decoder: the VPN's 12 masked RMBs (a PixelCNN emitting a 256-way distribution per pixel,
      pixel by pixel) become 12 unmasked RMBs without dilation and a 1x1 convolution to C
      continuous values, so a frame comes out in one pass; this is what "VPN baseline" means in
      the PredRNN paper. The decoder gets only the ConvLSTM state, not the frame being generated.
    - Input layer: a 1x1 convolution from C to 2c channels (``input_kernel_size=1``); spatial
      context comes from the RMBs' 3x3 convolutions.
    - Biases in every convolution (``bias=True``); the VPN paper's MU equations have none.
    - ConvLSTM: one layer, 256 channels, 3x3, with Shi et al.'s peepholes (``peephole=True``, as
      this repository's ConvLSTM); the VPN paper does not use peepholes as far as we know.
    - Output: linear, like the PredRNN family (the metrics clip to [0, 1]); ``"sigmoid"`` bounds it.

    Parameters at the default size on 64 x 64 x 1 frames: 32,797,953 (encoder 9,973,248 with
    1,246,592 per RMB; ConvLSTM 7,865,344, of which 3,145,728 are the per-position peepholes;
    decoder 14,959,361).

    Args:
        frame_channels: channels of a frame (1 for Moving MNIST).
        frame_size: (height, width) of a frame (the ConvLSTM's peepholes are per position).
        encoder_channels: c of the encoder's RMBs (2c channels between blocks).
        dilations: one encoder RMB per entry, with that dilation rate.
        lstm_channels: hidden channels of the ConvLSTM.
        lstm_kernel_size: filter size of the ConvLSTM.
        decoder_channels: c of the decoder's RMBs.
        decoder_blocks: number of decoder RMBs.
        kernel_size: filter size of the MUs' convolutions.
        input_kernel_size: filter size of the input convolution (odd).
        peephole: Hadamard peepholes in the ConvLSTM.
        bias: biases in the RMBs' convolutions.
        output_activation: ``"none"`` (linear) or ``"sigmoid"``.
    """

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model."""
        return {"encoder_channels": 2, "dilations": [1, 2], "lstm_channels": 4,
                "decoder_channels": 2, "decoder_blocks": 1}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: tuple[int, int] = (64, 64),
        encoder_channels: int = 128,  # VPN paper: c = 128 (256 channels between blocks)
        dilations: Sequence[int] = (1, 2, 4, 8, 1, 2, 4, 8),  # VPN paper: 8 encoder RMBs
        lstm_channels: int = 256,  # VPN paper: ConvLSTM with 256 channels
        lstm_kernel_size: int = 3,  # VPN paper: 3x3 ConvLSTM
        decoder_channels: int = 128,  # choice: the encoder's c, so 2c = the ConvLSTM's 256
        decoder_blocks: int = 12,  # VPN paper: 12 (masked) decoder RMBs
        kernel_size: int = 3,  # VPN paper: 3x3 convolutions in the MUs
        input_kernel_size: int = 1,
        peephole: bool = True,
        bias: bool = True,
        output_activation: Literal["none", "sigmoid"] = "none",
    ) -> None:
        super().__init__()
        height, width = check_frame(frame_channels, frame_size)
        for name, value in (("encoder_channels", encoder_channels),
                            ("lstm_channels", lstm_channels),
                            ("decoder_channels", decoder_channels)):
            check_positive(name, value)
        dilations = [int(d) for d in dilations]
        require(decoder_blocks >= 0, "decoder_blocks", f"must be >= 0; got {decoder_blocks}",
                decoder_blocks)
        require(all(d >= 1 for d in dilations), "dilations",
                f"must all be positive; got {dilations}", dilations)
        check_kernel_size("kernel_size", kernel_size)
        check_kernel_size("lstm_kernel_size", lstm_kernel_size)
        check_kernel_size("input_kernel_size", input_kernel_size)
        check_choice("output_activation", output_activation, ("none", "sigmoid"))
        self.frame_channels = frame_channels
        self.frame_size = (height, width)
        self.dilations = dilations
        self.output_activation = output_activation

        self.encoder = nn.Sequential(
            nn.Conv2d(frame_channels, 2 * encoder_channels, input_kernel_size,
                      padding=input_kernel_size // 2, bias=bias),
            *(ResidualMultiplicativeBlock(encoder_channels, kernel_size, d, bias)
              for d in dilations),
        )
        self.lstm = ConvLSTMCell(2 * encoder_channels, lstm_channels, lstm_kernel_size,
                                 spatial_size=self.frame_size, peephole=peephole)
        self.decoder = nn.Sequential(
            nn.Conv2d(lstm_channels, 2 * decoder_channels, 1, bias=bias)
            if lstm_channels != 2 * decoder_channels else nn.Identity(),
            *(ResidualMultiplicativeBlock(decoder_channels, kernel_size, 1, bias)
              for _ in range(decoder_blocks)),
            nn.Conv2d(2 * decoder_channels, frame_channels, 1),
        )

    def _emit(self, h: Tensor) -> Tensor:
        frame = self.decoder(h)
        return torch.sigmoid(frame) if self.output_activation == "sigmoid" else frame

    def encode(self, frames: Tensor) -> Tensor:
        """The per-frame RMB encoder (the shared rollout encodes the observed frames together)."""
        return self.encoder(frames)

    def initial_state(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Zero (h, c) of the ConvLSTM."""
        h = frames.new_zeros(frames.shape[0], self.lstm.hidden_channels, *self.frame_size)
        return h, torch.zeros_like(h)

    def transition(
        self, inputs: Tensor, state: tuple[Tensor, Tensor], predict: bool = True
    ) -> tuple[Tensor | None, tuple[Tensor, Tensor]]:
        """The ConvLSTM on one encoded frame; the decoder emits the next frame from its state
        (skipped where no prediction is needed: the decoder is the costliest part)."""
        h, c, _ = self.lstm(inputs, *state, None)
        return (self._emit(h) if predict else None), (h, c)


__all__ = ["MultiplicativeUnit", "ResidualMultiplicativeBlock", "VPNBaseline"]
