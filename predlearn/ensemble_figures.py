"""Pictures of an ensemble forecast (issue 32): the members next to the truth, and the
calibration diagrams forecasters read (rank histograms, reliability diagrams), with their tables.

- ``save_ensemble_figure``: one sequence, rows input | truth | ensemble mean | spread (the
  members' standard deviation) | a few members | the probability of exceeding a threshold.
- ``save_rank_histograms``: the observation's rank among the M members at the first, middle and
  last lead time; flat (every rank 1 / (M + 1), the dashed line) when the ensemble is
  calibrated, U-shaped when it is under-dispersed, a dome when over-dispersed.
- ``save_reliability_diagram``: per threshold, the observed frequency of the event against the
  forecast probability (on the diagonal when reliable), and how often each probability was
  forecast (sharpness).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from predlearn.visualize import (
    ChannelView,
    _strip,
    channel_views,
    new_figure,
    row_label,
    save_figure,
)

__all__ = ["save_ensemble_figure", "save_rank_histograms", "save_reliability_diagram",
           "write_rank_histograms_csv", "write_reliability_csv"]


def save_ensemble_figure(inputs: Tensor, targets: Tensor, members: Tensor, path: str | Path,
                         title: str = "", threshold: float | None = None,
                         threshold_label: str = "", shown_members: int = 3,
                         channel_names: Sequence[str] | None = None) -> Path:
    """The first sequence of (B, J, C, H, W) inputs, (B, K, C, H, W) targets and (B, M, K, C, H,
    W) members, one block of rows per channel view; ``threshold`` (on the frames' scale) adds a
    row of the exceedance probability P(x >= threshold), labelled ``threshold_label``."""
    inputs, targets = inputs[:1].detach().float().cpu(), targets[:1].detach().float().cpu()
    ensemble = members[0].detach().float().cpu()  # (M, K, C, H, W)
    views = channel_views(torch.cat([inputs, targets], dim=1), channel_names)
    width = max(inputs.shape[1], targets.shape[1])
    mean, spread = ensemble.mean(dim=0), ensemble.std(dim=0)
    rows: list[tuple[str, Tensor, str]] = [("input", inputs[0], "frames"),
                                           ("truth", targets[0], "frames"),
                                           ("mean", mean, "frames"), ("spread", spread, "spread")]
    rows += [(f"member {m + 1}", ensemble[m], "frames")
             for m in range(min(shown_members, ensemble.shape[0]))]
    if threshold is not None:
        probability = (ensemble >= threshold).float().mean(dim=0)
        rows.append((f"P(x >= {threshold_label or f'{threshold:g}'})", probability,
                     "probability"))
    h, w = inputs.shape[-2:]
    count = len(rows) * len(views)
    fig, axes = new_figure(count, 1, figsize=(width * 0.9, count * 0.9 * h / w + 0.6),
                           squeeze=False)
    top = float(spread.max()) or 1.0
    for index, (view, (kind, frames, scale)) in enumerate(
            (view, row) for view in views for row in rows):
        ax = axes[index, 0]
        if scale == "frames":
            ax.imshow(_strip(frames, width, view), cmap="gray", vmin=view.vmin, vmax=view.vmax,
                      interpolation="nearest")
        else:  # spread and probability in a colour scale of their own
            one = frames[:, view.channels.start:view.channels.start + 1]
            vmax = top if scale == "spread" else 1.0
            gray = ChannelView(slice(0, 1), view.name, 0.0, vmax)
            ax.imshow(_strip(one, width, gray), cmap="magma" if
                      scale == "spread" else "Blues", vmin=0.0, vmax=vmax,
                      interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(row_label(kind, view), rotation=0, ha="right", va="center", fontsize=8)
    return save_figure(fig, path, title)


def save_rank_histograms(histograms: Tensor, path: str | Path, title: str = "",
                         lead_minutes: float | None = None) -> Path:
    """Bar charts of (K, M + 1) rank frequencies at the first, middle and last lead time."""
    steps = sorted({0, (histograms.shape[0] - 1) // 2, histograms.shape[0] - 1})
    fig, axes = new_figure(1, len(steps), figsize=(3.2 * len(steps), 2.8), squeeze=False)
    ranks = np.arange(histograms.shape[1])
    for ax, step in zip(axes[0], steps):
        ax.bar(ranks, histograms[step].numpy(), color="tab:blue", width=0.9)
        ax.axhline(1 / histograms.shape[1], color="black", linestyle="--", linewidth=1)
        lead = f", {lead_minutes * (step + 1):g} min" if lead_minutes else ""
        ax.set_title(f"step {step + 1}{lead}", fontsize=9)
        ax.set_xlabel("rank of the observation")
    axes[0, 0].set_ylabel("frequency")
    return save_figure(fig, path, title)


def save_reliability_diagram(reliability: Tensor, tags: Sequence[str], path: str | Path,
                             title: str = "") -> Path:
    """Observed frequency against forecast probability per threshold (T, bins, 3 counts: sum of
    probabilities, observed events, forecasts), and the forecasts per bin below (log scale)."""
    fig, axes = new_figure(2, 1, figsize=(4.5, 6), squeeze=False,
                           gridspec_kw={"height_ratios": [3, 1]})
    curve, sharpness = axes[0, 0], axes[1, 0]
    curve.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="reliable")
    bins = reliability.shape[1]
    centres = (np.arange(bins) + 0.5) / bins
    for index, tag in enumerate(tags):
        probability, events, forecasts = (reliability[index, :, j].numpy() for j in range(3))
        kept = forecasts > 0
        curve.plot(probability[kept] / forecasts[kept], events[kept] / forecasts[kept],
                   marker="o", markersize=3, label=tag)
        sharpness.bar(centres + (index - len(tags) / 2) * 0.8 / bins / max(len(tags), 1),
                      forecasts, width=0.8 / bins / max(len(tags), 1), label=tag)
    curve.set_xlabel("forecast probability")
    curve.set_ylabel("observed frequency")
    curve.set_xlim(0, 1)
    curve.set_ylim(0, 1)
    curve.grid(alpha=0.3)
    curve.legend(fontsize=8)
    sharpness.set_yscale("log")
    sharpness.set_xlabel("forecast probability")
    sharpness.set_ylabel("forecasts")
    return save_figure(fig, path, title)


def write_rank_histograms_csv(histograms: Tensor, path: str | Path) -> Path:
    """``step, rank_0 .. rank_M``: the frequencies, one row per lead time."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", *(f"rank_{r}" for r in range(histograms.shape[1]))])
        for step, row in enumerate(histograms, start=1):
            writer.writerow([step, *(f"{float(v):.6g}" for v in row)])
    return path


