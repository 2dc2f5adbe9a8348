"""``predlearn fit | validate | test | predict``: LightningCLI with predlearn's defaults.

``--model`` and ``--data`` take registry names (``--model=predrnn --data=mmnist``) or class paths.
Names are rewritten to class paths before LightningCLI parses the arguments (DESIGN 2.3): a model
name selects the predictor that the one ``PredictiveModule`` wraps. ``predlearn.cli`` dispatches
here; this module is the one that imports Lightning.

Refusals leave as predlearn errors that ``predlearn.cli.main`` prints in one line: the parser's
(a wrong type, an unknown option) as ``UsageError``, a constructor's ``OptionValueError`` with
its option as typed (``--model.predictor.kernel_size``, ``--data.batch_size``). ``validate``,
``test`` and ``predict`` need ``--ckpt_path`` (a file, a shipped model's name, or ``untrained``
on purpose), except for predictors without weights (``trainable = False``: ``persistence``,
``extrapolation``), which ``fit`` refuses; a checkpoint is read without running pickled code and fills in only the settings
the command line leaves out (``CheckpointError`` when it holds another model or sizes).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import time
from argparse import ArgumentError
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeTuple
from lightning.pytorch.utilities import rank_zero_warn

from predlearn.callbacks import (
    PredictionFigures,
    PredictionWriter,
    ValidatedCheckpoint,
    run_directory,
)
from predlearn.errors import CheckpointError, OptionValueError, PredlearnError, UsageError
from predlearn.hardware import cpu_has_native_bf16
from predlearn.module import PredictiveModule
from predlearn.predictor import Predictor
from predlearn.pretrained import list_pretrained, read_checkpoint, resolve_checkpoint
from predlearn.registry import DATAMODULES, MODELS
from predlearn.run_folder import RunFolder, finish_wandb
from predlearn.runs import CHECKPOINTS, CONFIG, new_run_folder, run_folder_name, run_of_checkpoint
from predlearn.wandb_report import WandbReport

RUN_ROOT = "runs"
TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": RUN_ROOT,
    "max_steps": 80_000,  # paper §4: 80,000 iterations
    "logger": {
        "class_path": "predlearn.loggers.AutoWandbLogger",
        "init_args": {"project": "predlearn", "save_dir": RUN_ROOT},
    },
}
#: the run folder rank 0 chose, passed on to the processes Lightning starts for DDP (they run
#: the command again and would otherwise choose a folder of their own)
RUN_FOLDER_ENV = "PREDLEARN_RUN_FOLDER"
#: ``--ckpt_path=untrained``: validate, test or predict with the untrained (randomly
#: initialised) model, on purpose; without a --ckpt_path those commands refuse to run
UNTRAINED = "untrained"
#: ``--ckpt_path`` values Lightning resolves itself (within a fit: "best", "last")
LIGHTNING_CKPT_NAMES = ("best", "last", "hpc", "registry")
#: module arguments set from the data (``--data.horizon`` etc.) or from --optimizer and
#: --lr_scheduler, never from a checkpoint
LINKED_MODULE_ARGUMENTS = ("context_frames", "horizon", "test_horizon", "optimizer",
                           "lr_scheduler")
#: predictor arguments that change how it computes, not its weights: the command line may set
#: them differently from the checkpoint's
RUNTIME_PREDICTOR_ARGUMENTS = ("checkpoint_steps", "channels_last")


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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, remembering which options the command line gives (``given_options``: keys
        such as ``model.predictor.kernel_size``), to tell them from defaults when a checkpoint
        brings its own settings."""
        argv = sys.argv[1:] if args is None else args
        self.given_options = _given_options(argv if isinstance(argv, Sequence) else [])
        super().parse_arguments(parser, args)
        self._checkpoint_path: str | None = None
        self._take_checkpoint()
        # LightningCLI would next merge the checkpoint's hyper-parameters over the command line
        # (silently replacing a model or size it names); the path is held back until
        # before_instantiate_classes, so that step finds no checkpoint and ours stands.
        subcommand = self.config.get("subcommand")
        if subcommand and self.config[subcommand].get("ckpt_path"):
            self._checkpoint_path = self.config[subcommand]["ckpt_path"]
            self.config[subcommand]["ckpt_path"] = None

    def _take_checkpoint(self) -> None:
        """``--ckpt_path``: required by validate, test and predict (or ``untrained``); a shipped
        model's name becomes its file; the checkpoint is read safely and its settings fill in
        what the command line leaves out, but never replace a model or size it names
        (``CheckpointError``)."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        given = config.get("ckpt_path")
        predictor = (config.get("model") or {}).get("predictor")
        cls = _class_of(str(predictor.get("class_path"))) if predictor is not None else None
        if cls is not None and not getattr(cls, "trainable", True):
            # a baseline without weights (persistence, optical-flow extrapolation)
            name = _registry_name(MODELS, predictor) or cls.__name__
            if subcommand == "fit":
                raise OptionValueError(
                    "--model", f"{name} has no weights to train; score it with `predlearn test "
                    f"--model={name} --data=...` (no --ckpt_path)")
            if given not in (None, UNTRAINED):
                raise OptionValueError(
                    "--ckpt_path", f"{name} has no weights, so no checkpoint; leave --ckpt_path "
                    "out")
            config["ckpt_path"] = None
            return
        if given == UNTRAINED:
            config["ckpt_path"] = None
            if subcommand != "fit":
                name = _registry_name(MODELS, config.get("model", {}).get("predictor")) \
                    or "the model"
                print(f"predlearn: note: --ckpt_path={UNTRAINED}: {subcommand} runs {name} "
                      "with untrained, random weights", file=sys.stderr)
            return
        if given is None:
            if subcommand != "fit":
                shipped = ", ".join(list_pretrained())
                raise OptionValueError(
                    "--ckpt_path", f"`predlearn {subcommand}` runs a trained model: pass "
                    "--ckpt_path=<checkpoint file or shipped model name"
                    + (f" ({shipped})" if shipped else "") + f">, or --ckpt_path={UNTRAINED} "
                    "to run the untrained model on purpose")
            return
        if given in LIGHTNING_CKPT_NAMES:
            if subcommand != "fit" and given in ("best", "last"):
                raise OptionValueError(
                    "--ckpt_path", f"{given!r} names a checkpoint of a fit in the same run; "
                    f"`predlearn {subcommand}` needs the checkpoint file (e.g. "
                    "<run folder>/checkpoints/last.ckpt) or a shipped model's name")
            return
        path = resolve_checkpoint(str(given))
        if not Path(path).is_file():
            shipped = ", ".join(list_pretrained()) or "none"
            raise CheckpointError(f"--ckpt_path: no checkpoint file {given} (and no shipped "
                                  f"model of that name; shipped: {shipped})")
        config["ckpt_path"] = path
        model = config.get("model")
        named = model.get("predictor") if model is not None else None
        hparams = read_checkpoint(path, needs_predictor=named is None).get("hyper_parameters")
        self._take_checkpoint_settings(
            subcommand, dict(hparams) if isinstance(hparams, Mapping) else {}, path)

    def _take_checkpoint_settings(self, subcommand: str, hparams: dict[str, Any],
                                  path: str) -> None:
        """Fill the model's settings the command line leaves out from the checkpoint's
        ``hparams``; a predictor class or size that differs from one the command line names is
        a ``CheckpointError``."""
        model = self.config[subcommand].get("model")
        for key in ("_instantiator", "_class_path", *LINKED_MODULE_ARGUMENTS):
            hparams.pop(key, None)
        saved = hparams.get("predictor")
        named = model.get("predictor") if model is not None else None
        if named is not None and isinstance(saved, Mapping):
            hparams["predictor"] = _same_predictor(named, saved, path, self.given_options)
        elif named is not None:
            hparams.pop("predictor", None)  # a checkpoint without a predictor config
        defaults = _defaults(PredictiveModule)
        for key in list(hparams):
            if key != "predictor" and model is not None and key in model and (
                    f"model.{key}" in self.given_options
                    or _plain(model.get(key)) != _plain(defaults.get(key, _UNSET))):
                del hparams[key]  # chosen on the command line (or its config): it stays
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except ArgumentError as error:
            raise CheckpointError(f"{path}: its settings do not fit this predlearn "
                                  f"({_condense(str(error))[1]})") from error

    def before_instantiate_classes(self) -> None:
        """Choose the run's folder (``choose_run_folder``); group W&B runs by data set, tag them
        by model and name them after the folder, so that runs compare in one view; apply
        ``--auto_bf16``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self._checkpoint_path is not None:
            config["ckpt_path"] = self._checkpoint_path  # held back in parse_arguments
        if config.get("auto_bf16") and _runs_on_cpu(config.get("trainer", {})) \
                and cpu_has_native_bf16():
            config["trainer"]["precision"] = "bf16-mixed"
        folder = self.choose_run_folder(str(self.subcommand), config)
        logger = config.get("trainer", {}).get("logger")
        if folder is None or not _is_wandb_logger(logger):
            return
        init_args = logger.get("init_args")
        model = _registry_name(MODELS, config.get("model", {}).get("predictor", {}))
        data = _registry_name(DATAMODULES, config.get("data", {}))
        if init_args.get("group") is None and data:
            init_args["group"] = data
        if not init_args.get("tags") and model:
            init_args["tags"] = [model]
        if init_args.get("name") is None:
            init_args["name"] = folder.name

    def choose_run_folder(self, subcommand: str, config: Any) -> Path | None:
        """One run, one folder (``predlearn.runs``): with W&B (the default) or without a logger,
        the run's config, checkpoints, pictures, curves and W&B files go to
        ``<default_root_dir>/<model>-<data>-<time>/`` (``...-test-<time>`` and so on for the
        other commands), never into another run's folder. A fit resumed from a checkpoint of a
        run folder goes on in that folder (its config saved beside the first one); ``predict``
        makes no W&B run and writes into ``<checkpoint's run>/predict-<time>/`` (or beside its
        ``--predictions.output_path``). Other loggers (CSV) keep their own ``version_N``
        folders. Returns the folder, or None when the logger chooses it."""
        trainer = config.get("trainer", {})
        logger = trainer.get("logger")
        if subcommand == "predict" and _is_wandb_logger(logger):
            trainer["logger"] = logger = False  # predict logs nothing: no empty W&B run
        if logger not in (None, False) and not _is_wandb_logger(logger):
            return None
        root = str(trainer.get("default_root_dir") or RUN_ROOT)
        if _is_wandb_logger(logger):
            save_dir = logger.get("init_args").get("save_dir")
            if save_dir and str(save_dir) != RUN_ROOT:
                root = str(save_dir)  # runs/ is only the default of both
        model = _registry_name(MODELS, config.get("model", {}).get("predictor", {}))
        data = _registry_name(DATAMODULES, config.get("data", {}))
        checkpoint = config.get("ckpt_path")
        run = run_of_checkpoint(checkpoint) if checkpoint and Path(checkpoint).is_file() else None
        self.config_name: str | None = CONFIG
        inherited = os.environ.get(RUN_FOLDER_ENV)
        if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
            folder = Path(inherited)  # a process Lightning launched for DDP: rank 0's folder
        elif subcommand == "predict":
            output = (config.get("predictions") or {}).get("output_path")
            if output:  # written where asked; no config file beside it
                folder = Path(output).parent
                self.save_config_callback = None
                self.config_name = None
            else:
                folder = new_run_folder(run or root, run_folder_name(
                    None if run else model, None if run else data, "predict"))
        elif subcommand == "fit" and run is not None:
            folder = run  # a resumed run goes on in its folder
            if (run / CONFIG).exists():
                self.config_name = f"config.resumed-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
        else:
            folder = new_run_folder(root, run_folder_name(model, data, subcommand))
        if self.config_name:
            self.save_config_kwargs["config_filename"] = self.config_name
        os.environ[RUN_FOLDER_ENV] = str(folder)  # for the processes a DDP launch starts
        trainer["default_root_dir"] = str(folder)
        if _is_wandb_logger(logger):
            logger.get("init_args")["save_dir"] = str(folder)
        checkpoints = config.get("checkpoint")
        if checkpoints is not None and checkpoints.get("dirpath") is None:
            checkpoints["dirpath"] = str(folder / CHECKPOINTS)
        return folder

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with ``WandbReport`` (the curves and summaries W&B shows) and
        ``RunFolder`` (the folder printed; nothing left of a run that never started)."""
        trainer = super().instantiate_trainer(**kwargs)
        self.run_folder = RunFolder(run_directory(trainer),
                                    getattr(self, "config_name", CONFIG))
        # Trainer.callbacks is set by Lightning's callback connector, unknown to type checkers
        trainer.callbacks.extend([WandbReport(), self.run_folder])  # type: ignore[attr-defined]
        return trainer

    def report(self) -> None:
        """At the end of a command: finish the W&B run (its files complete), then print the
        run's folder and checkpoints."""
        finish_wandb()
        if self.trainer.is_global_zero:
            print(self.run_folder.report(self.trainer), flush=True)

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
    """Run LightningCLI on ``argv`` (None: on ``sys.argv``).

    Refusals come out as predlearn errors named as on the command line: a value the parser
    refuses (wrong type, unknown option) as a ``UsageError`` of one line, an
    ``OptionValueError`` raised by a model, module, data module or callback with its option
    prefixed (``--model.predictor.kernel_size``, ``--data.batch_size``).
    """
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
            parser_kwargs={"exit_on_error": False},  # parse errors raise ArgumentError
            args=argv,
        )
    except ArgumentError as error:
        option, message = _condense(str(error))
        raise (OptionValueError(option, message) if option else UsageError(message)) from error
    except Exception as error:
        found = _predlearn_error(error)
        if found is None:
            raise
        named = _named_as_typed(found)
        if named is error:
            raise
        raise named from error
    finally:
        sys.argv = saved


