#!/usr/bin/env bash
# GPU check for a lent machine (H200; no internet; torch with CUDA, triton, pybind11,
# scikit-build-core, cmake, ninja and nvcc installed): build the package with its CUDA kernels,
# run tests/test_cuda.py, then the GPU benchmark. Every step is time-boxed so the whole script
# ends in under 8 minutes. Run from anywhere:
#
#   OUT=/some/dir bash bench/gpu_check.sh
#
# Writes $OUT/gpu_check.log (everything), $OUT/build_info.json, $OUT/cuda_tests.txt,
# $OUT/gpu_bench.json (+ $OUT/gpu_bench.txt) and, when time is left, $OUT/racecheck.txt.
# Exits 1 if the build fails, else with the test step's status (0: all CUDA tests passed).
# Environment: PYTHON (default python3), QKAN_FAST_CUDA_ARCHS (default: the project's 80-real;90),
# GPU_CHECK_SKIP_BENCH=1, GPU_CHECK_SKIP_RACECHECK=1, GPU_CHECK_BENCH_ARGS (extra bench options,
# default "--rounds 3 --min-run-time 1.5": 3 interleaved rounds of 0.5 s per engine and measurement;
# an engine slower than that runs twice per round, so the slow peers stay bounded).
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
OUT="${OUT:-$REPO/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
T0=$SECONDS
TOTAL=465  # seconds: optional steps get only what is left of this

log() { echo "[$(date +%T) +$((SECONDS - T0))s] $*" | tee -a "$LOG"; }
left() { echo $((TOTAL - (SECONDS - T0))); }

# step NAME TIMEOUT OUTFILE CMD...: run CMD with a timeout, output to OUTFILE (and the log)
step() {
  local name=$1 limit=$2 outfile=$3
  shift 3
  local start=$SECONDS rc
  log "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$outfile" 2>&1
  rc=$?
  cat "$outfile" >>"$LOG"
  [ "$rc" = 124 ] && log "== $name: TIMED OUT after ${limit}s"
  log "== $name: rc=$rc in $((SECONDS - start))s"
  return "$rc"
}

log "repo $REPO, out $OUT"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>&1 || true
  command -v nvcc && nvcc --version | tail -n 2
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  git -C "$REPO" log -1 --format='commit %H %s' 2>/dev/null || true
} >>"$LOG" 2>&1

# optional: carried wheels (the qkan==0.2.3 peer of the benchmark, built elsewhere, carried in .whl/)
if ls .whl/*.whl >/dev/null 2>&1; then
  step wheels 60 "$OUT/wheels.txt" "$PY" -m pip install --no-deps --no-index .whl/*.whl || log "carried wheels not installed (the benchmark runs without the qkan peers)"
fi

# 1. build (CUDA forced on: a missing nvcc or a compile error fails here)
export QKAN_FAST_CUDA=ON
[ -n "${QKAN_FAST_CUDA_ARCHS:-}" ] && log "QKAN_FAST_CUDA_ARCHS=$QKAN_FAST_CUDA_ARCHS"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if ! step build 270 "$OUT/build.txt" "$PY" -m pip install --no-build-isolation --no-deps --no-index -v "$REPO"; then
  log "BUILD FAILED (see $OUT/build.txt)"
  exit 1
fi
rm -f "$OUT/build.txt"  # already in the log
cd /tmp || exit 1  # import the installed package, not the source tree
if ! step build-info 60 "$OUT/build_info.json" "$PY" -c "import json, qkan_fast; print(json.dumps(qkan_fast.build_info()))"; then
  log "the installed package does not import"
  exit 1
fi
cd "$REPO" || exit 1

# 2. CUDA tests
step tests 150 "$OUT/cuda_tests.txt" "$PY" -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider
TEST_RC=$?

# 3. GPU benchmark
if [ "${GPU_CHECK_SKIP_BENCH:-0}" != 1 ] && [ "$(left)" -gt 40 ]; then
  limit=$(left)
  [ "$limit" -gt 150 ] && limit=150
  bench_args="${GPU_CHECK_BENCH_ARGS-"--rounds 3 --min-run-time 1.5"}"
  # shellcheck disable=SC2086  # bench_args is a list of options
  step bench "$limit" "$OUT/gpu_bench.txt" "$PY" -m qkan_fast.cli bench --device cuda --workloads W2,W5,W6 \
    --json "$OUT/gpu_bench.json" $bench_args ||
    log "benchmark failed or timed out (see gpu_bench.txt)"
else
  log "benchmark skipped ($(left)s left)"
fi

# 4. optional: compute-sanitizer racecheck of the kernels on small layers (not every runtime allows it)
if [ "${GPU_CHECK_SKIP_RACECHECK:-0}" != 1 ] && command -v compute-sanitizer >/dev/null && [ "$(left)" -gt 45 ]; then
  limit=$(($(left) - 5))
  [ "$limit" -gt 90 ] && limit=90
  cat >"$OUT/racecheck.py" <<'EOF'
import torch, qkan_fast
torch.manual_seed(0)
for ansatz, pt, O in (("pz", False, 7), ("mix", True, 40), ("px", True, 3)):
    layer = qkan_fast.QKANLayer(5, O, reps=2, ansatz=ansatz, preact_trainable=pt, engine="circuit").cuda()
    x = (torch.rand(70, 5, device="cuda") * 1.6 - 0.8).requires_grad_(True)
    layer(x).square().sum().backward()
    layer.postacts(x).sum().backward()
torch.cuda.synchronize()
print("ok")
EOF
  step racecheck "$limit" "$OUT/racecheck.txt" compute-sanitizer --tool racecheck --kernel-name kns=circuit --print-limit 20 "$PY" "$OUT/racecheck.py" ||
    log "racecheck failed or unavailable (see racecheck.txt)"
  rm -f "$OUT/racecheck.py"
fi

log "done: tests rc=$TEST_RC, total $((SECONDS - T0))s"
exit "$TEST_RC"
