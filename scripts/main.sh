#!/usr/bin/env bash
# The main job: install, list the implementations, check them against the reference, verify the
# complexity against the paper, run the quick CPU benchmark matrix, and write its report. Then an
# A/B of this commit against its parent on a slice of the quick matrix (docs/benchmarking.md, "In
# CI"): its verdict table printed and kept in reports/ab; a confirmed regression (exit 1) or a side
# that cannot run (exit 2) fails the job, after everything is written.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
LR=.venv/bin/lrbench
$LR list
$LR check
$LR verify
$LR run --preset quick --out reports/quick
$LR report reports/quick

# The slice: the three CPU kernels' op and layer forward at k=7, 16x16, and the 3x3 conv (the
# control), one thread (steadier on shared cores), 0.3 s of rounds a case, four interleaved pairs
# of runs (the fewest whose t-test can reach alpha = 0.01). About 2 minutes on 2 cores.
AB_SLICE=(--preset quick --impl unfold,im2col_matmul,fused_cpu --kernel 7 --size 16 --pass fwd
          --threads 1 --min-rounds 10 --max-time 0.3 --repeats 4)
if git rev-parse --verify --quiet 'HEAD~1^{commit}' > /dev/null; then
  status=0
  $LR ab HEAD~1 HEAD "${AB_SLICE[@]}" --out reports/ab || status=$?
  exit "$status"
else
  echo "lrbench ab skipped: HEAD~1 is not in this clone (one commit deep: a shallow clone;" \
       "fetch one more, e.g. git fetch --deepen=1, or check out with fetch-depth: 2)"
fi
