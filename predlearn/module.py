"""The LightningModule that trains, validates and tests any registered predictor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from predlearn.denormals import set_flush_denormal
from predlearn.errors import BadFileError, OptionValueError, require
from predlearn.metrics import DEFAULT_METRICS, SequenceMetrics, flatten_curves
from predlearn.predictor import Predictor, Rollout, build_predictor
from predlearn.registry import METRICS
from predlearn.sampling import ReverseScheduledSampling, ScheduledSampling
from predlearn.units import RAIN_RATE, REFLECTIVITY, THRESHOLD_UNITS, ScoringSettings, ValueMapping

if TYPE_CHECKING:
    from predlearn.nowcast_metrics import PowerSpectrum

LossName = Literal["l1+l2", "l2", "l1"]
LossFrames = Literal["predicted", "all"]


def sequence_loss(predictions: Tensor, targets: Tensor, name: LossName = "l1+l2") -> Tensor:
    """The training loss of ``PredictiveModule``: mean L1 + mean squared error by default
    (paper §4), or ``"l2"`` / ``"l1"`` alone; also for loops outside Lightning (benchmarks)."""
    if name == "l2":
        return F.mse_loss(predictions, targets)
    if name == "l1":
        return F.l1_loss(predictions, targets)
    return F.l1_loss(predictions, targets) + F.mse_loss(predictions, targets)


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse nonsense values of ``PredictiveModule``'s arguments (``options``: its arguments
    by name) with an ``OptionValueError`` named by the argument; on the command line it comes out
    as ``--model.<argument>: ...``."""
    for name in ("context_frames", "horizon"):
        require(options[name] >= 1, name, f"must be at least 1; got {options[name]}",
                options[name])
    test_horizon = options["test_horizon"]
    require(test_horizon is None or test_horizon >= 1, "test_horizon",
            f"must be at least 1 (or null: the horizon); got {test_horizon}", test_horizon)
    rate = options["learning_rate"]
    require(0 < rate < float("inf"), "learning_rate", f"must be positive; got {rate}", rate)
    for name, choices in (("loss", ("l1+l2", "l2", "l1")), ("loss_frames", ("predicted", "all"))):
        require(options[name] in choices, name, f"must be one of {', '.join(map(repr, choices))}; "
                f"got {options[name]!r}", options[name])
    if options["scheduled_sampling"] and options["reverse_scheduled_sampling"]:
        raise OptionValueError(
            "reverse_scheduled_sampling", "choose one of scheduled_sampling and "
            "reverse_scheduled_sampling (the reverse schedule already includes the teacher "
            "forcing of future frames)")
    start = options["sampling_start"]
    require(0 <= start <= 1, "sampling_start", f"must lie in [0, 1]; got {start}", start)
    for name in ("sampling_decay", "sampling_stop", "reverse_sampling_start"):
        require(options[name] >= 0, name, f"must be >= 0; got {options[name]}", options[name])
    begin, end = options["reverse_sampling_start"], options["reverse_sampling_end"]
    require(end > begin, "reverse_sampling_end",
            f"must come after reverse_sampling_start ({begin}); got {end}", end)
    alpha = options["reverse_sampling_alpha"]
    require(alpha > 0, "reverse_sampling_alpha", f"must be positive; got {alpha}", alpha)
    metrics = options["metrics"]
    names = [] if metrics is None else [metrics] if isinstance(metrics, str) else metrics
    unknown = sorted(str(name) for name in names if name not in METRICS)
    require(not unknown, "metrics", f"unknown {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(METRICS.names())}", metrics)
    unit = options["threshold_unit"]
    require(unit is None or unit in THRESHOLD_UNITS, "threshold_unit",
            f"must be one of {', '.join(map(repr, THRESHOLD_UNITS))} (or null: the data's unit); "
            f"got {unit!r}", unit)
    thresholds = options["thresholds"]
    require(thresholds is None or len(thresholds) > 0, "thresholds",
            "give at least one threshold (or null: the defaults)", thresholds)
    scales = options["fss_scales"]
    require(len(scales) > 0 and all(isinstance(n, int) and n >= 1 and n % 2 == 1 for n in scales),
            "fss_scales", f"must be odd neighbourhood sizes in pixels (1, 3, 5, ...); got "
            f"{list(scales)}", scales)


#: event thresholds of the categorical scores and the FSS when none are given, by unit (dBZ: the
#: usual light / moderate / heavy echo levels; mm/h: the rain rates of HKO-7-style scoring)
DEFAULT_THRESHOLDS = {REFLECTIVITY: (20.0, 30.0, 40.0), RAIN_RATE: (1.0, 5.0, 10.0)}


