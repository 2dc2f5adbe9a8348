"""Write a pretrained folder (config.json, model.safetensors, README.md) from a predlearn
checkpoint, e.g. the shipped model's:

    python scripts/make_pretrained_folder.py predlearn/weights/predrnn-mmnist2.ckpt \\
        predlearn/weights/predrnn-mmnist2 --card predlearn/weights/predrnn-mmnist2.md

The checkpoint is read without running pickled code (``weights_only``). ``--card`` gives the
model card (its usage line is brought up to date); without it one is written from the config.
``--test-command`` records the command that measured the checkpoint's test scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from predlearn.pretrained_folder import save_pretrained

#: the shipped card's usage line, and what it says of a folder
OLD_USAGE = "returns it as a `PredictiveModule` in eval mode;"
NEW_USAGE = ("returns it as a `PredictiveModule` in eval mode,\n"
             "`predlearn.from_pretrained(\"{name}\")` as a Predictor (`predictor(frames, 10)`);")
FILES = ("This folder holds `config.json` (the predictor's class and options, frame counts, "
         "recipe,\ntraining facts), `model.safetensors` (the weights: no pickle, loading runs no "
         "code) and this card.\n")


def card_of(path: Path, name: str) -> str:
    """The card at ``path`` with the folder's way of loading it and what the folder holds."""
    text = path.read_text(encoding="utf-8").replace(OLD_USAGE, NEW_USAGE.format(name=name), 1)
    head, sep, rest = text.partition("\n\n- ")
    return f"{head}\n\n{FILES}\n- {rest}" if sep else text + "\n" + FILES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a predlearn checkpoint (.ckpt)")
    parser.add_argument("folder", type=Path, help="the pretrained folder to write")
    parser.add_argument("--card", type=Path, help="the model card (Markdown) to copy")
    parser.add_argument("--test-command", help="the command that measured the test scores")
    args = parser.parse_args(argv)
    extra = {"test_command": args.test_command} if args.test_command else {}
    card = card_of(args.card, args.folder.name) if args.card else None
    folder = save_pretrained(args.checkpoint, args.folder, card=card, **extra)
    print(f"wrote {folder}/: " + ", ".join(sorted(p.name for p in folder.iterdir())))


if __name__ == "__main__":
    main()
