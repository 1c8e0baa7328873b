// CPU entry points of the spectral engine: check the params, then run the kernels of the ISA copy
// that cpu_isa() picked (cpu/isa.h, shared with the circuit engine).
#include "cpu/isa.h"
#include "cpu/spectral.h"

namespace qkan_fast {

void spectral_coef_cpu(const SpectralCoefParams& p) {
  check_spectral(p, SpectralOp::kCoef);
  QKF_ISA_TABLE(spectral_coef_kernels).coef(p);
}
void spectral_coef_backward_cpu(const SpectralCoefParams& p) {
  check_spectral(p, SpectralOp::kCoefBackward);
  QKF_ISA_TABLE(spectral_coef_kernels).coef_backward(p);
}
void spectral_born_coef_cpu(const SpectralCoefParams& p) {
  check_spectral(p, SpectralOp::kBornCoef);
  QKF_ISA_TABLE(spectral_coef_kernels).born_coef(p);
}
void spectral_born_coef_backward_cpu(const SpectralCoefParams& p) {
  check_spectral(p, SpectralOp::kBornCoefBackward);
  QKF_ISA_TABLE(spectral_coef_kernels).born_coef_backward(p);
}
void spectral_basis_cpu(const SpectralBasisParams& p) {
  check_spectral(p, SpectralOp::kBasis);
  QKF_ISA_TABLE(spectral_layer_kernels).basis(p);
}
void spectral_basis_backward_cpu(const SpectralBasisParams& p) {
  check_spectral(p, SpectralOp::kBasisBackward);
  QKF_ISA_TABLE(spectral_layer_kernels).basis_backward(p);
}
void spectral_fused_forward_cpu(const SpectralLayerParams& p) {
  check_spectral(p, SpectralOp::kLayerForward);
  QKF_ISA_TABLE(spectral_layer_kernels).fused_forward(p);
}
void spectral_fused_backward_cpu(const SpectralLayerParams& p) {
  check_spectral(p, SpectralOp::kLayerBackward);
  QKF_ISA_TABLE(spectral_layer_kernels).fused_backward(p);
}

}  // namespace qkan_fast
