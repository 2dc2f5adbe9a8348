#!/usr/bin/env bash
# The GPU checks of one device session, one command (docs/benchmarks.md, "GPU figures"):
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. the shipped model on the GPU: predictions against the CPU's (fp32, bf16 autocast);
# 2. `predlearn test` of the shipped model on CUDA (the card's 2,000 held-out sequences);
# 3. `predlearn fit` on CUDA with every training recipe at once (PredRNN v2, reverse scheduled
#    sampling, loss over all outputs, reversed sequences, OneCycleLR, bf16-mixed);
# 4. training speed (bench_paper_sizes.py): the shipped model's size and the paper's, fp32 and
#    bf16, then torch.compile at the shipped size (compiling a whole rollout takes minutes).
# Needs the MNIST test digits in data/mnist. Each part has its own time limit so that one slow
# part cannot take the others' time.
# A dry run on a CPU: DEVICE=cpu STEPS=4 TEST_BATCHES=2 WORKLOADS=tiny bash benchmarks/gpu_check.sh runs/dry
set -u
device=${DEVICE:-cuda}
accelerator=$([ "$device" = cpu ] && echo cpu || echo gpu)
steps=${STEPS:-300}
workloads=${WORKLOADS:-shipped mmnist-p4 radar}
out=${1:-${OUT:-runs/gpu-check}}
mkdir -p "$out"
work=$(mktemp -d)
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
stamp() { echo "=== $* ($(date -u +%T))"; }
if ! command -v predlearn >/dev/null; then  # installed without its console script on the PATH
    predlearn() { python3 -c 'import sys; from predlearn.cli import main; sys.exit(main())' "$@"; }
fi

stamp environment
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"

stamp "1. shipped model, CUDA against CPU"
timeout 120 python3 benchmarks/check_pretrained_device.py --device "$device" --sequences 64 \
    --json "$out/pretrained_parity.json"

stamp "2. predlearn test of the shipped model on CUDA"
timeout 150 predlearn test --config configs/pretrained/predrnn-mmnist2.yaml \
    --ckpt_path=predrnn-mmnist2 --trainer.accelerator="$accelerator" --trainer.devices=1 \
    --trainer.logger.init_args.save_dir="$work/test" \
    ${TEST_BATCHES:+--trainer.limit_test_batches=$TEST_BATCHES}
cp "$(find "$work/test" -name test_curves.csv | head -1)" "$out/shipped_test_curves_cuda.csv"

stamp "3. predlearn fit on CUDA, every recipe, bf16-mixed"
SECONDS=0
timeout 150 predlearn fit --model=predrnn_v2 --data=mmnist --data.root=data/mnist \
    --data.digits=mnist_test --data.download=false --data.num_val=64 --data.num_test=64 \
    --model.predictor.hidden_channels=[48,48,48] --model.predictor.patch_size=4 \
    --model.loss=l2 --model.loss_frames=all --model.sampling=ReverseScheduledSampling \
    --model.sampling.start=$((steps / 3)) --model.sampling.end=$((2 * steps / 3)) \
    --model.sampling.alpha=$((steps / 6 + 1)) --model.reverse_input=true \
    --lr_scheduler=OneCycleLR --lr_scheduler.max_lr=0.003 --lr_scheduler.total_steps=$steps \
    --trainer.max_steps=$steps --trainer.val_check_interval=$((steps / 2)) \
    --trainer.precision=bf16-mixed \
    --trainer.accelerator="$accelerator" --trainer.devices=1 --trainer.enable_progress_bar=false \
    --trainer.logger=CSVLogger --trainer.logger.save_dir="$work/fit" \
    --checkpoint.dirpath="$work/fit/checkpoints" --test_after_fit=true
echo "fit wall seconds: $SECONDS"
cp "$(find "$work/fit" -name metrics.csv | head -1)" "$out/recipes_fit_metrics_cuda.csv"

stamp "4. training speed: the shipped recipe and the paper sizes"
timeout 150 python3 benchmarks/bench_paper_sizes.py --device "$device" \
    --workloads $workloads --variants fp32 bf16 \
    --iters 10 --warmup 3 --infer-iters 5 --ceiling-reps 3 --json "$out/paper_sizes_cuda.json"
timeout 180 python3 benchmarks/bench_paper_sizes.py --device "$device" \
    --workloads ${COMPILE_WORKLOADS:-shipped} --variants bf16 bf16+compile \
    --iters 10 --warmup 3 --infer-iters 5 --ceiling-reps 3 --json "$out/compile_cuda.json"
stamp done
