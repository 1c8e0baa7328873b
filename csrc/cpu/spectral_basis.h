// The spectral engine's basis on the CPU: cos ku, sin ku (k = 1..R) of every input, u = x or
// u = arccos(x) for px, and du/dx; the Born GEMM's left operand (basis_forward, basis_backward)
// and the rows the fused layer kernels read (spectral_fused.h). Compiled once per instruction set
// inside QKF_ISA_NS::spec (see cpu/isa.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/spectral.h"
#include "cpu/spectral_simd.h"

QKF_SPECTRAL_BEGIN

// the circuit engine's floors (daruan.h measure_floor and data_angle_slope)
template <class T> constexpr T prob_floor() { return sizeof(T) == 4 ? T(1e-30) : T(1e-300); }
template <class T> constexpr T slope_floor() { return sizeof(T) == 4 ? T(1e-6) : T(1e-12); }

// One vector of inputs: rows out[k * st] (k < 2R: cos ku for k < R, then sin ku) and du/dx in
// slope[] get whole vectors. For px (cos u, sin u) = (x, sqrt(1 - x^2)) need no trigonometry and
// du/dx = -1/sqrt(1-x^2) is written as -1/(2cs) with the circuit engine's half-angle pair (c, s)
// and floor (daruan.h data_angle_slope), so x = +-1 stays finite. In the layer's dtype: the
// recurrence adds ~k ulp to the k-th harmonic, as the circuit engine's R data-gate products do
// (measured: the max error of y and the gradients against float64 stays at the circuit engine's).
template <class T>
inline void harmonics_vec(Vec<T> x, int R, bool px, T* out, int64_t st, T* slope) {
  Vec<T> c1, s1;
  if (px) {
    const Vec<T> xc = x > T(1) ? vset<T>(1) : (x < T(-1) ? vset<T>(-1) : x);
    const Vec<T> hc = vsqrt<T>(T(0.5) * (T(1) + xc)), hs = vsqrt<T>(T(0.5) * (T(1) - xc));
    c1 = xc;
    s1 = T(2) * hc * hs;
    if (slope) vstore(slope, T(-1) / (s1 > slope_floor<T>() ? s1 : vset<T>(slope_floor<T>())));
  } else {
    vsincos<T>(x, s1, c1);
    if (slope) vstore(slope, vset<T>(1));
  }
  Vec<T> ck = c1, sk = s1;
  for (int k = 0; k < R; ++k) {
    vstore(out + k * st, ck);
    vstore(out + (R + k) * st, sk);
    const Vec<T> cn = ck * c1 - sk * s1;
    sk = sk * c1 + ck * s1;
    ck = cn;
  }
}

// Born basis [2R, I, B] (row (k, i) holds cos ku for k < R, then sin ku, over the samples b): the
// transposed left operand of the Born GEMM (python/qkan_fast/spectral.py), so that the GEMMs of
// the backward run in the shapes that BLAS parallelises best. Vectors of L samples of one input;
// x is gathered (stride I), the rows are stored whole (a partial last vector through a buffer).
template <class T>
void basis_forward(const SpectralBasisParams& p) {
  constexpr int L = lanes<T>();
  const int64_t B = p.batch, I = p.in_dim, nvb = cdiv(B, L);
  const int R = p.reps, NB = 2 * R;
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.basis);
#pragma omp parallel num_threads(p.num_threads)
  {
    std::vector<T> h(NB * L);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < I * nvb; ++t) {
      const int64_t i = t / nvb, b0 = (t % nvb) * L;
      const int m = static_cast<int>(std::min<int64_t>(L, B - b0));
      const Vec<T> xs = load_strided(x + b0 * I + i, I, m);
      T* row = out + i * B + b0;
      if (m == L) {
        harmonics_vec<T>(xs, R, p.px, row, I * B, nullptr);
        continue;
      }
      harmonics_vec<T>(xs, R, p.px, h.data(), L, nullptr);
      for (int k = 0; k < NB; ++k)
        for (int j = 0; j < m; ++j) row[k * I * B + j] = h[k * L + j];
    }
  }
}

// grad_x [B, I] from grad_basis [2R, I, B]
template <class T>
void basis_backward(const SpectralBasisParams& p) {
  constexpr int L = lanes<T>();
  const int64_t B = p.batch, I = p.in_dim, nvb = cdiv(B, L);
  const int R = p.reps, NB = 2 * R;
  const T* x = static_cast<const T*>(p.x);
  const T* g = static_cast<const T*>(p.grad_basis);
  T* gx = static_cast<T*>(p.grad_x);
#pragma omp parallel num_threads(p.num_threads)
  {
    std::vector<T> h(NB * L);
    alignas(64) T sl[L];
#pragma omp for schedule(static)
    for (int64_t t = 0; t < I * nvb; ++t) {
      const int64_t i = t / nvb, b0 = (t % nvb) * L;
      const int m = static_cast<int>(std::min<int64_t>(L, B - b0));
      const T* grow = g + i * B + b0;
      harmonics_vec<T>(load_strided(x + b0 * I + i, I, m), R, p.px, h.data(), L, sl);
      Vec<T> s{};  // d/du cos ku = -k sin ku, d/du sin ku = k cos ku
      for (int k = 0; k < R; ++k)
        s += T(k + 1) * (load_lanes(grow + (R + k) * I * B, m) * vload(&h[k * L]) -
                         load_lanes(grow + k * I * B, m) * vload(&h[(R + k) * L]));
      s *= vload(sl);
      for (int j = 0; j < m; ++j) gx[(b0 + j) * I + i] = s[j];
    }
  }
}

QKF_SPECTRAL_END  // qkan_fast::QKF_ISA_NS::spec
