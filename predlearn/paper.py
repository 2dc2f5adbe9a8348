"""Reference numbers reported in the PredRNN paper (Wang et al., NeurIPS 2017), for comparison.

All are per-frame figures on the paper's conventions (DESIGN 1.9): MSE and cross-entropy summed
over the pixels of a 64 x 64 frame with intensities in [0, 1], averaged over the 10 predicted
frames of the 5,000 test sequences.
"""

from __future__ import annotations

from typing import NamedTuple


class Table1Row(NamedTuple):
    """One row of Table 1 (lower is better)."""

    label: str
    mnist2_ce: float
    mnist2_mse: float
    mnist3_mse: float


# Table 1 of the paper, keyed by predlearn's registry name of the model.
TABLE1: dict[str, Table1Row] = {
    "fc_lstm": Table1Row("FC-LSTM", 483.2, 118.3, 162.4),
    "convlstm": Table1Row("ConvLSTM (128 x 4)", 367.0, 103.3, 142.1),
    "cdna": Table1Row("CDNA", 346.6, 97.4, 138.2),
    "dfn": Table1Row("DFN", 285.2, 89.0, 130.5),
    "vpn_baseline": Table1Row("VPN baseline", 110.1, 70.0, 125.2),
    "predrnn_m": Table1Row("PredRNN with spatiotemporal memory M", 118.5, 74.0, 118.2),
    "predrnn": Table1Row("PredRNN + ST-LSTM (128 x 4)", 97.0, 56.8, 93.4),
}


# Table 2 of the paper (radar echo, Guangzhou, 100 x 100 frames, 10 -> 10): MSE per frame,
# keyed by registry name. Another radar and region than the data predlearn can download.
TABLE2: dict[str, float] = {"convlstm": 68.0, "vpn_baseline": 60.7, "predrnn": 44.2}
