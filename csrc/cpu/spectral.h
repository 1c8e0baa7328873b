// The spectral engine's CPU kernels (docs/math.md, "The spectral identity"): plain pointers and sizes, no torch.
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

namespace qkan_fast {

struct SpectralParams {
  int64_t batch = 0;    // B
  int64_t in_dim = 0;   // I
  int64_t out_dim = 0;  // O
  int reps = 0;         // R: 2R+1 coefficients per edge
  bool px = false;      // u = arccos(x) (inputs in [-1, 1]) instead of u = x
  int dtype = 0;        // DType code (daruan.h): x, weight, y, basis and their gradients

  // coefficient sampler (dtype: theta, pre_b, coef_out, grad_coef_in, grad_theta, grad_pre_b)
  int ansatz = 0;                      // Ansatz code (daruan.h); px is sampled as mix (spectral.py)
  int nq = 1;                          // components: 1 (Z) or 3 (Z, X, Y); also the fused layer's:
                                       // 3 = fast measure, 1 = Born
  bool exact = false;                  // float32 coefficients computed in float64 and rounded once
  const void* theta = nullptr;         // [O, I, Rt, P]
  const void* pre_b = nullptr;         // [O, I, R]  rpz only (its w is 1): e = u + b
  void* coef_out = nullptr;            // [O, I, nq, 2R+1]
  const void* grad_coef_in = nullptr;  // [O, I, nq, 2R+1]
  void* grad_theta = nullptr;          // [O, I, Rt, P]
  void* grad_pre_b = nullptr;          // [O, I, R]  null when not needed

  // Born coefficient matrix (born_coef): dtype as theta; weight below is read too
  void* cw = nullptr;              // [2R, I, O]  weight * C[., ., 1 + k]
  void* c0 = nullptr;              // [O]         sum_i weight * C[., i, 0]
  const void* grad_cw = nullptr;   // [2R, I, O]
  const void* grad_c0 = nullptr;   // [O]

  const void* x = nullptr;       // [B, I]
  const void* coef = nullptr;    // [O, I, nq, 2R+1] (Z, X, Y or Z) (fused layer)
  const void* weight = nullptr;  // [O, I] postact weight * mask (fused layer)

  void* y = nullptr;      // [B, O]       fused layer forward
  void* basis = nullptr;  // [2R, I, B]   basis forward: cos ku (k = 1..R), then sin ku

  const void* grad_y = nullptr;      // [B, O]      fused layer backward
  const void* grad_basis = nullptr;  // [2R, I, B]  basis backward
  void* grad_x = nullptr;            // [B, I]        null when not needed
  void* grad_coef = nullptr;         // [O, I, nq, 2R+1]  null when not needed
  void* grad_weight = nullptr;       // [O, I]        null when not needed (fused layer, born_coef)

  int num_threads = 1;
};

void spectral_coef_cpu(const SpectralParams& p);
void spectral_coef_backward_cpu(const SpectralParams& p);
void spectral_born_coef_cpu(const SpectralParams& p);
void spectral_born_coef_backward_cpu(const SpectralParams& p);
void spectral_basis_cpu(const SpectralParams& p);
void spectral_basis_backward_cpu(const SpectralParams& p);
void spectral_fused_forward_cpu(const SpectralParams& p);
void spectral_fused_backward_cpu(const SpectralParams& p);

}  // namespace qkan_fast
