#!/usr/bin/env bash
# Issue 96's GPU items, in one call cut at a budget (default 600 s), for a session lent a CUDA device:
#   1. seeds per second, K = 20, 100, 500 seeds as one batch against 8 seeds one after another, naive, ewc, si, mas
#      and wpl on decide_demo's two-model and supernet (`forgetbench perf --only seed_batching --device cuda`: the
#      batch's peak memory, and the records' largest accuracy difference over the 8 seeds run both ways);
#   2. tests/train/test_cuda.py;
#   3. decide_demo's (and decide_demo_50's) scenarios and strategies on 50 fixed seeds on `device: cuda`, batched and with
#      --batch-seeds off (8 worker processes sharing the device: BATCHING_WORKERS), then `forgetbench decide` of each scenario-and-strategy's forgetting on the two paths with a
#      1-point margin (scripts/paths_table.py): whether the batched path's numbers are the per-seed path's within 1
#      point of forgetting, where their rounding differs.
# OUT holds batching_two-model.json, batching_supernet.json, batching.log, cuda_tests.log, paths.csv, paths.log (the decisions) and the two result
# folders. Usage: scripts/gpu_batching.sh OUT [BUDGET_SECONDS]   (FORGETBENCH_DATA set; PYTHON picks the
# interpreter; GPU_CHECKS_DEADLINE, seconds since the epoch, overrides the budget as in scripts/gpu_checks.sh).
# Tried on the CPU with BATCHING_DEVICE=cpu BATCHING_SEEDS="[4]" BATCHING_FIXED=0,1,2 (the same steps, small).
set -uo pipefail
out=${1:?usage: scripts/gpu_batching.sh OUT [BUDGET_SECONDS]}
budget=${2:-600}
if [ -n "${GPU_CHECKS_DEADLINE:-}" ]; then budget=$((GPU_CHECKS_DEADLINE - $(date +%s))); fi
py=${PYTHON:-python3}
fb="$py -m forgetbench.benchmark.front.cli"
device=${BATCHING_DEVICE:-cuda}
ks=${BATCHING_SEEDS:-[20, 100, 500]}
fixed=${BATCHING_FIXED:-$(seq -s, 0 49)}
start=$SECONDS
left() { echo $((budget - (SECONDS - start) - 10)); }
mkdir -p "$out"

# 30% of the budget a scenario, one call each: what a cut leaves is kept; the rest for the tests and the two paths
for scenario in two-model supernet; do
  timeout $((budget * 3 / 10)) $fb perf --device "$device" --only seed_batching --repeats 1 --set "seeds=$ks" \
    --set alone_seeds=8 --set "scenarios=[$scenario]" --json >"$out/batching_$scenario.json" 2>>"$out/batching.log"
  echo "seed batching, $scenario: rc=$? at $((SECONDS - start)) s" | tee -a "$out/batching.log"
done

timeout "$(left)" "$py" -m pytest -q tests/train/test_cuda.py >"$out/cuda_tests.log" 2>&1
echo "cuda tests: rc=$? at $((SECONDS - start)) s" | tee -a "$out/cuda_tests.log"

# fixed seeds: the suite's own seeds are added in rounds until its pairs are decided
sed "s/^device: .*/device: $device/; s/^seeds: .*/seeds: [$fixed]/" configs/decide_demo.yaml >"$out/paths.yaml"
for path in batched alone; do
  switch=$([ "$path" = batched ] && echo on || echo off)
  timeout "$(left)" $fb run "$out/paths.yaml" --out "$out/$path" --batch-seeds "$switch" --no-report --quiet \
    --executor process --workers "${BATCHING_WORKERS:-8}" >"$out/paths_$path.log" 2>&1
  echo "decide_demo, seeds [$fixed], on $device, $path: rc=$? at $((SECONDS - start)) s" | tee -a "$out/paths.log"
done
"$py" scripts/paths_table.py "$out/batched" "$out/alone" >"$out/paths.csv" &&
  $fb decide "$out/paths.csv" --margin 1 --baseline alone >>"$out/paths.log" 2>&1

tail -n 4 "$out/paths.log" "$out/cuda_tests.log" "$out/batching.log"
