#!/usr/bin/env bash
# Wall time of the demo with and without the forgetting attribution, two alternating pairs (same machine, one
# process each), and a check that the accuracy matrices and curves are the same.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=$(mktemp -d)
sed 's/attribution: 500}/}/' configs/demo.yaml > "$OUT/demo_off.yaml"
grep -q "attribution: 500" configs/demo.yaml
for i in 1 2; do
  for cfg in "$OUT/demo_off.yaml" configs/demo.yaml; do
    name=$(basename "$cfg" .yaml)
    start=$(date +%s.%N)
    "$BIN/forgetbench" run "$cfg" --out "$OUT/${name}_$i" --fresh --quiet --no-report > /dev/null 2>&1
    echo "$name (attribution $([ "$name" = demo ] && echo on || echo off)) run $i: $(echo "$(date +%s.%N) - $start" | bc) s"
  done
done
"$BIN/python" - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
for i in (1, 2):
    off = {p.split("/")[-2]: json.load(open(p)) for p in glob.glob(f"{out}/demo_off_{i}/runs/*/result.json")}
    on = {p.split("/")[-2]: json.load(open(p)) for p in glob.glob(f"{out}/demo_{i}/runs/*/result.json")}
    seconds = sum(r["timing"].get("attribution_seconds") or 0 for r in on.values())
    train = sum(r["timing"]["train_seconds"] for r in on.values())
    same = all(on[k]["accuracy_matrix"] == off[k]["accuracy_matrix"] and on[k].get("curves") == off[k].get("curves")
               for k in off)
    print(f"pair {i}: attribution {seconds:.2f} s over {sum(len(r['attribution']) for r in on.values())} points, "
          f"training {train:.2f} s; matrices and curves equal: {same}")
PY
