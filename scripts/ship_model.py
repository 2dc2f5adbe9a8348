"""Ship a trained model inside predlearn: its pretrained folder (with the model card) and its
training log.

    python scripts/ship_model.py runs/ship/predrnn-mmnist2 --name predrnn-mmnist2 \\
        --checkpoint runs/ship/checkpoints/best-step019500.ckpt \\
        --config configs/pretrained/predrnn-mmnist2.yaml --wall-time "7 h 40 min" \\
        --machine "2-core AMD EPYC, 1 thread, bf16-mixed"

It writes the pretrained folder ``predlearn/weights/<name>/`` (``predlearn.save_pretrained``:
config.json, model.safetensors and the model card README.md: command, seed, steps, wall time,
recipe, data, test scores per predicted step) and copies the run's training metrics to
``benchmarks/results/pretrained/<name>_metrics.csv``. The test scores are read from the run's
``test_curves.csv`` (written by ``--test_after_fit``); ``--test-command`` records the command
that measured them.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from predlearn.pretrained import WEIGHTS_DIR
from predlearn.pretrained_folder import save_pretrained

REPOSITORY = Path(__file__).resolve().parent.parent
METRIC_LABELS = {"mse_per_frame": "MSE / frame", "bce_per_frame": "CE / frame",
                 "psnr": "PSNR (dB)", "ssim": "SSIM"}


def newest(run_dir: Path, name: str) -> Path:
    """The newest ``name`` among the run's version folders (a resumed run adds versions)."""
    found = sorted(run_dir.glob(f"**/{name}"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise SystemExit(f"ship_model: no {name} under {run_dir}")
    return found[-1]


def read_curves(path: Path) -> dict[str, list[float]]:
    with path.open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["step"]))
    return {key: [float(row[key]) for row in rows] for key in rows[0] if key != "step"}


def is_test_row(row: dict[str, str]) -> bool:
    return any(value and key.startswith("test/") for key, value in row.items())


def merged_metrics(run_dir: Path, earlier_log: Path | None = None) -> list[dict[str, str]]:
    """Every row of every version's ``metrics.csv``, in order of step.

    ``earlier_log``, the log written when the model was last shipped, keeps the rows of sessions
    whose run folders are gone (a run resumed across machines); its test rows are dropped, since
    the new test replaces them, and rows present in both are kept once."""
    rows: list[dict[str, str]] = []
    if earlier_log is not None and earlier_log.is_file():
        with earlier_log.open(newline="") as handle:
            rows.extend(row for row in csv.DictReader(handle) if not is_test_row(row))
    for path in sorted(run_dir.glob("**/metrics.csv")):
        with path.open(newline="") as handle:
            rows.extend(csv.DictReader(handle))
    unique: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for row in rows:
        unique.setdefault(tuple(sorted((key, value) for key, value in row.items() if value)), row)
    return sorted(unique.values(), key=lambda row: int(row["step"]))


