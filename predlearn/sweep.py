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
A config may give its ``data`` (or ``model``) as the path of another YAML file, relative to the
config's folder (``data: ../data/mmnist.yaml``). The tables and plots: ``predlearn.sweep_report``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from predlearn.class_paths import class_or_none
from predlearn.compare_runs import model_name, read_curves_csv
from predlearn.errors import BadFileError, DataNotFoundError, UsageError
from predlearn.sweep_report import SweepResult, plot_per_step_mse, plot_spectra, write_table


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


def _read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping of settings (``BadFileError`` for anything else)."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BadFileError(f"sweep: {path} is not valid YAML ({reason})") from error
    if not isinstance(loaded, dict):
        raise BadFileError(f"sweep: {path} is not a run config (a YAML mapping of settings)")
    return loaded


def load_config(config: Path) -> dict[str, Any]:
    """A run config, its ``model:`` and ``data:`` read from the YAML file they name where they
    name one (``data: ../data/mmnist.yaml``: relative to the config's folder, as the command line
    reads it)."""
    loaded = _read_yaml(config)
    for section in ("model", "data"):
        value = loaded.get(section)
        if isinstance(value, str) and value.endswith((".yaml", ".yml")):
            path = config.parent / value
            if not path.is_file():
                raise DataNotFoundError(f"sweep: {config} names {section}: {value}, and there is "
                                        f"no {path}")
            loaded[section] = _read_yaml(path)
    return loaded


def _init_args(node: Any) -> dict[str, Any]:
    """The arguments of a config entry (``init_args``, or the entry itself without one)."""
    node = node if isinstance(node, dict) else {}
    return node.get("init_args", node) or {}


def _is_transfer_only(config: Path) -> bool:
    return _init_args(load_config(config).get("data")).get("test_num_digits") is not None


def _predictor_path(config: Path) -> str:
    """The class path (or registry name) of the predictor a config names; empty for none."""
    model = load_config(config).get("model")
    predictor = model.get("predictor") if isinstance(model, dict) else None
    if isinstance(predictor, dict):
        predictor = predictor.get("class_path")
    return str(predictor or "")


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
    predictor = class_or_none(_predictor_path(config))
    return predictor is None or getattr(predictor, "trainable", True)


def run_one(config: Path, overrides: Sequence[str], transfer_digits: int | None) -> SweepResult:
    """fit + test of one config, then the transfer test of its best checkpoint; only the test
    for a predictor without weights."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from predlearn.lightning_cli import run_lightning

    started = time.perf_counter()
    if not is_trainable(config):
        tested = run_lightning(["test", f"--config={config}", *overrides])
        result = SweepResult(config, model_name(_predictor_path(config)), steps=0)
        result.curves["test"] = tested.model.curves["test"]
        result.spectra = tested.model.spectra
        result.seconds = time.perf_counter() - started
        return result
    fitted = run_lightning(["fit", f"--config={config}", "--test_after_fit=true", *overrides])
    result = SweepResult(config, model_name(type(fitted.model.predictor)))
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
    if transfer_digits and has_transfer_test(fitted.datamodule):
        tested = run_lightning(["test", f"--config={config}", *overrides,
                          f"--data.init_args.test_num_digits={transfer_digits}",
                          f"--ckpt_path={result.best_checkpoint}"])
        result.curves[f"test_{transfer_digits}digits"] = tested.model.curves["test"]
    return result


def finished_result(config: Path, out: Path, transfer_digits: int | None) -> SweepResult | None:
    """The result of a config an earlier, interrupted sweep into ``out`` already finished (its
    curves CSVs are there), or None."""
    import torch

    run_file = out / "curves" / f"{config.stem}_run.json"
    run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    # the test sets the run had (written before its curves; older run files: test + transfer)
    test_sets = run.get("test_sets") or (
        ["test"] + ([f"test_{transfer_digits}digits"] if transfer_digits else []))
    paths = {name: out / "curves" / f"{config.stem}_{name}.csv" for name in test_sets}
    if not all(path.is_file() for path in paths.values()):
        return None
    result = SweepResult(config, model_name(_predictor_path(config)))
    for name, path in paths.items():
        result.curves[name] = {key: torch.tensor(values)
                               for key, values in read_curves_csv(path).items()}
    spectrum = out / "curves" / f"{config.stem}_power_spectrum.csv"
    if spectrum.is_file():
        from predlearn.power_spectrum import read_power_spectra_csv

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


def run_sweep(argv: Sequence[str]) -> list[SweepResult]:
    """Entry point of ``predlearn sweep``."""
    from predlearn.errors import ArgumentParser

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
            from predlearn.power_spectrum import write_power_spectra_csv

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
