"""Finish CDNA of the Table 1 sweep: its fit and MNIST-2 test ran; the transfer test died on the
class-path bug fixed in 43ad036. Test the best checkpoint on both test sets and write the files
`predlearn sweep --resume` reads."""
from pathlib import Path

from predlearn.lightning_cli import run_lightning
from predlearn.sweep import write_run_file
from predlearn.sweep_report import SweepResult
from predlearn.visualize import write_curves_csv

config = Path("configs/mmnist-small/cdna.yaml")
best = "runs/table1-small/logs/version_0/checkpoints/best-step001800.ckpt"
out = Path("runs/table1-small")
common = ["--trainer.logger=CSVLogger", "--trainer.logger.save_dir=runs/table1-small/logs",
          "--trainer.enable_progress_bar=false"]
result = SweepResult(config, "cdna", best_checkpoint=best, steps=2000,
                     seconds=36 * 60.0)  # fit + test: log folder made 14:11, last written 14:47
result.curves["test"] = run_lightning(["test", f"--config={config}", *common,
                                       f"--ckpt_path={best}"]).model.curves["test"]
result.curves["test_3digits"] = run_lightning(
    ["test", f"--config={config}", *common, "--data.init_args.test_num_digits=3",
     f"--ckpt_path={best}"]).model.curves["test"]
write_run_file(result, out)
for name, curves in result.curves.items():
    write_curves_csv(curves, out / "curves" / f"cdna_{name}.csv")
print("cdna finished", {k: float(v["mse_per_frame"].mean()) for k, v in result.curves.items()})
