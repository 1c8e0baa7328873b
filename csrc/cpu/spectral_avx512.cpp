// The spectral kernels compiled for one instruction set (avx512); see spectral_kernels.h.
#define QKF_ISA_NS isa_avx512
#include "cpu/spectral_kernels.h"

namespace qkan_fast {
void spectral_run_avx512(const SpectralParams& p, int mode) {
  isa_avx512::spec::run(p, static_cast<isa_avx512::spec::Mode>(mode));
}
}  // namespace qkan_fast
