#!/usr/bin/env bash
# The own-data tutorial (docs/own-data.md), start to end: KNMI radar files -> one NetCDF series
# -> fit, test (PredRNN and persistence), predict (the future; the test windows, drawn). Run from the repository root with the real
# data beside it: bash examples/own-data/tutorial.sh ../shared/data/radar/knmi [work folder]
set -euo pipefail
KNMI="${1:?give the folder of RAD_NL25_RAP_5min_*.h5 files}"
WORK="${2:-runs/own-data}"
mkdir -p "$WORK"
python examples/own-data/knmi_to_netcdf.py "$KNMI" "$WORK/knmi.nc"
DATA=(--data=frames --data.path="$WORK/knmi.nc" --data.context_frames=6 --data.horizon=6
      --data.val_fraction=0.15 --data.test_fraction=0.25 --data.batch_size=4)
QUIET=(--trainer.enable_progress_bar=false --trainer.logger=false)
predlearn fit --model=predrnn --model.predictor.hidden_channels=[16,16] \
    --model.predictor.kernel_size=3 --model.predictor.patch_size=4 "${DATA[@]}" \
    --trainer.max_steps="${STEPS:-1000}" \
    --trainer.val_check_interval=100 --trainer.check_val_every_n_epoch=null \
    --trainer.default_root_dir="$WORK/runs" \
    --seed_everything=0 "${QUIET[@]}"
RUN=$(ls -d "$WORK"/runs/predrnn-frames-*/ | sort | tail -1)
BEST=$(ls "$RUN"checkpoints/best-*.ckpt | tail -1)
predlearn test "${DATA[@]}" --ckpt_path="$BEST" --trainer.default_root_dir="$WORK/runs" \
    "${QUIET[@]}"
predlearn test --model=persistence "${DATA[@]}" --data.normalize=minmax \
    --trainer.default_root_dir="$WORK/runs" "${QUIET[@]}"
predlearn predict "${DATA[@]}" --ckpt_path="$BEST" "${QUIET[@]}" \
    --predictions.output_path="$WORK/forecast/predictions.h5"
predlearn predict "${DATA[@]}" --ckpt_path="$BEST" "${QUIET[@]}" --data.predict_windows=test \
    --predictions.output_path="$WORK/test-forecast/predictions.h5"
python examples/own-data/plot_forecast.py "$WORK/test-forecast/forecast.nc" "$WORK/knmi.nc" \
    "$WORK/knmi_forecast.png"
predlearn compare "$WORK"/runs --out="$WORK/compare"
