// CPU entry points of the fused LSTM recurrence: check the params, then run the ISA copy of
// cpu_isa() (cpu/isa.h).
#include "cpu/isa.h"
#include "recurrence.h"

namespace qkan_fast {

void recurrence_forward_cpu(const RecurrenceParams& p) {
  check_recurrence(p, RecurrenceOp::kForward, Device::kCpu);
  QKF_ISA_TABLE(recurrence_kernels).forward(p);
}
void recurrence_backward_cpu(const RecurrenceParams& p) {
  check_recurrence(p, RecurrenceOp::kBackward, Device::kCpu);
  QKF_ISA_TABLE(recurrence_kernels).backward(p);
}

}  // namespace qkan_fast
