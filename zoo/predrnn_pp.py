"""PredRNN++ (Wang et al., ICML 2018): stacked Causal LSTMs with a Gradient Highway Unit.

The Causal LSTM is ``predlearn.zoo.cells.causal_lstm`` (eq. 1); this module adds the Gradient
Highway Unit (GHU, §3.2, eq. 2) between the first and second layers and stacks them as
PredRNN does (M zigzags up the layers and from the top layer at t-1 to the bottom at t).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from predlearn.errors import require
from predlearn.predictor import check_kernel_size
from predlearn.zoo.recurrent_stack import RecurrentStack

#: OpenSTL draws the GHU's weights uniformly from [-0.001, 0.001] (the authors' code: every
#: Causal LSTM and GHU convolution); the cells keep PyTorch's default initialisation as OpenSTL's
GHU_INIT_RANGE = 1e-3


class GradientHighwayUnit(nn.Module):
    """The GHU (paper eq. 2): a switch S_t between the transformed input P_t and the previous
    highway state Z_{t-1}, so that gradients can skip the deep transitions of the layers above::

        P_t = tanh(W_px * X_t + W_pz * Z_{t-1})
        S_t = sigmoid(W_sx * X_t + W_sz * Z_{t-1})
        Z_t = S_t . P_t + (1 - S_t) . Z_{t-1}

    X_t is the first layer's hidden state H^1_t; Z_t is the second layer's input. Convolutions
    without bias (eq. 2 has none, nor OpenSTL). ``layer_norm`` normalises each of the two stacked
    convolutions over (2 * channels, H, W) (OpenSTL's option normalises over ``channels`` only,
    which does not fit its own convolutions' 2 * channels outputs: it fails when switched on).
    """

    def __init__(self, channels: int, kernel_size: int, spatial_size: Sequence[int],
                 layer_norm: bool = False) -> None:
        super().__init__()
        check_kernel_size("kernel_size", kernel_size)
        self.channels = channels
        pad = kernel_size // 2
        self.conv_x = nn.Conv2d(channels, 2 * channels, kernel_size, padding=pad, bias=False)
        self.conv_z = nn.Conv2d(channels, 2 * channels, kernel_size, padding=pad, bias=False)
        for conv in (self.conv_x, self.conv_z):
            nn.init.uniform_(conv.weight, -GHU_INIT_RANGE, GHU_INIT_RANGE)
        self.norms = None
        if layer_norm:
            self.norms = nn.ModuleList(
                nn.LayerNorm([2 * channels, *spatial_size]) for _ in range(2))

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """Z_t from X_t and Z_{t-1} (zeros before the first step)."""
        from_x, from_z = self.conv_x(x), self.conv_z(z)
        if self.norms is not None:
            from_x, from_z = self.norms[0](from_x), self.norms[1](from_z)
        p, s = torch.chunk(from_x + from_z, 2, dim=1)
        s = torch.sigmoid(s)
        return s * torch.tanh(p) + (1 - s) * z


class PredRNNpp(RecurrentStack):
    """PredRNN++: L Causal LSTMs, the GHU between layers 1 and 2, a 1 x 1 convolution to pixels.

    Per step t (paper §3.2): H^1, C^1, M^1 = CausalLSTM_1(X_t, H^1, C^1, M^L_{t-1});
    Z_t = GHU(H^1_t, Z_{t-1}); layer 2 reads Z_t instead of H^1_t; layer k > 2 reads H^{k-1}_t;
    M goes up the layers, and the top layer's H^L_t becomes the next frame.

    Defaults: OpenSTL's Moving MNIST set-up (``configs/mmnist/PredRNNpp.py``): 4 x 128 channels,
    5 x 5 filters, patches of 4 x 4, no layer normalisation, forget bias 1.0 (in the cell).

    Args:
        hidden_channels: width of each layer, bottom first (at least two: the GHU sits between
            the first two; it has the first layer's width). OpenSTL: 128 x 4 (the authors'
            code: 128, 64, 64, 64; unequal widths get the stack's 1 x 1 memory adapters).
        kernel_size: filter size of every convolution in the cells and the GHU (OpenSTL: 5).
        patch_size: space-to-depth reshaping, as the stack's (OpenSTL and the authors: 4).
        layer_norm: layer normalisation in every cell and the GHU (OpenSTL's ``layer_norm``,
            off for Moving MNIST; on in the authors' code).
        cell_options: as the stack's, e.g. ``{"forget_bias": 0.0}`` for eq. 1 as printed;
            ``layer_norm`` is the model's own argument, not a cell option here.
        (the others: ``RecurrentStack``'s.) The output convolution has no bias, as OpenSTL's.
    """

    cell = "causal_lstm"

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Two layers of 4 channels, 3 x 3 filters, patches of 4 (for the generic tests)."""
        return {"hidden_channels": [4, 4], "kernel_size": 3, "patch_size": 4}

    def __init__(
        self,
        frame_channels: int = 1,
        frame_size: tuple[int, int] = (64, 64),
        hidden_channels: Sequence[int] = (128, 128, 128, 128),  # OpenSTL mmnist: 128 x 4
        kernel_size: int = 5,  # OpenSTL mmnist: filter_size 5
        patch_size: int = 4,  # OpenSTL mmnist: patch_size 4
        layer_norm: bool = False,  # OpenSTL mmnist: layer_norm 0
        cell_options: dict[str, Any] | None = None,
        checkpoint_steps: bool = False,
        channels_last: bool = False,
        cell: str | None = None,
    ) -> None:
        options = dict(cell_options or {})
        require("layer_norm" not in options, "cell_options",
                "set layer normalisation with the model's own layer_norm argument (it also "
                "applies to the gradient highway)", cell_options)
        require(len(list(hidden_channels)) >= 2, "hidden_channels",
                "PredRNN++ puts its gradient highway between the first and second layers, so it "
                f"needs at least two layers; got {list(hidden_channels)}", hidden_channels)
        super().__init__(frame_channels, frame_size, hidden_channels, kernel_size, patch_size,
                         {**options, "layer_norm": layer_norm}, checkpoint_steps, channels_last,
                         cell)
        self.layer_norm = layer_norm
        self.highway = GradientHighwayUnit(self.hidden_channels[0], kernel_size, self.grid,
                                           layer_norm)
        # OpenSTL's output convolution has no bias (the stack's has one)
        self.head = nn.Conv2d(self.hidden_channels[-1], frame_channels * patch_size**2, 1,
                              bias=False)
        if channels_last:
            # Module.to takes memory_format (its documentation says so); torch's overloads omit it
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def init_states(self, batch: int, reference: Tensor) -> dict[str, Any]:
        """The stack's zero states, and the highway state Z (zeros, OpenSTL's Z_0)."""
        states = super().init_states(batch, reference)
        states["z"] = self._layout(reference.new_zeros(batch, self.hidden_channels[0], *self.grid))
        return states

    def step(self, frame: Tensor, states: dict[str, Any]) -> Tensor:
        """Advance every layer and the GHU by one step on ``frame``; the next frame. ``states``
        is updated in place; ``checkpoint_steps`` as the stack's."""
        inputs = (frame, list(states["h"]), list(states["c"]), states["m"], states["z"])
        if self.checkpoint_steps and self.training and torch.is_grad_enabled():
            output, h, c, m, z = checkpoint(self._advance_highway, *inputs, use_reentrant=False)
        else:
            output, h, c, m, z = self._advance_highway(*inputs)
        states["h"][:], states["c"][:], states["m"], states["z"] = h, c, m, z
        return output

    def _advance_highway(self, frame: Tensor, h: list, c: list, m: Tensor, z: Tensor):
        """One step as a pure function of the states (so that it can be checkpointed)."""
        h, c = list(h), list(c)
        x = self._layout(self.to_grid(frame))
        for layer, cell in enumerate(self.cells):
            below = x if layer == 0 else z if layer == 1 else h[layer - 1]
            m = self.memory_adapters[layer](m)  # M^L_{t-1} for the bottom layer
            h[layer], c[layer], m = cell(below, h[layer], c[layer], m)
            if layer == 0:
                z = self.highway(h[0], z)
        return self.from_grid(self.head(h[-1])), h, c, m, z