#: whose constructor or method raised an OptionValueError -> its options' prefix
_OPTION_OWNERS: tuple[tuple[type, str], ...] = (
    (Predictor, "model.predictor"),
    (LightningModule, "model"),
    (LightningDataModule, "data"),
    (PredictionFigures, "figures"),
    (PredictionWriter, "predictions"),
    (ModelCheckpoint, "checkpoint"),
)


def _predlearn_error(error: BaseException) -> PredlearnError | None:
    """``error`` if it is a predlearn error, else the one it wraps (jsonargparse wraps what a
    constructor raises in a ValueError of its own), else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, PredlearnError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _named_as_typed(error: PredlearnError) -> PredlearnError:
    """An ``OptionValueError`` with a bare argument name (``kernel_size``) as the option of the
    command line (``--model.predictor.kernel_size``), found from the object that raised it;
    any other error unchanged."""
    if not isinstance(error, OptionValueError) or error.option.startswith("-"):
        return error
    owner = _raised_by(error.__traceback__)
    if owner is None:
        return error
    option = f"--{owner}.{error.option}"
    if owner == "model" and error.option in ("context_frames", "horizon", "test_horizon"):
        option = f"--data.{error.option}"  # the data sets these (linked to the model)
    message = str(error)
    if message.startswith(f"{error.option}: "):
        message = message[len(error.option) + 2:]
    return OptionValueError(option, message, error.value)


def _raised_by(trace: TracebackType | None) -> str | None:
    """The option prefix of the innermost model, data module or callback whose code is on the
    traceback ``trace`` (its ``self``)."""
    frames = []
    while trace is not None:
        frames.append(trace.tb_frame)
        trace = trace.tb_next
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        for cls, prefix in _OPTION_OWNERS:
            if isinstance(owner, cls):
                return prefix
    return None


_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_NOT_ACCEPTED = re.compile(r"^Option '([^']+)' is not accepted$")
_EXPECTED = re.compile(r"^Expected a (.+?)\. Got value: (.*)$")
#: lines of jsonargparse's nested messages that describe the structure, not the problem
_STRUCTURE = ("Does not validate against", "Subtypes:", "Errors:", "Given value",
              "Expected a <class 'NoneType'>", "Expected a path but", "Expected a <class 'bool'>",
              "Expected a <class 'collections.abc.Iterable'>")


def _condense(message: str) -> tuple[str | None, str]:
    """jsonargparse's (nested, multi-line) parse error as (the option as typed, or None; what
    is wrong, in one line)."""
    keys: list[str] = []
    detail = ""
    class_path = ""
    for raw in message.splitlines():
        line = raw.strip().lstrip("- ").strip()
        if not line or line.startswith(_STRUCTURE):
            continue
        key = _PARSER_KEY.match(line)
        if key:
            keys.append(key.group(1))
            class_path = ""
            if key.group(2):
                detail = key.group(2)
                break
            continue
        if line.startswith("Problem with given class_path"):
            class_path = line.split("'")[1] if "'" in line else ""
            continue
        detail = line
        break
    if not keys and not detail:
        return None, message.strip().replace("\n", " ")
    not_accepted = _NOT_ACCEPTED.match(detail)
    if not_accepted:
        keys.append(not_accepted.group(1))
        owner = class_path.rpartition(".")[2] or "it"
        detail = f"no such option of {owner} (--help lists the options)"
    expected = _EXPECTED.match(detail)
    if expected:
        wanted, value = expected.groups()
        literal = re.match(r"typing\.Literal\[(.*)\]$", wanted)
        wanted = f"one of {literal.group(1)}" if literal else re.sub(
            r"<class '(?:[\w.]*\.)?(\w+)'>", r"\1", wanted)
        detail = f"expected {wanted}; got {value!r}"
    elif class_path and detail and not not_accepted:
        detail = f"cannot use {class_path}: {detail}"
    if detail.startswith("unrecognized arguments"):
        detail += " (--help lists the options)"
    option = "--" + ".".join(keys) if keys else None
    return option, detail


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


_UNSET = object()


def _given_options(argv: Sequence[Any]) -> set[str]:
    """The option keys an argument list sets (``--model.predictor.init_args.kernel_size=3`` ->
    ``model.predictor.kernel_size``)."""
    keys = set()
    for arg in argv:
        if isinstance(arg, str) and arg.startswith("--"):
            key = arg[2:].split("=", 1)[0].replace(".init_args.", ".")
            keys.add(key)
    return keys


def _plain(value: Any) -> Any:
    """Namespaces as dicts and tuples as lists, all the way down, to compare settings."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _defaults(cls: type) -> dict[str, Any]:
    """The default values of ``cls``'s constructor arguments."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {name: _plain(p.default) for name, p in parameters.items()
            if p.default is not inspect.Parameter.empty}


def _class_of(class_path: str) -> type | None:
    """The class a dotted path names, or None where it does not import."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _model_name(class_path: str) -> str:
    """A predictor's registry name (or class path) for messages."""
    cls = _class_of(class_path)
    return (MODELS.name_of(cls) if cls is not None else None) or class_path


