#!/usr/bin/env bash
# The main job: install, list the implementations, check them against the reference, verify the
# complexity against the paper, run the quick CPU benchmark matrix, and write its report. Then an
# A/B of this commit against its parent on a slice of it (scripts/ab-ci.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
LR=.venv/bin/lrbench
$LR list
$LR check
$LR verify
# three passes, not the preset's five: CI's time budget; enough for `lrbench compare` of two commits' reports
$LR run --preset quick --passes 3 --out reports/quick
$LR report reports/quick

bash scripts/ab-ci.sh
