"""``predlearn fit | validate | test | predict``: LightningCLI with predlearn's defaults.

``--model`` and ``--data`` take registry names or class paths (``predlearn.cli_arguments``). The
data decide the model's shape: the frame counts and the frames' channels and size are linked
from the data module to the model, so no config repeats them. ``--ckpt_path`` is handled by
``predlearn.checkpoint_settings``; refusals leave as one-line predlearn errors
(``predlearn.cli_errors``), which ``predlearn.cli.main`` prints.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeTuple
from lightning.pytorch.utilities import rank_zero_warn

from predlearn.checkpoint_settings import given_options, take_checkpoint
from predlearn.checkpointing import ValidatedCheckpoint
from predlearn.class_paths import class_or_none, constructor_defaults, plain, registry_name
from predlearn.cli_arguments import HELP_FLAGS, print_help, resolve_registry_names
from predlearn.cli_errors import as_predlearn_error
from predlearn.errors import OptionValueError
from predlearn.hardware import cpu_has_native_bf16
from predlearn.module import PredictiveModule
from predlearn.paper import CONTEXT_FRAMES, HORIZON
from predlearn.prediction_figures import PredictionFigures
from predlearn.prediction_writer import PredictionWriter
from predlearn.quiet import quiet
from predlearn.registry import DATAMODULES, MODELS
from predlearn.run_callbacks import run_callbacks
from predlearn.run_folder import RunFolder, finish_wandb, run_directory
from predlearn.runs import CONFIG, RUN_FOLDER_ENV, RUN_ROOT, choose_run_folder, is_wandb_logger
from predlearn.wandb_report import WandbReport

TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": RUN_ROOT,
    "max_steps": 80_000,  # paper §4: 80,000 iterations
    "logger": {
        "class_path": "predlearn.loggers.AutoWandbLogger",
        "init_args": {"project": "predlearn", "save_dir": RUN_ROOT},
    },
}

#: predictor options the data decide (linked), refused when the command line gives them
DATA_SET_OPTIONS = {"model.predictor.frame_channels", "model.predictor.frame_size",
                    "model.predictor.context_frames"}


def _frame_counts(attribute: str, default: int | None) -> Any:
    def compute(datamodule: LightningDataModule) -> int | None:
        return getattr(datamodule, attribute, default)

    return compute


def _frame_shape(datamodule: LightningDataModule) -> tuple[int, int, int]:
    """(channels, height, width) the data module says its frames have."""
    shape = getattr(datamodule, "frame_shape", lambda: None)()
    if shape is None:
        raise OptionValueError(
            "--data", f"{type(datamodule).__name__} does not say the shape of its frames; give "
            "it a frame_shape() method returning (channels, height, width) (docs/plugins.md)")
    return tuple(shape)


class PredlearnCLI(LightningCLI):
    """LightningCLI with the paper's checkpointing, figures and an optional test after fit."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        from jsonargparse.typing import NonNegativeFloat

        from predlearn.preemption import EVERY_MINUTES

        # A step checkpoint is ranked only by the validation of its own step (ValidatedCheckpoint).
        parser.add_lightning_class_args(ValidatedCheckpoint, "checkpoint")
        parser.set_defaults({
            # The best checkpoint is chosen on the validation split, never on the test set.
            "checkpoint.monitor": "val/loss",
            "checkpoint.mode": "min",
            "checkpoint.save_last": True,
            "checkpoint.filename": "best-step{step:06d}",
            "checkpoint.auto_insert_metric_name": False,
        })
        # --optimizer and --lr_scheduler reach the module's configure_optimizers (which keeps the
        # paper's Adam unless --optimizer is given), so a schedule alone is enough.
        parser.add_optimizer_args((torch.optim.Optimizer,), link_to="model.optimizer")
        parser.add_lr_scheduler_args(LRSchedulerTypeTuple, link_to="model.lr_scheduler")
        parser.add_lightning_class_args(PredictionFigures, "figures")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        # The data decide how many frames are observed and predicted, and their shape.
        for attribute, default in (("context_frames", CONTEXT_FRAMES), ("horizon", HORIZON),
                                   ("test_horizon", None)):
            parser.link_arguments("data", f"model.{attribute}", apply_on="instantiate",
                                  compute_fn=_frame_counts(attribute, default))
        parser.link_arguments("data", "model.predictor.init_args.frame_channels",
                              apply_on="instantiate", compute_fn=lambda d: _frame_shape(d)[0])
        parser.link_arguments("data", "model.predictor.init_args.frame_size",
                              apply_on="instantiate", compute_fn=lambda d: _frame_shape(d)[1:])
        # predictors that map J frames at once (DirectPredictor) are built for the data's J
        parser.link_arguments("data", "model.predictor.init_args.context_frames",
                              apply_on="instantiate",
                              compute_fn=_frame_counts("context_frames", CONTEXT_FRAMES))
        parser.add_argument(
            "--test_after_fit", type=bool, default=False,
            help="fit only: after training, test the best (validation-chosen) checkpoint",
        )
        parser.add_argument(
            "--auto_bf16", type=bool, default=False,
            help="train and test in bf16-mixed precision when running on a CPU that computes "
                 "bf16 natively (AMX or AVX512-BF16), in the trainer's precision otherwise",
        )
        parser.add_argument(
            "--checkpoint_every_minutes", type=NonNegativeFloat, default=EVERY_MINUTES,
            help="fit only: also write the last checkpoint every this many minutes of training "
                 "(0: never), atomically; bounds what a kill -9 or a power loss can cost (a "
                 "SIGTERM, SIGINT or SIGUSR1 stops the fit after its step with a checkpoint)",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check ``--ckpt_path`` and fill in the checkpoint's settings that the
        command line leaves out (``predlearn.checkpoint_settings``; ``given``: the keys the
        command line sets, told from defaults)."""
        argv = sys.argv[1:] if args is None else args
        given = given_options(argv if isinstance(argv, Sequence) else [])
        for key in DATA_SET_OPTIONS & given:
            raise OptionValueError(f"--{key}", "the data set it (the model is built for the "
                                   "data's frames); leave it out")
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        self._checkpoint_path: str | None = None
        if not subcommand:
            return
        self.config = take_checkpoint(self.config, subcommand, parser, given)
        # LightningCLI would next merge the checkpoint's hyper-parameters over the command line
        # (silently replacing a model or size it names); the path is held back until
        # before_instantiate_classes, so that step finds no checkpoint and ours stands.
        self._checkpoint_path = self.config[subcommand].get("ckpt_path")
        self.config[subcommand]["ckpt_path"] = None

    def before_instantiate_classes(self) -> None:
        """Choose the run's folder (``predlearn.runs.choose_run_folder``); group W&B runs by
        data set, tag them by model and name them after the folder, so that runs compare in one
        view; apply ``--auto_bf16``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self._checkpoint_path is not None:
            config["ckpt_path"] = self._checkpoint_path  # held back in parse_arguments
        if config.get("auto_bf16") and _runs_on_cpu(config.get("trainer", {})) \
                and cpu_has_native_bf16():
            config["trainer"]["precision"] = "bf16-mixed"
        predictor = (config.get("model") or {}).get("predictor")
        if predictor is not None and predictor.get("init_args") is None:
            # a predictor without arguments: the frame-shape links need somewhere to go
            predictor["init_args"] = Namespace()
        self._configured_shape = _configured_shape(predictor)
        folder, self.config_name = choose_run_folder(str(self.subcommand), config)
        if self.config_name is None:
            self.save_config_callback = None
        elif folder is not None:
            self.save_config_kwargs["config_filename"] = self.config_name
        logger = config.get("trainer", {}).get("logger")
        if folder is None or not is_wandb_logger(logger):
            return
        init_args = logger.get("init_args")
        model = registry_name(MODELS, config.get("model", {}).get("predictor", {}))
        data = registry_name(DATAMODULES, config.get("data", {}))
        if init_args.get("group") is None and data:
            init_args["group"] = data
        if not init_args.get("tags") and model:
            init_args["tags"] = [model]
        if init_args.get("name") is None:
            init_args["name"] = folder.name

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with ``WandbReport`` (the curves and summaries W&B shows) and
        ``RunFolder`` (the folder printed; nothing left of a run that never started)."""
        configured, predictor = self._configured_shape, self.model.predictor
        if configured is not None:
            built = (int(predictor.frame_channels), tuple(predictor.frame_size))
            if built != configured:
                print(f"predlearn: note: the model is built for the data's frames, (channels, "
                      f"size) {built[0]}, {list(built[1])}, not the {configured[0]}, "
                      f"{list(configured[1])} of the config or checkpoint", file=sys.stderr)
        restore = getattr(self.datamodule, "restore_data_state", None)
        if restore is not None and self._checkpoint_path:
            # the data's state (own data: its scale) before the model is set up for it
            restore(self._checkpoint_path)
        trainer = super().instantiate_trainer(**kwargs)
        self.run_folder = RunFolder(run_directory(trainer), self.config_name or CONFIG)
        # Trainer.callbacks is set by Lightning's callback connector, unknown to type checkers
        trainer.callbacks.extend([  # type: ignore[attr-defined]
            WandbReport(), self.run_folder, *run_callbacks(str(self.subcommand), self.config)])
        return trainer

    def report(self) -> None:
        """At the end of a command: finish the W&B run (its files complete), then print the
        run's folder and checkpoints; a fit stopped by a signal then prints the command that
        resumes it and exits with 128 + the signal's number (``predlearn.preemption``)."""
        from predlearn.preemption import stop_report

        finish_wandb()
        if self.trainer.is_global_zero:
            print(self.run_folder.report(self.trainer), flush=True)
        config_name = self.run_folder.config_name or CONFIG
        stopped = stop_report(self.trainer, self.run_folder.folder / config_name)
        if stopped is not None:
            line, code = stopped
            if self.trainer.is_global_zero:
                print(line, file=sys.stderr, flush=True)
            raise SystemExit(code)

    def after_fit(self) -> None:
        from predlearn.preemption import stopped_fit

        if not self.config.fit.get("test_after_fit") or stopped_fit(self.trainer) is not None:
            return  # a fit stopped by a signal leaves at once (its resumed fit tests)
        checkpoint = self.trainer.checkpoint_callback
        has_best = isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path
        ckpt_path = "best" if has_best else None
        if ckpt_path is None:
            rank_zero_warn("test_after_fit: no validation ran, so there is no best checkpoint; "
                           "testing the final weights")
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)