@dataclass(frozen=True)
class CompiledPredictor:
    """``torch.compile`` of a predictor's forward and rollout. A plain object, not a module, so
    the compiled copies stay out of the module tree and the state dict."""

    forward: Any
    rollout: Any

    @classmethod
    def of(cls, predictor: Predictor, backend: str) -> CompiledPredictor:
        return cls(torch.compile(predictor, backend=backend),
                   torch.compile(predictor.rollout, backend=backend))


class PredictiveModule(L.LightningModule):
    """Wraps a predictor with the paper's training set-up and per-step metrics.

    Batches are (B, J + K, C, H, W) float tensors in [0, 1]: the first ``context_frames`` are
    observed, the rest are the targets.

    Args:
        predictor: any ``Predictor`` (``predlearn.create_model(name)``; on the command line
            ``--model=predrnn``). Required; with ``--ckpt_path`` it comes from the checkpoint.
        context_frames: observed frames J (paper §4.1: 10).
        horizon: predicted frames K in training and validation (paper §4.1: 10).
        test_horizon: predicted frames at test and predict time; None means ``horizon`` (KTH:
            paper §4.2 tests 10 -> 20).
        learning_rate: Adam's learning rate (paper §4: 1e-3).
        loss: "l1+l2" (paper §4: "L1 + L2 loss works best"), or "l2" / "l1" alone.
        scheduled_sampling: extension, off in the paper configs. Feed the ground truth instead of
            the model's own prediction with a probability that decays over training, as in the
            authors' released code; validation and test stay closed loop.
        sampling_start: probability of feeding ground truth at step 0 (authors' code: 1.0).
        sampling_decay: decrease of that probability per training step (authors' code: 2e-5).
        sampling_stop: training step from which the probability is 0 (authors' code: 50,000).
        reverse_scheduled_sampling: extension (PredRNN v2, TPAMI 2022), off in the paper configs;
            replaces ``scheduled_sampling``. Observed frames are replaced by the model's own
            predictions of them with a probability that falls to 0, and future frames are
            teacher-forced with one that falls from 0.5 to 0 (``predlearn.sampling``). Needs a
            predictor that predicts every frame (not ``fc_lstm``).
        reverse_sampling_start: step where both probabilities start to move (authors: 25,000).
        reverse_sampling_end: step where the model is fed exactly as at test time (authors:
            50,000).
        reverse_sampling_alpha: time constant of the observed-frame schedule (authors' Moving
            MNIST script: 2,500).
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
            "psnr", "ssim".
        thresholds: event thresholds of the nowcasting scores (CSI, POD, FAR, HSS, ETS, FSS), in
            ``threshold_unit``; None: 20, 30, 40 dBZ (1, 5, 10 mm/h). Need data with a value
            mapping (``value_mapping`` of the data module: radar).
        threshold_unit: "dBZ" or "mm/h" (through the data's Z-R relation); None: the data's unit.
        fss_scales: neighbourhood sizes (odd, in pixels) of the fractions skill score.
        power_spectrum: at test time, accumulate the radially averaged power spectra of the
            predictions and the observations per lead time (written as a figure with the test
            figures); None: where the data has a value mapping (radar).
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
        context_frames: int = 10,  # paper §4.1: 10 input frames
        horizon: int = 10,  # paper §4.1: 10 predicted frames
        test_horizon: int | None = None,
        learning_rate: float = 1e-3,  # paper §4: Adam, learning rate 1e-3
        loss: LossName = "l1+l2",  # paper §4: L1 + L2 loss
        scheduled_sampling: bool = False,
        sampling_start: float = 1.0,
        sampling_decay: float = 2e-5,
        sampling_stop: int = 50_000,
        reverse_scheduled_sampling: bool = False,
        reverse_sampling_start: int = 25_000,  # PredRNN v2 code: r_sampling_step_1
        reverse_sampling_end: int = 50_000,  # PredRNN v2 code: r_sampling_step_2
        reverse_sampling_alpha: float = 2_500.0,  # PredRNN v2 Moving MNIST script: r_exp_alpha
        loss_frames: LossFrames = "predicted",  # paper: the K predicted frames
        reverse_input: bool = False,
        optimizer: dict | None = None,
        lr_scheduler: dict | None = None,
        metrics: Sequence[str] | None = None,
        thresholds: Sequence[float] | None = None,
        threshold_unit: str | None = None,
        fss_scales: Sequence[int] = (1, 5, 9),
        power_spectrum: bool | None = None,
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
        needs_every_frame = loss_frames == "all" or reverse_scheduled_sampling
        if needs_every_frame and not getattr(predictor, "predicts_every_frame", True):
            raise OptionValueError(
                "loss_frames" if loss_frames == "all" else "reverse_scheduled_sampling",
                f"{type(predictor).__name__} does not predict the observed frames while it reads "
                "them: loss_frames='all' and reverse_scheduled_sampling do not apply to it")
        # The predictor is saved as its config (class path and constructor arguments), so a
        # checkpoint rebuilds its model however it was made; one without a config (a plain
        # nn.Module) is passed again to load_from_checkpoint.
        self.save_hyperparameters(ignore=["predictor"])
        config = getattr(predictor, "config", None)
        if config is not None:
            self.hparams["predictor"] = config
        self.predictor = predictor
        self.context_frames = context_frames
        self.horizon = horizon
        self.test_horizon = test_horizon or horizon
        self.learning_rate = learning_rate
        self.loss_name = loss
        self.flush_denormal = flush_denormal
        self.sampling = (
            ScheduledSampling(sampling_start, sampling_decay, sampling_stop)
            if scheduled_sampling else None
        )
        self.reverse_sampling = (
            ReverseScheduledSampling(reverse_sampling_start, reverse_sampling_end,
                                     reverse_sampling_alpha)
            if reverse_scheduled_sampling else None
        )
        self.loss_frames = loss_frames
        self.reverse_input = reverse_input
        self.optimizer_config = optimizer
        self.lr_scheduler_config = lr_scheduler
        self.compiled = (CompiledPredictor.of(predictor, compile_backend) if compile else None)
        self.metric_names = None if metrics is None else (
            [metrics] if isinstance(metrics, str) else list(metrics))
        self.thresholds = None if thresholds is None else tuple(float(t) for t in thresholds)
        self.threshold_unit = threshold_unit
        self.fss_scales = tuple(int(n) for n in fss_scales)
        self.power_spectrum = power_spectrum
        self.value_mapping: ValueMapping | None = None
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
        """Build the validation and test metrics for ``datamodule``: its ``default_metrics``
        when ``metrics`` is None, and its ``value_mapping`` (physical units) for the nowcasting
        scores; the power spectrum where asked (``power_spectrum``). Idempotent."""
        mapping = getattr(datamodule, "value_mapping", None)
        names = self.metric_names or list(getattr(datamodule, "default_metrics", None)
                                          or DEFAULT_METRICS)
        physical = [n for n in names if getattr(METRICS.get(n), "physical_units", False)]
        settings = None
        if mapping is not None:
            unit = self.threshold_unit or mapping.unit
            thresholds = self.thresholds or DEFAULT_THRESHOLDS.get(unit)
            if thresholds is None:
                raise OptionValueError("thresholds", f"no default thresholds for data in {unit}; "
                                       "give them (--model.thresholds=[...])", None)
            try:
                settings = ScoringSettings(mapping, thresholds, unit, self.fss_scales)
            except ValueError as error:
                raise OptionValueError("threshold_unit", str(error), unit) from None
        elif physical:
            name = type(datamodule).__name__ if datamodule is not None else "the data"
            raise OptionValueError(
                "metrics", f"{', '.join(map(repr, physical))} score events at thresholds in "
                f"physical units (e.g. dBZ); {name} has no value mapping (radar data has one): "
                "leave them out", names)
        if (names, settings) != (self.test_metrics.names, self.test_metrics.settings):
            self.val_metrics = SequenceMetrics(self.horizon, names, "val", settings)
            self.test_metrics = SequenceMetrics(self.test_horizon, names, "test", settings)
        self.value_mapping = mapping
        wanted = self.power_spectrum if self.power_spectrum is not None else mapping is not None
        size = getattr(self.predictor, "frame_size", None) or getattr(datamodule, "frame_size",
                                                                      None)
        if wanted and self.test_spectrum is None:
            from predlearn.nowcast_metrics import PowerSpectrum

            if size is None:
                raise OptionValueError("power_spectrum", "the frame size is unknown (neither the "
                                       "model nor the data says it)", wanted)
            self.test_spectrum = PowerSpectrum(self.test_horizon, tuple(size))

    def run_predictor(self, *args, **kwargs) -> Tensor:
        """The predictor, compiled when ``compile`` is set."""
        return (self.predictor if self.compiled is None else self.compiled.forward)(
            *args, **kwargs)

    def run_rollout(self, *args, **kwargs) -> Rollout:
        """``Predictor.rollout``, compiled when ``compile`` is set."""
        return (self.predictor.rollout if self.compiled is None else self.compiled.rollout)(
            *args, **kwargs)

    def forward(self, frames: Tensor, horizon: int | None = None) -> Tensor:
        """Closed-loop prediction of ``horizon`` frames after the observed ``frames``."""
        return self.run_predictor(frames, horizon or self.horizon)

    def split(self, batch: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        """(B, J + K, ...) -> observed (B, J, ...) and targets (B, K, ...), with a shape check."""
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        expected = self.context_frames + horizon
        if batch.ndim != 5 or batch.shape[1] != expected:
            raise BadFileError(  # data of another shape than the model's: exit 1 on the CLI
                f"batches must be (batch, {expected}, channels, height, width): context_frames "
                f"{self.context_frames} + horizon {horizon}; got {tuple(batch.shape)}. Set the same "
                "context_frames and horizon on the model and the data."
            )
        return batch[:, : self.context_frames], batch[:, self.context_frames :]

    def compute_loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        return sequence_loss(predictions, targets, self.loss_name)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, logs = self.training_loss(batch, self.global_step)
        for key, value in logs.items():
            self.log(key, value, prog_bar=key == "train/loss")
        return loss

    def training_loss(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, Any]]:
        """The training loss of ``batch`` at training step ``step`` (which sets the sampling
        schedules), with the values to log. ``training_step`` is this at the global step; a loop
        outside Lightning (``benchmarks/bench_learning.py``) calls it directly."""
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        if self.reverse_input:  # the authors' reverse_input: the same sequences played backwards
            batch = torch.cat([batch, batch.flip(1)])
        frames, targets = self.split(batch, self.horizon)
        teacher_mask = context_mask = None
        logs: dict[str, Any] = {}
        size = frames.shape[0]
        if self.sampling is not None:
            teacher_mask = self.sampling.mask(step, size, self.horizon, device=frames.device)
            logs["train/teacher_forcing_prob"] = self.sampling.probability(step)
        if self.reverse_sampling is not None:
            context_mask, teacher_mask = self.reverse_sampling.masks(
                step, size, self.context_frames, self.horizon, device=frames.device)
            logs["train/teacher_forcing_prob"] = self.reverse_sampling.target_probability(step)
            logs["train/context_truth_prob"] = self.reverse_sampling.context_probability(step)
        every_frame = self.loss_frames == "all"
        rollout = self.run_rollout(frames, self.horizon, targets=targets,
                                   teacher_mask=teacher_mask, context_mask=context_mask,
                                   every_frame=every_frame)
        reference = batch[:, 1:] if every_frame else targets  # frames 2 .. J + K, or J+1 .. J+K
        # float32 under bf16 autocast
        loss = self.compute_loss(rollout.outputs.float(), reference)
        if rollout.auxiliary_loss is not None:  # e.g. PredRNN v2's decoupling loss
            logs["train/frame_loss"] = loss
            logs["train/auxiliary_loss"] = rollout.auxiliary_loss
            loss = loss + rollout.auxiliary_loss.float()
        logs["train/loss"] = loss
        return loss, logs

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        frames, targets = self.split(batch, self.horizon)
        predictions = self(frames, self.horizon)
        self.log("val/loss", self.compute_loss(predictions, targets), prog_bar=True,
                 batch_size=frames.shape[0], sync_dist=True)
        self.val_metrics.update(predictions, targets)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        frames, targets = self.split(batch, self.test_horizon)
        predictions = self(frames, self.test_horizon)
        self.test_metrics.update(predictions, targets)
        if self.test_spectrum is not None:
            self.test_spectrum.update(predictions, targets)

    def predict_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Predictions in [0, 1]; batches hold the observed frames alone or whole sequences."""
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        if batch.ndim == 5 and batch.shape[1] == self.context_frames:
            frames = batch
        else:
            frames, _ = self.split(batch, self.test_horizon)
        return self(frames, self.test_horizon).clamp(0, 1)

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
        self.log_dict({k: v.float() for k, v in flatten_curves(curves, metrics.prefix).items()})
        metrics.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the latest validation's per-step curves in the checkpoint (``predlearn`` ->
        ``validation``: its step and curves), so that a run reports the curves of its best
        checkpoint, also after a resume (``predlearn.callbacks.best_validation``)."""
        curves = self.curves.get("val")
        if curves:
            checkpoint.setdefault("predlearn", {})["validation"] = {
                "step": self.curve_steps["val"],
                "curves": {key: [float(v) for v in curve] for key, curve in curves.items()}}

    def configure_optimizers(self) -> Any:
        """Adam at ``learning_rate`` (paper §4), or the ``optimizer`` config; with an
        ``lr_scheduler`` config, that schedule too (see the class docstring)."""
        from lightning.pytorch.cli import instantiate_class  # jsonargparse: only when asked

        if self.optimizer_config is None:
            optimizer = torch.optim.Adam(self.parameters(), lr=self.learning_rate)  # paper §4
        else:
            optimizer = instantiate_class(self.parameters(), self.optimizer_config)
        if self.lr_scheduler_config is None:
            return optimizer
        scheduler = instantiate_class(optimizer, self.lr_scheduler_config)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # at each epoch's end, on the latest val/loss (skipped, with a warning, before any)
            config = {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch",
                      "strict": False}
        else:
            config = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": config}
