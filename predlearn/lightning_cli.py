"""``predlearn fit | validate | test | predict``: LightningCLI with predlearn's defaults.

``--model`` and ``--data`` take registry names (``--model=predrnn --data=mmnist``) or class paths.
Names are rewritten to class paths before LightningCLI parses the arguments (DESIGN 2.3): a model
name selects the predictor that the one ``PredictiveModule`` wraps. ``predlearn.cli`` dispatches
here; this module is the one that imports Lightning.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeTuple
from lightning.pytorch.utilities import rank_zero_warn

from predlearn.callbacks import PredictionFigures, PredictionWriter
from predlearn.hardware import cpu_has_native_bf16
from predlearn.module import PredictiveModule
from predlearn.pretrained import resolve_checkpoint
from predlearn.registry import DATAMODULES, MODELS

RUN_ROOT = "runs"
TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": RUN_ROOT,
    "max_steps": 80_000,  # paper §4: 80,000 iterations
    "logger": {
        "class_path": "predlearn.loggers.AutoWandbLogger",
        "init_args": {"project": "predlearn", "save_dir": RUN_ROOT},
    },
}


def class_path(obj: type) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def resolve_registry_names(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--model NAME`` to ``--model.predictor CLASS_PATH`` and ``--data NAME`` likewise.

    Dotted values (class paths) and config files pass through unchanged; an unknown plain name
    fails with the list of registered names. ``--ckpt_path NAME`` of a shipped model
    (``predlearn.list_pretrained()``) becomes the path of its checkpoint. ``--model.cell`` is
    short for ``--model.predictor.cell`` (``--model=stack --model.cell=st_lstm``).
    """
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        for flag, registry, target in (("--model", MODELS, "--model.predictor"),
                                       ("--data", DATAMODULES, "--data")):
            if arg == flag and i + 1 < len(args):
                value, consumed = args[i + 1], 2
            elif arg.startswith(flag + "="):
                value, consumed = arg[len(flag) + 1:], 1
            else:
                continue
            if _looks_like_name(value):
                value = class_path(registry.get(value))
            elif flag == "--model" and value.endswith((".yaml", ".yml", ".json")):
                target = flag  # a config file for the whole PredictiveModule
            out.append(f"{target}={value}")
            i += consumed
            break
        else:
            if arg == "--model.cell" or arg.startswith("--model.cell="):  # the stack's cell
                arg = "--model.predictor.cell" + arg[len("--model.cell"):]
            if arg == "--ckpt_path" and i + 1 < len(args):  # a shipped model's name works too
                out += [arg, resolve_checkpoint(args[i + 1])]
                i += 2
                continue
            if arg.startswith("--ckpt_path="):
                arg = "--ckpt_path=" + resolve_checkpoint(arg.split("=", 1)[1])
            out.append(arg)
            i += 1
    return out


def _looks_like_name(value: str) -> bool:
    """Registry names are lowercase identifiers; class names and paths are not."""
    return value.replace("_", "").isalnum() and value.islower()


class PredlearnCLI(LightningCLI):
    """LightningCLI with the paper's checkpointing, figures and an optional test after fit."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
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
        # The data decides how many frames are observed and predicted; the model follows.
        for attribute in ("context_frames", "horizon", "test_horizon"):
            parser.link_arguments("data", f"model.{attribute}", apply_on="instantiate",
                                  compute_fn=_frames_of(attribute))
        parser.add_argument(
            "--test_after_fit", type=bool, default=False,
            help="fit only: after training, test the best (validation-chosen) checkpoint",
        )
        parser.add_argument(
            "--auto_bf16", type=bool, default=False,
            help="train and test in bf16-mixed precision when running on a CPU that computes "
                 "bf16 natively (AMX or AVX512-BF16), in the trainer's precision otherwise",
        )

    def before_instantiate_classes(self) -> None:
        """Group W&B runs by data set and tag them by model, so that runs compare in one view;
        apply ``--auto_bf16``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("auto_bf16") and _runs_on_cpu(config.get("trainer", {})) \
                and cpu_has_native_bf16():
            config["trainer"]["precision"] = "bf16-mixed"
        logger = config.get("trainer", {}).get("logger")
        if not hasattr(logger, "get") or not str(logger.get("class_path")).endswith(
                "AutoWandbLogger"):
            return
        init_args = logger.get("init_args")
        model = _registry_name(MODELS, config.get("model", {}).get("predictor", {}))
        data = _registry_name(DATAMODULES, config.get("data", {}))
        if init_args.get("group") is None and data:
            init_args["group"] = data
        if not init_args.get("tags") and model:
            init_args["tags"] = [model]

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit"):
            return
        checkpoint = self.trainer.checkpoint_callback
        has_best = isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path
        ckpt_path = "best" if has_best else None
        if ckpt_path is None:
            rank_zero_warn("test_after_fit: no validation ran, so there is no best checkpoint; "
                           "testing the final weights")
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)


