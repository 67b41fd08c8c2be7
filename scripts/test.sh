#!/usr/bin/env bash
# The test command: install, lint, run the whole test suite.
#
# The tests that time nothing run on both cores (pytest-xdist); the ones that time things or share
# the one Slurm cluster (markers `slow`, `slurm`) run alone afterwards, so that no other test's load
# moves their numbers. Extra arguments go to both pytest calls (a selection that leaves one of them
# with no test is fine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/browser.sh  # headless Chromium for tests/test_browser.py, when missing
.venv/bin/ruff check .
status=0
.venv/bin/python -m pytest -n 2 -m "not slow and not slurm" "$@" || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 5 ] || exit "$status"  # 5: nothing selected
status=0
.venv/bin/python -m pytest -m "slow or slurm" "$@" || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 5 ] || exit "$status"
