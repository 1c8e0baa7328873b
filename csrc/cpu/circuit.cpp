// CPU entry points of the circuit engine: check the params, then run the kernels of the ISA copy
// that cpu_isa() picked (cpu/isa.h); the choice itself is made here, once per process.
#include <cstdlib>
#include <cstring>

#include "cpu/isa.h"
#include "params.h"

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

void circuit_forward_cpu(const CircuitParams& p) {
  check_circuit(p, CircuitOp::kForward, Device::kCpu);
  QKF_ISA_TABLE(circuit_kernels).forward(p);
}
void circuit_postacts_cpu(const CircuitParams& p) {
  check_circuit(p, CircuitOp::kPostacts, Device::kCpu);
  QKF_ISA_TABLE(circuit_kernels).postacts(p);
}
void circuit_backward_cpu(const CircuitParams& p) {
  check_circuit(p, CircuitOp::kBackward, Device::kCpu);
  QKF_ISA_TABLE(circuit_kernels).backward(p);
}

}  // namespace qkan_fast
