"""Draw what the W&B workspace shows of some runs, from the files of their run folders.

    python scripts/wandb_charts.py runs/predrnn-mmnist-*/ runs/convlstm-mmnist-*/ \\
        --out docs/img/wandb_charts.png

Each argument is a predlearn run folder. The picture has W&B's automatic charts of the test
curves (``test_curve/<metric>`` against ``test_curve/predicted_step``, one line per run, named as
the run) and, below, the runs table with the summaries (``val/loss`` min, test means with their
direction). The values are those each run sent to W&B (``predlearn.wandb_report``), read back
from its folder: ``test_curves.csv``, ``predlearn_run.json`` and, for ``val/loss`` min, the best
checkpoint's score kept in ``checkpoints/last.ckpt``. Nothing is uploaded and no W&B account is
needed: this is what ``wandb sync`` would show once uploaded.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from predlearn.compare_runs import Run, load_run
from predlearn.runs import CHECKPOINTS, RUN_INFO
from predlearn.visualize import new_figure, save_figure
from predlearn.wandb_keys import axis_key, curve_key

CHARTS = ("mse_per_frame", "psnr", "ssim")
SUMMARIES = (("mse_per_frame", "min"), ("psnr", "max"), ("ssim", "max"))


def best_score(folder: Path) -> float:
    """The best checkpoint's ``val/loss`` (W&B's ``val/loss`` min), NaN when none is kept."""
    import torch

    last = folder / CHECKPOINTS / "last.ckpt"
    if not last.is_file():
        return math.nan
    state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    scores = [callback.get("best_model_score") for callback in state.get("callbacks", {}).values()
              if isinstance(callback, dict)]
    return next((float(score) for score in scores if score is not None), math.nan)


def draw(runs: list[Run], out: Path) -> Path:
    """The charts and the runs table of ``runs`` in one picture."""
    figure, axes = new_figure(2, len(CHARTS), figsize=(4.2 * len(CHARTS), 5.4),
                              gridspec_kw={"height_ratios": [3, 0.8]})
    for ax, key in zip(axes[0], CHARTS):
        for run in runs:
            values = run.curves.get(key, [])
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3,
                    label=run.folder.name)
        ax.set_title(curve_key("test", key), fontsize=10)
        ax.set_xlabel(axis_key("test"), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    table = axes[1][0].get_gridspec()
    for ax in axes[1]:
        ax.remove()
    ax = figure.add_subplot(table[1, :])
    ax.axis("off")
    header = ["Name", "Group", "Tags", "val/loss.min",
              *(f"test/{key}.{how}" for key, how in SUMMARIES)]
    rows = []
    for run in runs:
        info = json.loads((run.folder / RUN_INFO).read_text())
        means = [run.mean(key) for key, _ in SUMMARIES]
        rows.append([run.folder.name, info.get("data") or "", run.model,
                     f"{best_score(run.folder):.4g}",
                     *(f"{math.nan if mean is None else mean:.4g}" for mean in means)])
    drawn = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="left")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.auto_set_column_width(list(range(len(header))))
    ax.set_title("runs table (summaries)", fontsize=10)
    return save_figure(figure, out, title="W&B workspace, drawn from the run folders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="predlearn run folders")
    parser.add_argument("--out", type=Path, default=Path("wandb_charts.png"))
    args = parser.parse_args()
    print(f"wrote {draw([load_run(folder) for folder in args.runs], args.out)}")


if __name__ == "__main__":
    main()
