"""The LightningModule that trains, validates and tests any registered predictor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import Tensor

from predlearn.denormals import set_flush_denormal
from predlearn.metrics import SequenceMetrics, flatten_curves
from predlearn.predictor import Predictor
from predlearn.sampling import ScheduledSampling

LossName = Literal["l1+l2", "l2", "l1"]


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
        metrics: per-step metrics at validation and test: "mse", "bce", "psnr", "ssim".
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
        metrics: Sequence[str] = ("mse", "bce", "psnr", "ssim"),
        compile: bool = False,
        compile_backend: str = "inductor",
        flush_denormal: bool = True,
    ) -> None:
        super().__init__()
        if predictor is None:
            raise ValueError(
                "no predictor: name one (--model=predrnn, `predlearn list` shows them), give a "
                "--config that has one, or a --ckpt_path whose checkpoint was made by predlearn"
            )
        if not isinstance(predictor, torch.nn.Module):
            raise TypeError(
                f"predictor must be a Predictor module (e.g. predlearn.create_model('predrnn')); "
                f"got {type(predictor).__name__}"
            )
        if loss not in ("l1+l2", "l2", "l1"):
            raise ValueError(f"loss must be 'l1+l2', 'l2' or 'l1'; got {loss!r}")
        # Under LightningCLI the parsed config (with the predictor's class path) is saved, so a
        # checkpoint rebuilds itself; otherwise the predictor module is left out of hparams (its
        # weights are in the state dict) and is passed again to load_from_checkpoint.
        from_cli = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=None if from_cli else ["predictor"])
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
        # Kept out of the module tree (not a submodule), so state dicts do not change.
        self.__dict__["_compiled_predictor"] = (
            torch.compile(predictor, backend=compile_backend) if compile else None)
        metrics = list(metrics)
        self.val_metrics = SequenceMetrics(horizon, metrics, prefix="val")
        self.test_metrics = SequenceMetrics(self.test_horizon, metrics, prefix="test")
        #: the last computed per-step curves, by stage ("val", "test") and metric key
        self.curves: dict[str, dict[str, Tensor]] = {}

    def setup(self, stage: str) -> None:
        """Before anything computes (fit, validate, test, predict, in every process): set the
        denormal mode of this thread and of torch's intra-op threads."""
        set_flush_denormal(self.flush_denormal)

    def run_predictor(self, *args, **kwargs) -> Tensor:
        """The predictor, compiled when ``compile`` is set."""
        compiled = self._compiled_predictor
        return (self.predictor if compiled is None else compiled)(*args, **kwargs)

    def forward(self, frames: Tensor, horizon: int | None = None) -> Tensor:
        """Closed-loop prediction of ``horizon`` frames after the observed ``frames``."""
        return self.run_predictor(frames, horizon or self.horizon)

    def split(self, batch: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        """(B, J + K, ...) -> observed (B, J, ...) and targets (B, K, ...), with a shape check."""
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        expected = self.context_frames + horizon
        if batch.ndim != 5 or batch.shape[1] != expected:
            raise ValueError(
                f"batches must be (batch, {expected}, channels, height, width): context_frames "
                f"{self.context_frames} + horizon {horizon}; got {tuple(batch.shape)}. Set the same "
                "context_frames and horizon on the model and the data."
            )
        return batch[:, : self.context_frames], batch[:, self.context_frames :]

    def compute_loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        if self.loss_name == "l2":
            return F.mse_loss(predictions, targets)
        if self.loss_name == "l1":
            return F.l1_loss(predictions, targets)
        return F.l1_loss(predictions, targets) + F.mse_loss(predictions, targets)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        frames, targets = self.split(batch, self.horizon)
        teacher_mask = None
        if self.sampling is not None:
            teacher_mask = self.sampling.mask(self.global_step, frames.shape[0], self.horizon,
                                              device=frames.device)
            self.log("train/teacher_forcing_prob", self.sampling.probability(self.global_step))
        predictions = self.run_predictor(frames, self.horizon, targets, teacher_mask)
        loss = self.compute_loss(predictions.float(), targets)  # float32 under bf16 autocast
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        frames, targets = self.split(batch, self.horizon)
        predictions = self(frames, self.horizon)
        self.log("val/loss", self.compute_loss(predictions, targets), prog_bar=True,
                 batch_size=frames.shape[0], sync_dist=True)
        self.val_metrics.update(predictions, targets)

    def test_step(self, batch: Tensor, batch_idx: int) -> None:
        frames, targets = self.split(batch, self.test_horizon)
        self.test_metrics.update(self(frames, self.test_horizon), targets)

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

    def _log_metrics(self, metrics: SequenceMetrics) -> None:
        if self.trainer.world_size == 1 and all(m.count == 0 for m in metrics.metrics.values()):
            return  # no batch ran
        # compute() syncs the torchmetrics state across ranks: every rank logs the same values.
        curves = metrics.curves()
        self.curves[metrics.prefix] = {k: v.cpu() for k, v in curves.items()}
        self.log_dict({k: v.float() for k, v in flatten_curves(curves, metrics.prefix).items()})
        metrics.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)  # paper §4: Adam
