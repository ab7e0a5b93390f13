#!/usr/bin/env bash
# Wall time of one suite on each executor, the speed-ups over local, and the most any parallel
# executor could gain here.
#   scripts/time_executors.sh [CONFIG] [WORKERS]     (default: configs/split_mnist.yaml, 2)
# Every executor starts from an empty output folder (--fresh into its own folder), so each time
# includes process/Ray start-up. Needs FORGETBENCH_DATA (the Makefile exports ../shared/data).
#
# "local, 1 thread per run" is local with the torch threads each worker gets (cores / WORKERS, via
# OMP_NUM_THREADS): WORKERS workers scaling perfectly, with no start-up, would need that time over
# WORKERS, so  bound = WORKERS x local / local-1-thread-per-run  is the best speed-up over local.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/split_mnist.yaml}
WORKERS=${2:-2}
OUT=${OUT:-results/timing}
export FORGETBENCH_DATA=${FORGETBENCH_DATA:-$(cd .. && pwd)/shared/data}
CORES=$(.venv/bin/python -c "import os; print(len(os.sched_getaffinity(0)))")
WORKER_THREADS=$(( CORES / WORKERS > 0 ? CORES / WORKERS : 1 ))
declare -A SECONDS_BY
for executor in local local-worker-threads process ray; do
  flags=(--executor "${executor%%-*}")
  env_prefix=()
  [[ $executor == process || $executor == ray ]] && flags+=(--workers "$WORKERS")
  [[ $executor == local-worker-threads ]] && env_prefix=(env "OMP_NUM_THREADS=$WORKER_THREADS")
  start=$(date +%s.%N)
  "${env_prefix[@]}" .venv/bin/forgetbench run "$CONFIG" --out "$OUT/$executor" --fresh --quiet "${flags[@]}" \
    > "$OUT.$executor.log"
  end=$(date +%s.%N)
  SECONDS_BY[$executor]=$(python3 -c "print(f'{$end - $start:.1f}')")
  echo "$executor: ${SECONDS_BY[$executor]} s  (${env_prefix[*]:+${env_prefix[*]} }forgetbench run $CONFIG ${flags[*]})"
done
for executor in process ray; do
  python3 -c "print(f'speed-up $executor vs local: {${SECONDS_BY[local]} / ${SECONDS_BY[$executor]}:.2f}x')"
done
python3 -c "print(f'bound (perfect scaling, no start-up): $WORKERS x {${SECONDS_BY[local]}} / {${SECONDS_BY[local-worker-threads]}} = {$WORKERS * ${SECONDS_BY[local]} / ${SECONDS_BY[local-worker-threads]}:.2f}x')"
