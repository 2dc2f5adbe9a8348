"""The fused production cells against their per-gate textbook forms, benchmarks/reference_cells.py.

The textbook cells write each of paper eqs. 2-4 (docs/models.md#the-cells-equations) with one
convolution per gate and per source. With the weights copied from a fused cell, both must give the
same (h, c, m) and the same gradients with respect to the inputs and to every corresponding weight
(float64).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import predlearn
from predlearn.zoo import ConvLSTMCell, SpatiotemporalLSTMCell, SpatiotemporalMemoryCell

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# The textbook cells live with the benchmarks that time them (benchmarks/reference_cells.py);
# imported with that folder on sys.path, as tests/test_bench_*.py import the benchmark scripts.
with pytest.MonkeyPatch.context() as patch:
    patch.syspath_prepend(str(BENCHMARKS))
    import reference_cells

IN, HID, SIZE, K, BATCH = 3, 4, (6, 5), 3, 2

# (id, fused class, constructor options, input channels, recurrent channels)
CASES = [
    ("conv_lstm", ConvLSTMCell, {}, IN, None),
    ("conv_lstm_no_peephole", ConvLSTMCell, {"peephole": False}, IN, None),
    ("conv_lstm_upper", ConvLSTMCell, {}, HID, None),
    ("predrnn_m_bottom", SpatiotemporalMemoryCell, {}, IN, 5),
    ("predrnn_m_upper", SpatiotemporalMemoryCell, {}, 0, 5),
    ("predrnn_m_no_peephole", SpatiotemporalMemoryCell, {"peephole": False}, IN, None),
    ("st_lstm", SpatiotemporalLSTMCell, {}, IN, None),
    ("st_lstm_forget_bias", SpatiotemporalLSTMCell, {"forget_bias": 1.0}, IN, None),
    ("st_lstm_upper", SpatiotemporalLSTMCell, {"forget_bias": 1.0}, HID, None),
]


def make_pair(cell_class, options, input_channels, recurrent_channels, seed=0):
    """A float64 fused cell with seeded random weights (peepholes too) and its textbook twin."""
    fused = cell_class(input_channels, HID, kernel_size=K, spatial_size=SIZE,
                       recurrent_channels=recurrent_channels, **options).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in fused.parameters():
            parameter.copy_(0.4 * torch.randn(parameter.shape, generator=generator,
                                              dtype=torch.float64))
    return fused, reference_cells.textbook_from_fused(fused)


def make_inputs(fused, seed=1):
    generator = torch.Generator().manual_seed(seed)

    def rand(channels):
        return torch.randn(BATCH, channels, *SIZE, generator=generator, dtype=torch.float64)

    x = rand(fused.input_channels) if fused.input_channels else None
    h = rand(fused.recurrent_channels)
    c = rand(HID) if fused.uses_temporal_memory else None
    m = rand(HID) if fused.uses_zigzag_memory else None
    return x, h, c, m


def run(cell, inputs):
    """One step with fresh leaf copies of the inputs; returns outputs and the input leaves."""
    leaves = [None if t is None else t.clone().requires_grad_(True) for t in inputs]
    return cell(*leaves), leaves


def loss_of(outputs, seed=2):
    """A scalar that weighs every output element differently (so no gradient cancels)."""
    generator = torch.Generator().manual_seed(seed)
    total = 0
    for out in outputs:
        if out is not None:
            total = total + (out * torch.randn(out.shape, generator=generator,
                                               dtype=out.dtype)).sum()
    return total


@pytest.mark.parametrize(("cell_class", "options", "input_channels", "recurrent_channels"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_fused_equals_textbook(cell_class, options, input_channels, recurrent_channels):
    fused, textbook = make_pair(cell_class, options, input_channels, recurrent_channels)
    assert type(textbook) is reference_cells.TEXTBOOK_OF[cell_class]
    assert sum(p.numel() for p in fused.parameters()) == sum(
        p.numel() for p in textbook.parameters())
    inputs = make_inputs(fused)

    fused_out, fused_leaves = run(fused, inputs)
    textbook_out, textbook_leaves = run(textbook, inputs)
    for a, b in zip(fused_out, textbook_out, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a)

    loss_of(fused_out).backward()
    loss_of(textbook_out).backward()
    # Gradients with respect to the inputs.
    for a, b in zip(fused_leaves, textbook_leaves, strict=True):
        if a is not None:
            assert a.grad is not None
            torch.testing.assert_close(b.grad, a.grad)
    # Gradients with respect to the weights, slice by slice, and every fused element covered.
    fused_params = dict(fused.named_parameters())
    covered = {name: torch.zeros_like(p, dtype=torch.int64) for name, p in fused_params.items()}
    for tb_name, fused_name, index in reference_cells.weight_map(textbook):
        fused_grad = fused_params[fused_name].grad[index]
        torch.testing.assert_close(textbook.get_parameter(tb_name).grad, fused_grad,
                                   msg=lambda m, n=tb_name: f"{n}: {m}")
        covered[fused_name][index] += 1
    for name, count in covered.items():
        assert bool((count == 1).all()), name


def test_textbook_has_one_convolution_per_gate_and_source():
    """The textbook form is really per gate: ST-LSTM has 7 + 4 + 3 + 2 + 1 convolutions."""
    _, convlstm = make_pair(ConvLSTMCell, {}, IN, None)
    _, upper_m = make_pair(SpatiotemporalMemoryCell, {}, 0, None)
    _, st_lstm = make_pair(SpatiotemporalLSTMCell, {}, IN, None)

    def convs(cell):
        return [m for m in cell.modules() if isinstance(m, torch.nn.Conv2d)]

    assert len(convs(convlstm)) == 8
    assert len(convs(upper_m)) == 4
    assert len(convs(st_lstm)) == 17
    assert all(conv.out_channels == HID for cell in (convlstm, upper_m, st_lstm)
               for conv in convs(cell))


def test_load_from_fused_rejects_mismatch():
    fused, _ = make_pair(ConvLSTMCell, {}, IN, None)
    wrong = reference_cells.TextbookSpatiotemporalLSTMCell(IN, HID, K, SIZE).double()
    with pytest.raises(TypeError):
        reference_cells.load_from_fused(wrong, fused)
    with pytest.raises(ValueError):
        reference_cells.TextbookSpatiotemporalLSTMCell(IN, HID, K, SIZE, layer_norm=True)


@pytest.mark.parametrize("model_name", ["convlstm", "predrnn_m", "predrnn"])
def test_model_with_textbook_cells_matches(model_name):
    """A small stack with every cell swapped for its textbook twin gives the same rollout."""
    torch.manual_seed(0)
    model = predlearn.create_model(model_name, frame_channels=1, frame_size=(8, 8),
                                   hidden_channels=(4, 4), kernel_size=3, patch_size=2).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))  # peepholes start at zero
    twin = predlearn.create_model(model_name, frame_channels=1, frame_size=(8, 8),
                                  hidden_channels=(4, 4), kernel_size=3, patch_size=2).double()
    twin.load_state_dict(model.state_dict())
    for index, cell in enumerate(model.cells):
        twin.cells[index] = reference_cells.textbook_from_fused(cell)
    frames = torch.rand(2, 3, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(twin(frames, horizon=2), model(frames, horizon=2))
