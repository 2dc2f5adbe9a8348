"""``predlearn sweep CONFIG_DIR``: Table 1 as one command.

Every config in the folder is trained (``fit``), its best checkpoint (chosen on the validation
split) tested on its own test set and, for the MNIST-3 column, on 3-digit sequences (the paper's
transfer test: the MNIST-2 model tested on MNIST-3). The sweep writes:

- ``table.md`` and ``table.csv``: per-frame CE and MSE on MNIST-2 and MSE on MNIST-3 per model,
  next to the paper's numbers, with the mean SSIM of both test sets and the training steps and
  seconds each model had (under a time budget, steps differ by model);
- ``per_step_mse.png``: MSE per frame at each predicted step, one line per model (Figure 3);
- ``curves/<config>_<test set>.csv``: every per-step curve, and ``curves/<config>_run.json``
  the steps, seconds and best checkpoint of its training;
- for radar runs, ``power_spectra.png`` (every model's power spectrum beside the observed one,
  at the first and last lead time) and ``curves/<config>_power_spectrum.csv``.

Configs that already set ``test_num_digits`` (transfer-only configs) are skipped: the sweep runs
the transfer test itself, for the data modules that have one (Moving MNIST). Predictors without
weights (``persistence``, ``extrapolation``) are tested, not trained. Where the runs score
nowcasting skill (radar: CSI, POD, FAR, HSS per threshold, FSS), the table has those columns
instead of Table 1's. Extra arguments are passed to every run (``--trainer.max_steps=100``).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from predlearn.errors import BadFileError, DataNotFoundError, UsageError
from predlearn.paper import TABLE1, TABLE2

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


def sweep_configs(paths: Sequence[str | Path]) -> list[Path]:
    """The YAML files named, or found in the folders named, minus transfer-only configs."""
    configs: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            configs.extend(sorted(path.glob("*.yaml")))
        elif path.is_file():
            configs.append(path)
        else:
            raise DataNotFoundError(f"sweep: no config file or folder {path}")
    selected = [c for c in configs if not _is_transfer_only(c)]
    if not selected:
        raise DataNotFoundError(
            f"sweep: no training configs (*.yaml) in {', '.join(map(str, paths))}")
    return selected


def _load_config(config: Path) -> DictConfig:
    """A run config: a YAML mapping of settings."""
    try:
        loaded = OmegaConf.load(config)
    except Exception as error:  # YAML and OmegaConf refuse broken files in many ways
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadFileError(f"sweep: {config} is not valid YAML ({reason})") from error
    if not isinstance(loaded, DictConfig):
        raise BadFileError(f"sweep: {config} is not a run config (a YAML mapping of settings)")
    return loaded


def _is_transfer_only(config: Path) -> bool:
    container = OmegaConf.to_container(_load_config(config))
    assert isinstance(container, dict)  # a DictConfig converts to a dict
    data = container.get("data") or {}
    init_args = data.get("init_args", data) if isinstance(data, dict) else {}
    return init_args.get("test_num_digits") is not None


def _config_class(config: Path, section: str) -> type | None:
    """The class a config's ``model.predictor`` or ``data`` names (None if it names none)."""
    import importlib

    node = _load_config(config).get("model", {}).get("predictor", {}) if section == "model" \
        else _load_config(config).get("data", {})
    module, _, name = str((node or {}).get("class_path", "")).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _has_validation(datamodule: object) -> bool:
    """Whether a data module has validation data (radar with ``val_fraction=0`` has none: its
    last checkpoint is the one recorded and tested)."""
    return getattr(datamodule, "val_fraction", None) != 0


def has_transfer_test(datamodule: object) -> bool:
    """Whether a data module has a transfer test set (``test_num_digits``: Moving MNIST)."""
    import inspect

    return "test_num_digits" in inspect.signature(type(datamodule)).parameters


def is_trainable(config: Path) -> bool:
    """Whether the config's predictor has weights to train (not a baseline such as
    ``persistence``)."""
    predictor = _config_class(config, "model")
    return predictor is None or getattr(predictor, "trainable", True)


