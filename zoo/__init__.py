"""Predictors and recurrent cells, installed as ``predlearn.zoo``.

Their registry names are declared as entry points in ``pyproject.toml`` (groups
``predlearn.models`` and ``predlearn.cells``), as a plugin package declares its own.
"""

from predlearn.zoo.cdna import CDNA, apply_cdna
from predlearn.zoo.cells.base import RecurrentCell
from predlearn.zoo.cells.causal_lstm import CausalLSTMCell
from predlearn.zoo.cells.conv_lstm import ConvLSTMCell
from predlearn.zoo.cells.spatiotemporal_memory import SpatiotemporalMemoryCell
from predlearn.zoo.cells.st_lstm import SpatiotemporalLSTMCell, SpatiotemporalLSTMv2Cell
from predlearn.zoo.dfn import DFN, apply_dynamic_filters
from predlearn.zoo.e3d_lstm import E3DLSTM
from predlearn.zoo.fc_lstm import FCLSTM
from predlearn.zoo.mau import MAU
from predlearn.zoo.mim import MIM
from predlearn.zoo.nowcast_baselines import OpticalFlowExtrapolation, Persistence
from predlearn.zoo.phydnet import PhyDNet
from predlearn.zoo.predrnn import ConvLSTM, PredRNN, PredRNNM, PredRNNv2, decoupling_loss
from predlearn.zoo.predrnn_pp import GradientHighwayUnit, PredRNNpp
from predlearn.zoo.recurrent_stack import RecurrentStack
from predlearn.zoo.simvp import SimVP
from predlearn.zoo.steps import Steps
from predlearn.zoo.tau import TAU
from predlearn.zoo.vpn_baseline import (
    MultiplicativeUnit,
    ResidualMultiplicativeBlock,
    VPNBaseline,
)

__all__ = [
    "CDNA",
    "DFN",
    "E3DLSTM",
    "FCLSTM",
    "MAU",
    "MIM",
    "TAU",
    "CausalLSTMCell",
    "ConvLSTM",
    "ConvLSTMCell",
    "GradientHighwayUnit",
    "MultiplicativeUnit",
    "OpticalFlowExtrapolation",
    "Persistence",
    "PhyDNet",
    "PredRNN",
    "PredRNNM",
    "PredRNNpp",
    "PredRNNv2",
    "RecurrentCell",
    "RecurrentStack",
    "ResidualMultiplicativeBlock",
    "SimVP",
    "SpatiotemporalLSTMCell",
    "SpatiotemporalLSTMv2Cell",
    "SpatiotemporalMemoryCell",
    "Steps",
    "VPNBaseline",
    "apply_cdna",
    "apply_dynamic_filters",
    "decoupling_loss",
]
