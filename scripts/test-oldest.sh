#!/usr/bin/env bash
# The fast tests on the oldest stack CI supports: torch 2.11.0 + Triton 3.6.0, what the GPU
# machines have (pyproject.toml declares torch>=2.11 because of this run). The venv is kept
# outside the checkout, so CI runs in fresh clones on one machine reuse it: the first run
# downloads about 4 GB of wheels (torch's CUDA libraries; 2m14s here), later runs none.
#
#   bash scripts/test-oldest.sh [pytest args]     # LRBENCH_OLDEST_VENV overrides the venv
#   bash scripts/test-oldest.sh --prepare         # only create the venv (CI does it in the
#                                                 # background while the main suite runs)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STACK="torch==2.11.0 triton==3.6.0"
MARK="$STACK + pytest-xdist"  # what the venv holds; another mark re-creates it
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/lrbench
VENV=${LRBENCH_OLDEST_VENV:-$CACHE/venv-torch2.11-triton3.6}
quiet() { grep -v "^WARNING: Location .* is ignored" || true; }

if [ "$(cat "$VENV/.lrbench-stack" 2>/dev/null)" != "$MARK" ]; then
    echo "test-oldest: creating $VENV ($STACK)"
    start=$(date +%s)
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # setuptools<82: torch 2.11's own pin; >=68 for lrbench's editable install.
    # shellcheck disable=SC2086  # STACK is two requirements
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check $STACK fvcore pytest \
        pytest-xdist pytest-benchmark pandas matplotlib click hypothesis "setuptools>=68,<82" 2>&1 | quiet
    echo "$MARK" >"$VENV/.lrbench-stack"
    echo "test-oldest: venv ready in $(($(date +%s) - start))s"
fi
[ "${1:-}" != "--prepare" ] || exit 0
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e . 2>&1 | quiet
"$VENV/bin/python" -c "import torch, triton; print(f'test-oldest: torch {torch.__version__}, \
triton {triton.__version__}')"

# Its own extension cache: torch 2.11's build of fused_cpu must not meet the newest torch's.
export TORCH_EXTENSIONS_DIR=$CACHE/torch_extensions-torch2.11
# The interpreted kernels' largest shapes are left to the main suite: here the question is whether
# this stack's APIs run our code, which the smaller shapes (one tile and several, strides 1 to 3,
# G = C) answer; these four took 64 s of CPU on 2 cores (AMD EPYC, 2026-12-08).
HEAVY="(multi-tile-stride2 or C100-m8-G13-stride2 or k11 or borders-image-smaller-than-kernel)"
# The fused Triton kernels (the interpreter changed between Triton 3.6 and 3.8; their edge cases
# are in test_fused_triton.py, with their compilation for sm_80 and sm_90 by this Triton), the
# other implementations against the reference in float32 and the layouts (fused_cpu's C++ against
# torch 2.11's headers), the registry, tolerances, timer.
# On both cores: none of these tests times anything.
"$VENV/bin/python" -m pytest -q -n 2 -p no:cacheprovider -m "not slow" \
    tests/test_fused_triton.py tests/test_registry.py tests/test_tolerances.py \
    tests/test_gputimer.py tests/test_correctness.py \
    -k "not sweep and not edge_cases and not light_cases and not $HEAVY" "$@"
