// The circuit kernels compiled for one instruction set (avx512); see circuit_kernels.h.
#define QKF_ISA_NS isa_avx512
#include "cpu/circuit_kernels.h"

namespace qkan_fast {
void circuit_run_avx512(const CircuitParams& p, int mode) {
  isa_avx512::run(p, static_cast<isa_avx512::Mode>(mode));
}
}  // namespace qkan_fast
