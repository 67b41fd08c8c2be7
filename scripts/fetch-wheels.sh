#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the wheels that scripts/gpu.sh installs on a GPU machine that has
# no network: fvcore and its small pure-Python dependencies, for CPython 3.12 on manylinux x86_64.
# The GPU machines bring torch, Triton, numpy, pandas, matplotlib (so Pillow), click, pytest,
# pytest-benchmark and hypothesis; nothing here replaces them. Run this on a machine with network,
# then copy the checkout, .whl/ included, to the GPU machine.
#
#   bash scripts/fetch-wheels.sh          # PYTHON=python3 by default; any Python >= 3.10 works
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
PY_VERSION=${WHEEL_PYTHON_VERSION:-3.12}
ABI=cp${PY_VERSION/./}
mkdir -p "$DEST"

# Published wheels, for the GPU machine's interpreter and platform (not this machine's).
# setuptools (<82, torch 2.11's own pin) only in case the GPU machine lacks it: the editable
# install of lrbench runs without build isolation.
"$PY" -m pip download --quiet --dest "$DEST" --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp --abi "$ABI" \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 \
    yacs pyyaml tabulate termcolor tqdm portalocker typing_extensions "setuptools>=68,<82"

# fvcore and iopath publish only source archives: build their pure-Python wheels here
# (py3-none-any, valid on any Python 3). The versions are the ones the suite is tested with.
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$DEST" \
    "fvcore==0.1.5.post20221221" "iopath==0.1.10"

ls -1 "$DEST"
for name in fvcore iopath yacs PyYAML tabulate termcolor tqdm portalocker setuptools; do
    if ! ls "$DEST" | grep -qi "^${name}-.*\.whl$"; then
        echo "fetch-wheels: no wheel for $name in $DEST" >&2
        exit 1
    fi
done
echo "fetch-wheels: $(ls "$DEST" | wc -l) wheels in $DEST for CPython $PY_VERSION manylinux x86_64"
