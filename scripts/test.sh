#!/usr/bin/env bash
# The test command: install, lint, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/browser.sh  # headless Chromium for tests/test_browser.py, when missing
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
