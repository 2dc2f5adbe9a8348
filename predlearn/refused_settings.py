"""Lightning's refusal of a trainer or callback setting, as the option that sets it.

Lightning checks its settings when the trainer is built and when a run starts, and refuses them
with a ``MisconfigurationException`` or a ``ValueError``, ``TypeError`` or ``ImportError`` in
its own words (``Trainer(devices='0')``). ``lightning_option_error`` names the option as the
command line does (``--trainer.devices``, ``--checkpoint.mode``) and says what it allows: the
object that refused (the trainer, an accelerator, a callback) is the innermost ``self`` on the
error's traceback, and the option is the first of its parameters the message names. An error
raised from the model's or data's own code is not a setting's (None: it keeps its traceback).
"""

from __future__ import annotations

import inspect
import os
import re
from types import FrameType
from typing import Any

from predlearn.cli_errors import init_parameters
from predlearn.errors import OptionValueError, UsageError

#: what each trainer option allows, said after Lightning's refusal of it
ALLOWED = {
    "accelerator": "auto, cpu, cuda (or gpu), mps, tpu",
    "strategy": "auto, ddp, ddp_spawn, fsdp (GPUs only), deepspeed (after `pip install "
                "deepspeed`), or a Strategy class path",
    "devices": "a number of devices (on the CPU: of processes), a list of device indices such "
               "as [0,1], -1 for all, or auto",
    "num_nodes": "a positive number of machines",
    "precision": "32-true, 64-true, bf16-mixed, bf16-true, 16-mixed (GPUs), 16-true",
}
#: Lightning's words for what it refused -> a clearer line (regex, format of its groups)
REWORDED = {
    "val_check_interval": (
        (r"`val_check_interval` \((\S+)\) must be less than or equal to the number of the "
         r"training batches \((\d+)\)"),
        ("{0} is more than the {1} training batches of an epoch: give at most {1}, a fraction "
         "of an epoch (e.g. 0.5), or --trainer.check_val_every_n_epoch=null to count training "
         "batches across epochs")),
    "accelerator": (r"No supported gpu backend found", "no GPU found"),
    **{f"limit_{stage}_batches": (
        r"invalid value (\S+) for limit_\w+_batches, it has to be in \[0.0, 1.0\] or an int",
        ("{0} is neither a fraction of the batches in [0.0, 1.0] nor a number of batches (an "
         "integer >= 0)")) for stage in ("train", "val", "test", "predict")},
}
#: words of a refusal that already say what is allowed
_SAYS_ALLOWED = re.compile(r"allowed|available|choices|has to be|can be|neither", re.IGNORECASE)
#: words of a refusal that tell the trainer option when the message names none
KEYWORDS = (("accelerator", ("gpu", "cuda", "mps", "tpu", "xla", "accelerator")),
            ("strategy", ("strategy", "ddp", "fsdp", "deepspeed")),
            ("precision", ("precision", "amp", "bf16", "fp16")))


def lightning_option_error(error: BaseException) -> UsageError | None:
    """A setting Lightning refused, as ``--trainer.<option>: ...`` (or the callback's option),
    with what the option allows; None when the error is not about a setting (raised from the
    model's or data's code, or not by Lightning)."""
    import lightning
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    misconfigured = isinstance(error, MisconfigurationException)
    frames = traceback_frames(error)
    root = os.path.dirname(inspect.getfile(lightning))
    if not misconfigured and not (
            isinstance(error, (ValueError, TypeError, ImportError)) and frames
            and frames[0].f_code.co_filename.startswith(root + os.sep)):
        return None
    owner = _owner(frames)
    message = " ".join(str(error).split()).rstrip(".!")
    option = _option(owner, message) if owner is not None else None
    if option is None:
        return UsageError(f"Lightning refuses the configuration: {message}") if (
            misconfigured and owner is not None) else None
    name = option.rpartition(".")[2]
    pattern, reworded = REWORDED.get(name, ("$^", ""))
    match = re.search(pattern, message)
    trainers = option.startswith("--trainer.")
    if match:
        message = reworded.format(*match.groups())
    elif trainers:
        message = _as_typed(message, _trainer_parameters())
    if name in ALLOWED and trainers and not _SAYS_ALLOWED.search(message):
        message += f"; allowed: {ALLOWED[name]}"
        if name == "accelerator":
            message += f" (this machine: {', '.join(_accelerators())})"
    return OptionValueError(option, message)


