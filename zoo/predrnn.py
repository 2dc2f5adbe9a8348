"""The PredRNN family of Table 1: ConvLSTM, PredRNN-M and PredRNN (ST-LSTM); and PredRNN v2."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from predlearn.errors import require
from predlearn.zoo.recurrent_stack import RecurrentStack


class ConvLSTM(RecurrentStack):
    """Stacked ConvLSTMs (Shi et al. 2015; paper §2.2): each layer's C stays in its layer.

    Table 1's row is 4 layers x 128 channels. Built in the same rollout as PredRNN (one stack,
    the top hidden state mapped to pixels), not Shi et al.'s separate encoder and forecaster.
    """

    cell = "conv_lstm"


class PredRNNM(RecurrentStack):
    """PredRNN with the spatiotemporal memory M only (paper §3.1, the Table 1 ablation)."""

    cell = "spatiotemporal_memory"


class PredRNN(RecurrentStack):
    """PredRNN: stacked ST-LSTMs with temporal memory C and zigzag memory M (paper §3.2)."""

    cell = "st_lstm"


def decoupling_loss(delta_c: Tensor, delta_m: Tensor, adapter: nn.Module) -> Tensor:
    """PredRNN v2's memory-decoupling term for one layer and step (Wang et al., TPAMI 2022).

    Both increments go through the shared 1x1 ``adapter``; for every sample and channel, the
    cosine similarity of the two maps (flattened over H x W) is taken; the result is the mean of
    its absolute value over samples and channels. 0 when the increments are orthogonal.
    """
    c = adapter(delta_c).flatten(2)
    m = adapter(delta_m).flatten(2)
    return F.cosine_similarity(c, m, dim=2).abs().mean()


class PredRNNv2(RecurrentStack):
    """PredRNN v2 (Wang et al., TPAMI 2022): the ST-LSTM stack trained with a memory-decoupling
    loss that pushes the increments of C and M of every layer apart.

    ``auxiliary_loss`` is ``decouple_beta`` times the mean of ``decoupling_loss`` over every layer
    and time step of the rollout; ``PredictiveModule`` adds it to the training loss. The
    authors' recipe also uses reverse scheduled sampling
    (``--model.sampling=ReverseScheduledSampling``) and the loss over every frame
    (``--model.loss_frames=all``), both options of the module.

    Args:
        decouple_beta: weight of the decoupling loss (authors' code: 0.1).
        cell_options: as ``RecurrentStack``'s, with ``forget_bias`` 1.0 unless given (authors'
            v2 code).
        (the others: ``RecurrentStack``'s). Every layer must have the same width: one 1x1
        adapter is shared by all layers, as in the authors' code.
    """

    cell = "st_lstm_v2"

    def __init__(self, *args, decouple_beta: float = 0.1, **kwargs) -> None:
        # The authors' v2 cells add a forget bias of 1.0; cell_options can still change it.
        kwargs["cell_options"] = {"forget_bias": 1.0, **(kwargs.get("cell_options") or {})}
        super().__init__(*args, **kwargs)
        require(len(set(self.hidden_channels)) == 1, "hidden_channels",
                "predrnn_v2 shares one 1x1 adapter across layers, so every layer needs the same "
                f"width; got {self.hidden_channels}", self.hidden_channels)
        require(decouple_beta >= 0, "decouple_beta", f"must be >= 0; got {decouple_beta}",
                decouple_beta)
        self.decouple_beta = decouple_beta
        width = self.hidden_channels[0]
        self.adapter = nn.Conv2d(width, width, 1, bias=False)  # authors' code: no bias
        if self.channels_last:
            # Module.to takes memory_format (its documentation says so); torch's overloads omit it
            self.adapter.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def initial_state(self, frames: Tensor) -> dict[str, Any]:
        state = super().initial_state(frames)
        state["decoupling"] = []
        return state

    def transition(
        self, inputs: Tensor, state: dict[str, Any], predict: bool = True
    ) -> tuple[Tensor, dict[str, Any]]:
        prediction, state = super().transition(inputs, state, predict)
        state["decoupling"].extend(
            decoupling_loss(delta_c, delta_m, self.adapter)
            for delta_c, delta_m in state["increments"]
        )
        return prediction, state

    def auxiliary_loss(self, state: dict[str, Any]) -> Tensor | None:
        """``decouple_beta`` x the mean decoupling term over layers and steps (training only)."""
        if not self.training or not state["decoupling"]:
            return None
        return self.decouple_beta * torch.stack(state["decoupling"]).mean()
