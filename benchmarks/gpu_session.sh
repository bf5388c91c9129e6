#!/usr/bin/env bash
# The measurements behind results/bench-gpu.md, as one call on a lent GPU machine (no network there):
#   benchmarks/gpu_session.sh WHEELS_DIR ARCHIVE OUT_DIR
# WHEELS_DIR holds the wheels of what the machine's image lacks (albumentations 2.0.8 and its
# dependencies, jsonargparse; "-" installs nothing); the image's own torch, Lightning and torchmetrics are used.
# The session ends within BUDGET_S seconds (default 450: under a device call's 8 minutes with the
# transfers). Every step has its own time limit, cut to what the budget has left, so a slow step
# leaves the later ones their turn, and each step's figures are in OUT_DIR as soon as it ends:
# a partial run still leaves figures. OUT_DIR/summary.md is the table, rewritten after every fit.
# Tried on a CPU (tiny fits, no nvidia-smi):
#   DEVICE_CONFIG=cpu.yaml EXTRA="--trainer.max_epochs 2 --trainer.limit_train_batches 5" benchmarks/gpu_session.sh - ARCHIVE OUT
set -uo pipefail
wheels=$1 archive=$2 out=$3
budget=${BUDGET_S:-450}
device_config=${DEVICE_CONFIG:-configs/gpu.yaml}
read -ra extra <<< "${EXTRA:-}"
mkdir -p "$out"
export PYTHONPATH=$PWD
py=python3
data=(--data.archive "$archive" --data.data_dir data)
quiet=(--trainer.enable_progress_bar false)
has_gpu=$(command -v nvidia-smi >/dev/null && echo 1 || echo 0)

# limit WANT: WANT seconds, or what the budget has left after a 10 s reserve; 0 when under 20 s are left
limit() {
    local rest=$((budget - SECONDS - 10))
    if ((rest < 20)); then echo 0; elif ((rest < $1)); then echo "$rest"; else echo "$1"; fi
}

{
    ((has_gpu)) && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    echo "cores: $(nproc)"
} | tee "$out/machine.txt"
[ "$wheels" != - ] && $py -m pip install --quiet --no-index --find-links "$wheels" albumentations==2.0.8 'jsonargparse[signatures]>=4.49' 2>&1 | tail -2
$py -c "import torch, lightning, albumentations, jsonargparse, torchmetrics as tm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'albumentations', albumentations.__version__, 'jsonargparse', jsonargparse.__version__, 'torchmetrics', tm.__version__)" | tee -a "$out/machine.txt"
$py -c "from pathlib import Path; from cifar_lightning.data import sources; sources.prepare(Path('data'), Path('$archive'), False)"

# fit NAME CONFIG LIMIT PREFIX [ARGS...]: a recipe on the device (gpu.yaml: the device pipeline, bf16) with the
# GPU's utilisation sampled every 200 ms over the fit, then its test, once. PREFIX runs the fit under e.g.
# "taskset -c 0,1" ("" for none); ARGS are more settings (--model.compile default)
fit() {
    local name=$1 config=$2 want=$3 prefix=$4
    shift 4
    local seconds
    seconds=$(limit "$want")
    if ((seconds == 0)); then
        echo "$name: skipped, the session's ${budget} s are spent" | tee -a "$out/skipped.txt"
        return
    fi
    local sampler=
    if ((has_gpu)); then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 > "$out/util-$name.csv" &
        sampler=$!
    fi
    local started=$SECONDS
    # shellcheck disable=SC2086 # PREFIX is words
    timeout "$seconds" $prefix $py -m cifar_lightning fit --config "$config" --config "$device_config" "${data[@]}" "${quiet[@]}" \
        --trainer.logger.init_args.version "$name" "${extra[@]}" "$@" 2>&1 | grep -v Warning | tail -6
    echo "$name: fit command $((SECONDS - started)) s of its limit $seconds s" | tee -a "$out/steps.txt"
    [ -n "$sampler" ] && kill "$sampler"
    seconds=$(limit 60)
    if ((seconds > 0)) && [ -f "lightning_logs/$name/checkpoints/last.ckpt" ]; then
        timeout "$seconds" $py -m cifar_lightning test --config "lightning_logs/$name/config.yaml" --ckpt_path "lightning_logs/$name/checkpoints/last.ckpt" \
            --config "$device_config" "${quiet[@]}" 2>&1 | grep -E "test accuracy|error" | tail -2
    fi
    tar czf "$out/$name.tgz" -C lightning_logs --exclude '*.ckpt' "$name" 2>/dev/null
    $py -m benchmarks.gpu_summary lightning_logs "$out" > "$out/summary.md"
}

# no host-device synchronization in 100 steady steps (torch.cuda.set_sync_debug_mode("error"))
if ((has_gpu)) && (($(limit 60) > 0)); then
    timeout "$(limit 60)" $py -m benchmarks.sync_check --config configs/fast.yaml --config "$device_config" "${data[@]}" 2>&1 | tail -1 | tee -a "$out/sync-check.txt"
fi
fit fast-gpu configs/fast.yaml 60 ""
# torch.compile on the same recipe, its compile time included in the fit's
fit fast-gpu-compiled configs/fast.yaml 90 "" --model.compile default
fit seed-cnn-gpu configs/cnn.yaml 130 ""
# the same beside 2 CPU cores, as on a notebook machine
fit seed-cnn-gpu-2cores configs/cnn.yaml 130 "taskset -c 0,1"
echo "session: $SECONDS s of its ${budget} s" | tee -a "$out/steps.txt"
cat "$out/summary.md"