def _same_predictor(named: Any, saved: Mapping[str, Any], path: str,
                    given: set[str]) -> dict[str, Any]:
    """The checkpoint's predictor config ``saved``, after checking that it is the one the
    command line names (``named``): the same class, and the same value of every argument the
    command line sets (given, or not the default); the command line's computing-only arguments
    (``RUNTIME_PREDICTOR_ARGUMENTS``) are kept."""
    named_path, saved_path = str(named.get("class_path")), str(saved.get("class_path"))
    # One class has several paths (predlearn.zoo.PredRNN, predlearn.zoo.predrnn.PredRNN).
    named_class = _class_of(named_path)
    if named_path != saved_path and (named_class is None
                                     or named_class is not _class_of(saved_path)):
        raise CheckpointError(
            f"{path} holds a {_model_name(saved_path)} model, not the {_model_name(named_path)} "
            "named on the command line: leave out --model to use the checkpoint's model, or give "
            f"a checkpoint of {_model_name(named_path)}")
    named_args = _plain(named.get("init_args")) or {}
    saved_args = dict(_plain(saved.get("init_args")) or {})
    defaults = _defaults(named_class) if named_class is not None else {}
    differ = []
    for key, value in named_args.items():
        chosen = f"model.predictor.{key}" in given or (
            key in defaults and value != defaults[key])
        if key in RUNTIME_PREDICTOR_ARGUMENTS:
            if chosen:
                saved_args[key] = value
        elif chosen and key in saved_args and value != saved_args[key]:
            differ.append(f"{key}={saved_args[key]} (command line: {value})")
    if differ:
        raise CheckpointError(
            f"{path} holds a {_model_name(saved_path)} with {', '.join(differ)}: leave those "
            "options out to use the checkpoint's, or give a checkpoint made with them")
    return {"class_path": saved_path, "init_args": saved_args}


def _is_wandb_logger(logger: Any) -> bool:
    """Whether a parsed ``--trainer.logger`` is W&B's (predlearn's ``AutoWandbLogger`` or
    Lightning's ``WandbLogger``)."""
    path = str(logger.get("class_path")) if hasattr(logger, "get") else ""
    return path.endswith("WandbLogger")


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
    from predlearn.known_warnings import quiet_known_warnings

    argv = resolve_registry_names(argv)  # an unknown name: UnknownNameError, a usage error
    if _HELP_FLAGS & set(argv):
        _print_help(argv)
        raise SystemExit(0)
    try:
        with quiet_known_warnings():
            if from_sys_argv:
                sys.argv = [sys.argv[0], *argv]
            cli = _build(None if from_sys_argv else argv)
    finally:
        if os.environ.get("LOCAL_RANK", "0") == "0":
            os.environ.pop(RUN_FOLDER_ENV, None)  # the next command chooses its own
    cli.report()
    return cli
