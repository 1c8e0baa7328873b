// The spectral kernels compiled for one instruction set (generic); see spectral_kernels.h.
#define QKF_ISA_NS isa_generic
#include "cpu/spectral_kernels.h"

namespace qkan_fast {
void spectral_run_generic(const SpectralParams& p, int mode) {
  isa_generic::spec::run(p, static_cast<isa_generic::spec::Mode>(mode));
}
}  // namespace qkan_fast
