"""What ``predlearn sweep`` writes of its results: Table 1 (or the nowcasting table), the per-step
plot (Figure 3) and, for radar runs, the power spectra."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from predlearn.paper import TABLE1, TABLE2
from predlearn.tables import cell, write_csv, write_markdown

if TYPE_CHECKING:  # the command's --help answers without importing torch
    from torch import Tensor


@dataclass
class SweepResult:
    """The test curves of one config: test set name -> metric key -> (K,) curve."""

    config: Path
    model: str
    curves: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    best_checkpoint: str = ""
    steps: int | None = None  # optimiser steps trained
    seconds: float | None = None  # wall time of fit (training and validation)
    #: the test's power spectra (``PowerSpectrum.compute()``), where the run computed them
    spectra: dict[str, Tensor] = field(default_factory=dict)

    def mean(self, test_set: str, key: str) -> float | None:
        curve = self.curves.get(test_set, {}).get(key)
        return None if curve is None else float(curve.mean())


def scores_nowcasting(results: Sequence[SweepResult]) -> bool:
    """Whether the runs scored nowcasting skill (radar data): their curves have CSI keys."""
    return any(key.startswith("csi_") for r in results for key in r.curves.get("test", {}))


def _seconds(result: SweepResult) -> float | None:
    return None if result.seconds is None else round(result.seconds, 1)


def _minutes(result: SweepResult) -> float | None:
    return None if result.seconds is None else result.seconds / 60


def write_table(results: Sequence[SweepResult], out: Path, transfer_digits: int | None) -> None:
    """``table.md`` and ``table.csv`` in Table 1's layout, with the paper's numbers beside (or
    the nowcasting layout, ``write_nowcast_table``, for radar runs)."""
    if scores_nowcasting(results):
        write_nowcast_table(results, out)
        return
    transfer = f"test_{transfer_digits}digits"
    digits = transfer_digits or "transfer"
    header = ["model", "config", "ce_per_frame", "mse_per_frame",
              f"mse_per_frame_{digits}digits",
              "paper_ce_per_frame", "paper_mse_per_frame", "paper_mse_per_frame_3digits",
              "ssim", f"ssim_{digits}digits", "steps", "seconds"]
    rows = []
    for result in results:
        paper = TABLE1.get(result.model)
        rows.append([
            result.model, result.config.name,
            result.mean("test", "bce_per_frame"), result.mean("test", "mse_per_frame"),
            result.mean(transfer, "mse_per_frame"),
            *(paper[1:] if paper else (None, None, None)),
            result.mean("test", "ssim"), result.mean(transfer, "ssim"),
            result.steps, _seconds(result),
        ])
    write_csv(out / "table.csv", header, rows)
    shown = transfer_digits or "-"
    write_markdown(
        out / "table.md",
        "Per-frame metrics (sum over a frame's pixels, [0, 1]; lower is better): "
        "measured \\| paper Table 1. SSIM: mean over the predicted frames (higher is "
        "better; the paper gives no number for Moving MNIST). Steps and minutes: what each "
        "model trained (fit, validation and test).",
        ["Model", "Config", "CE/frame", "MSE/frame", f"MSE/frame, {shown} digits", "SSIM",
         f"SSIM, {shown} digits", "Steps", "Minutes"],
        [[row[0], row[1], f"{cell(row[2], 1)} \\| {cell(row[5], 1)}",
          f"{cell(row[3], 1)} \\| {cell(row[6], 1)}", f"{cell(row[4], 1)} \\| {cell(row[7], 1)}",
          cell(row[8], 3), cell(row[9], 3), cell(row[10], 0), cell(_minutes(result), 1)]
         for row, result in zip(rows, results)])


def _keys_in_order(results: Sequence[SweepResult], prefix: str) -> list[str]:
    """The test curve keys starting with ``prefix``, in the order the runs logged them."""
    keys: list[str] = []
    for result in results:
        keys += [k for k in result.curves.get("test", {}) if k.startswith(prefix)
                 and k not in keys]
    return keys


def write_nowcast_table(results: Sequence[SweepResult], out: Path) -> None:
    """Radar runs: per-frame MSE (paper Table 2 beside), SSIM, and CSI, POD, FAR, HSS per
    threshold and FSS per threshold and neighbourhood, each the mean over the lead times of the
    scores from contingency counts pooled over the test set. ``table.csv`` has every score;
    ``table.md`` CSI and HSS per threshold and FSS at the largest neighbourhood."""
    scores = [k for k in _keys_in_order(results, "") if k.split("_")[0] in
              ("csi", "pod", "far", "hss", "ets", "fss")]
    header = ["model", "config", "mse_per_frame", "paper_mse_per_frame", "ssim", *scores,
              "steps", "seconds"]
    write_csv(out / "table.csv", header, [
        [result.model, result.config.name, result.mean("test", "mse_per_frame"),
         TABLE2.get(result.model), result.mean("test", "ssim"),
         *(result.mean("test", key) for key in scores), result.steps, _seconds(result)]
        for result in results])
    fss = [k for k in scores if k.startswith("fss_")]
    largest = max((int(k.rsplit("_", 1)[1].removesuffix("px")) for k in fss), default=None)
    shown = [k for k in scores if k.startswith(("csi_", "hss_"))] + [
        k for k in fss if k.endswith(f"_{largest}px")]
    write_markdown(
        out / "table.md",
        "Mean over the lead times. MSE: per frame (sum over a frame's pixels, [0, 1]; lower is "
        "better) \\| paper Table 2 (Guangzhou data, not these). CSI, HSS, FSS (higher is "
        "better) from contingency counts pooled over the test set; `-`: undefined (no event). "
        "Steps and minutes: what each model trained (0: a baseline without weights).",
        ["Model", "Config", "MSE/frame", "SSIM", *shown, "Steps", "Minutes"],
        [[result.model, result.config.name,
          f"{cell(result.mean('test', 'mse_per_frame'), 1)} \\| "
          + cell(TABLE2.get(result.model), 1),
          cell(result.mean("test", "ssim"), 3),
          *(cell(result.mean("test", key), 3) for key in shown),
          cell(result.steps, 0), cell(_minutes(result), 1)] for result in results])


def plot_per_step_mse(results: Sequence[SweepResult], out: Path,
                      transfer_digits: int | None) -> Path:
    """Figure 3: MSE per frame against the predicted step, one line per model; for radar runs
    also CSI per lead time at each threshold."""
    panels = [("test", "test set", "mse_per_frame")]
    if transfer_digits:
        panels.append((f"test_{transfer_digits}digits", f"transfer, {transfer_digits} digits",
                       "mse_per_frame"))
    panels += [("test", "test set", key) for key in _keys_in_order(results, "csi_")]
    from predlearn.metrics import curve_label
    from predlearn.visualize import new_figure, plot_per_step, save_figure

    panels = [p for p in panels if any(p[2] in r.curves.get(p[0], {}) for r in results)]
    fig, axes = new_figure(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (test_set, title, key) in zip(axes[0], panels):
        lines = {result.model: result.curves[test_set][key].tolist()
                 for result in results if key in result.curves.get(test_set, {})}
        name = "MSE per frame" if key == "mse_per_frame" else curve_label(key)
        plot_per_step(ax, lines, key, title=f"{name}, {title}")
    return save_figure(fig, out / "per_step_mse.png")


def plot_spectra(results: Sequence[SweepResult], out: Path) -> Path:
    """``power_spectra.png``: at the first and the last lead time, the observed radially averaged
    power spectrum and each model's, on log-log axes (blur: a model's curve below the observed
    one at high wavenumbers)."""
    from predlearn.visualize import new_figure, save_figure

    with_spectra = [r for r in results if r.spectra]
    horizon = with_spectra[0].spectra["predicted"].shape[0]
    fig, axes = new_figure(1, 2, figsize=(11, 4.2), squeeze=False)
    for ax, step in zip(axes[0], (0, horizon - 1)):
        first = with_spectra[0].spectra
        ax.loglog(first["wavenumber"], first["observed"][step], color="black", linewidth=2,
                  label="observed")
        for result in with_spectra:
            ax.loglog(result.spectra["wavenumber"], result.spectra["predicted"][step],
                      label=result.model, linestyle="--")
        ax.set_title(f"predicted step {step + 1}", fontsize=9)
        ax.set_xlabel("wavenumber (cycles per frame width)")
        ax.set_ylabel("power (mean |FFT|^2 per mode)", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return save_figure(fig, out / "power_spectra.png",
                       title="radially averaged power spectra, test set")