def _build(argv: list[str] | None) -> PredlearnCLI:
    """Run LightningCLI on ``argv`` (None: on ``sys.argv``); refusals, and the settings
    Lightning refuses while the run runs, come out as predlearn errors named as on the command
    line (``predlearn.cli_errors``, ``predlearn.runtime_errors``). Options are never abbreviated
    (``--trainer.max_step`` is refused, not taken for ``--trainer.max_steps``)."""
    saved = sys.argv
    if argv is not None:  # arguments given in Python: hide the caller's own (e.g. pytest's)
        sys.argv = sys.argv[:1]
    exact = {"allow_abbrev": False}
    try:
        return PredlearnCLI(
            PredictiveModule,
            LightningDataModule,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            # parse errors raise ArgumentError; the subcommands' parsers get their own kwargs
            parser_kwargs={"exit_on_error": False, **exact,
                           **{command: dict(exact) for command in ("fit", "validate", "test",
                                                                   "predict")}},
            args=argv,
        )
    except Exception as error:
        from predlearn.runtime_errors import lightning_option_error

        refusal = as_predlearn_error(error) or lightning_option_error(error)
        if refusal is None or refusal is error:
            raise
        raise refusal from error
    finally:
        sys.argv = saved


def _configured_shape(predictor: Any) -> tuple[int, tuple[int, ...]] | None:
    """(frame_channels, frame_size) a config or checkpoint gives the predictor where they
    differ from the class's defaults (the data's frames replace them), else None."""
    cls = class_or_none(predictor.get("class_path")) if predictor is not None else None
    args = (plain(predictor.get("init_args")) or {}) if cls is not None else {}
    shape: list[Any] = [args.get("frame_channels"), args.get("frame_size")]
    defaults = constructor_defaults(cls) if cls is not None else {}
    if None in shape or shape == [defaults.get("frame_channels"), defaults.get("frame_size")]:
        return None
    return int(shape[0]), tuple(shape[1])


def _runs_on_cpu(trainer: Any) -> bool:
    """Whether the trainer config runs on the CPU (``cpu``, or ``auto`` without a GPU)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator == "cpu":
        return True
    return accelerator == "auto" and not torch.cuda.is_available() and not (
        torch.backends.mps.is_available())


def run_lightning(argv: list[str], from_sys_argv: bool = False) -> PredlearnCLI:
    """``fit | validate | test | predict`` with ``argv``; ``from_sys_argv``: the arguments came
    from the console script (LightningCLI then reads them from ``sys.argv``)."""
    argv = resolve_registry_names(argv)  # an unknown name: UnknownNameError, a usage error
    if HELP_FLAGS & set(argv):
        print_help(argv, _build)
        raise SystemExit(0)
    try:
        with quiet():  # no third-party warnings the user cannot act on (predlearn.quiet)
            if from_sys_argv:
                sys.argv = [sys.argv[0], *argv]
            cli = _build(None if from_sys_argv else argv)
            cli.report()
    finally:
        if os.environ.get("LOCAL_RANK", "0") == "0":
            os.environ.pop(RUN_FOLDER_ENV, None)  # the next command chooses its own
    return cli
