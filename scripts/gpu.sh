#!/usr/bin/env bash
# The GPU half in one command, on a machine with a CUDA GPU (and no network), from a fresh clone
# with .whl/ filled by scripts/fetch-wheels.sh:
#
#   bash scripts/gpu.sh            # PYTHON=python3 (the machine's, with its torch) by default
#
# Installs lrbench against the torch already there (scripts/gpu-install.sh), then runs each part
# under its own time budget (`timeout`): the GPU tests, `lrbench check --device cuda` for every
# dtype, the paper, peers (when that preset exists) and network presets on cuda in float32 and
# bfloat16, and `lrbench report` for each. A part that fails or runs out of time is recorded and
# the next part still runs. Everything goes under reports/gpu-<gpu-model>/; a one-screen summary
# ends the run (and is kept in SUMMARY.md there). The budgets add up to 10 minutes.
# Without a CUDA GPU it exits at once with status 2. `bash scripts/gpu.sh --model` prints the
# folder name it would use (reports/gpu-<model>) and exits.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# ---------------------------------------------------------------------------- is there a GPU?
gpu_model() {
    local name=""
    if command -v nvidia-smi >/dev/null 2>&1; then
        name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
    fi
    if [ -z "$name" ]; then  # no nvidia-smi (or no answer): ask torch, if it is here
        name=$("$PY" -c "import torch; assert torch.cuda.is_available(); \
print(torch.cuda.get_device_name(0))" 2>/dev/null) || name=""
    fi
    [ -n "$name" ] || return 1
    # "NVIDIA H100 80GB HBM3" -> "h100-80gb-hbm3"
    echo "$name" | tr '[:upper:]' '[:lower:]' | sed -E 's/^nvidia[ -]*//; s/[^a-z0-9]+/-/g; s/^-+|-+$//g'
}

if ! MODEL=$(gpu_model); then
    echo "gpu.sh: no CUDA GPU here (nvidia-smi lists none and torch.cuda.is_available() is" \
         "not True with $PY): nothing to measure. Run it on a machine with a CUDA GPU; see" \
         "docs/gpu.md." >&2
    exit 2
fi

if [ "${1:-}" = "--model" ]; then
    echo "gpu-$MODEL"
    exit 0
fi
OUT=reports/gpu-$MODEL
LOGS=$OUT/logs
mkdir -p "$LOGS"
PARTS=$OUT/parts.tsv
printf "part\tstatus\tseconds\tbudget_s\n" > "$PARTS"
# C++ extensions (fused_cpu) build here; a build killed by its part's budget leaves a lock file
# that would make the next part wait forever, so stale locks are cleared after every part (the
# parts run one after another: no build is in flight then).
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$PWD/build/torch_extensions}
mkdir -p "$TORCH_EXTENSIONS_DIR"
LRBENCH=("$PY" -m lrbench)
# Timing kept short on the GPU (CUDA events, many rounds per case even at 0.05 s).
TIMING=(--min-rounds 5 --max-time 0.05)

clear_stale_locks() {
    find "$TORCH_EXTENSIONS_DIR" -name lock -type f -print -delete 2>/dev/null \
        | sed 's/^/gpu.sh: removed a stale build lock: /'
}

# part NAME BUDGET_SECONDS COMMAND...: run it, log it, record ok / failed (rc) / timed out.
part() {
    local name=$1 budget=$2 start status rc
    shift 2
    start=$(date +%s)
    echo "gpu.sh: [$name] up to ${budget}s: $*"
    timeout --kill-after=5 "$budget" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="timed out" ;;
        *) status="failed (exit $rc)" ;;
    esac
    clear_stale_locks
    printf "%s\t%s\t%s\t%s\n" "$name" "$status" "$(($(date +%s) - start))" "$budget" >>"$PARTS"
    echo "gpu.sh: [$name] $status after $(($(date +%s) - start))s (log: $LOGS/$name.log)"
}

has_preset() { "$PY" -c "from lrbench.bench.matrix.presets import preset_names as p; \
import sys; sys.exit('$1' not in p())" 2>/dev/null; }

# ---------------------------------------------------------------------------------- the parts
# Budgets (seconds), 595 in all: unmeasured on a GPU so far; adjust after the first run.
part install 30 bash scripts/gpu-install.sh
part build 45 "$PY" -c "from lrbench import registry; \
print(registry.get('fused_cpu').unavailable_reason() or 'fused_cpu built')"
part gpu-tests 90 "$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml="$OUT/pytest-gpu.xml"
for dtype in float32 bfloat16 float16 float64; do
    part "check-$dtype" 25 "${LRBENCH[@]}" check --device cuda --dtype "$dtype"
done
RUNS=()
run_preset() {  # run_preset PRESET DTYPE BUDGET
    local dir=$OUT/$1-$2
    RUNS+=("$dir")
    part "$1-$2" "$3" "${LRBENCH[@]}" run --preset "$1" --device cuda --dtype "$2" \
        "${TIMING[@]}" --out "$dir"
}
for dtype in float32 bfloat16; do run_preset paper "$dtype" 50; done
if has_preset peers; then
    for dtype in float32 bfloat16; do run_preset peers "$dtype" 25; done
else
    echo "gpu.sh: no 'peers' preset in this checkout: skipped"
    printf "peers\tskipped (no preset)\t0\t0\n" >>"$PARTS"
fi
for dtype in float32 bfloat16; do run_preset network "$dtype" 45; done
# fused_triton's (fwd+bwd) / fwd at every LR layer shape of LR-Net-50 (issue 21's per-layer
# table, on the GPU): the layers preset, fused_triton alone, one pass; a part cut short by its
# budget keeps the rows it has.
if has_preset layers; then
    RUNS+=("$OUT/layers-float32")
    part layers-float32 60 "${LRBENCH[@]}" run --preset layers --impl fused_triton --device cuda \
        --dtype float32 --passes 1 "${TIMING[@]}" --out "$OUT/layers-float32"
fi
# shellcheck disable=SC2016  # expanded by the inner bash
part reports 30 env PY="$PY" bash -c 'rc=0
for dir in "$@"; do
    if [ -f "$dir/results.csv" ]; then "$PY" -m lrbench report "$dir" || rc=1
    else echo "no results in $dir"; rc=1; fi
done
exit $rc' reports "${RUNS[@]}"

# ------------------------------------------------------------------------------- the summary
"$PY" scripts/gpu_summary.py "$OUT" | tee "$OUT/SUMMARY.md"
