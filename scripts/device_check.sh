#!/usr/bin/env bash
# Device check (issue 8): on a machine with one GPU and no network, within its time budget (460 s
# by default: under 8 minutes with timeout's 10 s grace), install what the machine lacks from the
# kit that `make device-kit` packed into .device/kit, run the smoke study on CUDA, `orderstudy
# estimate` and the generation benchmark, and print the figures.
# Every stage runs under its own time limit and prints its elapsed time, so the run ends inside the
# budget with whatever it got; a summary (at most 8 flat files) goes to $OUT when that is set.
#
#   bash scripts/device_check.sh                       # on the GPU machine, .device/kit carried there
#   DEVICE_CHECK_ALLOW_CPU=1 bash scripts/device_check.sh --env --orderings "base Q"   # here, on CPU
#
# Options:
#   --env              use the current Python environment and the repository's cache, not the kit
#   --orderings "A B"  only these orderings of the smoke study (default: all 16)
#   --items N          prompts that `estimate` and the generation benchmark measure (default 32)
#   --budget-s S       the whole run's time budget in seconds (default 460)
# Variables: DEVICE_CHECK_PYTHON (default python3), DEVICE_CHECK_KIT (default .device/kit),
#   DEVICE_CHECK_ALLOW_CPU=1 (run without CUDA), OUT (where the summary files go), ORDERSTUDY_CACHE.
# Exit status: 0 when every stage succeeded, 3 when there is no CUDA device, 1 otherwise.

set -uo pipefail  # not -e: a stage that fails is reported and the later ones still run

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${DEVICE_CHECK_PYTHON:-python3}
KIT=${DEVICE_CHECK_KIT:-$ROOT/.device/kit}
MODE=kit
ORDERINGS=""
ITEMS=32
BUDGET_S=460
while [ $# -gt 0 ]; do
  case $1 in
    --env) MODE="env" ;;
    --orderings) ORDERINGS=${2:?--orderings needs a value}; shift ;;
    --items) ITEMS=${2:?--items needs a value}; shift ;;
    --budget-s) BUDGET_S=${2:?--budget-s needs a value}; shift ;;
    -h | --help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device-check.XXXXXX")
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; LOG=$OUT/device_check.log; else LOG=$WORK/device_check.log; fi
# The log is written where it is kept from the start: a run cut short still leaves it in $OUT.
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

ALLOW_CPU=${DEVICE_CHECK_ALLOW_CPU:-0}
STUDY_PARAMS=params/smoke.yaml
PARAMS=$WORK/smoke.yaml
STUDY_DIR=$WORK/outputs/smoke
STAGES=()
FAILED=0

elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((DEADLINE - $(date +%s))); }
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# stage NAME LIMIT_S COMMAND...: run COMMAND (a program, not a shell function) under a time limit,
# then print how it ended and how long it took. Returns the command's status (124: timed out).
stage() {
  local name=$1 limit=$2 t0 rc took how
  shift 2
  if [ "$limit" -lt 5 ]; then
    echo "== $name: skipped, ${limit} s left of the budget"
    STAGES+=("$(printf '%-10s %-20s' "$name" "skipped (no time)")")
    FAILED=1
    return 124
  fi
  echo "== $name (limit ${limit} s; at $(elapsed) s of ${BUDGET_S} s)"
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  took=$(($(date +%s) - t0))
  case $rc in
    0) how=ok ;;
    124 | 137) how="TIMED OUT" ;;
    *) how="FAILED (exit $rc)" ;;
  esac
  [ "$rc" -eq 0 ] || FAILED=1
  echo "-- $name: $how in ${took} s (at $(elapsed) s of ${BUDGET_S} s)"
  STAGES+=("$(printf '%-10s %-20s %5s s' "$name" "$how" "$took")")
  return "$rc"
}

# Copy the summary files into $OUT (flat, plain names, at most 8 with the log), print the stages.
finish() {
  local code=$1
  if [ -n "${OUT:-}" ]; then
    cp -f "$WORK/env.txt" "$WORK/machine.json" "$WORK/estimate.json" "$WORK/orderings.json" "$WORK/bench.json" \
      "$OUT/" 2>/dev/null
    cp -f "$STUDY_DIR/last_run.json" "$STUDY_DIR/tables/main.md" "$OUT/" 2>/dev/null
  fi
  echo "== summary (mode $MODE, work dir $WORK${OUT:+, files in $OUT})"
  printf '   %s\n' "${STAGES[@]}"
  echo "device check: $([ "$code" -eq 0 ] && echo ok || echo "NOT ok (exit $code)") in $(elapsed) s of ${BUDGET_S} s"
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null  # the log complete before the caller reads it
  exit "$code"
}

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg JUPYTER_PLATFORM_DIRS=1 TOKENIZERS_PARALLELISM=false
# No network on the device: never wait for the model hub. Fresh caches inside the work dir.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=$WORK/hf
# Kernels' connection files, IPython's profile and matplotlib's cache: not in a home that may not be writable.
export JUPYTER_RUNTIME_DIR=$WORK/jupyter IPYTHONDIR=$WORK/ipython MPLCONFIGDIR=$WORK/matplotlib
export ORDERSTUDY_OUTPUTS=$WORK/outputs

