"""The LightningModule that trains, validates and tests any registered predictor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import lightning as L
import torch
from torch import Tensor

from predlearn import masked
from predlearn.class_paths import from_config
from predlearn.denormals import set_flush_denormal
from predlearn.ensemble import MemberNoise, check_ensemble, expand_members
from predlearn.errors import BadFileError, OptionValueError, names_options_under
from predlearn.losses import LossName, members_loss, sequence_loss
from predlearn.masked import Bounds, valid_of
from predlearn.metrics import DEFAULT_METRICS, SequenceMetrics, flatten_curves
from predlearn.module_checkpoints import CheckpointHooks
from predlearn.optimizers import configure_optimizers
from predlearn.paper import CONTEXT_FRAMES, HORIZON
from predlearn.predictor import Predictor, Rollout, build_predictor
from predlearn.recipes import check_options, check_recipe
from predlearn.registry import METRICS
from predlearn.sampling import SamplingSchedule
from predlearn.stage_metrics import prepare_stage_metrics
from predlearn.test_intervals import TestIntervals
from predlearn.units import ValueMapping

if TYPE_CHECKING:
    from predlearn.power_spectrum import PowerSpectrum

LossFrames = Literal["predicted", "all"]


def frames_of(batch: Tensor | Sequence[Tensor]) -> Tensor:
    """A batch's frames: the batch itself, or the first item of a (frames, ...) batch."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch  # type: ignore[return-value]


