// Runtime dispatch of the spectral CPU kernels: the same ISA choice as the circuit kernels
// (cpu_isa() in circuit.cpp: the widest copy this CPU supports, QKAN_FAST_ISA can lower it).
#include "cpu/dispatch.h"
#include "cpu/spectral.h"

namespace qkan_fast {

void spectral_run_generic(const SpectralParams& p, int mode);
#if QKF_X86
void spectral_run_avx2(const SpectralParams& p, int mode);
void spectral_run_avx512(const SpectralParams& p, int mode);
#endif

static void spectral_run(const SpectralParams& p, int mode) {
#if QKF_X86
  const char* isa = cpu_isa();
  if (isa[0] == 'a' && isa[3] == '5') return spectral_run_avx512(p, mode);
  if (isa[0] == 'a') return spectral_run_avx2(p, mode);
#endif
  spectral_run_generic(p, mode);
}

// mode codes: spectral_kernels.h Mode
void spectral_coef_cpu(const SpectralParams& p) { spectral_run(p, 0); }
void spectral_coef_backward_cpu(const SpectralParams& p) { spectral_run(p, 1); }
void spectral_basis_cpu(const SpectralParams& p) { spectral_run(p, 2); }
void spectral_basis_backward_cpu(const SpectralParams& p) { spectral_run(p, 3); }
void spectral_fused_forward_cpu(const SpectralParams& p) { spectral_run(p, 4); }
void spectral_fused_backward_cpu(const SpectralParams& p) { spectral_run(p, 5); }
void spectral_born_coef_cpu(const SpectralParams& p) { spectral_run(p, 6); }
void spectral_born_coef_backward_cpu(const SpectralParams& p) { spectral_run(p, 7); }

}  // namespace qkan_fast
