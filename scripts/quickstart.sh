#!/usr/bin/env bash
# The main job: set up, then train a small PredRNN on the bundled MNIST digits and test the best
# checkpoint; pictures and per-step curves go to the run folder it prints. Extra arguments go to
# `predlearn fit` (e.g. --trainer.max_steps=100).
. "$(dirname "$0")/env.sh"
predlearn fit --config configs/quickstart.yaml "$@"
