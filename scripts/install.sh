#!/usr/bin/env bash
# Create .venv (if missing) and install lrbench into it, editable, with the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 \
  | grep -v "^WARNING: Location .* is ignored" || true
.venv/bin/python -c "import lrbench, torch; print(f'lrbench {lrbench.__version__}, torch {torch.__version__}')"
