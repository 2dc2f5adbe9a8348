"""Textbook (per-gate) forms of the three recurrent cells, as references for the fused cells.

The production cells in ``zoo/cells/`` are "fused": each computes all of its gates from one
convolution per source (x, h, m, and one over [C, M]) and splits the result with ``torch.chunk``.
The classes here write paper eqs. 2-4 (docs/models.md#the-cells-equations) term by term instead: one
``nn.Conv2d`` per weight W_ab (per gate and per source), peepholes as separate parameters. They take
the same constructor arguments and the same ``forward(x, h, c, m)`` as their production cells, so
that one can replace the other inside a model (``model.cells[i] = textbook``).

Biases: each gate's bias b_* lives in the per-gate convolution of the source whose fused
convolution carries it in the production cell (x for ConvLSTM and ST-LSTM; h for PredRNN-M,
since the upper layers have no x).

``load_from_fused(textbook, fused)`` copies a production cell's weights into the per-gate
convolutions, slicing the stacked weights in the gate order documented in the cell code;
``weight_map(textbook)`` lists that correspondence (used by the tests to compare gradients) and
``textbook_from_fused(fused)`` builds a textbook twin of a production cell with its weights.

Used by the benchmarks that time the textbook cells against the fused ones (``bench_fused.py``,
``bench_paper_sizes.py``), which load it from this folder with
``bench_common.load_reference_cells()``, and by ``tests/test_fused_cells.py``, which imports it
with this folder on ``sys.path`` (as the tests import the benchmark scripts).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from predlearn.zoo.cells.base import RecurrentCell
from predlearn.zoo.cells.conv_lstm import ConvLSTMCell
from predlearn.zoo.cells.spatiotemporal_memory import SpatiotemporalMemoryCell
from predlearn.zoo.cells.st_lstm import SpatiotemporalLSTMCell

# One entry of a weight map: (textbook parameter name, fused parameter name, index into the fused
# parameter that gives the textbook parameter's values).
WeightEntry = tuple[str, str, tuple[slice, ...]]


def _gate(index: int, hid: int) -> slice:
    """Output channels of gate number ``index`` in a stacked convolution of width ``hid``."""
    return slice(index * hid, (index + 1) * hid)


class TextbookConvLSTMCell(RecurrentCell):
    """ConvLSTM (paper eq. 2) with one convolution per gate and source: W_xg, W_hg, W_xi, ..."""

    uses_temporal_memory = True
    gates = ("g", "i", "f", "o")  # the fused cell's gate order

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        spatial_size: tuple[int, int] = (64, 64),
        recurrent_channels: int | None = None,
        peephole: bool = True,
    ) -> None:
        super().__init__(input_channels, hidden_channels, kernel_size, spatial_size,
                         recurrent_channels)
        hid = hidden_channels
        for gate in self.gates:
            self.add_module(f"w_x{gate}", self.conv(input_channels, hid, bias=True))  # + b_gate
            self.add_module(f"w_h{gate}", self.conv(self.recurrent_channels, hid, bias=False))
        self.peephole = peephole
        if peephole:
            shape = (hid, *self.spatial_size)
            self.w_ci = nn.Parameter(torch.zeros(shape))
            self.w_cf = nn.Parameter(torch.zeros(shape))
            self.w_co = nn.Parameter(torch.zeros(shape))

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None = None
    ) -> tuple[Tensor, Tensor, None]:
        g = torch.tanh(self.w_xg(x) + self.w_hg(h))
        i = self.w_xi(x) + self.w_hi(h)
        f = self.w_xf(x) + self.w_hf(h)
        if self.peephole:
            i = i + self.w_ci * c
            f = f + self.w_cf * c
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * g
        o = self.w_xo(x) + self.w_ho(h)
        if self.peephole:
            o = o + self.w_co * c_new
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, c_new, None

    def weight_map(self) -> list[WeightEntry]:
        hid, every = self.hidden_channels, slice(None)
        entries: list[WeightEntry] = []
        for index, gate in enumerate(self.gates):
            out = _gate(index, hid)
            entries.append((f"w_x{gate}.weight", "conv_x.weight", (out,)))
            entries.append((f"w_x{gate}.bias", "conv_x.bias", (out,)))
            entries.append((f"w_h{gate}.weight", "conv_h.weight", (out,)))
        if self.peephole:
            entries += [(f"w_c{gate}", f"w_c{gate}", (every,)) for gate in ("i", "f", "o")]
        return entries


class TextbookSpatiotemporalMemoryCell(RecurrentCell):
    """PredRNN-M's memory cell (paper eq. 3), one convolution per gate and source.

    The bottom layer has W_x* (no bias); every layer has W_h* with the biases b_*, and the
    Hadamard peepholes W_mi, W_mf, W_mo on M.
    """

    uses_zigzag_memory = True
    hidden_from_below = True
    gates = ("g", "i", "f", "o")

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        spatial_size: tuple[int, int] = (64, 64),
        recurrent_channels: int | None = None,
        peephole: bool = True,
    ) -> None:
        super().__init__(input_channels, hidden_channels, kernel_size, spatial_size,
                         recurrent_channels)
        hid = hidden_channels
        self.has_x = bool(input_channels)
        for gate in self.gates:
            if self.has_x:
                self.add_module(f"w_x{gate}", self.conv(input_channels, hid, bias=False))
            self.add_module(f"w_h{gate}", self.conv(self.recurrent_channels, hid, bias=True))
        self.peephole = peephole
        if peephole:
            shape = (hid, *self.spatial_size)
            self.w_mi = nn.Parameter(torch.zeros(shape))
            self.w_mf = nn.Parameter(torch.zeros(shape))
            self.w_mo = nn.Parameter(torch.zeros(shape))

    def _pre(self, gate: str, x: Tensor | None, h: Tensor) -> Tensor:
        value = getattr(self, f"w_h{gate}")(h)
        if self.has_x:
            value = value + getattr(self, f"w_x{gate}")(x)
        return value

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, None, Tensor]:
        if self.has_x and x is None:
            raise ValueError("this bottom-layer cell needs the input frame x")
        g = torch.tanh(self._pre("g", x, h))
        i = self._pre("i", x, h)
        f = self._pre("f", x, h)
        if self.peephole:
            i = i + self.w_mi * m
            f = f + self.w_mf * m
        m_new = torch.sigmoid(f) * m + torch.sigmoid(i) * g
        o = self._pre("o", x, h)
        if self.peephole:
            o = o + self.w_mo * m_new
        h_new = torch.sigmoid(o) * torch.tanh(m_new)
        return h_new, None, m_new

    def weight_map(self) -> list[WeightEntry]:
        hid, every = self.hidden_channels, slice(None)
        entries: list[WeightEntry] = []
        for index, gate in enumerate(self.gates):
            out = _gate(index, hid)
            if self.has_x:
                entries.append((f"w_x{gate}.weight", "conv_x.weight", (out,)))
            entries.append((f"w_h{gate}.weight", "conv_h.weight", (out,)))
            entries.append((f"w_h{gate}.bias", "conv_h.bias", (out,)))
        if self.peephole:
            entries += [(f"w_m{gate}", f"w_m{gate}", (every,)) for gate in ("i", "f", "o")]
        return entries


class TextbookSpatiotemporalLSTMCell(RecurrentCell):
    """ST-LSTM (paper eq. 4), every W of eq. 4 its own convolution.

    W_xg, W_xi, W_xf, W'_xg, W'_xi, W'_xf, W_xo (with the biases), W_hg, W_hi, W_hf, W_ho,
    W_mg, W_mi, W_mf, W_co, W_mo, and W_1x1 over [C_t, M_t] (one convolution in the equation).
    ``forget_bias`` as in the production cell; ``layer_norm`` is not supported (the fused cell
    normalises the stacked pre-activations, which has no per-gate equivalent).
    """

    uses_temporal_memory = True
    uses_zigzag_memory = True
    # The fused cell's chunk order per source; a trailing "_m" marks the primed (M) gates.
    x_gates = ("g", "i", "f", "g_m", "i_m", "f_m", "o")
    h_gates = ("g", "i", "f", "o")
    m_gates = ("g", "i", "f")

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        spatial_size: tuple[int, int] = (64, 64),
        recurrent_channels: int | None = None,
        forget_bias: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__(input_channels, hidden_channels, kernel_size, spatial_size,
                         recurrent_channels)
        if layer_norm:
            raise ValueError("the textbook ST-LSTM has no layer_norm (it normalises stacked gates)")
        hid = hidden_channels
        for gate in self.x_gates:
            self.add_module(f"w_x{gate}", self.conv(input_channels, hid, bias=True))
        for gate in self.h_gates:
            self.add_module(f"w_h{gate}", self.conv(self.recurrent_channels, hid, bias=False))
        for gate in self.m_gates:
            self.add_module(f"w_m{gate}", self.conv(hid, hid, bias=False))
        self.w_co = self.conv(hid, hid, bias=False)
        self.w_mo = self.conv(hid, hid, bias=False)
        self.w_1x1 = self.conv(2 * hid, hid, bias=False, kernel_size=1)
        self.forget_bias = forget_bias

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        g = torch.tanh(self.w_xg(x) + self.w_hg(h))
        i = torch.sigmoid(self.w_xi(x) + self.w_hi(h))
        f = torch.sigmoid(self.w_xf(x) + self.w_hf(h) + self.forget_bias)
        c_new = f * c + i * g

        g_m = torch.tanh(self.w_xg_m(x) + self.w_mg(m))
        i_m = torch.sigmoid(self.w_xi_m(x) + self.w_mi(m))
        f_m = torch.sigmoid(self.w_xf_m(x) + self.w_mf(m) + self.forget_bias)
        m_new = f_m * m + i_m * g_m

        o = torch.sigmoid(self.w_xo(x) + self.w_ho(h) + self.w_co(c_new) + self.w_mo(m_new))
        h_new = o * torch.tanh(self.w_1x1(torch.cat([c_new, m_new], dim=1)))
        return h_new, c_new, m_new

    def weight_map(self) -> list[WeightEntry]:
        hid, every = self.hidden_channels, slice(None)
        entries: list[WeightEntry] = []
        for index, gate in enumerate(self.x_gates):
            entries.append((f"w_x{gate}.weight", "conv_x.weight", (_gate(index, hid),)))
            entries.append((f"w_x{gate}.bias", "conv_x.bias", (_gate(index, hid),)))
        for index, gate in enumerate(self.h_gates):
            entries.append((f"w_h{gate}.weight", "conv_h.weight", (_gate(index, hid),)))
        for index, gate in enumerate(self.m_gates):
            entries.append((f"w_m{gate}.weight", "conv_m.weight", (_gate(index, hid),)))
        # conv_o's input channels are [C_t, M_t]: the first hid belong to W_co, the rest to W_mo.
        entries.append(("w_co.weight", "conv_o.weight", (every, _gate(0, hid))))
        entries.append(("w_mo.weight", "conv_o.weight", (every, _gate(1, hid))))
        entries.append(("w_1x1.weight", "conv_1x1.weight", (every,)))
        return entries


TEXTBOOK_OF = {
    ConvLSTMCell: TextbookConvLSTMCell,
    SpatiotemporalMemoryCell: TextbookSpatiotemporalMemoryCell,
    SpatiotemporalLSTMCell: TextbookSpatiotemporalLSTMCell,
}


def weight_map(textbook: RecurrentCell) -> list[WeightEntry]:
    """(textbook parameter, fused parameter, index into the fused parameter) for every weight."""
    return textbook.weight_map()


@torch.no_grad()
def load_from_fused(textbook: RecurrentCell, fused: RecurrentCell) -> RecurrentCell:
    """Copy ``fused``'s weights into ``textbook``'s per-gate convolutions; returns ``textbook``.

    Checks that every element of every fused parameter is copied exactly once.
    """
    if TEXTBOOK_OF.get(type(fused)) is not type(textbook):
        raise TypeError(f"{type(textbook).__name__} is not the textbook form of "
                        f"{type(fused).__name__}")
    if getattr(fused, "norms", None) is not None:
        raise ValueError("a fused cell with layer_norm has no textbook equivalent")
    fused_params = dict(fused.named_parameters())
    covered = {name: torch.zeros_like(p, dtype=torch.int64) for name, p in fused_params.items()}
    for tb_name, fused_name, index in weight_map(textbook):
        source = fused_params[fused_name][index]
        target = textbook.get_parameter(tb_name)
        if target.shape != source.shape:
            raise ValueError(f"{tb_name} {tuple(target.shape)} != {fused_name}{index} "
                             f"{tuple(source.shape)}")
        target.copy_(source)
        covered[fused_name][index] += 1
    for name, count in covered.items():
        if not bool((count == 1).all()):
            raise AssertionError(f"fused parameter {name} is not copied exactly once")
    return textbook


def textbook_from_fused(fused: RecurrentCell) -> RecurrentCell:
    """A textbook cell with the same configuration, dtype, device and weights as ``fused``."""
    textbook_class = TEXTBOOK_OF[type(fused)]
    options = {}
    if isinstance(fused, SpatiotemporalLSTMCell):
        options["forget_bias"] = fused.forget_bias
    else:
        options["peephole"] = fused.peephole
    textbook = textbook_class(
        input_channels=fused.input_channels,
        hidden_channels=fused.hidden_channels,
        kernel_size=fused.kernel_size,
        spatial_size=fused.spatial_size,
        recurrent_channels=fused.recurrent_channels,
        **options,
    )
    reference = next(fused.parameters())
    textbook = textbook.to(dtype=reference.dtype, device=reference.device)
    return load_from_fused(textbook, fused)
