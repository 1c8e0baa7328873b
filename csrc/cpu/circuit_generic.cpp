// The circuit kernels compiled for one instruction set (generic); see circuit_kernels.h.
#define QKF_ISA_NS isa_generic
#include "cpu/circuit_kernels.h"

namespace qkan_fast {
void circuit_run_generic(const CircuitParams& p, int mode) {
  isa_generic::run(p, static_cast<isa_generic::Mode>(mode));
}
}  // namespace qkan_fast
