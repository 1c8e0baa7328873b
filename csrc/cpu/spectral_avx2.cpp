// The spectral kernels compiled for one instruction set (avx2); see spectral_kernels.h.
#define QKF_ISA_NS isa_avx2
#include "cpu/spectral_kernels.h"

namespace qkan_fast {
void spectral_run_avx2(const SpectralParams& p, int mode) {
  isa_avx2::spec::run(p, static_cast<isa_avx2::spec::Mode>(mode));
}
}  // namespace qkan_fast
