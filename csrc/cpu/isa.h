// The one instruction-set dispatch of the CPU kernels. The portable build carries generic,
// AVX2+FMA and AVX-512 copies of every kernel family (one translation unit per family and ISA,
// each in its own namespace isa_<name>); each copy exports a table of entry points, and
// QKF_ISA_TABLE picks the table of cpu_isa(), chosen once per process.
#pragma once

#include "core_types.h"
#include "cpu/spectral.h"
#include "params.h"
#include "recurrence.h"

// Set by CMakeLists.txt when the AVX2 and AVX-512 copies are compiled in (x86-64, GCC or Clang).
#if defined(QKF_X86_DISPATCH)
#define QKF_X86 1
#else
#define QKF_X86 0
#endif

namespace qkan_fast {

// The widest copy this CPU runs; QKAN_FAST_ISA=generic|avx2 lowers it (for testing).
Isa cpu_isa();

struct CircuitKernels {
  void (*forward)(const CircuitParams&);
  void (*postacts)(const CircuitParams&);
  void (*backward)(const CircuitParams&);
};
struct SpectralCoefKernels {
  void (*coef)(const SpectralCoefParams&);
  void (*coef_backward)(const SpectralCoefParams&);
  void (*born_coef)(const SpectralCoefParams&);
  void (*born_coef_backward)(const SpectralCoefParams&);
};
struct RecurrenceKernels {
  void (*forward)(const RecurrenceParams&);
  void (*backward)(const RecurrenceParams&);
};
struct SpectralLayerKernels {
  void (*basis)(const SpectralBasisParams&);
  void (*basis_backward)(const SpectralBasisParams&);
  void (*fused_forward)(const SpectralLayerParams&);
  void (*fused_backward)(const SpectralLayerParams&);
};

#define QKF_DECLARE_ISA_TABLES(ns)                        \
  namespace ns {                                          \
  extern const CircuitKernels circuit_kernels;            \
  extern const SpectralCoefKernels spectral_coef_kernels; \
  extern const SpectralLayerKernels spectral_layer_kernels; \
  extern const RecurrenceKernels recurrence_kernels;      \
  }
QKF_DECLARE_ISA_TABLES(isa_generic)
#if QKF_X86
QKF_DECLARE_ISA_TABLES(isa_avx2)
QKF_DECLARE_ISA_TABLES(isa_avx512)
#endif
#undef QKF_DECLARE_ISA_TABLES

template <class Table>
const Table& isa_pick(const Table& generic, const Table& avx2, const Table& avx512) {
  switch (cpu_isa()) {
    case Isa::kAvx512: return avx512;
    case Isa::kAvx2: return avx2;
    default: return generic;
  }
}

#if QKF_X86
#define QKF_ISA_TABLE(name) ::qkan_fast::isa_pick(isa_generic::name, isa_avx2::name, isa_avx512::name)
#else
#define QKF_ISA_TABLE(name) ::qkan_fast::isa_pick(isa_generic::name, isa_generic::name, isa_generic::name)
#endif

}  // namespace qkan_fast
