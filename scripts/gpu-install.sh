#!/usr/bin/env bash
# Install lrbench on a machine without network (the GPU machines), against the torch already there:
# the missing small dependencies (fvcore and its pure-Python dependencies, setuptools) from the
# wheels in .whl/ (filled by scripts/fetch-wheels.sh), then lrbench itself, editable, without
# resolving anything. Never installs, upgrades or replaces torch (checked: exit 1 if it changed).
#
#   PYTHON=python3 bash scripts/gpu-install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=.whl

torch_version() { "$PY" -c "import torch; print(torch.__version__)"; }

pip_install() {
    # Offline, from .whl only. A system Python that is "externally managed" (PEP 668) refuses
    # pip: then, and only then, pip is told to go ahead (the GPU machine is throwaway).
    if ! "$PY" -m pip install --no-index --find-links "$WHEELS" "$@" 2>/tmp/gpu-install.err; then
        if grep -q "externally-managed-environment" /tmp/gpu-install.err; then
            PIP_BREAK_SYSTEM_PACKAGES=1 "$PY" -m pip install --no-index --find-links "$WHEELS" "$@"
        else
            cat /tmp/gpu-install.err >&2
            return 1
        fi
    fi
}

before=$(torch_version) || { echo "gpu-install: torch is not importable with $PY" >&2; exit 1; }

# What this Python lacks: the small dependencies come from .whl/; the large ones are expected on
# the machine (they are not in .whl/: a missing one is an error, named).
read -r missing absent <<<"$("$PY" - <<'EOF'
import importlib.util

from_wheels = {"fvcore": "fvcore", "iopath": "iopath", "yacs": "yacs", "yaml": "pyyaml",
               "tabulate": "tabulate", "termcolor": "termcolor", "tqdm": "tqdm",
               "portalocker": "portalocker"}
on_the_machine = {"numpy": "numpy", "PIL": "pillow", "pandas": "pandas",
                  "matplotlib": "matplotlib", "click": "click", "pytest": "pytest",
                  "pytest_benchmark": "pytest-benchmark", "hypothesis": "hypothesis"}
lacking = [dist for mod, dist in from_wheels.items() if importlib.util.find_spec(mod) is None]
absent = [dist for mod, dist in on_the_machine.items() if importlib.util.find_spec(mod) is None]
print(",".join(lacking) or "-", ",".join(absent) or "-")
EOF
)"
if [ "$absent" != "-" ]; then
    echo "gpu-install: $PY lacks ${absent//,/ } (not in $WHEELS: expected on the GPU machine)" >&2
    exit 1
fi
missing=${missing//,/ }
[ "$missing" = "-" ] && missing=""
if ! "$PY" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 68)" \
        2>/dev/null; then
    missing="$missing setuptools<82"
fi
if [ -n "${missing// /}" ]; then
    echo "gpu-install: installing from $WHEELS: $missing"
    [ -d "$WHEELS" ] || { echo "gpu-install: no $WHEELS folder: run scripts/fetch-wheels.sh on a" \
        "machine with network and copy $WHEELS with the checkout" >&2; exit 1; }
    # shellcheck disable=SC2086  # one argument per distribution
    pip_install $missing
else
    echo "gpu-install: every dependency is already installed"
fi
pip_install --no-deps --no-build-isolation -e .

after=$(torch_version)
if [ "$before" != "$after" ]; then
    echo "gpu-install: torch changed from $before to $after: this must never happen" >&2
    exit 1
fi
"$PY" -c "import fvcore, lrbench; print('gpu-install: lrbench', lrbench.__version__, 'on torch $after')"
