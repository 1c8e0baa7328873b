// Runtime dispatch of the CPU circuit kernels: the portable build carries generic, AVX2+FMA and
// AVX-512 copies of the same code and picks the widest one this CPU supports, once.
#include <cstdlib>
#include <cstring>

#include "cpu/dispatch.h"
#include "params.h"

namespace qkan_fast {

void circuit_run_generic(const CircuitParams& p, int mode);
#if QKF_X86
void circuit_run_avx2(const CircuitParams& p, int mode);
void circuit_run_avx512(const CircuitParams& p, int mode);
#endif

const char* cpu_isa() {
  static const char* isa = [] {
    const char* forced = std::getenv("QKAN_FAST_ISA");  // generic | avx2 | avx512, for testing
#if QKF_X86
    __builtin_cpu_init();
    const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (forced && std::strcmp(forced, "generic") == 0) return "generic";
    if (forced && std::strcmp(forced, "avx2") == 0 && has2) return "avx2";
    if (has512) return "avx512";
    if (has2) return "avx2";
#else
    (void)forced;
#endif
    return "generic";
  }();
  return isa;
}

static void circuit_run(const CircuitParams& p, int mode) {
#if QKF_X86
  const char* isa = cpu_isa();
  if (isa[0] == 'a' && isa[3] == '5') return circuit_run_avx512(p, mode);
  if (isa[0] == 'a') return circuit_run_avx2(p, mode);
#endif
  circuit_run_generic(p, mode);
}

void circuit_forward_cpu(const CircuitParams& p) { circuit_run(p, 0); }
void circuit_postacts_cpu(const CircuitParams& p) { circuit_run(p, 1); }
void circuit_backward_cpu(const CircuitParams& p) { circuit_run(p, 2); }

}  // namespace qkan_fast
