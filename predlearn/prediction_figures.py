"""``PredictionFigures``: a stage's pictures, animation and per-step curves in the run's folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from predlearn.best_validation import best_validation, weights_of
from predlearn.ensemble_figures import save_ensemble_figure, write_ensemble_tables
from predlearn.errors import OptionValueError, names_options_under
from predlearn.module import as_predictive, frames_of
from predlearn.registry import DATAMODULES, MODELS
from predlearn.run_folder import run_directory
from predlearn.runs import RUN_INFO
from predlearn.visualize import (
    save_curves_figure,
    save_prediction_figure,
    save_prediction_gif,
    write_curves_csv,
)

if TYPE_CHECKING:
    from predlearn.module import PredictiveModule


class PredictionFigures(L.Callback):
    """Writes ``<stage>_predictions.png`` (input | truth | prediction), ``<stage>_predictions.gif``
    (truth | prediction | absolute error, animated), ``<stage>_curves.png`` and
    ``<stage>_curves.csv`` into the run's folder: at the end of fitting for the validation set
    (the best checkpoint's curves and predictions), of ``validate`` and of testing (test set);
    with W&B, the pictures and the animation go to the run too (``<stage>/predictions``,
    ``<stage>/curves``, ``<stage>/predictions_video``; the curves themselves are sent by
    ``predlearn.wandb_report.WandbReport``).

    ``<stage>_curves.csv`` and ``predlearn_run.json`` are written even with ``enabled=False``:
    ``predlearn compare`` reads every run from them.

    Args:
        enabled: draw the pictures and the animation.
        num_sequences: how many sequences of the first batch to draw.
        output_dir: folder for the files; default: the run's folder.
        pretrained: the name of a shipped model (``predlearn.list_pretrained()``): after testing,
            also draw its predictions of the same test sequences in
            ``test_predictions_<name>.png``, to set what this run learned beside a trained model.
    """

    def __init__(self, enabled: bool = True, num_sequences: int = 4,
                 output_dir: str | None = None, pretrained: str | None = None) -> None:
        if num_sequences < 1:
            raise OptionValueError("num_sequences", f"must be at least 1; got {num_sequences}",
                                   num_sequences)
        if pretrained is not None:
            from predlearn.pretrained import list_pretrained

            shipped = list_pretrained()
            if pretrained not in shipped:
                raise OptionValueError("pretrained", f"no shipped model named {pretrained!r}; "
                                       f"shipped: {', '.join(shipped) or 'none'}", pretrained)
        self.enabled = enabled
        self.num_sequences = num_sequences
        self.output_dir = output_dir
        self.pretrained = pretrained
        self._examples: dict[str, Tensor] = {}

    __init__ = names_options_under("figures", __init__)  # type: ignore[assignment]

    def _keep(self, stage: str, batch: Tensor, batch_idx: int, dataloader_idx: int) -> None:
        if self.enabled and batch_idx == 0 and dataloader_idx == 0:
            self._examples[stage] = frames_of(batch)[: self.num_sequences].detach()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._keep("val", batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0) -> None:
        self._keep("test", batch, batch_idx, dataloader_idx)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = as_predictive(pl_module)
        best = best_validation(trainer, module)
        if best is None or not trainer.is_global_zero:
            return
        checkpoint = best.checkpoint if self.enabled and best.step != trainer.global_step else None
        with weights_of(module, checkpoint):
            self._write(trainer, module, "val", module.horizon, best.curves,
                        f"val set, {best.describe()}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate" and not trainer.sanity_checking:
            module = as_predictive(pl_module)
            self._write(trainer, module, "val", module.horizon, module.curves.get("val"),
                        f"val set, {weights_step(trainer, module)}")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = as_predictive(pl_module)
        self._write(trainer, module, "test", module.test_horizon, module.curves.get("test"),
                    f"test set, {weights_step(trainer, module)}")

    def _write(self, trainer: L.Trainer, pl_module: PredictiveModule, stage: str,
               horizon: int, curves: dict[str, Tensor] | None, title: str) -> None:
        example = self._examples.pop(stage, None)
        if not trainer.is_global_zero or not curves:
            return
        folder = Path(self.output_dir) if self.output_dir else run_directory(trainer)
        table = write_curves_csv(curves, folder / f"{stage}_curves.csv")
        write_run_info(trainer, pl_module, folder)
        settings = getattr(pl_module.test_metrics, "settings", None)
        tags = settings.threshold_tags() if settings is not None else []
        ensemble_files = write_ensemble_tables(
            pl_module.tables.get(stage, {}), tags, folder, stage, title,
            getattr(getattr(trainer, "datamodule", None), "frame_minutes", None),
            draw=self.enabled)
        if ensemble_files:
            rank_zero_info(f"predlearn: wrote {', '.join(map(str, ensemble_files))}")
        rows = pl_module.intervals.get(stage)
        if rows:
            from predlearn.score_intervals import write_intervals_csv

            path = write_intervals_csv(rows, folder / f"{stage}_intervals.csv")
            rank_zero_info(f"predlearn: wrote {path}: 95 % intervals over {rows[0].sequences} "
                           f"sequences in {rows[0].blocks} blocks")
        if not self.enabled or example is None:
            rank_zero_info(f"predlearn: wrote {table}")
            return
        frames, targets = pl_module.split(example, horizon)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            predictions = pl_module(frames.to(pl_module.device), horizon).cpu()
        pl_module.train(was_training)
        names = channel_names_of(trainer)
        if predictions.ndim == 6:  # ensemble members: their mean in the usual pictures
            members, predictions = predictions, predictions.mean(dim=1)
            threshold = settings.unit_thresholds()[0] if settings is not None else None
            drawn = save_ensemble_figure(
                frames, targets, members, folder / f"{stage}_ensemble.png",
                title=f"{title}, {members.shape[1]} members", threshold=threshold,
                threshold_label=tags[0] if tags else "", channel_names=names)
            rank_zero_info(f"predlearn: wrote {drawn}")
        picture = save_prediction_figure(frames, targets, predictions,
                                         folder / f"{stage}_predictions.png", title=title,
                                         channel_names=names)
        curve_plot = save_curves_figure(curves, folder / f"{stage}_curves.png",
                                        title=f"{title}, per predicted step")
        animation = save_prediction_gif(frames, targets, predictions,
                                        folder / f"{stage}_predictions.gif", channel_names=names)
        rank_zero_info(f"predlearn: wrote {picture}, {animation}, {curve_plot} and {table}")
        if stage == "test" and pl_module.spectra:
            self._write_spectra(trainer, pl_module.spectra, folder, title)
        if stage == "test" and self.pretrained:
            self._write_pretrained(self.pretrained, frames, targets, horizon, folder, names)
        if isinstance(trainer.logger, WandbLogger):
            # one key per picture: W&B shows the pictures of one key side by side, same size
            trainer.logger.log_image(key=f"{stage}/predictions", images=[str(picture)])
            trainer.logger.log_image(key=f"{stage}/curves", images=[str(curve_plot)])
            trainer.logger.log_video(key=f"{stage}/predictions_video", videos=[str(animation)],
                                     format=["gif"])

    @staticmethod
    def _write_spectra(trainer: L.Trainer, spectra: dict[str, Tensor], folder: Path,
                       title: str) -> None:
        """The radially averaged power spectra of predictions and observations per lead time
        (``test_power_spectrum.png`` and ``.csv``): where the predictions lose small-scale
        power (blur)."""
        from predlearn.power_spectrum import plot_power_spectra, write_power_spectra_csv

        minutes = getattr(getattr(trainer, "datamodule", None), "frame_minutes", None)
        plot = plot_power_spectra(spectra, folder / "test_power_spectrum.png",
                                  lead_minutes=minutes, title=f"{title}, power spectra")
        table = write_power_spectra_csv(spectra, folder / "test_power_spectrum.csv")
        rank_zero_info(f"predlearn: wrote {plot} and {table}")
        if isinstance(trainer.logger, WandbLogger):
            trainer.logger.log_image(key="test/power_spectrum", images=[str(plot)])

    def _write_pretrained(self, name: str, frames: Tensor, targets: Tensor, horizon: int,
                          folder: Path, channel_names: Sequence[str] | None = None) -> Path:
        """The shipped model ``name``'s predictions of the drawn test sequences, in their own
        picture."""
        from predlearn.pretrained import load_pretrained

        shipped = load_pretrained(name)
        if shipped.context_frames != frames.shape[1]:
            raise ValueError(
                f"figures.pretrained: {name} observes {shipped.context_frames} frames; "
                f"this run's test sequences give {frames.shape[1]}"
            )
        with torch.no_grad():
            predictions = shipped(frames.float(), horizon).cpu()
        path = save_prediction_figure(frames, targets, predictions,
                                      folder / f"test_predictions_{name}.png",
                                      title=f"test set, shipped model {name}",
                                      channel_names=channel_names)
        rank_zero_info(f"predlearn: wrote {path} (the shipped model {name})")
        return path


def channel_names_of(trainer: L.Trainer) -> Sequence[str] | None:
    """The names of the data's channels, for the pictures' labels (None: the data names none)."""
    names = getattr(getattr(trainer, "datamodule", None), "channel_names", None)
    return [str(name) for name in names] if names else None


#: data modules of your own files: their runs are told apart by the file they read
FILE_DATA = ("frames",)


def data_source(datamodule: object) -> str | None:
    """What a run's data was, for ``compare`` to tell runs apart: the registry name (``mmnist``)
    and, for your own files (``frames``), the file's name and any dataset chosen in it
    (``frames:sst.h5``, ``frames:sst.h5[anomaly]``)."""
    name = DATAMODULES.name_of(type(datamodule)) if datamodule is not None else None
    path = getattr(datamodule, "path", None)
    if name not in FILE_DATA or not path:
        return name
    files = [Path(str(one)).name for one in ([*path] if isinstance(path, (list, tuple))
                                             else [path])]
    source = f"{name}:{','.join(files)}"
    dataset = getattr(datamodule, "dataset", None)
    return f"{source}[{dataset}]" if dataset else source


def weights_step(trainer: L.Trainer, pl_module: L.LightningModule) -> str:
    """Which training step the weights come from: the loaded checkpoint's (a test or validate
    run counts its own steps from 0), else the trainer's."""
    trained = getattr(pl_module, "trained_steps", None)
    step = trained if trained is not None and trainer.global_step == 0 else trainer.global_step
    return f"step {step}"


def write_run_info(trainer: L.Trainer, pl_module: L.LightningModule, folder: Path) -> Path:
    """``predlearn_run.json``: which model and data made the run's files (read by ``compare``)."""
    datamodule = getattr(trainer, "datamodule", None)
    info = {
        "model": MODELS.name_of(type(getattr(pl_module, "predictor", None))),
        "data": DATAMODULES.name_of(type(datamodule)) if datamodule is not None else None,
        "data_source": data_source(datamodule),
        "context_frames": getattr(pl_module, "context_frames", None),
        "horizon": getattr(pl_module, "horizon", None),
        "test_horizon": getattr(pl_module, "test_horizon", None),
        "global_step": trainer.global_step,
    }
    path = folder / RUN_INFO
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path
