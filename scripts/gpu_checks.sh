#!/usr/bin/env bash
# The checks a session runs when it is lent a CUDA GPU, in one go and inside a time budget:
#   1. `forgetbench perf --device cuda --model resnet18` (harness vs plain loop, step overhead), alone on the GPU;
#   2. then side by side: `forgetbench reproduce permuted_mnist_domain_il --seeds 5` (worker processes sharing
#      the GPU) and scripts/cuda_smoke.sh (every regularizer, the custom scenarios, tests/train/test_cuda.py), followed
#      by perf's fisher_fast_vs_loop and growth sections (these two measured while the reproduction runs).
# Every step is cut at the budget, so whatever finished comes back: OUT holds device.txt (GPU, versions,
# utilisation every 10 s), perf_resnet18.json, perf_more.json, perf.log, reproduce.log, smoke.log and
# results.tar.gz (the result folders; reruns of `reproduce` with the same --out skip finished runs).
# On an H200 (2026-11-26) the reproduction's 20 runs of 50,000 steps took two waves of about 5 minutes with 10
# workers, more than one 15-minute lease holds beside the rest: unpack an earlier results.tar.gz into a folder and
# name it in GPU_CHECKS_RESUME to run only what is missing.
# Usage: scripts/gpu_checks.sh OUT [BUDGET_SECONDS]   (needs forgetbench and tests/ importable, FORGETBENCH_DATA
# with MNIST; PYTHON picks the interpreter). The budget counts from the script's start; set GPU_CHECKS_DEADLINE
# (seconds since the epoch) at the start of the call instead, so that the set-up before the script (installing
# wheels, unpacking data: 55 s on an H100) is counted too: on 2026-11-26 a budget that left it out ran past the
# call's limit, which killed the script before it packed results.tar.gz.
set -uo pipefail
out=${1:?usage: scripts/gpu_checks.sh OUT [BUDGET_SECONDS]}
budget=${2:-3600}
if [ -n "${GPU_CHECKS_DEADLINE:-}" ]; then budget=$((GPU_CHECKS_DEADLINE - $(date +%s))); fi
py=${PYTHON:-python3}
fb="$py -m forgetbench.benchmark.front.cli"
start=$SECONDS
left() { echo $((budget - (SECONDS - start) - 25)); } # 25 s kept for packing the results
mkdir -p "$out/work"
if [ -n "${GPU_CHECKS_RESUME:-}" ]; then
  cp -r "$GPU_CHECKS_RESUME/." "$out/work/" && rm -f "$out"/work/*/*/.forgetbench.lock
fi
if ! {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader &&
    "$py" -c "import torch, avalanche, forgetbench.strategies, forgetbench.benchmark.run.runner, byo_fixtures; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'avalanche', avalanche.__version__)" &&
    echo "cpu cores: $(nproc)"
} >"$out/device.txt" 2>&1; then
  cat "$out/device.txt"
  exit 3
fi
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 10 >>"$out/device.txt" 2>&1 &
monitor=$!

timeout $(($(left) < 150 ? $(left) : 150)) $fb perf --device cuda --model resnet18 --repeats 5 \
  --only harness_vs_plain,step_overhead --json >"$out/perf_resnet18.json" 2>"$out/perf.log"
echo "perf (alone): rc=$? at $((SECONDS - start)) s" | tee -a "$out/perf.log"

(
  timeout "$(left)" $fb reproduce permuted_mnist_domain_il --seeds 5 --out "$out/work/reproduce" --quiet \
    --executor process --workers "${GPU_CHECKS_WORKERS:-10}"
  echo "reproduce: rc=$? at $((SECONDS - start)) s"
) >"$out/reproduce.log" 2>&1 &
reproduction=$!
(
  CUDA_SMOKE_PERF=0 PYTHON="$py" timeout "$(left)" bash scripts/cuda_smoke.sh "$out/work/smoke"
  echo "cuda_smoke: rc=$? at $((SECONDS - start)) s"
) >"$out/smoke.log" 2>&1
timeout "$(left)" $fb perf --device cuda --model resnet18 --repeats 3 --only fisher_fast_vs_loop,growth --json \
  >"$out/perf_more.json" 2>>"$out/perf.log"
echo "perf (beside the reproduction): rc=$? at $((SECONDS - start)) s" | tee -a "$out/perf.log"
wait "$reproduction"
kill "$monitor" 2>/dev/null
tar -czf "$out/results.tar.gz" -C "$out/work" --exclude='*tfevents*' . && rm -rf "$out/work"
tail -n 5 "$out/reproduce.log" "$out/smoke.log" "$out/perf.log"
