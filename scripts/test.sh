#!/usr/bin/env bash
# The test command: install, lint, run the whole test suite.
#
# The tests that time nothing run on both cores (pytest-xdist; tests/conftest.py gives each worker
# one thread). Alongside them, in a pytest of their own, the Slurm tests (marker `slurm`): they share
# the one cluster, so they run one after another, and they mostly wait on its scheduler; their log
# is printed when both are done. The tests that time things (marker `slow`) run alone afterwards, so
# that no other test's load moves their numbers. Extra arguments go to all three pytest calls (a
# selection that leaves one of them with no test is fine); a `-m` there would replace theirs, so
# select with paths or `-k`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/browser.sh  # headless Chromium for tests/test_browser.py, when missing
.venv/bin/ruff check .

ok() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }  # 5: nothing selected
slurm_log=$(mktemp)
.venv/bin/python -m pytest -p no:cacheprovider -m slurm "$@" > "$slurm_log" 2>&1 &
slurm_pid=$!
trap 'kill "$slurm_pid" 2>/dev/null || true; rm -f "$slurm_log"' EXIT
status=0
.venv/bin/python -m pytest -n 2 -m "not slow and not slurm" "$@" || status=$?
slurm_status=0
wait "$slurm_pid" || slurm_status=$?
echo "--- the Slurm tests (run alongside) ---"
cat "$slurm_log"
ok "$status" || exit "$status"
ok "$slurm_status" || exit "$slurm_status"
status=0
.venv/bin/python -m pytest -m slow "$@" || status=$?
ok "$status" || exit "$status"
