"""The PredRNN paper's set-up and reported numbers (Wang et al., NeurIPS 2017).

``CONTEXT_FRAMES`` and ``HORIZON`` are the one default of how many frames are observed and
predicted (the data modules declare them; the command line links them to the model), checked by
``check_frame_counts`` wherever they are set. The tables are the paper's results, for comparison.

All are per-frame figures on the paper's conventions (docs/metrics.md): MSE and cross-entropy summed
over the pixels of a 64 x 64 frame with intensities in [0, 1], averaged over the 10 predicted
frames of the 5,000 test sequences.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

from predlearn.errors import require

CONTEXT_FRAMES = 10  # paper §4.1: 10 observed frames
HORIZON = 10  # paper §4.1: 10 predicted frames


def check_frame_counts(context_frames: int, horizon: int, test_horizon: int | None) -> None:
    """Observed frames J, predicted frames K and the test's K (None: K) must be whole numbers
    >= 1 (``OptionValueError`` named by the argument)."""
    counts: tuple[tuple[str, Any], ...] = (("context_frames", context_frames),
                                           ("horizon", horizon), ("test_horizon", test_horizon))
    for name, value in counts:
        if value is None and name == "test_horizon":
            continue
        whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        require(whole and value >= 1, name, "must be a whole number >= 1"
                + (" (or null: the horizon)" if name == "test_horizon" else "")
                + f"; got {value!r}", value)


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
