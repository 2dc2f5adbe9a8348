#!/usr/bin/env bash
# The test suite, as CI runs it: set up, then pytest with W&B offline (no network).
. "$(dirname "$0")/env.sh"
export WANDB_MODE=offline
python -m pytest -q "$@"
