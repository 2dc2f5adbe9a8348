"""``predlearn import-weights SOURCE --from=predrnn-pytorch|openstl --model=NAME``: a source's
checkpoint as a predlearn pretrained folder and checkpoint (docs/deploy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from predlearn.errors import UsageError

PREFIX = "--model.predictor."

DESCRIPTION = """\
Import weights trained with the authors' predrnn-pytorch (model.ckpt-<iteration> files: models
predrnn, predrnn_v2) or OpenSTL (its Lightning .ckpt or a released .pth: convlstm, predrnn,
predrnn_v2, predrnn_pp, mim, e3d_lstm, mau, phydnet, simvp, tau). The predictor's options come
from the file where it holds them (OpenSTL's .ckpt), else from the weights' shapes and the
authors' Moving MNIST scripts (64 x 64 frames, 1 channel, 10 -> 10 frames); give any other with
--model.predictor.KEY=VALUE (e.g. --model.predictor.frame_size=[128,128]). Writes a pretrained
folder (config.json, model.safetensors, README.md) and a predlearn checkpoint, which every
command takes as --ckpt_path.
"""


def parse(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    """The command's arguments and the ``--model.predictor.KEY=VALUE`` options (YAML values)."""
    import yaml

    from predlearn.errors import ArgumentParser
    from predlearn.weight_import.converters import CONVERTERS

    parser = ArgumentParser(prog="predlearn import-weights", description=DESCRIPTION,
                            allow_abbrev=False)
    parser.add_argument("source", metavar="SOURCE", help="the checkpoint file to import")
    parser.add_argument("--from", dest="source_format", required=True, choices=list(CONVERTERS),
                        help="the code that wrote SOURCE")
    parser.add_argument("--model", required=True,
                        help="predlearn's model name (OpenSTL's method names work too)")
    parser.add_argument("--output", default=None, metavar="FOLDER",
                        help="the pretrained folder to write (default: SOURCE's name with "
                             "-predlearn, beside it)")
    parser.add_argument("--checkpoint", default=None, metavar="FILE",
                        help="the predlearn checkpoint to write (default: FOLDER.ckpt); "
                             "'none' writes the folder only")
    parser.add_argument("--context_frames", type=int, default=None, metavar="J",
                        help="observed frames (default: the file's, else 10)")
    parser.add_argument("--horizon", type=int, default=None, metavar="K",
                        help="predicted frames (default: the file's, else 10)")
    known, rest = parser.parse_known_args(argv)
    options: dict[str, Any] = {}
    tokens = list(rest)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith(PREFIX):
            parser.error(f"unrecognized arguments: {token} (predictor options are "
                         f"{PREFIX}KEY=VALUE)")
        key, _, value = token[len(PREFIX):].partition("=")
        if not _ and (not tokens or tokens[0].startswith("--")):
            parser.error(f"{token}: give a value ({token}=VALUE)")
        raw = value if _ else tokens.pop(0)
        try:
            options[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            parser.error(f"{PREFIX}{key}: {raw!r} is not a value (a number, a list like [64,64], "
                         "true/false or a string)")
    return known, options


def main(argv: list[str]) -> None:
    """Entry point of ``predlearn import-weights``."""
    from predlearn.weight_import.importer import import_weights, write_outputs

    args, options = parse(list(argv))
    source = Path(args.source)
    folder = Path(args.output) if args.output else source.with_name(
        source.name.split(".")[0] + "-predlearn")
    if folder.resolve() == source.resolve():
        raise UsageError(f"--output {folder} is the source file itself; name another folder")
    checkpoint = (None if args.checkpoint is not None and args.checkpoint.lower() == "none"
                  else Path(args.checkpoint or f"{folder}.ckpt"))
    imported = import_weights(source, args.source_format, args.model, options,
                              context_frames=args.context_frames, horizon=args.horizon)
    folder, written = write_outputs(imported, folder, checkpoint)
    predictor = imported.predictor
    count = sum(p.numel() for p in predictor.parameters())
    print(f"predlearn import-weights: {source} ({args.source_format}) as {imported.model}, "
          f"{count:,} parameters, {imported.context_frames} -> {imported.horizon} frames, "
          f"options {predictor.config['init_args'] if predictor.config else {}}")
    print(f"predlearn import-weights: wrote {folder}/ (config.json, model.safetensors, README.md)"
          + (f" and {written}" if written else ""))
    target = written or folder
    print(f"predlearn import-weights: score it with `predlearn test --ckpt_path={target} "
          "--data=...`; load it with predlearn.from_pretrained(\"" + str(folder) + "\")")
