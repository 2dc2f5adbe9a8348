"""Pictures people would rather look at: predictions next to the truth, and per-step curves.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``), straight to files:
no pyplot, no backend chosen for the whole process, nothing to close, and matplotlib is only
imported when a picture is drawn.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

def plot_per_step(ax: Any, lines: dict[str, Any], key: str, title: str = "") -> dict[str, Any]:
    """The one per-step plot of predlearn (callbacks, ``compare``, ``sweep``): each line's value
    at predicted steps 1..K, the metric's label on the axis (from its registered class), a grid
    and, with more than one line, a legend. ``lines``: label -> sequence of values. Returns the
    drawn matplotlib lines by label (e.g. to match their colours)."""
    from predlearn.metrics import curve_label

    drawn = {}
    for label, values in lines.items():
        values = [float(v) for v in values]
        drawn[label], = ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3,
                                label=label)
    ax.set_xlabel("predicted step")
    ax.set_ylabel(curve_label(key), fontsize=8)
    ax.set_title(title or curve_label(key), fontsize=9)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)
    return drawn


def new_figure(rows: int = 1, cols: int = 1, **subplots: Any) -> tuple[Figure, Any]:
    """A figure that is not registered with pyplot, and its axes (``Figure.subplots``
    arguments: ``figsize`` goes to the figure, the rest to ``subplots``)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=subplots.pop("figsize", None))
    return figure, figure.subplots(rows, cols, **subplots)


def save_figure(fig: Figure, path: str | Path, title: str = "", dpi: int = 100) -> Path:
    """Lay out and write ``fig`` (PNG, or the format the suffix names); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path



#: a channel's value range when all its values lie in it: the look of [0, 1] frames
UNIT_RANGE = (0.0, 1.0)
#: the names of three channels drawn as one colour picture (no names: colour too)
COLOUR_NAMES = {(), ("red", "green", "blue"), ("r", "g", "b")}
#: height in pixels of a channel's name above its rows of the animation
LABEL_HEIGHT = 12


@dataclass(frozen=True)
class ChannelView:
    """How the pictures show frames: ``channels`` (one, or three drawn as colour), the name in
    the rows' labels (None: no name) and the value range drawn black to white."""

    channels: slice
    name: str | None
    vmin: float
    vmax: float

    @property
    def rgb(self) -> bool:
        return self.channels.stop - self.channels.start == 3


def value_range(values: Tensor, unit_if_inside: bool = False) -> tuple[float, float]:
    """The (min, max) of the finite ``values``, drawn black to white: own data may be z-scored,
    not in [0, 1]. ``unit_if_inside``: [0, 1] when every value lies in it (the look of gray
    frames); a constant channel gets a range of 1 around its value."""
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        return UNIT_RANGE
    low, high = float(finite.min()), float(finite.max())
    if unit_if_inside and UNIT_RANGE[0] <= low and high <= UNIT_RANGE[1]:
        return UNIT_RANGE
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def is_colour(channel_names: Sequence[str] | None, count: int) -> bool:
    """Whether ``count`` channels are a colour picture: three, unnamed or named red, green,
    blue (colour video, colour PNG frames)."""
    names = tuple(str(name).lower() for name in channel_names or ())
    return count == 3 and names in COLOUR_NAMES


def channel_views(observed: Tensor, channel_names: Sequence[str] | None = None
                  ) -> list[ChannelView]:
    """The views of frames (B, T, C, H, W) of the drawn sequences (inputs and truth): colour
    channels (``is_colour``) as one colour picture; one channel as one unnamed gray view (in
    [0, 1] when its values are); else one gray view per channel, named by ``channel_names``
    (default ``channel 1..C``), each in the range of its own values."""
    count = observed.shape[2]
    if is_colour(channel_names, count):
        return [ChannelView(slice(0, 3), None, *UNIT_RANGE)]
    if count == 1:
        return [ChannelView(slice(0, 1), None, *value_range(observed, unit_if_inside=True))]
    names = list(channel_names or [])
    return [ChannelView(slice(c, c + 1), names[c] if c < len(names) else f"channel {c + 1}",
                        *value_range(observed[:, :, c])) for c in range(count)]


def _as_drawn(frames: Tensor) -> Tensor:
    return frames.detach().float().cpu()


