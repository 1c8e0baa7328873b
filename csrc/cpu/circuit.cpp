// CPU entry points of the circuit engine: check the params, then run the kernels of the ISA copy
// that cpu_isa() picked (cpu/isa.h).
#include "cpu/isa.h"
#include "params.h"

namespace qkan_fast {

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
