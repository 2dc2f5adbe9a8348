"""The PredRNN family of Table 1: ConvLSTM, PredRNN-M and PredRNN (ST-LSTM)."""

from __future__ import annotations

from predlearn.registry import register_model
from predlearn.zoo.recurrent_stack import RecurrentStack


@register_model("convlstm")
class ConvLSTM(RecurrentStack):
    """Stacked ConvLSTMs (Shi et al. 2015; paper §2.2): each layer's C stays in its layer.

    Table 1's row is 4 layers x 128 channels. Built in the same rollout as PredRNN (one stack,
    the top hidden state mapped to pixels), not Shi et al.'s separate encoder and forecaster.
    """

    cell = "conv_lstm"


@register_model("predrnn_m")
class PredRNNM(RecurrentStack):
    """PredRNN with the spatiotemporal memory M only (paper §3.1, the Table 1 ablation)."""

    cell = "spatiotemporal_memory"


@register_model("predrnn")
class PredRNN(RecurrentStack):
    """PredRNN: stacked ST-LSTMs with temporal memory C and zigzag memory M (paper §3.2)."""

    cell = "st_lstm"
