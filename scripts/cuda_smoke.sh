#!/usr/bin/env bash
# tests/train/test_cuda.py, then every regularizer, the custom scenarios, the trackers and the demo on a CUDA GPU
# (device: cuda), then `forgetbench perf --device cuda --model resnet18` (needs the data root
# with MNIST: FORGETBENCH_DATA).
# Usage: scripts/cuda_smoke.sh OUT_DIR   (needs forgetbench importable and `tests/` on PYTHONPATH for
# the byo_fixtures factories). Prints each run's status and device; exits 1 if a run is not ok.
# CUDA_SMOKE_PERF=0 leaves the perf figures out (scripts/gpu_checks.sh measures them alone on the GPU).
set -euo pipefail
out=${1:?usage: scripts/cuda_smoke.sh OUT_DIR}
py=${PYTHON:-python3}
mkdir -p "$out"
sed 's/^device: cpu/device: cuda/' configs/demo.yaml > "$out/demo_cuda.yaml"
cat > "$out/byo_cuda.yaml" <<'YAML'
name: byo_cuda
seeds: [0, 1]
device: cuda
training: {optimizer: sgd, lr: 0.05, momentum: 0.9, batch_size: 32, epochs: 2, eval_every: 5}
loggers: [csv, tensorboard]
scenarios:
  - name: custom
    params: {model: "byo_fixtures:multihead_mlp", benchmark: "byo_fixtures:tensor_benchmark"}
  - name: custom_supernet
    params: {model: "byo_fixtures:tiny_supernet", choices: [[lin, wide, skip], [lin, skip]], data: "byo_fixtures:point_splits",
             search: controller, epochs: 2, turns_per_epoch: 3, steps_per_turn: 5, ground_truth: {architectures: 3, steps: 5}}
  - name: split
    label: split-resnet18
    params: {dataset: digits, tasks: 2, classes_per_task: 2, trunk: resnet18, widths: [8]}
strategies:
  - name: naive
  - name: ewc
  - name: si
  - name: wpl
  - name: mas
  - name: l2
  - name: spg
YAML
status=0
# the CUDA tests first (sync-free steps, data on the device, bf16 / channels-last), then your own models, then
# the demo (the longest): a check cut short by a time limit loses the least
"$py" -m pytest -q -rs tests/train/test_cuda.py || status=1
for suite in byo_cuda demo_cuda; do
  start=$SECONDS
  "$py" -m forgetbench.benchmark.front.cli run "$out/$suite.yaml" --out "$out/$suite" --quiet --no-report || status=1
  echo "$suite: $((SECONDS - start)) s wall"
done
"$py" - "$out" <<'PY' || status=1
import glob, json, sys
bad = 0
for f in sorted(glob.glob(f"{sys.argv[1]}/*/runs/*/result.json")):
    r = json.load(open(f))
    bad += r["status"] not in ("ok",)
    print(r["run_id"], r["status"], r["environment"].get("device"), r.get("error") or "")
print("runs not ok:", bad)
sys.exit(1 if bad else 0)
PY
[ "${CUDA_SMOKE_PERF:-1}" = 0 ] && exit $status
"$py" -m forgetbench.benchmark.front.cli perf --device cuda --model resnet18 --repeats 5 \
  --only harness_vs_plain,step_overhead,fisher_fast_vs_loop,growth || status=1
exit $status
