// Schedule policy of the spectral CPU kernels, kept beside the kernels it tunes and exposed to
// Python as plain functions (_C.spectral_born_fused_preferred, _C.spectral_auto_preferred).
// Every number here is a measurement; change it only with a new run of the script named. The
// numbers are also exported (_C.SPECTRAL_BORN_FUSED_RULE, _C.SPECTRAL_AUTO_MIN_*) for the Python
// twin of each rule that torch.compile traces (dynamo cannot call into _C); a test holds the twins
// equal to these functions.
#pragma once

#include <cstdint>

#include "core_types.h"

namespace qkan_fast {

// Whether the Born layer runs as the fused kernel (nq = 1) rather than the GEMM over the basis
// [2R, I, B]. The GEMM path writes the basis and its gradient to memory and runs three GEMMs of
// width O; the fused kernel keeps neither in memory. Measured side by side
// (bench/spectral_born_paths.py -> bench/results/spectral_born_paths.json; forward+backward, 2
// threads): the fused kernel wins where the basis outgrows the caches at small O (8 MiB at O = 16
// or 32: 2.1-3.1x, W4 2.1x) and at O = 16 from B = 1024 (1.05-1.3x, W1 1.2x); the GEMM wins at
// B = 256 (up to 1.4x, W3 1.3x) and at O >= 64 with a basis of a few MiB (1.1-1.4x).
struct BornFusedRule {
  int64_t min_batch = 1024;     // below: the GEMM
  int64_t max_out = 64;         // above: the GEMM
  int64_t small_out = 16;       // fused from min_batch on
  int64_t mid_out = 32;         // fused from a basis of mid_basis_mib on
  double mid_basis_mib = 1.5;
  double big_basis_mib = 8.0;   // fused up to max_out
};
constexpr BornFusedRule kBornFusedRule{};
inline bool spectral_born_fused_preferred(int64_t batch, int64_t in_dim, int64_t out_dim, int reps, DType dtype) {
  const BornFusedRule& r = kBornFusedRule;
  if (batch < r.min_batch || out_dim > r.max_out) return false;
  const double itemsize = dtype == kFloat64 ? 8.0 : 4.0;
  const double basis_mib = 2.0 * reps * in_dim * batch * itemsize / double(1 << 20);
  return out_dim <= r.small_out || (out_dim <= r.mid_out && basis_mib >= r.mid_basis_mib) || basis_mib >= r.big_basis_mib;
}

// engine="auto": the size part of the choice of the spectral engine over the circuit engine (the
// rest, which ansatz and flags apply, is python/qkan_fast/spectral.py prefer). Measured
// (bench/spectral_auto_sweep.py -> bench/results/spectral_auto_sweep.json, and
// bench/spectral_vs_circuit.py -> bench/results/spectral_cpu.json; CPU time of one thread, AMD EPYC
// Zen 4 with AVX-512, float32), forward+backward speedup circuit/spectral:
// - B*I*O >= 2^17 edge-samples and O >= 8: 1.1x-5.2x for pz and mix, both measures, R = 1, 3, 8;
// - 2^16: 1.0x-2.0x; below: 0.7x-1.1x (the spectral path's fixed cost per call: more custom ops);
// - O <= 4: 0.7x-1.4x (the per-input basis is shared by too few outputs).
constexpr int64_t kAutoMinEdgeSamples = int64_t(1) << 17;
constexpr int64_t kAutoMinOut = 8;
inline bool spectral_auto_preferred(int64_t batch, int64_t in_dim, int64_t out_dim) {
  return batch * in_dim * out_dim >= kAutoMinEdgeSamples && out_dim >= kAutoMinOut;
}

}  // namespace qkan_fast