class PredictiveModule(CheckpointHooks):
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
        ensemble_members, test_ensemble_members, ensemble_noise, ensemble_noise_cells:
            extension (docs/nowcasting.md#ensembles): M members per forecast in training and
            validation, (B, M, K, C, H, W), and at test (None: the same); the learnt input
            noise's starting std and coarseness (``predlearn.ensemble``). 1: the paper.
        test_intervals: bootstrap replicates of the 95 % interval of every test score
            (``predlearn.test_intervals``); 0: none.
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
        ensemble_members: int = 1,
        test_ensemble_members: int | None = None,
        ensemble_noise: float = 0.1,
        ensemble_noise_cells: int = 4,
        test_intervals: int = 1000,
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
        check_ensemble(predictor, ensemble_members, test_ensemble_members, loss)
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
        self.members = ensemble_members
        self.test_members = test_ensemble_members or ensemble_members
        #: the learnt input noise of an ensemble (None: one forecast, or members drawn by the
        #: predictor itself)
        self.member_noise = (MemberNoise(ensemble_noise, ensemble_noise_cells)
                             if max(self.members, self.test_members) > 1
                             and not getattr(predictor, "native_ensemble", False) else None)
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
                 if not getattr(METRICS.get(n), "physical_units", False)
                 and not getattr(METRICS.get(n), "needs_members", False)]
        self.val_metrics = SequenceMetrics(horizon, names, prefix="val")
        self.test_metrics = SequenceMetrics(self.test_horizon, names, prefix="test")
        self.test_spectrum: PowerSpectrum | None = None
        #: the last test's mean power spectra (``PowerSpectrum.compute``), for the figures
        self.spectra: dict[str, Tensor] = {}
        #: the last computed per-step curves, by stage ("val", "test") and metric key
        self.curves: dict[str, dict[str, Tensor]] = {}
        #: the last computed tables of an ensemble, by stage (``SequenceMetrics.tables``: rank
        #: histograms, reliability counts); empty for a single forecast
        self.tables: dict[str, dict[str, Tensor]] = {}
        #: the last test's intervals (rows of ``test_intervals.csv``), by stage
        self.intervals: dict[str, list[Any]] = {}
        self.test_intervals = test_intervals
        self._intervals = TestIntervals(test_intervals)  # records each test's sequences
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
        prepare_stage_metrics(self, datamodule)

    def run_predictor(self, *args, **kwargs) -> Tensor:
        """The predictor, compiled when ``compile`` is set."""
        return (self.predictor if self.compiled is None else self.compiled[0])(*args, **kwargs)

    def run_rollout(self, *args, **kwargs) -> Rollout:
        """``Predictor.rollout``, compiled when ``compile`` is set."""
        return (self.predictor.rollout if self.compiled is None else self.compiled[1])(
            *args, **kwargs)

    def forward(self, frames: Tensor, horizon: int | None = None,
                members: int | None = None) -> Tensor:
        """Closed-loop prediction of ``horizon`` frames after the observed ``frames``: (B, K, C,
        H, W), or (B, M, K, C, H, W) for ``members`` M > 1 (default: ``test_ensemble_members``
        in eval mode, ``ensemble_members`` in training mode)."""
        horizon = horizon or self.horizon
        count = members or (self.members if self.training else self.test_members)
        if count == 1:
            return self.run_predictor(frames, horizon)
        if getattr(self.predictor, "native_ensemble", False):
            return self.predictor.predict_members(frames, horizon, count)
        return self.run_rollout(expand_members(frames, count), horizon,
                                perturb=self.member_noise).outputs.unflatten(0, (-1, count))

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
        """``sequence_loss`` with this module's loss, or ``members_loss`` for (B, M, ...)
        ensemble members; ``valid``: the targets' mask, if any."""
        if predictions.ndim == targets.ndim + 1:
            return members_loss(predictions, targets, self.loss_name, valid=valid)
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
        members = self.members  # an ensemble: each sequence M times in a row, perturbed
        teacher_mask = context_mask = None
        logs: dict[str, Any] = {}
        if self.sampling is not None:
            context_mask, teacher_mask = self.sampling.masks(
                step, frames.shape[0] * members, self.context_frames, self.horizon,
                device=frames.device)
            logs.update(self.sampling.probabilities(step))
        every_frame = self.loss_frames == "all"
        rollout = self.run_rollout(
            expand_members(frames, members), self.horizon,
            targets=expand_members(targets, members), teacher_mask=teacher_mask,
            context_mask=context_mask, every_frame=every_frame,
            perturb=self.member_noise if members > 1 else None)
        reference = batch[:, 1:] if every_frame else targets  # frames 2 .. J + K, or J+1 .. J+K
        if valid is not None:
            valid = valid[:, 1:] if every_frame else valid[:, self.context_frames:]
        outputs = rollout.outputs.float()  # float32 under bf16 autocast
        if members > 1:
            logs["train/ensemble_noise"] = self.member_noise.log_std.detach().exp()  # type: ignore[union-attr]
            outputs = outputs.unflatten(0, (frames.shape[0], members))
        loss = self.compute_loss(outputs, reference, valid)
        terms: dict[str, Tensor] = {}
        extra = getattr(self.predictor, "prediction_loss", None)
        term = extra(rollout.outputs.float(), expand_members(reference, members)) \
            if extra is not None else None
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
        predictions = self(frames, self.horizon, self.members)
        # the epoch's mean weighs each batch by its sequences, or by its valid pixels (a mask)
        weight = frames.shape[0] if valid is None else int(valid.sum())
        self.log("val/loss", self.compute_loss(predictions, targets, valid), prog_bar=True,
                 batch_size=weight, sync_dist=True)
        self.val_metrics.update(predictions, targets, valid=valid)

    def on_test_epoch_start(self) -> None:
        self._intervals.start(self.test_metrics, self.device)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        frames, targets = self.split(batch, self.test_horizon)
        self._intervals.record(frames.shape[0], self.global_rank, self.trainer.world_size)
        valid = self.target_valid(batch)
        predictions = self(frames, self.test_horizon)
        self.test_metrics.update(predictions, targets, valid=valid)
        if self.test_spectrum is not None:  # members: the spectrum of each, not of their mean
            count = self.test_members
            flat = predictions.flatten(0, 1) if count > 1 else predictions
            self.test_spectrum.update(flat, expand_members(targets, count),
                                      valid=expand_members(valid, count))

    def predict_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Predictions clamped to the data's ``value_bounds`` ([0, 1]; None: not clamped), (B, K,
        C, H, W) or (B, M, K, C, H, W) members; batches hold the observed frames alone or whole
        sequences."""
        batch = frames_of(batch)
        if batch.ndim == 5 and batch.shape[1] == self.context_frames:
            frames = batch
        else:
            frames, _ = self.split(batch, self.test_horizon)
        return masked.clamped(self(frames, self.test_horizon), self.value_bounds)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        if self.test_metrics.updated or self.trainer.world_size > 1:
            self.intervals["test"] = self._intervals.finish(
                self.test_metrics, getattr(self.trainer, "datamodule", None))
        self._log_metrics(self.test_metrics)
        if self.test_spectrum is not None and self.test_spectrum.update_count:
            self.spectra = {k: v.cpu() for k, v in self.test_spectrum.compute().items()}
            self.test_spectrum.reset()

    def _log_metrics(self, metrics: SequenceMetrics) -> None:
        if self.trainer.world_size == 1 and not metrics.updated:
            return  # no batch ran
        # compute() syncs the torchmetrics state across ranks: every rank logs the same values.
        curves = metrics.curves()
        tables = metrics.tables()  # every rank: the sync is collective
        if not self.trainer.sanity_checking:  # not the untrained weights' few sanity batches
            self.curves[metrics.prefix] = {k: v.cpu() for k, v in curves.items()}
            self.tables[metrics.prefix] = {k: v.cpu() for k, v in tables.items()}
            self.curve_steps[metrics.prefix] = self.global_step
        self.log_dict({k: v.float() for k, v in flatten_curves(curves, metrics.prefix).items()},
                      sync_dist=True, reduce_fx="max")  # equal on all ranks: max is each exactly
        metrics.reset()

    def configure_optimizers(self) -> Any:
        """Adam at ``learning_rate`` (paper §4), or the ``optimizer`` config; with an
        ``lr_scheduler`` config, that schedule too (``predlearn.optimizers``)."""
        return configure_optimizers(self.parameters(), self.learning_rate, self.optimizer_config,
                                    self.lr_scheduler_config)


def as_predictive(pl_module: L.LightningModule) -> PredictiveModule:
    """A callback's module, as the ``PredictiveModule`` the command line pairs callbacks with."""
    return cast(PredictiveModule, pl_module)
