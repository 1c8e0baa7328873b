// The spectral engine's CPU kernels (SPEC.md section 4): plain pointers and sizes, no torch.
//
// With encoding weights frozen at 1, every edge's Born value is a trigonometric polynomial of
// degree R in the angle u (u = x, or arccos(x) for px):
//   z_oi(u) = C[o,i,0] + sum_{k=1..R} C[o,i,k] cos(ku) + C[o,i,R+k] sin(ku)
// These kernels provide
//   - the coefficients, by propagating alpha and beta as polynomials in e^{iu} (spectral_coef.h),
//     of the Bloch components Z = |alpha|^2 - |beta|^2 (the Born value) and, for the fast
//     measure, X = 2 Re(conj(alpha) beta) and Y = 2 Im(conj(alpha) beta) (trigonometric
//     polynomials of the same degree), and the adjoint of that map;
//   - the basis (cos ku, sin ku), k = 1..R, of every input and its backward (the Born GEMM path
//     in python/qkan_fast/spectral.py), and
//   - the fused layer y[b,o] = sum_i W[o,i] g(Z_oi(u[b,i])) and its backward, without any
//     (B, O, I) buffer or basis in memory: the fast measure g(Z) = sqrt((1+Z)/2) - sqrt((1-Z)/2)
//     = |alpha| - |beta| (near a pole the kernel switches to |small| = sqrt(X^2+Y^2) / (2 |big|)),
//     or the Born measure g(Z) = Z where the GEMM's basis operand would not stay in cache.
#pragma once

#include <cstdint>

#include "core_types.h"

namespace qkan_fast {

// The coefficient map and the Born layer's GEMM operand (spectral_coef.h). Every tensor in dtype.
struct SpectralCoefParams {
  int64_t out_dim = 0;  // O
  int64_t in_dim = 0;   // I
  int reps = 0;         // R: 2R+1 coefficients per edge
  Ansatz ansatz = kPZ;  // px is sampled in its mix form (python/qkan_fast/spectral.py)
  DType dtype = kFloat32;
  int nq = 1;           // components: 1 (Z) or 3 (Z, X, Y); born_coef: 1
  bool exact = false;   // float32 coefficients computed in float64 and rounded once (coef only)

  const void* theta = nullptr;         // [O, I, Rt, P]
  const void* pre_b = nullptr;         // [O, I, R]  rpz only (its w is 1): e = u + b
  void* coef_out = nullptr;            // [O, I, nq, 2R+1]   coef
  const void* grad_coef_in = nullptr;  // [O, I, nq, 2R+1]   coef_backward
  void* grad_theta = nullptr;          // [O, I, Rt, P]      both backwards
  void* grad_pre_b = nullptr;          // [O, I, R]  null when not needed

  // Born coefficient matrix: cw = weight * C[., ., 1 + k] (transposed), c0 = sum_i weight * C[., i, 0]
  const void* weight = nullptr;    // [O, I]
  void* cw = nullptr;              // [2R, I, O]
  void* c0 = nullptr;              // [O]
  const void* grad_cw = nullptr;   // [2R, I, O]
  const void* grad_c0 = nullptr;   // [O]
  void* grad_weight = nullptr;     // [O, I]  null when not needed

  int num_threads = 1;
};

// The basis cos ku, sin ku (k = 1..R) of every input, the Born GEMM's left operand.
struct SpectralBasisParams {
  int64_t batch = 0;   // B
  int64_t in_dim = 0;  // I
  int reps = 0;        // R
  bool px = false;     // u = arccos(x) (inputs in [-1, 1]) instead of u = x
  DType dtype = kFloat32;

  const void* x = nullptr;           // [B, I]
  void* basis = nullptr;             // [2R, I, B]  basis: cos ku (k = 1..R), then sin ku
  const void* grad_basis = nullptr;  // [2R, I, B]  basis_backward
  void* grad_x = nullptr;            // [B, I]      basis_backward

  int num_threads = 1;
};

// The fused layer y[b,o] = sum_i weight[o,i] g(Z_oi(u[b,i])) and its backward.
struct SpectralLayerParams {
  int64_t batch = 0;    // B
  int64_t in_dim = 0;   // I
  int64_t out_dim = 0;  // O
  int reps = 0;         // R
  bool px = false;      // u = arccos(x) instead of u = x
  DType dtype = kFloat32;
  int nq = 3;           // coefficient components: 3 = fast measure (Z, X, Y), 1 = Born (Z)

  const void* x = nullptr;       // [B, I]
  const void* coef = nullptr;    // [O, I, nq, 2R+1]
  const void* weight = nullptr;  // [O, I] postact weight * mask
  void* y = nullptr;             // [B, O]  forward
  const void* grad_y = nullptr;  // [B, O]  backward
  void* grad_x = nullptr;        // [B, I]            null when not needed
  void* grad_coef = nullptr;     // [O, I, nq, 2R+1]  null when not needed
  void* grad_weight = nullptr;   // [O, I]            null when not needed

  int num_threads = 1;
};

enum class SpectralOp : int {
  kCoef, kCoefBackward, kBornCoef, kBornCoefBackward, kBasis, kBasisBackward, kLayerForward, kLayerBackward
};
// Throw std::invalid_argument for what the op does not handle (checks.cpp).
void check_spectral(const SpectralCoefParams& p, SpectralOp op);
void check_spectral(const SpectralBasisParams& p, SpectralOp op);
void check_spectral(const SpectralLayerParams& p, SpectralOp op);

// CPU entry points (cpu/spectral.cpp): each checks its params, then runs the ISA copy of cpu_isa().
void spectral_coef_cpu(const SpectralCoefParams& p);
void spectral_coef_backward_cpu(const SpectralCoefParams& p);
void spectral_born_coef_cpu(const SpectralCoefParams& p);
void spectral_born_coef_backward_cpu(const SpectralCoefParams& p);
void spectral_basis_cpu(const SpectralBasisParams& p);
void spectral_basis_backward_cpu(const SpectralBasisParams& p);
void spectral_fused_forward_cpu(const SpectralLayerParams& p);
void spectral_fused_backward_cpu(const SpectralLayerParams& p);

}  // namespace qkan_fast