def write_reliability_csv(reliability: Tensor, tags: Sequence[str], path: str | Path) -> Path:
    """``threshold, bin_low, bin_high, mean_probability, observed_frequency, forecasts``."""
    path = Path(path)
    bins = reliability.shape[1]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["threshold", "bin_low", "bin_high", "mean_probability",
                         "observed_frequency", "forecasts"])
        for index, tag in enumerate(tags):
            for b in range(bins):
                probability, events, forecasts = (float(v) for v in reliability[index, b])
                mean = probability / forecasts if forecasts else float("nan")
                frequency = events / forecasts if forecasts else float("nan")
                writer.writerow([tag, f"{b / bins:g}", f"{(b + 1) / bins:g}", f"{mean:.6g}",
                                 f"{frequency:.6g}", int(forecasts)])
    return path


def write_ensemble_tables(tables: dict[str, Tensor], tags: Sequence[str], folder: Path,
                          stage: str, title: str = "", lead_minutes: float | None = None,
                          draw: bool = True) -> list[Path]:
    """``<stage>_rank_histogram.csv`` and ``<stage>_reliability.csv`` (with ``tags``, the
    thresholds) from ``SequenceMetrics.tables``, and their pictures (``.png``) when ``draw``."""
    written: list[Path] = []
    histograms = tables.get("rank_histogram")
    if histograms is not None:
        written.append(write_rank_histograms_csv(histograms, folder / f"{stage}_rank_histogram.csv"))
        if draw:
            written.append(save_rank_histograms(
                histograms, folder / f"{stage}_rank_histogram.png",
                f"{title}, rank histograms", lead_minutes))
    reliability = tables.get("reliability")
    if reliability is not None and len(tags):
        written.append(write_reliability_csv(reliability, tags, folder / f"{stage}_reliability.csv"))
        if draw:
            written.append(save_reliability_diagram(
                reliability, tags, folder / f"{stage}_reliability.png",
                f"{title}, reliability"))
    return written