echo "device check: mode $MODE, budget ${BUDGET_S} s, work dir $WORK, $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
{
  echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "host: $(uname -a)"
  if git -C "$ROOT" rev-parse --short HEAD >/dev/null 2>&1; then
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD), $(git -C "$ROOT" status --porcelain | wc -l) changed files"
  else
    echo "git: no repository here (a copy of the working tree)"
  fi
  echo "python: $(command -v "$PY") $("$PY" --version 2>&1)"
  echo "--- nvidia-smi"
  if command -v nvidia-smi >/dev/null; then
    timeout 30 nvidia-smi 2>&1
    timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  else
    echo "nvidia-smi: not found"
  fi
} >"$WORK/env.txt" 2>&1
cat "$WORK/env.txt"

# ---- the kit: packages the machine lacks, the benchmark data and the tokenizer
if [ "$MODE" = kit ]; then
  for f in site.tar.xz inputs.tar.xz device_kit.py; do
    if [ ! -f "$KIT/$f" ]; then
      echo "FAILED: $KIT/$f is missing: run \`make device-kit\` here first and carry .device/kit"
      STAGES+=("kit        FAILED (missing $f)")
      finish 1
    fi
  done
  SITE=$WORK/site
  INPUTS=$WORK/inputs
  stage unpack "$(min 90 "$(left)")" "$PY" -c '
import sys, tarfile
for archive, dest in zip(sys.argv[1::2], sys.argv[2::2]):
    with tarfile.open(archive) as tar:
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    print(f"{archive} -> {dest}")
' "$KIT/site.tar.xz" "$SITE" "$KIT/inputs.tar.xz" "$INPUTS" || finish 1
  export PYTHONPATH=$ROOT/lib:$SITE${PYTHONPATH:+:$PYTHONPATH}
  # The kit's data/ stands for the repository's cache/data (LawBench 2-1's thesaurus is read from there).
  export ORDERSTUDY_CACHE=$INPUTS
  DATA=$INPUTS/data
  TOKENIZER=$INPUTS/tokenizer
  stage kit "$(min 60 "$(left)")" "$PY" "$KIT/device_kit.py" verify "$SITE" \
    --show torch transformers peft accelerate bitsandbytes lm_eval datasets papermill fsspec pyarrow
else
  CACHE=${ORDERSTUDY_CACHE:-$ROOT/cache}
  export PYTHONPATH=$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}
  DATA=$CACHE/data
  TOKENIZER=$CACHE/models/SmolLM2-135M-Instruct
fi

# ---- the machine: CUDA, versions (kit or machine), a bitsandbytes operation on the GPU
MACHINE_ARGS=(--json "$WORK/machine.json")
DEVICE=cuda
if [ "$ALLOW_CPU" = 1 ]; then MACHINE_ARGS+=(--allow-cpu); DEVICE=auto; fi
stage machine "$(min 120 "$(left)")" "$PY" scripts/device_check.py machine "${MACHINE_ARGS[@]}"
case $? in
  0) ;;
  3) finish 3 ;;  # no CUDA: nothing below would test what this check is for
  *) finish 1 ;;
esac

# ---- the smoke study on this machine's device
# shellcheck disable=SC2016  # expanded by the inner shell, from its arguments
stage prepare "$(min 120 "$(left)")" bash -c '
  set -e
  "$1" -m orderstudy.prepare tiny --tokenizer "$2" --out "$3/models/tiny-llama"
  "$1" scripts/device_check.py params "$4" --out "$5" --model "$3/models/tiny-llama" --data "$6" --device "$7"
' prepare "$PY" "$TOKENIZER" "$WORK" "$STUDY_PARAMS" "$PARAMS" "$DATA" "$DEVICE" || finish 1

stage estimate "$(min 60 "$(left)")" "$PY" -m orderstudy estimate "$PARAMS" --items "$ITEMS" --json "$WORK/estimate.json"

# What the smoke study leaves to the stages after it: the summary (if the study is cut short),
# its report, the benchmark and the copies; a third of the budget, 120 s at most.
RESERVE_S=$(min 120 $((BUDGET_S / 3)))
RUN_ARGS=(-m orderstudy run "$PARAMS" --quiet)
# shellcheck disable=SC2206  # the orderings are words on purpose
if [ -n "$ORDERINGS" ]; then RUN_ARGS+=(--orderings $ORDERINGS); fi
stage smoke "$(($(left) - RESERVE_S))" "$PY" "${RUN_ARGS[@]}"
if [ ! -f "$STUDY_DIR/last_run.json" ] && [ -d "$STUDY_DIR/results" ]; then
  # Cut short: the tables of the orderings that finished.
  stage summary "$(min 60 $(($(left) - RESERVE_S / 2)))" "$PY" -m orderstudy summary "$PARAMS"
fi
stage results "$(min 30 "$(left)")" "$PY" scripts/device_check.py results "$STUDY_DIR" --json "$WORK/orderings.json"

# ---- the generation benchmark
if [ -f benchmarks/bench_generation.py ]; then
  stage bench "$(min 120 $(($(left) - 10)))" "$PY" benchmarks/bench_generation.py "$PARAMS" \
    --items "$ITEMS" --backends hf --batch-sizes 1,auto --json "$WORK/bench.json"
else
  echo "== bench: benchmarks/bench_generation.py is not in this tree"
  STAGES+=("bench      FAILED (no benchmarks/bench_generation.py)")
  FAILED=1
fi

finish "$FAILED"