def _strip(frames: Tensor, width: int, view: ChannelView) -> np.ndarray:
    """(T, C, H, W) -> one (H, width * W) image of the view's channel (colour: (H, width * W,
    3)), frames side by side, blank (white) after T."""
    frames = _as_drawn(frames[:, view.channels]).clamp(view.vmin, view.vmax)
    t, c, h, w = frames.shape
    strip = np.full((h, width * w, c), view.vmax, dtype=np.float32)
    for i in range(t):
        strip[:, i * w:(i + 1) * w] = frames[i].permute(1, 2, 0).numpy()
    return strip if view.rgb else strip[..., 0]


def row_label(kind: str, view: ChannelView) -> str:
    """The label of a picture row: ``input``, or ``input`` over ``ir108`` for a named channel
    (two short lines leave the pictures their width)."""
    return kind if view.name is None else f"{kind}\n{view.name}"


def prediction_figure(inputs: Tensor, targets: Tensor, predictions: Tensor,
                      channel_names: Sequence[str] | None = None) -> Figure:
    """Rows per sequence and channel: input frames | ground truth | prediction (tensors (B, T,
    C, H, W)), each row labelled with its kind and channel (``channel_views``)."""
    count = inputs.shape[0]
    width = max(inputs.shape[1], targets.shape[1])
    h, w = inputs.shape[-2:]
    views = channel_views(torch.cat([_as_drawn(inputs), _as_drawn(targets)], dim=1),
                          channel_names)
    rows = 3 * count * len(views)
    fig, axes = new_figure(rows, 1, figsize=(width * 0.9, rows * 0.9 * h / w + 0.6),
                           squeeze=False)
    kinds = (("input", inputs), ("truth", targets), ("prediction", predictions))
    for ax, (s, view, (kind, frames)) in zip(axes[:, 0], product(range(count), views, kinds)):
        ax.imshow(_strip(frames[s], width, view), cmap="gray", vmin=view.vmin, vmax=view.vmax,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(row_label(kind, view), rotation=0, ha="right", va="center", fontsize=8)
    return fig


def save_prediction_figure(inputs: Tensor, targets: Tensor, predictions: Tensor,
                           path: str | Path, title: str = "",
                           channel_names: Sequence[str] | None = None) -> Path:
    """``prediction_figure`` written to ``path``."""
    return save_figure(prediction_figure(inputs, targets, predictions, channel_names), path,
                       title)


def _unit(frame: Tensor, view: ChannelView) -> np.ndarray:
    """A (C, H, W) frame's view as an image in [0, 1]: (H, W) gray or (H, W, 3) colour."""
    scaled = (frame[view.channels] - view.vmin) / (view.vmax - view.vmin)
    image = scaled.clamp(0, 1).permute(1, 2, 0).numpy()
    return image if view.rgb else image[..., 0]


def _label_band(text: str, width: int) -> np.ndarray:
    """A white band ``LABEL_HEIGHT`` high with ``text`` in black (PIL's default font)."""
    from PIL import Image, ImageDraw

    band = Image.new("L", (width, LABEL_HEIGHT), 255)
    ImageDraw.Draw(band).text((2, 0), text, fill=0)
    return np.asarray(band, dtype=np.float32) / 255


def _gif_row(truth: Tensor, guess: Tensor | None, view: ChannelView) -> np.ndarray:
    """truth | prediction | absolute error of one frame and view (black before a prediction)."""
    seen = _unit(truth, view)
    predicted = _unit(guess, view) if guess is not None else np.zeros_like(seen)
    error = np.abs(predicted - seen) if guess is not None else np.zeros_like(seen)
    gap = np.ones((seen.shape[0], 2, *seen.shape[2:]), dtype=np.float32)
    return np.concatenate([seen, gap, predicted, gap, error], axis=1)


def _gif_frame(truth: Tensor, predicted: Tensor, views: list[ChannelView], t: int,
               context: int, labelled: bool) -> np.ndarray:
    """Step ``t`` of the animation: per sequence, per view a row (below its name when
    ``labelled``), 2 white pixels between rows."""
    blocks = []
    for s in range(truth.shape[0]):
        guess = predicted[s, t - context] if t >= context else None
        for view in views:
            row = _gif_row(truth[s, t], guess, view)
            if labelled and view.name is not None:
                row = np.concatenate([_label_band(view.name, row.shape[1]), row], axis=0)
            blocks += [row, np.ones((2, *row.shape[1:]), dtype=np.float32)]
    return np.concatenate(blocks[:-1], axis=0)


def save_prediction_gif(inputs: Tensor, targets: Tensor, predictions: Tensor,
                        path: str | Path, frame_ms: int = 250,
                        channel_names: Sequence[str] | None = None) -> Path:
    """An animated GIF: per sequence and channel (rows; a named channel's name above its row),
    truth | prediction | absolute error (columns), each channel in its own value range
    (``channel_views``).

    The observed frames show in the truth column first; the prediction and error columns stay
    black until the first predicted step.
    """
    truth = torch.cat([_as_drawn(inputs), _as_drawn(targets)], dim=1)
    predicted = _as_drawn(predictions)
    views = channel_views(truth, channel_names)
    labelled = any(view.name is not None for view in views)
    images = [_gif_frame(truth, predicted, views, t, inputs.shape[1], labelled)
              for t in range(truth.shape[1])]
    return write_gif(images, path, frame_ms)


def write_gif(frames: Any, path: str | Path, frame_ms: int = 250) -> Path:
    """An animated, looping GIF of ``frames``: arrays in [0, 1], each (H, W) gray or (H, W, 3)
    colour (the one GIF writer of predlearn: figures callback and ``predict``)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray((np.clip(np.asarray(frame, dtype=np.float32), 0, 1) * 255)
                              .round().astype(np.uint8)) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return path


_THRESHOLD_KEY = re.compile(r"^([a-z]+)_(-?[\d.]+(?:dBZ|mmh)(?:_\d+px)?)$")


def curve_panels(keys: list[str]) -> dict[str, list[str]]:
    """Keys grouped into plot panels: one per metric, the scores at several thresholds (and
    neighbourhoods) of one kind together (``csi_20dBZ``, ``csi_30dBZ`` -> panel ``csi``), a
    metric's per-channel curves with its overall one (``mse_per_frame[ir108]`` -> panel
    ``mse_per_frame``)."""
    from predlearn.masked import split_channel_key

    panels: dict[str, list[str]] = {}
    for key in keys:
        base, channel = split_channel_key(key)
        match = _THRESHOLD_KEY.match(key)
        panel = base if channel is not None else match.group(1) if match else key
        panels.setdefault(panel, []).append(key)
    return panels


def save_curves_figure(curves: dict[str, Tensor], path: str | Path, title: str = "") -> Path:
    """One panel per metric (the scores at several thresholds share one), the value at each
    predicted step (1-based); at most four panels a row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from predlearn.masked import split_channel_key

    panels = curve_panels(list(curves))
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = new_figure(rows, cols, figsize=(3.6 * cols, 3 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (panel, keys) in zip(flat, panels.items()):
        if keys == [panel]:
            plot_per_step(ax, {panel: curves[panel].detach().cpu().tolist()}, panel)
            continue
        if any(split_channel_key(key)[1] is not None for key in keys):
            lines = {split_channel_key(key)[1] or "all channels": curves[key].detach().cpu().tolist()
                     for key in keys}
            plot_per_step(ax, lines, panel, title=f"{panel}, per channel")
            continue
        lines = {}
        for key in keys:
            match = _THRESHOLD_KEY.match(key)
            assert match is not None  # grouped by this pattern
            lines[match.group(2)] = curves[key].detach().cpu().tolist()
        plot_per_step(ax, lines, keys[0], title=f"{panel.upper()} at each event threshold")
        ax.set_ylabel(panel.upper())
        if len(lines) > 4:
            ax.legend(fontsize=6, ncol=2)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    return save_figure(fig, path, title)


def write_curves_csv(curves: dict[str, Tensor], path: str | Path) -> Path:
    """A table of the curves: one row per predicted step, one column per metric."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(curves)
    length = len(next(iter(curves.values()))) if curves else 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", *keys])
        for step in range(length):
            writer.writerow([step + 1, *(f"{float(curves[k][step]):.6g}" for k in keys)])
    return path
