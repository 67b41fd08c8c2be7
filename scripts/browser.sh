#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/test_browser.py), from Debian's packages, installed
# only when missing. Needs root (CI containers run as root); anywhere else it says what to run.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null; then echo "browser: $(command -v "$name")"; exit 0; fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "browser: chromium missing; run 'sudo apt-get install -y chromium' for the browser tests" >&2
  exit 0
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
