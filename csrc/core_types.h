// The typed vocabulary of the compiled core, shared by the CPU kernels, the CUDA kernels and the
// pybind11 module (which binds each enum with py::enum_). Plain enums with fixed values: the
// kernels use the ansatz as a template argument, and the values are stable across releases.
#pragma once

namespace qkan_fast {

// The circuit of one edge (SPEC.md section 1).
enum Ansatz : int { kPZ = 0, kRPZ = 1, kPX = 2, kREAL = 3, kMIX = 4 };
// Storage type of every tensor of a call. bfloat16 runs on CUDA only (computed in float32).
enum DType : int { kFloat32 = 0, kFloat64 = 1, kBFloat16 = 2 };
// The instruction-set copy of the CPU kernels (cpu/isa.h picks one per process).
enum class Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

// Repetitions accepted by every entry point: the kernels size per-thread buffers by R (the
// spectral coefficient map by R^2), and no model uses more.
constexpr int kMaxReps = 1024;

inline const char* ansatz_name(int a) {
  switch (a) {
    case kPZ: return "pz";
    case kRPZ: return "rpz";
    case kPX: return "px";
    case kREAL: return "real";
    case kMIX: return "mix";
    default: return "unknown";
  }
}
inline const char* dtype_name(int d) {
  switch (d) {
    case kFloat32: return "float32";
    case kFloat64: return "float64";
    case kBFloat16: return "bfloat16";
    default: return "unknown";
  }
}
inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace qkan_fast
