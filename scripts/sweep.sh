#!/usr/bin/env bash
# Run many short tuning fits of one config at once (for a many-core machine with a GPU), then
# write each run's metrics.csv/summary.json with the project's report. Validation only: no test.
#   scripts/sweep.sh CONFIG RUNS_FILE OUT_DIR
# RUNS_FILE: one run per line, "NAME override override ..." (LightningCLI arguments).
# Env: PARALLEL (runs at once, default 8), RUN_LIMIT_S (each fit is sent SIGTERM after this
# many seconds; Lightning then saves and the partial run is still reported), ARCHIVE, DATA_DIR.
set -uo pipefail
config=$1 runs=$2 out=$3
py=${PYTHON:-python3}
parallel=${PARALLEL:-8}
limit=${RUN_LIMIT_S:-3600}
archive=${ARCHIVE:-../shared/data/cifar10-jpeg.tar.gz}
data_dir=${DATA_DIR:-data}
mkdir -p "$out"
# decode once, so parallel runs start from a ready cache
$py -c "from pathlib import Path; from cifar_lightning.data.sources import prepare; prepare(Path('$data_dir'), Path('$archive'), False)"
while read -r name args; do
    [ -z "$name" ] || [ "${name:0:1}" = "#" ] && continue
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do sleep 1; done
    # shellcheck disable=SC2086
    timeout -s TERM "$limit" $py -m cifar_lightning fit --config "$config" --data.archive "$archive" \
        --data.data_dir "$data_dir" --trainer.logger.init_args.version "sweep-$name" \
        --trainer.enable_progress_bar false --trainer.enable_model_summary false $args \
        > "$out/$name.log" 2>&1 &
    sleep 2
done < "$runs"
wait
for run in lightning_logs/sweep-*; do
    name=${run#lightning_logs/sweep-}
    $py -m cifar_lightning report "$run" --out "$out/$name" > /dev/null 2>> "$out/$name.log"
done
echo "sweep done: $(ls -d "$out"/*/ | wc -l) runs reported in $out"