def score_table(curves: dict[str, list[float]]) -> str:
    keys = [key for key in METRIC_LABELS if key in curves]
    steps = len(curves[keys[0]])
    lines = ["| | " + " | ".join(METRIC_LABELS[key] for key in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for step in range(steps):
        lines.append(f"| step {step + 1} | " + " | ".join(f"{curves[key][step]:.3f}"
                                                        for key in keys) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{sum(curves[key]) / steps:.3f}**"
                                              for key in keys) + " |")
    return "\n".join(lines)


def write_card(name: str, checkpoint: dict[str, Any], curves: dict[str, list[float]],
               args: argparse.Namespace) -> str:
    hparams = checkpoint["hyper_parameters"]
    predictor = hparams.get("predictor", {})
    init_args = dict(predictor.get("init_args", {})) if isinstance(predictor, dict) else {}
    recipe = {key: hparams[key] for key in (
        "learning_rate", "loss", "loss_frames", "sampling", "reverse_input", "lr_scheduler",
        # the sampling options of checkpoints written before ``sampling`` took a schedule object
        "scheduled_sampling", "reverse_scheduled_sampling", "reverse_sampling_start",
        "reverse_sampling_end", "reverse_sampling_alpha") if key in hparams}
    mean = {key: sum(values) / len(values) for key, values in curves.items()}
    return f"""# {name}

A PredRNN (ST-LSTM, Wang et al. 2017) trained on Moving MNIST-2 on a CPU, shipped with
predlearn. `predlearn.load_pretrained("{name}")` returns it as a `PredictiveModule` in eval mode,
`predlearn.from_pretrained("{name}")` as a Predictor (`predictor(frames, 10)`);
on the command line `--ckpt_path={name}` works wherever a checkpoint path does.

This folder holds `config.json` (the predictor's class and options, frame counts, recipe,
training facts), `model.safetensors` (the weights: no pickle, loading runs no code) and this card.

- **Scores** on 2,000 test sequences of 2 digits the model never saw (MNIST test digits
  8,000-9,999), 10 observed -> 10 predicted frames, closed loop: per-frame MSE
  **{mean.get('mse_per_frame', float('nan')):.1f}**, SSIM **{mean.get('ssim', float('nan')):.3f}**
  (conventions: docs/metrics.md). For scale: the paper's PredRNN 128 x 4 reaches 56.8 after
  80,000 GPU iterations, its DFN row 89.0; predicting all-black frames scores about 176, repeating
  the last observed frame about 289.
- **Model**: `{predictor.get('class_path', '?') if isinstance(predictor, dict) else predictor}`
  with {init_args}.
- **Recipe**: {recipe}. Batch 8, Adam; see docs/models.md for each option.
- **Data**: Moving MNIST-2 generated on the fly from MNIST *test* digits 0-6,999 (only the MNIST
  test file is on the machine that trained it), validation on 400 sequences of digits
  7,000-7,999, which chose the checkpoint; test digits 8,000-9,999. This is not the paper's
  protocol (training digits from the MNIST training set).
- **Training**: step {checkpoint.get('global_step')} ({args.selection}), seed
  {seed_of(args.config)}, wall time {args.wall_time} on {args.machine}.
- **Command**: `predlearn fit --config {args.config}` (resumed with
  `--ckpt_path=runs/ship/checkpoints/last.ckpt` across sessions).
- **Training log**: `benchmarks/results/pretrained/{name}_metrics.csv` (train loss every 50
  steps, validation scores every 500).

## Test scores per predicted step

{score_table(curves)}
"""


def seed_of(config: str) -> Any:
    """``seed_everything`` of the training config."""
    import yaml

    return (yaml.safe_load(Path(config).read_text()) or {}).get("seed_everything")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run's log folder (CSVLogger save_dir/name)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--config", required=True, help="the config that trained it")
    parser.add_argument("--wall-time", required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--selection", default="the best validation loss",
                        help="how the checkpoint was chosen, for the card")
    parser.add_argument("--test-command", default=None,
                        help="the command that measured the test scores, for the card")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--results-dir", type=Path,
                        default=REPOSITORY / "benchmarks" / "results" / "pretrained")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    curves = read_curves(newest(args.run, "test_curves.csv"))
    full = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    scores = {key: sum(values) / len(values) for key, values in curves.items()}
    extra = {"test_command": args.test_command} if args.test_command else {}
    target = save_pretrained(args.checkpoint, args.weights_dir / args.name,
                             card=write_card(args.name, full, curves, args),
                             step=full.get("global_step"), test_scores=scores,
                             test_curves=curves, wall_time=args.wall_time,
                             machine=args.machine, config=args.config, **extra)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    log = args.results_dir / f"{args.name}_metrics.csv"
    rows = merged_metrics(args.run, earlier_log=log)
    with log.open("w", newline="") as handle:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    picture = newest(args.run, "test_predictions.png")
    shutil.copy(picture, args.results_dir / f"{args.name}_test_predictions.png")
    size = sum(path.stat().st_size for path in target.iterdir()) / 1e6
    print(f"ship_model: wrote {target}/ ({size:.1f} MB) and {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
