"""Callbacks that write a run's checkpoints, pictures, per-step curves and predictions."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import h5py
import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from predlearn.errors import OptionValueError, OutputError
from predlearn.registry import DATAMODULES, MODELS
from predlearn.runs import RUN_INFO
from predlearn.visualize import (
    save_curves_figure,
    save_prediction_figure,
    save_prediction_gif,
    write_curves_csv,
    write_gif,
)

if TYPE_CHECKING:
    from predlearn.module import PredictiveModule


class ValidatedCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose step checkpoints are ranked only by a fresh validation score.

    With ``every_n_train_steps=N`` and a ``monitor`` (predlearn's ``--checkpoint`` options),
    Lightning's own callback ranks the weights of step s by the last logged ``val/loss``, which
    may come from an earlier validation, and writes no ``last`` checkpoint before the first
    validation. Here, at every N-th step:

    - ``last`` is written;
    - when a validation runs right after that step, the weights are ranked by that validation's
      score, and the ranked checkpoint and ``last`` are written after it (so ``last`` holds the
      ranking, and a run resumed from it goes on exactly as an uninterrupted one; a run killed
      during that validation resumes from the ``last`` written before it, without its score);
    - the weights of step s are never ranked by another step's score.

    Validations at steps that are not checkpoint steps rank nothing (align
    ``--trainer.val_check_interval`` with ``every_n_train_steps``). On resume the ranking of the
    interrupted run is restored even when its folder changed (a new logger version), so the
    resumed run picks the same best checkpoint as an uninterrupted one. Without
    ``every_n_train_steps``, or without ``monitor``, it is ``ModelCheckpoint`` unchanged.
    """

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint``'s own key: checkpoints written by it (before this class) resume
        with their ranking and ``last`` path instead of starting a new one."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def _ranks_steps(self) -> bool:
        return self._every_n_train_steps >= 1 and self.monitor is not None

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        """Training for real: not a sanity check, a fast dev run, or a validate/test run."""
        return (not getattr(trainer, "fast_dev_run", False) and not trainer.sanity_checking
                and trainer.state.fn == "fit")

    def _is_checkpoint_step(self, trainer: L.Trainer) -> bool:
        return trainer.global_step % self._every_n_train_steps == 0 and self._fitting(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._ranks_steps():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if not self._is_checkpoint_step(trainer):
            return
        # Whether a validation follows is the fit loop's business (not public API), so `last`
        # is written now, and again after a validation of this step, with its ranking.
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._ranks_steps():
            super().on_validation_end(trainer, pl_module)
            if not self._should_save_on_train_epoch_end(trainer):
                self._save_last_if_missed(trainer)
            return
        if not trainer.sanity_checking:
            self._validated = True
        if not self._is_checkpoint_step(trainer):
            return
        candidates = self._monitor_candidates(trainer)  # just logged by this validation
        if self.monitor in candidates:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._ranks_steps():
            super().on_train_epoch_end(trainer, pl_module)
            if self._should_save_on_train_epoch_end(trainer):
                self._save_last_if_missed(trainer)

    def _save_last_if_missed(self, trainer: L.Trainer) -> None:
        """Lightning writes `last` only when the same save also wrote a ranked checkpoint, so a
        run resumed from it would lose every step since its last improvement: write it anyway,
        after Lightning's own save at this point (which it would otherwise skip)."""
        if self.save_last and self._fitting(trainer) \
                and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        """A run resumed from this folder's ``last.ckpt`` goes on writing ``last.ckpt``. Lightning
        writes ``last-v1.ckpt`` beside it instead when the restored state names another file
        (the folder was moved or copied, or the file renamed), and the next resume from
        ``last.ckpt`` would silently go back to the old step."""
        if self.save_last and trainer.ckpt_path:
            own_last = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
            if os.path.realpath(trainer.ckpt_path) == os.path.realpath(own_last):
                self.last_model_path = own_last
        super()._save_last_checkpoint(trainer, monitor_candidates)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self._ranks_steps() and getattr(self, "_validated", False) \
                and not self.best_model_path:
            rank_zero_warn(
                f"checkpoint: no validation ran at a checkpoint step (every_n_train_steps="
                f"{self._every_n_train_steps}), so no checkpoint was ranked by {self.monitor}; "
                "make --trainer.val_check_interval a multiple of it "
                "(--trainer.check_val_every_n_epoch=null counts it in steps)")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The interrupted run's ranking, also when this run writes to another folder (a new
        logger version): its files stay where they are, since ``ModelCheckpoint`` never deletes
        a file outside its own folder."""
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            return
        self.best_model_path = state_dict["best_model_path"]
        for key in ("best_model_score", "best_k_models", "kth_best_model_path", "kth_value"):
            if key in state_dict:
                setattr(self, key, state_dict[key])


def run_directory(trainer: L.Trainer) -> Path:
    """A run's folder, as ``trainer.log_dir`` gives it but without its broadcast (so that one
    process alone may ask): the folder predlearn chose for the run with W&B or without a logger
    (``predlearn.runs``), a CSV or TensorBoard logger's ``version_N``."""
    logger = trainer.logger
    if isinstance(logger, (CSVLogger, TensorBoardLogger)):
        return Path(logger.log_dir)
    if logger is not None and logger.save_dir:
        return Path(logger.save_dir)
    return Path(trainer.default_root_dir)


