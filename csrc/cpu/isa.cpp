// The ISA choice of the CPU kernels (cpu/isa.h), made once per process.
#include <cstdlib>
#include <cstring>

#include "cpu/isa.h"

namespace qkan_fast {

Isa cpu_isa() {
  static const Isa isa = [] {
#if QKF_X86
    const char* forced = std::getenv("QKAN_FAST_ISA");  // generic | avx2 | avx512, for testing
    __builtin_cpu_init();
    const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (forced && std::strcmp(forced, "generic") == 0) return Isa::kGeneric;
    if (forced && std::strcmp(forced, "avx2") == 0 && has2) return Isa::kAvx2;
    if (has512) return Isa::kAvx512;
    if (has2) return Isa::kAvx2;
#endif
    return Isa::kGeneric;
  }();
  return isa;
}

}  // namespace qkan_fast
