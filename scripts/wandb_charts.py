"""Draw what the W&B workspace shows of some runs, from their offline run files, decoded locally.

    python scripts/wandb_charts.py runs/predrnn-mmnist-*/ runs/convlstm-mmnist-*/ \\
        --out docs/img/wandb_charts.png

Each argument is a predlearn run folder (its ``wandb/offline-run-*``) or an offline run folder.
The picture has W&B's automatic charts of the test curves (``test_curve/<metric>`` against
``test_curve/predicted_step``, one line per run, named as the run) and, below, the runs table
with the summaries (``val/loss`` min, test means with their direction). Nothing is uploaded and
no W&B account is needed: this is what ``wandb sync`` would show once uploaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from predlearn.visualize import new_figure, save_figure
from predlearn.wandb_runs import OfflineRun, curves_from_history, read_offline_run, run_file

CHARTS = ("mse_per_frame", "psnr", "ssim")
COLUMNS = (("val/loss", "min"), ("test/mse_per_frame", "min"), ("test/psnr", "max"),
           ("test/ssim", "max"))


def offline_folder(path: Path) -> Path:
    """An offline run folder: ``path`` itself, or the newest in ``path/wandb/``."""
    if run_file(path) is not None:
        return path
    found = sorted((path / "wandb").glob("offline-run-*"))
    if not found:
        raise SystemExit(f"no W&B offline run in {path}")
    return found[-1]


def draw(runs: list[OfflineRun], out: Path) -> Path:
    """The charts and the runs table of ``runs`` in one picture."""
    figure, axes = new_figure(2, len(CHARTS), figsize=(4.2 * len(CHARTS), 5.4),
                              gridspec_kw={"height_ratios": [3, 0.8]})
    for ax, key in zip(axes[0], CHARTS):
        for run in runs:
            values = curves_from_history(run.history, "test").get(key, [])
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=run.name)
        ax.set_title(f"test_curve/{key}", fontsize=10)
        ax.set_xlabel("test_curve/predicted_step", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    table = axes[1][0].get_gridspec()
    for ax in axes[1]:
        ax.remove()
    ax = figure.add_subplot(table[1, :])
    ax.axis("off")
    header = ["Name", "Group", "Tags", *(f"{key}.{how}" for key, how in COLUMNS)]
    rows = [[run.name, run.group, ", ".join(run.tags),
             *(f"{run.summary.get(key, {}).get(how, float('nan')):.4g}" for key, how in COLUMNS)]
            for run in runs]
    drawn = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="left")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.auto_set_column_width(list(range(len(header))))
    ax.set_title("runs table (summaries)", fontsize=10)
    return save_figure(figure, out, title="W&B workspace, decoded from the offline run files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders or offline run folders")
    parser.add_argument("--out", type=Path, default=Path("wandb_charts.png"))
    args = parser.parse_args()
    runs = [read_offline_run(offline_folder(path)) for path in args.runs]
    print(f"wrote {draw(runs, args.out)}")


if __name__ == "__main__":
    main()
