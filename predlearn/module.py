"""The LightningModule that trains, validates and tests any registered predictor."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import lightning as L
import torch
from torch import Tensor

from predlearn import masked
from predlearn.class_paths import from_config
from predlearn.denormals import set_flush_denormal
from predlearn.errors import BadFileError, OptionValueError, names_options_under
from predlearn.losses import LossName, sequence_loss
from predlearn.masked import Bounds, valid_of
from predlearn.metrics import DEFAULT_METRICS, SequenceMetrics, flatten_curves
from predlearn.optimizers import configure_optimizers
from predlearn.paper import CONTEXT_FRAMES, HORIZON
from predlearn.predictor import Predictor, Rollout, build_predictor
from predlearn.recipes import check_options, check_recipe
from predlearn.registry import METRICS
from predlearn.sampling import SamplingSchedule
from predlearn.units import ScoringSettings, ValueMapping

if TYPE_CHECKING:
    from predlearn.power_spectrum import PowerSpectrum

LossFrames = Literal["predicted", "all"]


def frames_of(batch: Tensor | Sequence[Tensor]) -> Tensor:
    """A batch's frames: the batch itself, or the first item of a (frames, ...) batch."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch  # type: ignore[return-value]


class PredictiveModule(L.LightningModule):
    """Wraps a predictor with the paper's training set-up and per-step metrics.

    Batches are (B, J + K, C, H, W) float tensors in [0, 1]: the first ``context_frames`` are
    observed, the rest are the targets. Data with missing values gives (frames, valid) batches,
    ``valid`` a boolean mask of the observed pixels (``valid_of``): the loss and the metrics skip
    the others (docs/metrics.md, "Missing values"). The data's ``value_bounds`` (default [0, 1];
    None: no clamp) bound the scored and the written predictions; its ``channel_names`` (more
    than one) add per-channel curves ``<key>[<channel>]``.

    Args:
        predictor: any ``Predictor`` (``predlearn.create_model(name)``; on the command line
            ``--model=predrnn``). Required; with ``--ckpt_path`` it comes from the checkpoint.
        context_frames: observed frames J (paper §4.1: 10).
        horizon: predicted frames K in training and validation (paper §4.1: 10).
        test_horizon: predicted frames at test and predict time; None means ``horizon`` (KTH:
            paper §4.2 tests 10 -> 20).
        learning_rate: Adam's learning rate (paper §4: 1e-3).
        loss: "l1+l2" (paper §4: "L1 + L2 loss works best"), or "l2" / "l1" alone.
        sampling: extension, off in the paper configs: a ``predlearn.sampling`` schedule of
            teacher forcing in training, from the authors' released code (validation and test
            stay closed loop). ``ScheduledSampling`` feeds the ground truth instead of the
            model's own prediction with a probability that decays over training;
            ``ReverseScheduledSampling`` (PredRNN v2, TPAMI 2022) also replaces observed frames
            by the model's predictions of them, with a probability that falls to 0 (needs a
            predictor that predicts every frame, not ``fc_lstm``). On the command line
            ``--model.sampling=ScheduledSampling --model.sampling.decay=0.0016``.
        loss_frames: ``"predicted"`` (the paper: the loss over the K predicted frames) or
            ``"all"`` (extension, the authors' released code: also the predictions of observed
            frames 2 .. J, each made from the observed frames before it, so the loss covers
            J + K - 1 next-frame predictions).
        reverse_input: extension (the authors' ``reverse_input``). Each training batch also holds
            its sequences played backwards (a batch of 2B: twice the cost of a step). The authors
            take a second optimiser step on the reversed batch instead of one on both.
        optimizer: extension. An optimiser other than the paper's Adam, as a class-path config
            (on the command line ``--optimizer=AdamW --optimizer.lr=...``); None is Adam with
            ``learning_rate``.
        lr_scheduler: extension. A learning-rate schedule as a class-path config (on the command
            line ``--lr_scheduler=OneCycleLR --lr_scheduler.max_lr=0.003
            --lr_scheduler.total_steps=5000``); stepped every training step (``ReduceLROnPlateau``:
            at the end of every epoch, on the latest ``val/loss``). None keeps the rate constant
            (the paper).
        metrics: per-step metrics at validation and test, by registry name (``predlearn list``).
            None: the data module's ``default_metrics`` where it has them (radar: MSE, PSNR,
            SSIM and the nowcasting scores ``categorical`` and ``fss``), else "mse", "bce",
            "psnr", "ssim". Scores in physical units take their thresholds from the data
            module's ``scoring`` (radar: ``--data.thresholds`` etc., docs/nowcasting.md).
        compile: extension. Run the predictor through ``torch.compile`` (the weights and the
            checkpoints stay those of the plain module).
        compile_backend: the ``torch.compile`` backend ("inductor"; "aot_eager" compiles faster
            and generates no code).
        flush_denormal: flush denormal floats (magnitude below about 1.2e-38) to zero in every
            thread that computes, set in ``setup`` before any step runs: on some CPUs arithmetic
            on them is many times slower (``predlearn.denormals``). False keeps IEEE denormals.
            Not in the paper (an implementation detail); no effect on CUDA kernels.
    """

    def __init__(
        self,
        predictor: Predictor | None = None,
        context_frames: int = CONTEXT_FRAMES,
        horizon: int = HORIZON,
        test_horizon: int | None = None,
        learning_rate: float = 1e-3,  # paper §4: Adam, learning rate 1e-3
        loss: LossName = "l1+l2",  # paper §4: L1 + L2 loss
        loss_frames: LossFrames = "predicted",  # paper: the K predicted frames
        sampling: SamplingSchedule | None = None,  # paper: closed loop throughout
        reverse_input: bool = False,
        optimizer: dict | None = None,
        lr_scheduler: dict | None = None,
        metrics: Sequence[str] | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
        flush_denormal: bool = True,
    ) -> None:
        super().__init__()
        if predictor is None:
            raise OptionValueError(
                "predictor", "no model: name one (--model=predrnn, `predlearn list` shows them), "
                "give a --config that has one, or a --ckpt_path whose checkpoint was made by "
                "predlearn")
        if isinstance(predictor, Mapping):  # a predictor's config, as checkpoints store it
            predictor = build_predictor(predictor)
        if not isinstance(predictor, torch.nn.Module):
            raise TypeError(
                f"predictor must be a Predictor module (e.g. predlearn.create_model('predrnn')); "
                f"got {type(predictor).__name__}"
            )
        check_options(locals())
        if isinstance(sampling, Mapping):  # a schedule's config, as checkpoints store it
            sampling = from_config(sampling, SamplingSchedule)
        check_recipe(predictor, sampling, loss_frames)
        # The predictor and the schedule are saved as their configs (class path and constructor
        # arguments), so a checkpoint rebuilds them however they were made; a predictor without
        # a config (a plain nn.Module) is passed again to load_from_checkpoint.
        self.save_hyperparameters(ignore=["predictor", "sampling"])
        config = getattr(predictor, "config", None)
        if config is not None:
            self.hparams["predictor"] = config
        self.hparams["sampling"] = None if sampling is None else sampling.config
        self.predictor = predictor
        self.context_frames = context_frames
        self.horizon = horizon
        self.test_horizon = test_horizon or horizon
        self.learning_rate = learning_rate
        self.loss_name = loss
        self.flush_denormal = flush_denormal
        self.sampling = sampling
        self.loss_frames = loss_frames
        self.reverse_input = reverse_input
        self.optimizer_config = optimizer
        self.lr_scheduler_config = lr_scheduler
        # torch.compile's forward and rollout, in a tuple: out of the module tree and state dict
        self.compiled = ((torch.compile(predictor, backend=compile_backend),
                          torch.compile(predictor.rollout, backend=compile_backend))
                         if compile else None)
        self.metric_names = None if metrics is None else (
            [metrics] if isinstance(metrics, str) else list(metrics))
        self.value_mapping: ValueMapping | None = None
        #: the range predictions are clamped to in the metrics and ``predict_step`` (None: none)
        self.value_bounds: Bounds = masked.UNIT_BOUNDS
        # provisional until the data is known (``prepare_metrics``): the names given, or the
        # defaults of data without physical units
        names = [n for n in self.metric_names or DEFAULT_METRICS
                 if not getattr(METRICS.get(n), "physical_units", False)]
        self.val_metrics = SequenceMetrics(horizon, names, prefix="val")
        self.test_metrics = SequenceMetrics(self.test_horizon, names, prefix="test")
        self.test_spectrum: PowerSpectrum | None = None
        #: the last test's mean power spectra (``PowerSpectrum.compute``), for the figures
        self.spectra: dict[str, Tensor] = {}
        #: the last computed per-step curves, by stage ("val", "test") and metric key
        self.curves: dict[str, dict[str, Tensor]] = {}
        #: the global step at which each stage's curves were computed
        self.curve_steps: dict[str, int] = {}
        #: the training step of the weights loaded from a checkpoint (``on_load_checkpoint``)
        self.trained_steps: int | None = None

    __init__ = names_options_under("model", __init__)  # type: ignore[assignment]

    def setup(self, stage: str) -> None:
        """Before anything computes (fit, validate, test, predict, in every process): set the
        denormal mode of this thread and of torch's intra-op threads, and build the metrics the
        data asks for (``prepare_metrics``)."""
        set_flush_denormal(self.flush_denormal)
        try:
            datamodule = getattr(self.trainer, "datamodule", None)
        except RuntimeError:  # not attached to a Trainer (a loop of its own: benchmarks)
            datamodule = None
        self.prepare_metrics(datamodule)

    def prepare_metrics(self, datamodule: Any) -> None:
        """Build the metrics for ``datamodule``: its ``default_metrics`` when ``metrics`` is
        None, its ``scoring`` (``ScoringSettings``: units, thresholds) for the nowcasting scores,
        its ``value_bounds`` (default [0, 1]; None: no clamp, and no ``bce``) and
        ``channel_names`` (curves per channel), the test's power spectrum where it asks
        (``power_spectrum``). Idempotent."""
        bounds = masked.as_bounds(getattr(datamodule, "value_bounds", masked.UNIT_BOUNDS))
        channels = masked.curve_channels(getattr(datamodule, "channel_names", None))
        names = masked.metric_names(self.metric_names, getattr(datamodule, "default_metrics", None)
                             or DEFAULT_METRICS, bounds)
        settings: ScoringSettings | None = getattr(datamodule, "scoring", None)
        physical = [n for n in names if getattr(METRICS.get(n), "physical_units", False)]
        if physical and settings is None:
            name = type(datamodule).__name__ if datamodule is not None else "the data"
            raise OptionValueError(
                "metrics", f"{', '.join(map(repr, physical))} score events at thresholds in "
                f"physical units (e.g. dBZ); {name} has no value mapping (radar data has one): "
                "leave them out", names, owner="model")
        test = self.test_metrics
        if (names, settings, bounds, channels) != (
                test.names, test.settings, test.bounds, test.channel_names):
            self.val_metrics = SequenceMetrics(self.horizon, names, "val", settings,
                                               bounds=bounds, channel_names=channels)
            self.test_metrics = SequenceMetrics(self.test_horizon, names, "test", settings,
                                                bounds=bounds, channel_names=channels)
        self.value_mapping = None if settings is None else settings.mapping
        self.value_bounds = bounds
        if getattr(datamodule, "power_spectrum", False) and self.test_spectrum is None:
            from predlearn.power_spectrum import PowerSpectrum

            _, height, width = datamodule.frame_shape()
            self.test_spectrum = PowerSpectrum(self.test_horizon, (height, width), bounds=bounds)

    def run_predictor(self, *args, **kwargs) -> Tensor:
        """The predictor, compiled when ``compile`` is set."""
        return (self.predictor if self.compiled is None else self.compiled[0])(*args, **kwargs)

    def run_rollout(self, *args, **kwargs) -> Rollout:
        """``Predictor.rollout``, compiled when ``compile`` is set."""
        return (self.predictor.rollout if self.compiled is None else self.compiled[1])(
            *args, **kwargs)

    def forward(self, frames: Tensor, horizon: int | None = None) -> Tensor:
        """Closed-loop prediction of ``horizon`` frames after the observed ``frames``."""
        return self.run_predictor(frames, horizon or self.horizon)

    def split(self, batch: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        """(B, J + K, ...) -> observed (B, J, ...) and targets (B, K, ...), with a shape check."""
        batch = frames_of(batch)
        expected = self.context_frames + horizon
        if batch.ndim != 5 or batch.shape[1] != expected:
            raise BadFileError(  # data of another shape than the model's: exit 1 on the CLI
                f"batches must be (batch, {expected}, channels, height, width): context_frames "
                f"{self.context_frames} + horizon {horizon}; got {tuple(batch.shape)}. Set the same "
                "context_frames and horizon on the model and the data."
            )
        return batch[:, : self.context_frames], batch[:, self.context_frames :]

    #: a batch's mask of observed pixels (``predlearn.masked.valid_of``), None for most data
    valid_of = staticmethod(valid_of)

    def target_valid(self, batch: Tensor | Sequence[Tensor]) -> Tensor | None:
        """The mask of the targets (frames J + 1 .. J + K) of a (frames, valid) batch; None for
        a batch without one."""
        valid = valid_of(batch)
        return None if valid is None else valid[:, self.context_frames:]

    def compute_loss(self, predictions: Tensor, targets: Tensor,
                     valid: Tensor | None = None) -> Tensor:
        """``sequence_loss`` with this module's loss; ``valid``: the targets' mask, if any."""
        return sequence_loss(predictions, targets, self.loss_name, valid=valid)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, logs = self.training_loss(batch, self.global_step)
        for key, value in logs.items():
            self.log(key, value, prog_bar=key == "train/loss")
        return loss

    def training_loss(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, Any]]:
        """The training loss of ``batch`` at training step ``step`` (which sets the sampling
        schedules), with the values to log. ``training_step`` is this at the global step; a loop
        outside Lightning (``benchmarks/bench_learning.py``) calls it directly. A (frames, valid)
        batch's loss is over its observed pixels only."""
        valid = valid_of(batch)
        batch = frames_of(batch)
        if self.reverse_input:  # the authors' reverse_input: the same sequences played backwards
            batch = torch.cat([batch, batch.flip(1)])
            valid = None if valid is None else torch.cat([valid, valid.flip(1)])
        frames, targets = self.split(batch, self.horizon)
        teacher_mask = context_mask = None
        logs: dict[str, Any] = {}
        if self.sampling is not None:
            context_mask, teacher_mask = self.sampling.masks(
                step, frames.shape[0], self.context_frames, self.horizon, device=frames.device)
            logs.update(self.sampling.probabilities(step))
        every_frame = self.loss_frames == "all"
        rollout = self.run_rollout(frames, self.horizon, targets=targets,
                                   teacher_mask=teacher_mask, context_mask=context_mask,
                                   every_frame=every_frame)
        reference = batch[:, 1:] if every_frame else targets  # frames 2 .. J + K, or J+1 .. J+K
        if valid is not None:
            valid = valid[:, 1:] if every_frame else valid[:, self.context_frames:]
        # float32 under bf16 autocast
        loss = self.compute_loss(rollout.outputs.float(), reference, valid)
        terms: dict[str, Tensor] = {}
        extra = getattr(self.predictor, "prediction_loss", None)
        term = extra(rollout.outputs.float(), reference) if extra is not None else None
        if term is not None:  # e.g. TAU's differential divergence regularisation
            terms["train/prediction_loss"] = term
        if rollout.auxiliary_loss is not None:  # e.g. PredRNN v2's decoupling loss
            terms["train/auxiliary_loss"] = rollout.auxiliary_loss
        if terms:
            logs["train/frame_loss"] = loss
            logs.update(terms)
            loss = loss + sum(term.float() for term in terms.values())
        logs["train/loss"] = loss
        return loss, logs

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        frames, targets = self.split(batch, self.horizon)
        valid = self.target_valid(batch)
        predictions = self(frames, self.horizon)
        # the epoch's mean weighs each batch by its sequences, or by its valid pixels (a mask)
        weight = frames.shape[0] if valid is None else int(valid.sum())
        self.log("val/loss", self.compute_loss(predictions, targets, valid), prog_bar=True,
                 batch_size=weight, sync_dist=True)
        self.val_metrics.update(predictions, targets, valid=valid)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        frames, targets = self.split(batch, self.test_horizon)
        valid = self.target_valid(batch)
        predictions = self(frames, self.test_horizon)
        self.test_metrics.update(predictions, targets, valid=valid)
        if self.test_spectrum is not None:
            self.test_spectrum.update(predictions, targets, valid=valid)

    def predict_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Predictions clamped to the data's ``value_bounds`` ([0, 1]; None: not clamped);
        batches hold the observed frames alone or whole sequences."""
        batch = frames_of(batch)
        if batch.ndim == 5 and batch.shape[1] == self.context_frames:
            frames = batch
        else:
            frames, _ = self.split(batch, self.test_horizon)
        return masked.clamped(self(frames, self.test_horizon), self.value_bounds)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics)
        if self.test_spectrum is not None and self.test_spectrum.update_count:
            self.spectra = {k: v.cpu() for k, v in self.test_spectrum.compute().items()}
            self.test_spectrum.reset()

    def _log_metrics(self, metrics: SequenceMetrics) -> None:
        if self.trainer.world_size == 1 and not metrics.updated:
            return  # no batch ran
        # compute() syncs the torchmetrics state across ranks: every rank logs the same values.
        curves = metrics.curves()
        if not self.trainer.sanity_checking:  # not the untrained weights' few sanity batches
            self.curves[metrics.prefix] = {k: v.cpu() for k, v in curves.items()}
            self.curve_steps[metrics.prefix] = self.global_step
        self.log_dict({k: v.float() for k, v in flatten_curves(curves, metrics.prefix).items()},
                      sync_dist=True, reduce_fx="max")  # equal on all ranks: max is each exactly
        metrics.reset()

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]  # Lightning's is a restricted classmethod
            cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
            strict: bool | None = None, **kwargs: Any) -> Any:
        """Lightning's, for the checkpoints of every predlearn version: the file is read safely
        and its settings upgraded first (``predlearn.checkpoint_files.read_checkpoint``)."""
        from predlearn.checkpoint_files import read_checkpoint

        checkpoint = read_checkpoint(checkpoint_path, needs_predictor="predictor" not in kwargs)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        buffer.seek(0)
        return super().load_from_checkpoint(buffer, map_location, hparams_file, strict, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the training step of the loaded weights (``trained_steps``): a test or
        predict run starts at step 0, but its pictures name the step its weights come from."""
        self.trained_steps = int(checkpoint.get("global_step", 0))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the latest validation's per-step curves in the checkpoint (``predlearn`` ->
        ``validation``: its step and curves), so that a run reports the curves of its best
        checkpoint, also after a resume (``predlearn.best_validation.best_validation``)."""
        curves = self.curves.get("val")
        if curves:
            checkpoint.setdefault("predlearn", {})["validation"] = {
                "step": self.curve_steps["val"],
                "curves": {key: [float(v) for v in curve] for key, curve in curves.items()}}

    def configure_optimizers(self) -> Any:
        """Adam at ``learning_rate`` (paper §4), or the ``optimizer`` config; with an
        ``lr_scheduler`` config, that schedule too (``predlearn.optimizers``)."""
        return configure_optimizers(self.parameters(), self.learning_rate, self.optimizer_config,
                                    self.lr_scheduler_config)


def as_predictive(pl_module: L.LightningModule) -> PredictiveModule:
    """A callback's module, as the ``PredictiveModule`` the command line pairs callbacks with."""
    return cast(PredictiveModule, pl_module)