@dataclass(frozen=True)
class Validation:
    """The per-step validation curves a run reports: those of its best checkpoint (with the
    step they were computed at), or, without one, of its last validation."""

    curves: dict[str, Tensor]
    step: int | None
    checkpoint: str | None = None  # the best checkpoint's file; None: the last validation

    def describe(self) -> str:
        if self.checkpoint:
            return f"best checkpoint (step {self.step})"
        return f"last validation (step {self.step})"


def _load(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by this run (tensors and plain values only), memory-mapped."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def best_validation(trainer: L.Trainer, pl_module: L.LightningModule) -> Validation | None:
    """The validation curves of the best checkpoint (kept in it by ``PredictiveModule``), or of
    the last validation when there is no best checkpoint (or it predates those records);
    None when no validation ran."""
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    if best and Path(best).is_file():
        record = _load(best).get("predlearn", {}).get("validation")
        if record:
            curves = {key: torch.tensor(values) for key, values in record["curves"].items()}
            return Validation(curves, record["step"], best)
    module = _predictive(pl_module)
    last = module.curves.get("val")
    if not last:
        return None
    return Validation(last, module.curve_steps.get("val"))


@contextmanager
def weights_of(pl_module: L.LightningModule, checkpoint: str | None) -> Iterator[None]:
    """The module with the weights of ``checkpoint`` inside the block, its own again after it
    (None: its own throughout)."""
    if checkpoint is None:
        yield
        return
    own = {key: value.detach().clone() for key, value in pl_module.state_dict().items()}
    pl_module.load_state_dict(_load(checkpoint)["state_dict"])
    try:
        yield
    finally:
        pl_module.load_state_dict(own)


def _predictive(pl_module: L.LightningModule) -> PredictiveModule:
    """The module as the ``PredictiveModule`` it is: the command line pairs ``PredictionFigures``
    with it (its ``horizon``, ``test_horizon``, ``split`` and ``curves``)."""
    return cast("PredictiveModule", pl_module)


class PredictionFigures(L.Callback):
    """Writes ``<stage>_predictions.png`` (input | truth | prediction), ``<stage>_predictions.gif``
    (truth | prediction | absolute error, animated), ``<stage>_curves.png`` and
    ``<stage>_curves.csv`` into the run's folder: at the end of fitting for the validation set
    (the best checkpoint's curves and predictions), of ``validate`` and of testing (test set);
    with W&B, the pictures and the animation go to the run too (``<stage>/predictions``,
    ``<stage>/curves``, ``<stage>/predictions_video``; the curves themselves are sent by
    ``predlearn.wandb_report.WandbReport``).

    Args:
        enabled: write the files at all.
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

    def _keep(self, stage: str, batch: Tensor, batch_idx: int, dataloader_idx: int) -> None:
        if self.enabled and batch_idx == 0 and dataloader_idx == 0:
            batch = batch[0] if isinstance(batch, (list, tuple)) else batch
            self._examples[stage] = batch[: self.num_sequences].detach()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._keep("val", batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0) -> None:
        self._keep("test", batch, batch_idx, dataloader_idx)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = _predictive(pl_module)
        best = best_validation(trainer, module) if self.enabled else None
        if best is None or not trainer.is_global_zero:
            return
        checkpoint = best.checkpoint if best.step != trainer.global_step else None
        with weights_of(module, checkpoint):
            self._write(trainer, module, "val", module.horizon, best.curves,
                        f"val set, {best.describe()}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate" and not trainer.sanity_checking:
            module = _predictive(pl_module)
            self._write(trainer, module, "val", module.horizon, module.curves.get("val"),
                        f"val set, step {trainer.global_step}")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = _predictive(pl_module)
        self._write(trainer, module, "test", module.test_horizon, module.curves.get("test"),
                    f"test set, step {trainer.global_step}")

    def _write(self, trainer: L.Trainer, pl_module: PredictiveModule, stage: str,
               horizon: int, curves: dict[str, Tensor] | None, title: str) -> None:
        example = self._examples.pop(stage, None)
        if not self.enabled or not trainer.is_global_zero or example is None or not curves:
            return
        folder = Path(self.output_dir) if self.output_dir else run_directory(trainer)
        frames, targets = pl_module.split(example, horizon)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            predictions = pl_module(frames.to(pl_module.device), horizon).cpu()
        pl_module.train(was_training)
        picture = save_prediction_figure(frames, targets, predictions,
                                         folder / f"{stage}_predictions.png", title=title)
        curve_plot = save_curves_figure(curves, folder / f"{stage}_curves.png",
                                        title=f"{title}, per predicted step")
        table = write_curves_csv(curves, folder / f"{stage}_curves.csv")
        write_run_info(trainer, pl_module, folder)
        animation = save_prediction_gif(frames, targets, predictions,
                                        folder / f"{stage}_predictions.gif")
        rank_zero_info(f"predlearn: wrote {picture}, {animation}, {curve_plot} and {table}")
        if stage == "test" and pl_module.spectra:
            self._write_spectra(trainer, pl_module.spectra, folder, title)
        if stage == "test" and self.pretrained:
            self._write_pretrained(self.pretrained, frames, targets, horizon, folder)
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
        from predlearn.nowcast_metrics import plot_power_spectra, write_power_spectra_csv

        minutes = getattr(getattr(trainer, "datamodule", None), "frame_minutes", None)
        plot = plot_power_spectra(spectra, folder / "test_power_spectrum.png",
                                  lead_minutes=minutes, title=f"{title}, power spectra")
        table = write_power_spectra_csv(spectra, folder / "test_power_spectrum.csv")
        rank_zero_info(f"predlearn: wrote {plot} and {table}")
        if isinstance(trainer.logger, WandbLogger):
            trainer.logger.log_image(key="test/power_spectrum", images=[str(plot)])

    def _write_pretrained(self, name: str, frames: Tensor, targets: Tensor, horizon: int,
                          folder: Path) -> Path:
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
                                      title=f"test set, shipped model {name}")
        rank_zero_info(f"predlearn: wrote {path} (the shipped model {name})")
        return path


def write_run_info(trainer: L.Trainer, pl_module: L.LightningModule, folder: Path) -> Path:
    """``predlearn_run.json``: which model and data made the run's files (read by ``compare``)."""
    datamodule = getattr(trainer, "datamodule", None)
    info = {
        "model": MODELS.name_of(type(getattr(pl_module, "predictor", None))),
        "data": DATAMODULES.name_of(type(datamodule)) if datamodule is not None else None,
        "context_frames": getattr(pl_module, "context_frames", None),
        "horizon": getattr(pl_module, "horizon", None),
        "test_horizon": getattr(pl_module, "test_horizon", None),
        "global_step": trainer.global_step,
    }
    path = folder / RUN_INFO
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


class PredictionWriter(BasePredictionWriter):
    """``predlearn predict`` writes its predictions: an HDF5 array, PNG frames and GIFs.

    ``predictions.h5`` holds ``predictions``, float32 (N, K, C, H, W) in [0, 1], in the order of
    the predict loader (gzip-compressed). For the first ``image_sequences`` sequences it also
    writes ``predictions/seq_NNNN/step_KK.png`` and an animated ``predictions/seq_NNNN.gif``.

    Args:
        output_path: the HDF5 file; default ``predictions.h5`` in the run's folder. The images go
            to a ``predictions/`` folder beside it.
        image_sequences: how many sequences to write as PNG frames and GIFs (0: none).
    """

    def __init__(self, output_path: str | None = None, image_sequences: int = 16) -> None:
        super().__init__(write_interval="epoch")
        if image_sequences < 0:
            raise OptionValueError("image_sequences", f"must be >= 0; got {image_sequences}",
                                   image_sequences)
        self.output_path = output_path
        self.image_sequences = image_sequences

    def output_file(self, trainer: L.Trainer) -> Path:
        """The HDF5 file this rank writes."""
        path = Path(self.output_path) if self.output_path else (
            run_directory(trainer) / "predictions.h5")
        if trainer.world_size > 1:  # each rank writes the sequences it predicted
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def check_output(self, trainer: L.Trainer) -> Path:
        """The output file, after making sure that neither it nor the ``predictions/`` picture
        folder beside it is, or holds, one of the data module's inputs (``OutputError``)."""
        path = self.output_file(trainer)
        inputs = input_paths(getattr(trainer, "datamodule", None))
        if trainer.ckpt_path and Path(trainer.ckpt_path).exists():
            inputs.append(Path(trainer.ckpt_path))  # the checkpoint is read too
        from predlearn.files import refuse_overwriting

        refuse_overwriting(path, inputs, what="predictions file (--predictions.output_path)")
        if self.image_sequences:
            images = (path.parent / "predictions").resolve()
            for source in inputs:
                if Path(source).resolve().is_relative_to(images):
                    raise OutputError(
                        f"the predicted pictures go to {images}, which holds the input {source}; "
                        "writing them could overwrite it: choose another "
                        "--predictions.output_path (the pictures go beside it) or "
                        "--predictions.image_sequences=0")
        return path

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refuse an output that would overwrite an input before anything is predicted (here,
        once the checkpoint is known)."""
        self.check_output(trainer)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if not predictions:
            return
        batches = predictions[0] if isinstance(predictions[0], list) else predictions
        stacked = torch.cat([torch.as_tensor(b).float().cpu() for b in batches]).numpy()
        path = self.check_output(trainer)
        from predlearn.files import written_atomically

        # closed, then renamed: never a half-written predictions file
        with written_atomically(path) as partial, h5py.File(partial, "w") as handle:
            handle.create_dataset("predictions", data=stacked, compression="gzip",
                                  chunks=(1, *stacked.shape[1:]))
        images = write_prediction_images(stacked[: self.image_sequences],
                                         path.parent / "predictions")
        where = f" and {images} sequences as PNG frames and GIFs in {path.parent / 'predictions'}"
        rank_zero_info(f"predlearn: wrote {len(stacked)} predicted sequences to {path}"
                       + (where if images else ""))


def input_paths(datamodule: Any) -> list[Path]:
    """The files and folders a data module reads: its attributes that are paths (``path``,
    ``root``...) and exist. An output must be none of them."""
    if datamodule is None:
        return []
    found = []
    for value in vars(datamodule).values():
        if isinstance(value, (str, os.PathLike)) and str(value):
            path = Path(value).expanduser()
            if path.exists():
                found.append(path)
    return found


def write_prediction_images(sequences, folder: Path) -> int:
    """PNG frames and a GIF per sequence of an (N, K, C, H, W) array in [0, 1]."""
    from PIL import Image

    for index, sequence in enumerate(sequences):
        pixels = (sequence.clip(0, 1) * 255).round().astype("uint8")  # (K, C, H, W)
        frames = [Image.fromarray(f[0] if f.shape[0] == 1 else f[:3].transpose(1, 2, 0))
                  for f in pixels]
        target = folder / f"seq_{index:04d}"
        target.mkdir(parents=True, exist_ok=True)
        for step, frame in enumerate(frames, start=1):
            frame.save(target / f"step_{step:02d}.png")
        write_gif([np.asarray(frame, dtype=np.float32) / 255 for frame in frames],
                  folder / f"seq_{index:04d}.gif")
    return len(sequences)
