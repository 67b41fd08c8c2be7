#!/usr/bin/env bash
# Create .venv (if missing) and install lrbench into it, editable, with the test extras.
#
# pip runs only when .venv has not yet installed this pyproject.toml from this folder (a stamp in
# .venv says which): the install is editable, so code changes need none, and CI calls this script
# three times (.ci/run, test.sh, main.sh), where pip's check of every requirement cost seconds each.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.lrbench-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log=$(mktemp)
  status=0
  .venv/bin/python -m pip install -q --no-compile --disable-pip-version-check -e ".[test]" \
    > "$log" 2>&1 || status=$?
  grep -v "^WARNING: Location .* is ignored" "$log" || true
  rm -f "$log"
  [ "$status" -eq 0 ] || exit "$status"
  # pip byte-compiles what it installs on one core (49 s of its 2m06s on a 2-core AMD EPYC); this
  # does it on all of them (33 s there). Like pip's, it skips the files that do not compile (some
  # packages ship Python 2 examples).
  .venv/bin/python -m compileall -qq -j 0 \
    "$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")" || true
  echo "$want" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
fi
.venv/bin/python -c "import lrbench, torch; print(f'lrbench {lrbench.__version__}, torch {torch.__version__}')"