_HELP_FLAGS = {"-h", "--help"}
CHOOSE_HINT = """\
Choose a model and a data set by name, e.g. `predlearn fit --model=predrnn --data=mmnist`;
with them, --help shows their own options first, each with its default.
  models: {models}
  data:   {data}
"""


def _build(argv: list[str] | None) -> PredlearnCLI:
    """Run LightningCLI on ``argv`` (None: on ``sys.argv``)."""
    saved = sys.argv
    if argv is not None:  # arguments given in Python: hide the caller's own (e.g. pytest's)
        sys.argv = sys.argv[:1]
    try:
        return PredlearnCLI(
            PredictiveModule,
            LightningDataModule,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            args=argv,
        )
    finally:
        sys.argv = saved


def _print_help(argv: list[str]) -> None:
    """The options of the chosen predictor and data module, then the subcommand's help.

    LightningCLI shows a subclass's own options only through ``--model.predictor.help CLASS``;
    with ``--model=NAME --help`` we print those first, so the options a user came for lead and
    every option shows with its default.
    """
    rest = [a for a in argv if a not in _HELP_FLAGS]
    chosen = {key: a.split("=", 1)[1] for a in rest for key in ("--model.predictor", "--data")
              if a.startswith(key + "=")}
    subcommand = [a for a in rest if not a.startswith("-")][:1]
    if not chosen:
        print(CHOOSE_HINT.format(models=", ".join(MODELS.names()),
                                 data=", ".join(DATAMODULES.names())))
    for help_args in (*(
        [*subcommand, f"{key}.help", value] for key, value in chosen.items()
    ), [*rest, "--help"]):
        try:
            _build(help_args)
        except SystemExit:
            pass
        print()


def _runs_on_cpu(trainer: Any) -> bool:
    """Whether the trainer config runs on the CPU (``cpu``, or ``auto`` without a GPU)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator == "cpu":
        return True
    return accelerator == "auto" and not torch.cuda.is_available() and not (
        torch.backends.mps.is_available())


def _frames_of(attribute: str):
    defaults = {"context_frames": 10, "horizon": 10, "test_horizon": None}  # paper §4.1

    def compute(datamodule: LightningDataModule) -> int | None:
        return getattr(datamodule, attribute, defaults[attribute])

    return compute


def _registry_name(registry, component) -> str | None:
    """The registry name of a parsed ``class_path`` component, if it is registered."""
    path = component.get("class_path") if hasattr(component, "get") else None
    if not path:
        return None
    module, _, name = str(path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return registry.name_of(cls)




def run_lightning(argv: list[str], from_sys_argv: bool = False) -> PredlearnCLI:
    """``fit | validate | test | predict`` with ``argv``; ``from_sys_argv``: the arguments came
    from the console script (LightningCLI then reads them from ``sys.argv``)."""
    from predlearn.datamodules.stream import quiet_known_warnings

    argv = resolve_registry_names(argv)  # an unknown name: UnknownNameError, a usage error
    if _HELP_FLAGS & set(argv):
        _print_help(argv)
        raise SystemExit(0)
    with quiet_known_warnings():
        if from_sys_argv:
            sys.argv = [sys.argv[0], *argv]
            return _build(None)
        return _build(argv)