def run_one(config: Path, overrides: Sequence[str], transfer_digits: int | None) -> SweepResult:
    """fit + test of one config, then the transfer test of its best checkpoint; only the test
    for a predictor without weights."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from predlearn.lightning_cli import run_lightning

    started = time.perf_counter()
    if not is_trainable(config):
        tested = run_lightning(["test", f"--config={config}", *overrides])
        result = SweepResult(config, _model_name(config), steps=0)
        result.curves["test"] = tested.model.curves["test"]
        result.spectra = tested.model.spectra
        result.seconds = time.perf_counter() - started
        _finish_wandb()
        return result
    fitted = run_lightning(["fit", f"--config={config}", "--test_after_fit=true", *overrides])
    predictor = type(fitted.model.predictor)
    from predlearn.registry import MODELS

    result = SweepResult(config, MODELS.name_of(predictor) or predictor.__name__.lower())
    result.curves["test"] = fitted.model.curves["test"]
    result.spectra = fitted.model.spectra
    checkpoint = fitted.trainer.checkpoint_callback
    best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else None
    if best is None:
        raise UsageError(f"sweep: {config} trains without a ModelCheckpoint (checkpointing off?); "
                         "the sweep records and tests the best checkpoint of each run")
    if not best and not _has_validation(fitted.datamodule):
        assert isinstance(checkpoint, ModelCheckpoint)  # best is None otherwise
        best = checkpoint.last_model_path  # no validation split (radar: val_fraction 0)
    if not best:
        raise UsageError(f"sweep: {config} ran no validation, so it has no best checkpoint to "
                         "record and test; let it validate (--trainer.limit_val_batches, "
                         "--trainer.val_check_interval)")
    result.best_checkpoint = best
    result.steps = fitted.trainer.global_step
    result.seconds = time.perf_counter() - started  # includes the test after fit
    _finish_wandb()
    if transfer_digits and has_transfer_test(fitted.datamodule):
        tested = run_lightning(["test", f"--config={config}", *overrides,
                          f"--data.init_args.test_num_digits={transfer_digits}",
                          f"--ckpt_path={result.best_checkpoint}"])
        result.curves[f"test_{transfer_digits}digits"] = tested.model.curves["test"]
        _finish_wandb()
    return result


def finished_result(config: Path, out: Path, transfer_digits: int | None) -> SweepResult | None:
    """The result of a config an earlier, interrupted sweep into ``out`` already finished (its
    curves CSVs are there), or None."""
    import torch

    from predlearn.compare import read_curves_csv

    run_file = out / "curves" / f"{config.stem}_run.json"
    run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    # the test sets the run had (written before its curves; older run files: test + transfer)
    test_sets = run.get("test_sets") or (
        ["test"] + ([f"test_{transfer_digits}digits"] if transfer_digits else []))
    paths = {name: out / "curves" / f"{config.stem}_{name}.csv" for name in test_sets}
    if not all(path.is_file() for path in paths.values()):
        return None
    result = SweepResult(config, _model_name(config))
    for name, path in paths.items():
        result.curves[name] = {key: torch.tensor(values)
                               for key, values in read_curves_csv(path).items()}
    spectrum = out / "curves" / f"{config.stem}_power_spectrum.csv"
    if spectrum.is_file():
        from predlearn.nowcast_metrics import read_power_spectra_csv

        result.spectra = read_power_spectra_csv(spectrum)
    if run:
        result.steps, result.seconds = run.get("steps"), run.get("seconds")
        result.best_checkpoint = run.get("best_checkpoint", "")
    return result


def write_run_file(result: SweepResult, out: Path) -> None:
    """The steps, seconds and best checkpoint of a finished config, read back on --resume."""
    run = {"steps": result.steps, "seconds": result.seconds,
           "best_checkpoint": result.best_checkpoint, "test_sets": list(result.curves)}
    (out / "curves" / f"{result.config.stem}_run.json").write_text(json.dumps(run, indent=1))


def _model_name(config: Path) -> str:
    """The registry name of the predictor a config trains (its class name if unregistered)."""
    import importlib

    from predlearn.registry import MODELS

    predictor = _load_config(config).get("model", {}).get("predictor", {})
    module, _, name = str(predictor.get("class_path", "")).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return MODELS.name_of(cls) or cls.__name__.lower()


def _finish_wandb() -> None:
    """End the W&B run of a finished config, so the next config starts its own."""
    import wandb

    if wandb.run is not None:
        wandb.finish()


def scores_nowcasting(results: Sequence[SweepResult]) -> bool:
    """Whether the runs scored nowcasting skill (radar data): their curves have CSI keys."""
    return any(key.startswith("csi_") for r in results for key in r.curves.get("test", {}))


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
            result.steps, None if result.seconds is None else round(result.seconds, 1),
        ])
    with (out / "table.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])

    def cell(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "Per-frame metrics (sum over a frame's pixels, [0, 1]; lower is better): "
        + "measured \\| paper Table 1. SSIM: mean over the predicted frames (higher is "
        + "better; the paper gives no number for Moving MNIST). Steps and minutes: what each "
        + "model trained (fit, validation and test).",
        "",
        (f"| Model | Config | CE/frame | MSE/frame | MSE/frame, {transfer_digits or '-'} digits "
         f"| SSIM | SSIM, {transfer_digits or '-'} digits | Steps | Minutes |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        minutes = None if row[11] is None else row[11] / 60
        lines.append(f"| {row[0]} | {row[1]} | {cell(row[2])} \\| {cell(row[5])} | "
                     f"{cell(row[3])} \\| {cell(row[6])} | {cell(row[4])} \\| {cell(row[7])} "
                     f"| {cell(row[8], 3)} | {cell(row[9], 3)} | {cell(row[10], 0)} "
                     f"| {cell(minutes)} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


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
    rows = []
    for result in results:
        paper = TABLE2.get(result.model)
        rows.append([result.model, result.config.name, result.mean("test", "mse_per_frame"),
                     paper, result.mean("test", "ssim"),
                     *(result.mean("test", key) for key in scores),
                     result.steps, None if result.seconds is None else round(result.seconds, 1)])
    with (out / "table.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    fss = [k for k in scores if k.startswith("fss_")]
    largest = max((int(k.rsplit("_", 1)[1].removesuffix("px")) for k in fss), default=None)
    shown = [k for k in scores if k.startswith(("csi_", "hss_"))] + [
        k for k in fss if k.endswith(f"_{largest}px")]

    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"

    lines = [
        ("Mean over the lead times. MSE: per frame (sum over a frame's pixels, [0, 1]; lower is "
         "better) \\| paper Table 2 (Guangzhou data, not these). CSI, HSS, FSS (higher is "
         "better) from contingency counts pooled over the test set; `-`: undefined (no event). "
         "Steps and minutes: what each model trained (0: a baseline without weights)."),
        "",
        "| Model | Config | MSE/frame | SSIM | " + " | ".join(shown) + " | Steps | Minutes |",
        "|---|---|---|---|" + "---|" * len(shown) + "---|---|",
    ]
    for result in results:
        minutes = None if result.seconds is None else result.seconds / 60
        lines.append(
            f"| {result.model} | {result.config.name} | "
            f"{cell(result.mean('test', 'mse_per_frame'), 1)} \\| "
            f"{cell(TABLE2.get(result.model), 1)} | {cell(result.mean('test', 'ssim'), 3)} | "
            + " | ".join(cell(result.mean("test", key), 3) for key in shown)
            + f" | {'-' if result.steps is None else result.steps} | {cell(minutes, 1)} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")


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


def run_sweep(argv: Sequence[str]) -> list[SweepResult]:
    """Entry point of ``predlearn sweep``."""
    from predlearn.argparsing import ArgumentParser

    parser = ArgumentParser(
        prog="predlearn sweep",
        description="Train and test every config in a folder and write a Table-1-style table "
                    "and the per-step MSE plot. Other arguments go to every run.",
        epilog="Give the arguments for the runs as --key=value (e.g. --trainer.max_steps=1000); "
               "a separate value would be read as a config path.",
    )
    parser.add_argument("configs", nargs="+", help="config files or folders of them")
    parser.add_argument("--out", default=None,
                        help="folder for the table and plot (default: runs/sweep-<time>)")
    parser.add_argument("--transfer-digits", type=int, default=3,
                        help="digits of the transfer test set (0: no transfer test)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the configs whose curves are already in --out/curves (an "
                             "interrupted sweep goes on with the next config)")
    args, overrides = parser.parse_known_args(list(argv))
    from predlearn.visualize import write_curves_csv

    out = Path(args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    (out / "curves").mkdir(parents=True, exist_ok=True)
    transfer = args.transfer_digits or None
    configs = sweep_configs(args.configs)
    results = []
    for index, config in enumerate(configs, start=1):
        result = finished_result(config, out, transfer) if args.resume else None
        if result is not None:
            print(f"predlearn sweep: [{index}/{len(configs)}] {config}: done before (resume)",
                  flush=True)
            results.append(result)
            continue
        print(f"predlearn sweep: [{index}/{len(configs)}] {config}", flush=True)
        result = run_one(config, overrides, transfer)
        write_run_file(result, out)  # before the curves: --resume keys on the curves
        if result.spectra:
            from predlearn.nowcast_metrics import write_power_spectra_csv

            write_power_spectra_csv(result.spectra,
                                    out / "curves" / f"{config.stem}_power_spectrum.csv")
        for test_set, curves in result.curves.items():
            write_curves_csv(curves, out / "curves" / f"{config.stem}_{test_set}.csv")
        results.append(result)
    write_table(results, out, transfer)
    plot = plot_per_step_mse(results, out, transfer)
    written = [str(out / "table.md"), str(out / "table.csv"), str(plot)]
    if any(result.spectra for result in results):
        written.append(str(plot_spectra(results, out)))
    print(f"predlearn sweep: wrote {', '.join(written)}")
    return results
