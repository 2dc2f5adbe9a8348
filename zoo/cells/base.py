"""What a recurrent cell is: one step of one layer, and which memories it uses."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from predlearn.predictor import check_kernel_size, check_positive


class RecurrentCell(nn.Module):
    """One step of one layer: ``forward(x, h, c, m) -> (h, c, m)``.

    The class flags tell the shared stacking loop (``predlearn.zoo.RecurrentStack``) how to route
    states, so that ConvLSTM, PredRNN-M and PredRNN differ only in their cell:

    - ``uses_temporal_memory``: keeps a cell state C per layer, passed from t-1 to t (horizontal).
    - ``uses_zigzag_memory``: takes M from the layer below at the same step (for the bottom layer:
      the top layer at t-1, paper §3.1) and returns the updated M for the layer above.
    - ``hidden_from_below``: the recurrent hidden input is the layer below at the same step
      (H^{l-1}_t, with H^0_t = H^L_{t-1}; paper eq. 3) instead of the same layer at t-1, and the
      frame enters only the bottom layer.
    - ``returns_increments``: ``forward`` returns ``(h, c, m, *increments)``; the stack keeps each
      layer's increments for the step in ``states["increments"]`` (PredRNN v2's decoupling loss).

    Constructor arguments shared by all cells: ``input_channels`` (channels of x; 0 when the
    layer takes no x), ``hidden_channels``, ``kernel_size``, ``spatial_size`` (height, width of
    the state grid), ``recurrent_channels`` (channels of the h input; defaults to
    ``hidden_channels``).
    """

    uses_temporal_memory: bool = False
    uses_zigzag_memory: bool = False
    hidden_from_below: bool = False
    #: forward returns (h, c, m, *increments); the stack keeps the increments of every layer
    returns_increments: bool = False

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int = 5,
        spatial_size: tuple[int, int] = (64, 64),
        recurrent_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_positive("hidden_channels", hidden_channels)
        check_kernel_size("kernel_size", kernel_size)
        self.input_channels = input_channels
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.spatial_size = tuple(spatial_size)
        self.recurrent_channels = recurrent_channels or hidden_channels
        self.peephole_names: tuple[str, ...] = ()

    def peepholes(self, *names: str) -> None:
        """Hadamard peephole weights W_i, W_f, W_o (``hidden_channels``, H, W), one value per
        channel and position as in Shi et al. 2015, zero at the start, named ``names``."""
        for name in names:
            setattr(self, name, nn.Parameter(torch.zeros(self.hidden_channels, *self.spatial_size)))
        self.peephole_names = names

    def lstm_update(self, pre: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """The LSTM update with peepholes (paper eq. 2; eq. 3 with M as the memory): from the
        stacked pre-activations ``pre`` (gate order g, i, f, o) and the memory, (the new hidden
        state, the new memory). The peepholes, where the cell has them (``peepholes``), read the
        old memory into i and f and the new one into o."""
        g, i, f, o = torch.chunk(pre, 4, dim=1)
        weights = [getattr(self, name) for name in self.peephole_names]
        if weights:
            i, f = i + weights[0] * memory, f + weights[1] * memory
        new = torch.sigmoid(f) * memory + torch.sigmoid(i) * torch.tanh(g)
        if weights:
            o = o + weights[2] * new
        return torch.sigmoid(o) * torch.tanh(new), new

    def conv(self, in_channels: int, out_channels: int, bias: bool, kernel_size: int | None = None):
        """A 'same'-padded convolution, the W * of the equations."""
        k = kernel_size or self.kernel_size
        return nn.Conv2d(in_channels, out_channels, k, padding=k // 2, bias=bias)

    def forward(
        self, x: Tensor | None, h: Tensor, c: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        raise NotImplementedError