def _owner(frames: list[FrameType]) -> tuple[str, Any] | None:
    """(the options' prefix, the object whose settings they are) of the innermost frame whose
    ``self`` Lightning builds from the command line; None where the model's or data's own code
    comes first (what it refuses is its own business, or a bug)."""
    import torch
    from lightning.pytorch import Callback, LightningDataModule, Trainer
    from lightning.pytorch.accelerators import Accelerator
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.strategies import Strategy

    from predlearn.checkpointing import ValidatedCheckpoint
    from predlearn.prediction_figures import PredictionFigures
    from predlearn.prediction_writer import PredictionWriter

    callbacks = {ValidatedCheckpoint: "--checkpoint", PredictionFigures: "--figures",
                 PredictionWriter: "--predictions"}
    parts = ((Accelerator, "--trainer.accelerator"), (Strategy, "--trainer.strategy"),
             (Precision, "--trainer.precision"), (Logger, "--trainer.logger"))
    for frame in frames:
        obj = frame.f_locals.get("self")
        if isinstance(obj, (torch.nn.Module, LightningDataModule)):
            return None
        if isinstance(obj, Callback):
            prefix = callbacks.get(type(obj))
            if prefix is None and type(obj).__module__.startswith("predlearn."):
                return None  # a callback every run gets: what it does wrong is a bug
            return prefix or "--trainer.callbacks", obj
        for kind, option in parts:
            if isinstance(obj, kind):
                return option, obj
        if isinstance(obj, Trainer) or type(obj).__module__.startswith(
                ("lightning.pytorch.trainer", "lightning.pytorch.loops")):
            return "--trainer", obj
    return None


def _option(owner: tuple[str, Any], message: str) -> str | None:
    """The option a refusal is about: the first of the owner's parameters that the message
    names, else (for the trainer) the option its words point at."""
    prefix, obj = owner
    if prefix == "--trainer.callbacks":  # a callback the command line gave: which option of it
        return prefix                    # is not told apart
    parameters = _trainer_parameters() if prefix.startswith("--trainer") else init_parameters(
        type(obj))
    words = re.findall(r"[A-Za-z_]\w*", message)
    named = next((word for word in words if word in parameters), None)
    if named is not None:
        return f"{prefix.partition('.')[0] if prefix.startswith('--trainer') else prefix}.{named}"
    if prefix != "--trainer":
        return prefix if prefix.count(".") else None
    lowered = message.lower()
    return next((f"--trainer.{option}" for option, keys in KEYWORDS
                 if any(key in lowered for key in keys)), None)


def _as_typed(message: str, parameters: set[str]) -> str:
    """Lightning's Python spelling of a setting (```Trainer(devices='0')```, ```x=None```) as
    the command line's (``--trainer.devices=0``, ``--trainer.x=null``)."""

    def typed(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2).strip("'\"")
        if name not in parameters:
            return match.group(0)
        return f"--trainer.{name}={'null' if value == 'None' else value}"

    return re.sub(r"`(?:Trainer\()?(\w+)=([^`)]*)\)?`", typed, message)


def _trainer_parameters() -> set[str]:
    from lightning.pytorch import Trainer

    return init_parameters(Trainer)


def _accelerators() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def traceback_frames(error: BaseException) -> list[FrameType]:
    """The frames of ``error``'s traceback, innermost first."""
    frames = []
    trace = error.__traceback__
    while trace is not None:
        frames.append(trace.tb_frame)
        trace = trace.tb_next
    return frames[::-1]
