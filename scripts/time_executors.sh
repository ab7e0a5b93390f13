#!/usr/bin/env bash
# Wall time of one suite on each executor, and the speed-ups over local.
#   scripts/time_executors.sh [CONFIG] [WORKERS]     (default: configs/split_mnist.yaml, 2)
# Every executor starts from an empty output folder (--fresh into its own folder), so each time
# includes process/Ray start-up. Needs FORGETBENCH_DATA (the Makefile exports ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/split_mnist.yaml}
WORKERS=${2:-2}
OUT=${OUT:-results/timing}
export FORGETBENCH_DATA=${FORGETBENCH_DATA:-$(cd .. && pwd)/shared/data}
declare -A SECONDS_BY
for executor in local process ray; do
  flags=(--executor "$executor")
  [[ $executor != local ]] && flags+=(--workers "$WORKERS")
  start=$(date +%s.%N)
  .venv/bin/forgetbench run "$CONFIG" --out "$OUT/$executor" --fresh --quiet "${flags[@]}" > "$OUT.$executor.log"
  end=$(date +%s.%N)
  SECONDS_BY[$executor]=$(python3 -c "print(f'{$end - $start:.1f}')")
  echo "$executor: ${SECONDS_BY[$executor]} s  (forgetbench run $CONFIG ${flags[*]})"
done
for executor in process ray; do
  python3 -c "print(f'speed-up $executor vs local: {${SECONDS_BY[local]} / ${SECONDS_BY[$executor]}:.2f}x')"
done
