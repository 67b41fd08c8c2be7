#!/usr/bin/env bash
# The main job's A/B (docs/benchmarking.md, "In CI"): this commit against its parent on a slice of
# the quick matrix, interleaved, its verdict table printed and kept in reports/ab.
#
# The slice: the three CPU kernels' op and layer forward at k=7, 16x16, and the 3x3 conv (the
# control); one thread (steadier on shared cores), 0.3 s of rounds a case, four interleaved pairs of
# runs (the fewest whose t-test can reach alpha = 0.01). About 2 to 2.5 minutes on 2 cores.
#
# A clone one commit deep has no HEAD~1: the A/B is skipped with that reason (exit 0). A side that
# cannot run (exit 2) fails the job; a confirmed regression (exit 1) fails it only with
# LRBENCH_AB_GATE=1, otherwise the table says it, so that a noisy machine's rare false verdict does
# not block a merge by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git rev-parse --verify --quiet 'HEAD~1^{commit}' > /dev/null; then
  echo "lrbench ab skipped: HEAD~1 is not in this clone (one commit deep, e.g. a shallow clone;" \
       "fetch one more with git fetch --deepen=1, or check out with fetch-depth: 2)"
  exit 0
fi
AB_SLICE=(--preset quick --impl unfold,im2col_matmul,fused_cpu --kernel 7 --size 16 --pass fwd
          --threads 1 --min-rounds 10 --max-time 0.3 --passes 1 --repeats 4)
status=0
.venv/bin/lrbench ab HEAD~1 HEAD "${AB_SLICE[@]}" --out reports/ab || status=$?
if [ "$status" -eq 2 ] || { [ "$status" -eq 1 ] && [ "${LRBENCH_AB_GATE:-0}" = 1 ]; }; then
  exit "$status"
fi
