"""Pictures people would rather look at: predictions next to the truth, and per-step curves.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``), straight to files:
no pyplot, no backend chosen for the whole process, nothing to close, and matplotlib is only
imported when a picture is drawn.
"""

from __future__ import annotations

import csv
import re
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



def _strip(frames: Tensor, width: int) -> np.ndarray:
    """(T, C, H, W) -> one (H, width * W) image, frames side by side, blank after T."""
    frames = frames.detach().float().clamp(0, 1).cpu()
    if frames.shape[1] not in (1, 3):
        frames = frames[:, :1]
    t, c, h, w = frames.shape
    strip = np.ones((h, width * w, c), dtype=np.float32)
    for i in range(t):
        strip[:, i * w:(i + 1) * w] = frames[i].permute(1, 2, 0).numpy()
    return strip[..., 0] if c == 1 else strip


def save_prediction_figure(inputs: Tensor, targets: Tensor, predictions: Tensor,
                           path: str | Path, title: str = "") -> Path:
    """Rows per sequence: input frames | ground truth | prediction (tensors (B, T, C, H, W))."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = inputs.shape[0]
    width = max(inputs.shape[1], targets.shape[1])
    h, w = inputs.shape[-2:]
    fig, axes = new_figure(3 * count, 1, figsize=(width * 0.9, 3 * count * 0.9 * h / w + 0.6),
                           squeeze=False)
    rows = (("input", inputs), ("truth", targets), ("prediction", predictions))
    for s in range(count):
        for r, (label, frames) in enumerate(rows):
            ax = axes[3 * s + r, 0]
            ax.imshow(_strip(frames[s], width), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center",
                          fontsize=8)
    return save_figure(fig, path, title)


def save_prediction_gif(inputs: Tensor, targets: Tensor, predictions: Tensor,
                        path: str | Path, frame_ms: int = 250) -> Path:
    """An animated GIF: per sequence (rows), truth | prediction | absolute error (columns).

    The observed frames show in the truth column first; the prediction and error columns stay
    black until the first predicted step. Gray frames only use their first channel.
    """
    path = Path(path)
    truth = torch.cat([inputs, targets], dim=1).detach().float().clamp(0, 1).cpu()[:, :, 0]
    predicted = predictions.detach().float().clamp(0, 1).cpu()[:, :, 0]
    context = inputs.shape[1]
    images = []
    for t in range(truth.shape[1]):
        rows = []
        for s in range(truth.shape[0]):
            guess = predicted[s, t - context] if t >= context else torch.zeros_like(truth[s, t])
            error = (guess - truth[s, t]).abs() if t >= context else torch.zeros_like(guess)
            gap = torch.ones(truth.shape[2], 2)
            rows.append(torch.cat([truth[s, t], gap, guess, gap, error], dim=1))
            rows.append(torch.ones(2, rows[-1].shape[1]))
        images.append(torch.cat(rows[:-1], dim=0).numpy())
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
    neighbourhoods) of one kind together (``csi_20dBZ``, ``csi_30dBZ`` -> panel ``csi``)."""
    panels: dict[str, list[str]] = {}
    for key in keys:
        match = _THRESHOLD_KEY.match(key)
        panels.setdefault(match.group(1) if match else key, []).append(key)
    return panels


def save_curves_figure(curves: dict[str, Tensor], path: str | Path, title: str = "") -> Path:
    """One panel per metric (the scores at several thresholds share one), the value at each
    predicted step (1-based); at most four panels a row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = curve_panels(list(curves))
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = new_figure(rows, cols, figsize=(3.6 * cols, 3 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (panel, keys) in zip(flat, panels.items()):
        if keys == [panel]:
            plot_per_step(ax, {panel: curves[panel].detach().cpu().tolist()}, panel)
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
