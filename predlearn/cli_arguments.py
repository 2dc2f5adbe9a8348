"""The arguments of ``fit | validate | test | predict`` before LightningCLI reads them: registry
names become class paths, and ``--help`` shows the chosen model's and data's options first.

A model name selects the predictor that the one ``PredictiveModule`` wraps, so ``--model=NAME``
becomes ``--model.predictor=CLASS_PATH`` (docs/models.md); ``--data=NAME`` becomes the data
module's class path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from predlearn.class_paths import class_path
from predlearn.cli_errors import unknown_name
from predlearn.pretrained import resolve_checkpoint
from predlearn.registry import DATAMODULES, MODELS, UnknownNameError

HELP_FLAGS = {"-h", "--help"}
CHOOSE_HINT = """\
Choose a model and a data set by name, e.g. `predlearn fit --model=predrnn --data=mmnist`;
with them, --help shows their own options first, each with its default.
  models: {models}
  data:   {data}
"""


def resolve_registry_names(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--model NAME`` to ``--model.predictor CLASS_PATH`` and ``--data NAME`` likewise.

    Dotted values (class paths) and config files pass through unchanged, a registered class's
    own name (``PredRNN``) becomes its path; any other plain name fails with the names it likely
    meant (``did you mean 'tau'?`` for ``Tau``) and the registered ones. ``--ckpt_path NAME`` of a shipped model
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
            if _looks_like_name(value) or _plain(value):
                value = _registered_path(registry, value)
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


def _plain(value: str) -> bool:
    """A value that is no class path and no file: an identifier (a name, or a class's name)."""
    return value.isidentifier()


def _registered_path(registry: Any, value: str) -> str:
    """The class path of the entry ``value`` names in ``registry``: by its registered name
    (exactly; names are lowercase), or by its class's own name (``PredRNN``); else
    ``UnknownNameError`` with the names it likely meant."""
    names = registry.names()
    if value in names:
        return class_path(registry.get(value))
    classes = {registry.path_of(name).rpartition(".")[2]: name for name in names}
    if value in classes:
        return class_path(registry.get(classes[value]))
    raise UnknownNameError(unknown_name(registry.kind, value, names,
                                        {cls.lower(): name for cls, name in classes.items()},
                                        registry.failed))


def print_help(argv: list[str], build: Callable[[list[str]], object]) -> None:
    """The options of the chosen predictor and data module, then the subcommand's help
    (``build``: runs LightningCLI on arguments).

    LightningCLI shows a subclass's own options only through ``--model.predictor.help CLASS``;
    with ``--model=NAME --help`` we print those first, so the options a user came for lead and
    every option shows with its default.
    """
    rest = [a for a in argv if a not in HELP_FLAGS]
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
            build(help_args)
        except SystemExit:
            pass
        print()
