"""What a run shows in W&B: per-step curves as one chart each, and summaries that sort.

With a ``WandbLogger`` (predlearn's default), ``WandbReport`` defines, when the run starts:

- for each stage (``val``, ``test``) and metric, the curve ``<stage>_curve/<metric>`` (e.g.
  ``test_curve/psnr``) by its exact name, against its own x-axis
  ``<stage>_curve/predicted_step`` (1..K), with no summary: on the W&B workspace each is one
  chart with one line per run, with no set-up;
- the summaries of the runs table: ``val/loss`` as its minimum (the best validation), each test
  mean ``test/<metric>`` as its max (PSNR, SSIM) or min (MSE, cross-entropy), which is its
  direction.

It sends the validation curves of the best checkpoint at the end of fitting (and sets the
summaries ``val/<metric>`` to that checkpoint's means), those of ``validate`` at its end, and the
test curves at the end of testing, each also as a table ``<stage>/per_step`` (the keys:
``predlearn.wandb_keys``). The per-step scalars ``<stage>/<metric>/step_NN`` of the CSV logger are
not sent (``AutoWandbLogger`` drops them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from predlearn.best_validation import best_validation
from predlearn.module import as_predictive
from predlearn.wandb_keys import axis_key, curve_key, table_key

if TYPE_CHECKING:
    from predlearn.module import PredictiveModule

#: the x-axis of everything Lightning's WandbLogger logs (its own name for the global step)
GLOBAL_STEP = "trainer/global_step"


def define_metrics(run: Any, directions: dict[str, dict[str, bool]]) -> None:
    """Define the curves and summaries of a W&B ``run`` (see the module's docstring);
    ``directions``: stage -> metric key -> whether higher is better."""
    run.define_metric("val/loss", step_metric=GLOBAL_STEP, summary="min")
    for stage, metrics in directions.items():
        axis = axis_key(stage)
        run.define_metric(axis, hidden=True, summary="none")
        for key, higher in metrics.items():
            run.define_metric(curve_key(stage, key), step_metric=axis, summary="none")
            if stage == "test":
                run.define_metric(f"test/{key}", step_metric=GLOBAL_STEP,
                                  summary="max" if higher else "min")


def log_curves(run: Any, stage: str, curves: dict[str, Tensor]) -> None:
    """Send the per-step ``curves`` of ``stage``: one history row per predicted step (x = 1..K)
    and the table ``<stage>/per_step``."""
    import wandb

    keys = list(curves)
    length = len(curves[keys[0]])
    rows = [[step + 1, *(float(curves[key][step]) for key in keys)] for step in range(length)]
    for row in rows:
        run.log({axis_key(stage): row[0],
                 **{curve_key(stage, key): value for key, value in zip(keys, row[1:])}})
    run.log({table_key(stage): wandb.Table(columns=["step", *keys], data=rows)})


def run_config(trainer: L.Trainer, module: PredictiveModule) -> dict[str, Any]:
    """What the W&B config adds to Lightning's hyper-parameters: the model's and the data's
    registry names and the predictor's config (its class path and sizes), for the runs
    table's columns and for ``predlearn compare --wandb``."""
    from predlearn.registry import DATAMODULES, MODELS

    datamodule = getattr(trainer, "datamodule", None)
    return {"model": MODELS.name_of(type(module.predictor)),
            "data": DATAMODULES.name_of(type(datamodule)) if datamodule is not None else None,
            "predictor": getattr(module.predictor, "config", None)}


def wandb_run(trainer: L.Trainer) -> Any:
    """The W&B run of the trainer's ``WandbLogger`` on the process that logs, else None."""
    logger = trainer.logger
    if isinstance(logger, WandbLogger) and trainer.is_global_zero:
        return logger.experiment
    return None


class WandbReport(L.Callback):
    """Sends the per-step curves and sets the summaries of a run to W&B (the module's
    docstring); does nothing without a ``WandbLogger``. The command line adds it to every run."""

    def __init__(self) -> None:
        self.defined: set[int] = set()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        run = wandb_run(trainer)
        if run is None or id(run) in self.defined:
            return
        module = as_predictive(pl_module)
        # callbacks are set up before the module: build its metrics for this data now
        module.prepare_metrics(getattr(trainer, "datamodule", None))
        define_metrics(run, {"val": module.val_metrics.directions(),
                             "test": module.test_metrics.directions()})
        run.config.update(run_config(trainer, module), allow_val_change=True)
        self.defined.add(id(run))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run = wandb_run(trainer)
        best = best_validation(trainer, pl_module) if run is not None else None
        if best is None:
            return
        log_curves(run, "val", best.curves)
        run.summary.update({f"val/{key}": float(curve.mean())
                            for key, curve in best.curves.items()})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        curves = as_predictive(pl_module).curves.get("val")
        run = wandb_run(trainer)
        if trainer.state.fn == "validate" and run is not None and curves \
                and not trainer.sanity_checking:
            log_curves(run, "val", curves)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        curves = as_predictive(pl_module).curves.get("test")
        run = wandb_run(trainer)
        if run is not None and curves:
            log_curves(run, "test", curves)
