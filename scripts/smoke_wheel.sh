#!/usr/bin/env bash
# Install the repaired qkan_fast wheel into fresh venvs, one per torch release, and run
# scripts/wheel_smoke_test.py in each with no compiler on PATH (env -i, PATH = the venv only),
# once with the CPU's best instruction set and once with QKAN_FAST_ISA=generic (the path a CPU
# without AVX2 takes).
#
#   scripts/smoke_wheel.sh [WHEEL] | tee bench/results/wheel_smoke.txt
#
# Knobs: TORCH_VERSIONS (default "2.13.0 2.14.1": the two releases pip installs here from the
# local disk; 2.14.1 is a CUDA build, about 5.5 GB in its venv), VENV_ROOT (default
# /tmp/qkan_fast_smoke), BASE_PYTHON (interpreter the venvs are made from), KEEP_VENVS=1 (reuse
# a venv's torch, reinstall only qkan_fast: quicker, not fresh).
set -euo pipefail
cd "$(dirname "$0")/.."

wheel=${1:-$(ls -t dist/qkan_fast-*manylinux*.whl 2>/dev/null | head -n 1)}
[ -f "${wheel:-}" ] || { echo "smoke_wheel: no wheel given and none in dist/ (run scripts/build_wheel.sh)" >&2; exit 1; }
wheel=$(readlink -f "$wheel")
TORCH_VERSIONS=${TORCH_VERSIONS:-2.13.0 2.14.1}
VENV_ROOT=${VENV_ROOT:-/tmp/qkan_fast_smoke}
BASE_PYTHON=${BASE_PYTHON:-$(python3 -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')}
test_py=$(readlink -f scripts/wheel_smoke_test.py)
run_dir=$(mktemp -d)  # an empty working directory: nothing importable but the installed wheel
trap 'rm -rf "$run_dir"' EXIT

echo "qkan_fast wheel smoke test, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wheel: $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"
failed=0
for tv in $TORCH_VERSIONS; do
  venv=$VENV_ROOT/torch-$tv
  echo
  echo "=== torch $tv: venv $venv"
  if [ "${KEEP_VENVS:-0}" != 1 ] || [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    "$BASE_PYTHON" -m venv "$venv"
    start=$(date +%s)
    "$venv/bin/python" -m pip install -q --only-binary=:all: "torch==$tv" > "$venv.torch.log" 2>&1 \
      || { cat "$venv.torch.log"; echo "smoke_wheel: torch==$tv did not install" >&2; exit 1; }
    echo "torch $tv installed in $(( $(date +%s) - start )) s ($(du -sh "$venv" | cut -f1) venv)"
  fi
  # Binary only: if pip fell back to building anything, this would fail instead.
  start=$(date +%s)
  "$venv/bin/python" -m pip install -q --only-binary=:all: --force-reinstall --no-deps "$wheel"
  "$venv/bin/python" -m pip install -q --only-binary=:all: "$wheel"  # its dependencies, torch already met
  echo "qkan_fast wheel installed in $(( $(date +%s) - start )) s; pip show: version $("$venv/bin/python" -m pip show qkan_fast | sed -n 's/^Version: //p')"
  for isa in "" generic; do
    echo "--- QKAN_FAST_ISA=${isa:-<unset>}, env -i PATH=$venv/bin"
    if ! (cd "$run_dir" && env -i HOME="$HOME" PATH="$venv/bin" ${isa:+QKAN_FAST_ISA=$isa} OMP_NUM_THREADS=2 \
          python "$test_py"); then
      echo "FAILED: torch $tv, QKAN_FAST_ISA=${isa:-<unset>}"
      failed=1
    fi
  done
done
echo
[ "$failed" = 0 ] && echo "ALL SMOKE RUNS PASSED" || { echo "SOME SMOKE RUNS FAILED"; exit 1; }
