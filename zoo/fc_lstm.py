"""FC-LSTM: the fully connected LSTM encoder-predictor of Srivastava et al. 2015 (paper §4.1).

See docs/models.md#fc-lstm.

The Table 1 baseline of the PredRNN paper: frames are flattened to vectors, so the model has no
convolution and no notion of locality; every output pixel depends on every input pixel.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from predlearn.predictor import Predictor, check_choice, check_frame, check_positive


class FCLSTM(Predictor):
    """Encoder LSTM over the J observed frames, future-predictor LSTM emitting the K next frames.

    Frames (C, H, W) are flattened to vectors of C*H*W values. The encoder (stacked
    ``nn.LSTMCell`` s) reads X_1..X_J; its final (h, c) of each layer initialise the same layer of
    the decoder, which has its own weights (Srivastava et al.'s "future predictor"). A linear layer
    maps the decoder's top hidden state to the next frame. The conditional decoder takes its own
    previous prediction as input (or the ground truth where ``teacher_mask`` says so); the
    unconditioned one takes no input at all (so ``teacher_mask`` has no effect on it).

    Choices where the original is not specific (each an option):

    - Size: 2048 LSTM units per layer, as Srivastava et al. report for Moving MNIST, and one layer
      (they also report two-layer models); the PredRNN paper does not state the size of its
      FC-LSTM row.
    - First decoder input: the original's conditional decoder gets no generated frame at its first
      step, so it is fed zeros there (``first_decoder_input="zeros"``); ``"last_frame"`` feeds X_J.
    - The unconditioned decoder's bottom layer is built with input size 0 (its input weights would
      only ever multiply zeros), so it has no input weights at all.
    - Output: linear, like the PredRNN family (the metrics clip to [0, 1]); ``"sigmoid"`` bounds it.
      The original trained with cross-entropy on sigmoid outputs on Moving MNIST; the framework's
      loss here is the paper's L1 + L2 (§4), for which a linear output is the natural fit.

    Parameters at the default size on 64 x 64 x 1 frames: 109,088,768 (encoder and decoder
    50,348,032 each, output layer 8,392,704); unconditioned: 75,534,336.

    Args:
        frame_channels: channels of a frame (1 for Moving MNIST).
        frame_size: (height, width) of a frame.
        hidden_size: LSTM units per layer, encoder and decoder alike.
        num_layers: stacked LSTM layers in the encoder and in the decoder.
        conditional: feed the decoder its previous output (True) or nothing (False).
        first_decoder_input: what the conditional decoder gets at its first step.
        output_activation: ``"none"`` (linear) or ``"sigmoid"``.
    """

    # The encoder only reads: there is no prediction of an observed frame (Srivastava et al.).
    predicts_every_frame = False

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a tiny instance, for tests that run every registered model."""
        return {"hidden_size": 8}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: tuple[int, int] = (64, 64),
        hidden_size: int = 2048,  # Srivastava et al. 2015, Moving MNIST: 2048 LSTM units
        num_layers: int = 1,  # choice (class docstring); Srivastava et al. also tried 2
        conditional: bool = True,  # Srivastava et al. 2015: the conditional future predictor
        first_decoder_input: Literal["zeros", "last_frame"] = "zeros",
        output_activation: Literal["none", "sigmoid"] = "none",
    ) -> None:
        super().__init__()
        height, width = check_frame(frame_channels, frame_size)
        check_positive("hidden_size", hidden_size)
        check_positive("num_layers", num_layers)
        check_choice("first_decoder_input", first_decoder_input, ("zeros", "last_frame"))
        check_choice("output_activation", output_activation, ("none", "sigmoid"))
        self.frame_channels = frame_channels
        self.frame_size = (height, width)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.conditional = conditional
        self.first_decoder_input = first_decoder_input
        self.output_activation = output_activation
        self.input_size = frame_channels * height * width

        def stack(bottom_input: int) -> nn.ModuleList:
            return nn.ModuleList(
                nn.LSTMCell(bottom_input if layer == 0 else hidden_size, hidden_size)
                for layer in range(num_layers)
            )

        self.encoder = stack(self.input_size)
        self.decoder = stack(self.input_size if conditional else 0)
        self.head = nn.Linear(hidden_size, self.input_size)

    @staticmethod
    def _step(
        cells: nn.ModuleList, x: Tensor, h: list[Tensor], c: list[Tensor]
    ) -> Tensor:
        """Advance every layer of ``cells`` by one step on ``x``; returns the top hidden state."""
        for layer, cell in enumerate(cells):
            h[layer], c[layer] = cell(x, (h[layer], c[layer]))
            x = h[layer]
        return x

    def _emit(self, top: Tensor, batch: int) -> Tensor:
        frame = self.head(top)
        if self.output_activation == "sigmoid":
            frame = torch.sigmoid(frame)
        return frame.view(batch, self.frame_channels, *self.frame_size)

    def initial_state(self, frames: Tensor) -> dict:
        """Zero (h, c) per layer, and how many observed frames the encoder will read."""
        zeros = frames.new_zeros(frames.shape[0], self.hidden_size)
        return {"h": [zeros] * self.num_layers, "c": [zeros] * self.num_layers,
                "to_read": frames.shape[1]}

    def transition(
        self, inputs: Tensor, state: dict, predict: bool = True
    ) -> tuple[Tensor | None, dict]:
        """The encoder on an observed frame (no prediction until it has read the last one), then
        the decoder, which starts from the encoder's final (h, c), layer by layer."""
        batch = inputs.shape[0]
        h, c, to_read = list(state["h"]), list(state["c"]), state["to_read"]
        if to_read > 0:
            self._step(self.encoder, inputs.reshape(batch, -1), h, c)
            to_read -= 1
            if to_read > 0:  # X_1 .. X_{J-1}: the encoder only reads
                return None, {"h": h, "c": c, "to_read": to_read}
            if not self.conditional:
                decoder_input = inputs.new_zeros(batch, 0)
            elif self.first_decoder_input == "last_frame":
                decoder_input = inputs.reshape(batch, -1)  # X_J
            else:
                decoder_input = inputs.new_zeros(batch, self.input_size)
        elif self.conditional:
            # its own previous prediction, or the truth where teacher-forced (the rollout chose)
            decoder_input = inputs.reshape(batch, -1)
        else:
            decoder_input = inputs.new_zeros(batch, 0)
        prediction = self._emit(self._step(self.decoder, decoder_input, h, c), batch)
        return prediction, {"h": h, "c": c, "to_read": 0}


__all__ = ["FCLSTM"]
