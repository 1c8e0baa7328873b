// The circuit kernels compiled for one instruction set (avx2); see circuit_kernels.h.
#define QKF_ISA_NS isa_avx2
#include "cpu/circuit_kernels.h"

namespace qkan_fast {
void circuit_run_avx2(const CircuitParams& p, int mode) {
  isa_avx2::run(p, static_cast<isa_avx2::Mode>(mode));
}
}  // namespace qkan_fast
