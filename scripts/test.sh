#!/usr/bin/env bash
# The test suite, as CI runs it: set up, lint (ruff, import order included), type-check (mypy, with
# the settings in pyproject.toml), then pytest with W&B offline (no network). Each step that
# fails stops the script (env.sh sets -e).
. "$(dirname "$0")/env.sh"
export WANDB_MODE=offline
python -m ruff check .
python scripts/typecheck.py  # mypy on the installed layout (pyproject.toml [tool.mypy])
python -m pytest -q "$@"
