#!/usr/bin/env bash
# Two runs of this checkout over the whole quick matrix, one after the other, compared with
# `lrbench compare`; N pairs (default 10). A measurement of false verdicts: on a quiet machine every
# pair should exit 0. Usage: bash scripts/same_commit_pairs.sh [N] [OUT] [PASSES]
# (OUT default /tmp/pairs; PASSES default: the quick preset's own; 1 repeats the measurement made
# before runs had passes, where same-commit pairs exited 1).
set -u
cd "$(dirname "$0")/.."
n=${1:-10}
out=${2:-/tmp/pairs}
passes=()
if [ -n "${3:-}" ]; then passes=(--passes "$3"); fi
mkdir -p "$out"
for i in $(seq 1 "$n"); do
  for side in a b; do
    start=$(date +%s)
    .venv/bin/lrbench run --preset quick "${passes[@]}" --out "$out/$side$i" > "$out/$side$i.log" 2>&1
    echo "run $side$i: exit $? $(( $(date +%s) - start )) s, load $(cut -d' ' -f1 /proc/loadavg)" \
      | tee -a "$out/summary.txt"
  done
  .venv/bin/lrbench compare "$out/a$i" "$out/b$i" > "$out/compare$i.txt" 2>&1
  code=$?
  echo "pair $i: exit $code; $(head -1 "$out/compare$i.txt")" | tee -a "$out/summary.txt"
done
