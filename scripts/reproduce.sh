#!/usr/bin/env bash
# Train a config, test its last checkpoint once, and commit-ready results under results/NAME/.
#   scripts/reproduce.sh configs/cnn.yaml cnn [extra fit arguments...]
# Writes results/NAME/{config.yaml, metrics.csv, summary.json, curves.png}; a checkpoint is committed only
# where the README or the demo uses one (results/fast/last.ckpt)
# and regenerates the README's results table. Uses ARCHIVE like the Makefile.
set -euo pipefail
config=$1 name=$2
shift 2
py=${PYTHON:-.venv/bin/python}
archive=${ARCHIVE:-../shared/data/cifar10-jpeg.tar.gz}
data_args=()
[ -f "$archive" ] && data_args=(--data.archive "$archive")
version="$name-$(date +%Y%m%d-%H%M%S)"
run=lightning_logs/$version

$py -m cifar_lightning fit --config "$config" "${data_args[@]}" \
    --trainer.logger.init_args.version "$version" --trainer.enable_progress_bar false "$@"
# test accuracy is read once, on the last checkpoint: nothing is chosen by it
$py -m cifar_lightning test --config "$run/config.yaml" --ckpt_path "$run/checkpoints/last.ckpt" \
    --trainer.enable_progress_bar false
mkdir -p "results/$name"
$py -m cifar_lightning report "$run" --out "results/$name" --overwrite
cp "$run/config.yaml" "results/$name/config.yaml"
$py scripts/results_table.py
echo "results in results/$name; run folder $run"
