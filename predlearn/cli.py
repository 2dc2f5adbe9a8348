"""The ``predlearn`` console script: one dispatcher, every subcommand imported only when run.

``fit | validate | test | predict`` go to LightningCLI (``predlearn.lightning_cli``, the module
that imports Lightning); ``sweep``, ``compare``, ``prepare``, ``list``, ``import-weights``
and ``export`` have their own modules.
``predlearn --help`` and the ``--help`` of ``compare``, ``sweep`` and ``prepare`` import neither
torch nor Lightning, so they answer at once.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

#: subcommand -> one line of help, in the order ``predlearn --help`` lists them
COMMANDS = {
    "fit": "train a model; with --test_after_fit, then test its best (validation-chosen) "
           "checkpoint",
    "validate": "score a checkpoint (--ckpt_path, a file or a shipped model's name) on the "
                "validation set",
    "test": "score a checkpoint on the test set: per-step curves, pictures, metrics",
    "predict": "write a checkpoint's predictions of a data set (HDF5, pictures)",
    "sweep": "train and test every config of a folder: a Table-1-style table and plots",
    "compare": "per-step plots and tables of finished runs (their curves; W&B projects online)",
    "prepare": "build a data set's file from original products (radar: FMI, KNMI, ODIM)",
    "list": "the registered models, cells, data modules and metrics (plugins included)",
    "import-weights": "the authors' (predrnn-pytorch) or OpenSTL weights as a predlearn model",
    "export": "a model as ONNX or torch.export for deployment, checked against PyTorch",
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
PREPARERS = {"radar": "predlearn.datamodules.radar_prepare"}
#: subcommands whose module has ``main(argv)``
MODULE_COMMANDS = {"import-weights": "predlearn.weight_import.command",
                   "export": "predlearn.export_command"}

USAGE = """\
usage: predlearn COMMAND [options]

Spatiotemporal predictive learning: train, test and compare PredRNN and the baselines of
Wang et al. (NeurIPS 2017) on Moving MNIST, KTH action and radar echo.

commands:
{commands}

`predlearn COMMAND --help` shows a command's options; `predlearn fit --model=predrnn
--data=mmnist --help` shows every option of that model and data set, with its default.
Docs: docs/getting-started.md.
"""


def print_usage(file: Any = None) -> None:
    """The top-level help: every subcommand with one line."""
    commands = "\n".join(f"  {name:15s} {text}" for name, text in COMMANDS.items())
    print(USAGE.format(commands=commands), file=file or sys.stdout, end="")


def print_registry() -> None:
    """``predlearn list``: registered models, cells and data modules, and broken plugins.

    predlearn's own entries are listed from their declarations, without importing them; other
    packages' plugins are imported (to report those that fail).
    """
    from predlearn.registry import CELLS, DATAMODULES, METRICS, MODELS

    registries = (("models", MODELS), ("cells", CELLS), ("datamodules", DATAMODULES),
                  ("metrics", METRICS))
    for title, registry in registries:
        print(f"{title}:")
        for name in registry.names():
            print(f"  {name:24s} {registry.path_of(name)}")
    failed = {name: reason for _, registry in registries for name, reason in
              registry.failed.items()}
    if failed:
        print("plugins that failed to load:")
        for name, reason in sorted(failed.items()):
            print(f"  {name}: {reason}")


def _prepare(argv: list[str]) -> None:
    """``predlearn prepare DATASET ...``: build a data set's file from its original products."""
    if argv[:1] in (["-h"], ["--help"]) or not argv or argv[0] not in PREPARERS:
        known = ", ".join(sorted(PREPARERS))
        hint = (f"name a data set to prepare ({known}), e.g. `predlearn prepare radar "
                "SOURCE... --out radar.h5`; `predlearn prepare radar --help` shows its options")
        if argv[:1] in (["-h"], ["--help"]):
            print(f"predlearn prepare: {hint}")
            raise SystemExit(0)
        from predlearn.errors import UsageError

        given = f"unknown data set {argv[0]!r}: " if argv else ""
        raise UsageError(f"prepare: {given}{hint}")
    importlib.import_module(PREPARERS[argv[0]]).main(argv[1:])


