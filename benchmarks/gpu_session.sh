#!/usr/bin/env bash
# The measurements behind results/bench-gpu.md, as one call on a lent GPU machine (no network there):
#   benchmarks/gpu_session.sh WHEELS_DIR ARCHIVE OUT_DIR
# WHEELS_DIR holds the wheels of what the machine's image lacks (albumentations 2.0.8 and its
# dependencies, jsonargparse); the image's own torch, Lightning and torchmetrics are used.
# Each step has its own time limit, so a slow step leaves the later ones their turn.
set -uo pipefail
wheels=$1 archive=$2 out=$3
mkdir -p "$out"
export PYTHONPATH=$PWD
py=python3
data=(--data.archive "$archive" --data.data_dir data)
quiet=(--trainer.enable_progress_bar false)

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; echo "cores: $(nproc)"; } | tee "$out/machine.txt"
$py -m pip install --quiet --no-index --find-links "$wheels" albumentations==2.0.8 'jsonargparse[signatures]>=4.32' 2>&1 | tail -2
$py -c "import torch, lightning, albumentations, jsonargparse, torchmetrics as tm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'albumentations', albumentations.__version__, 'jsonargparse', jsonargparse.__version__, 'torchmetrics', tm.__version__)" | tee -a "$out/machine.txt"
$py -c "from pathlib import Path; from cifar_lightning.data import sources; sources.prepare(Path('data'), Path('$archive'), False)"

# fit NAME CONFIG LIMIT [PREFIX...]: a whole recipe on the GPU (gpu.yaml: the device pipeline) with GPU
# utilisation sampled every 200 ms over the fit, then its test, once; PREFIX runs the fit under e.g. taskset
fit() {
    local name=$1 config=$2 limit=$3
    shift 3
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 > "$out/util-$name.csv" &
    local sampler=$!
    timeout "$limit" "$@" $py -m cifar_lightning fit --config "$config" --config configs/gpu.yaml "${data[@]}" "${quiet[@]}" \
        --trainer.logger.init_args.version "$name" 2>&1 | grep -v Warning | tail -12
    kill $sampler
    timeout 60 $py -m cifar_lightning test --config "lightning_logs/$name/config.yaml" --ckpt_path "lightning_logs/$name/checkpoints/last.ckpt" \
        "${quiet[@]}" 2>&1 | grep -E "test accuracy|error" | tail -2
    timeout 60 $py -m cifar_lightning report "lightning_logs/$name" --out "lightning_logs/$name/report" 2>&1 | tail -2
    tar czf "$out/$name.tgz" -C lightning_logs --exclude '*.ckpt' "$name"
}

# no host-device synchronization in 100 steady steps of each recipe (torch.cuda.set_sync_debug_mode("error"))
for recipe in cnn fast; do
    timeout 120 $py -m benchmarks.sync_check --config "configs/$recipe.yaml" --config configs/gpu.yaml "${data[@]}" 2>&1 | tail -1 | tee -a "$out/sync-check.txt"
done
fit seed-cnn-gpu configs/cnn.yaml 150
# the same beside 2 CPU cores, as on a notebook machine
fit seed-cnn-gpu-2cores configs/cnn.yaml 200 taskset -c 0,1
fit fast-gpu configs/fast.yaml 60
# images/s three ways (data pipeline alone, plain loop on ready-made batches, fit), each pipeline
timeout 180 $py -m benchmarks.throughput --config configs/cnn.yaml "${data[@]}" --repeats 2 --warmup 30 --steps 300 \
    --variant device "--config configs/gpu.yaml" --variant albumentations "--config configs/gpu.yaml --data.pipeline albumentations" \
    --out "$out/bench-cnn.md" 2>&1 | tail -4
ls -la "$out"