def run_cli(args: Sequence[str] | None = None) -> Any:
    """Run a ``predlearn`` command (``args`` as on the command line; None: ``sys.argv``);
    returns the LightningCLI object for ``fit | validate | test | predict``, else None."""
    argv = list(sys.argv[1:] if args is None else args)
    command = argv[0] if argv else None
    if command is None or command in ("-h", "--help"):
        print_usage()
        if command is None:
            raise SystemExit(2)
        return None
    if command in LIGHTNING_COMMANDS:
        from predlearn.lightning_cli import run_lightning

        return run_lightning(argv, from_sys_argv=args is None)
    if command == "list":
        if argv[1:2] in (["-h"], ["--help"]):
            print(f"usage: predlearn list\n\n{COMMANDS['list']}")
            return None
        if argv[1:]:
            from predlearn.errors import UsageError

            raise UsageError(f"list takes no arguments; got {' '.join(argv[1:])} "
                             "(`predlearn list` shows every registry)")
        print_registry()
    elif command == "prepare":
        _prepare(argv[1:])
    elif command == "compare":
        from predlearn.compare import main as compare_main

        compare_main(argv[1:])
    elif command == "sweep":
        from predlearn.sweep import run_sweep

        run_sweep(argv[1:])
    elif command in MODULE_COMMANDS:
        importlib.import_module(MODULE_COMMANDS[command]).main(argv[1:])
    else:
        from predlearn.errors import UsageError

        raise UsageError(f"unknown command {command!r}; commands: {', '.join(COMMANDS)} "
                         "(`predlearn --help`)")
    return None


def _debugging(argv: list[str]) -> bool:
    """Whether tracebacks are wanted (``--debug`` anywhere, removed from ``argv``, or
    ``PREDLEARN_DEBUG=1``)."""
    wanted = "--debug" in argv
    while "--debug" in argv:
        argv.remove("--debug")
    return wanted or os.environ.get("PREDLEARN_DEBUG", "") not in ("", "0")


def _one_line(message: str) -> str:
    """An error's message as one line. A DataLoader worker's error arrives wrapped ("Caught X in
    DataLoader worker process N. Original Traceback ... X: message"): only its message is kept."""
    if "Original Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(message.split())


def _explained(error: Exception) -> tuple[str, int] | None:
    """(the message, the exit code) of an error the boundary explains in one line: predlearn's
    own, a missing file, and what Lightning or torch raise while a run runs that
    ``predlearn.runtime_errors`` knows; None for any other (a bug keeps its traceback)."""
    from predlearn.errors import PredlearnError

    if isinstance(error, PredlearnError):
        return str(error), error.exit_code
    if isinstance(error, FileNotFoundError):
        return str(error), 1
    from predlearn.runtime_errors import runtime_error

    known = runtime_error(error)
    return (str(known), known.exit_code) if known is not None else None


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``predlearn`` console script: the one error boundary.

    A refusal (a ``predlearn.errors.PredlearnError``, a missing file) and what Lightning or torch
    raise while the run runs (a trainer setting refused, out of memory, a full disk, DDP that
    cannot start: ``predlearn.runtime_errors``) end with one line, ``predlearn: error: ...``, and
    exit code 2 (usage) or 1 (everything else), not a traceback through Lightning; ``--debug`` or
    ``PREDLEARN_DEBUG=1`` shows the traceback. Any other exception keeps its traceback.
    """
    argv = list(sys.argv[1:] if args is None else args)
    debug = _debugging(argv)
    if args is None:
        sys.argv[1:] = argv  # without --debug; LightningCLI reads sys.argv
    try:
        run_cli(None if args is None else argv)
    except Exception as err:
        explained = None if debug else _explained(err)
        if explained is None:
            raise
        message, code = explained
        print(f"predlearn: error: {_one_line(message)} (--debug shows where)", file=sys.stderr)
        raise SystemExit(code) from None


if __name__ == "__main__":
    main()
