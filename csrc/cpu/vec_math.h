// sin and cos that GCC can vectorise (libm's sincos is an opaque call that stops the SIMD loops).
//
// Cody-Waite reduction by pi/2 with a three-part constant, then minimax polynomials on
// [-pi/4, pi/4] (the classic Cephes sinf/cosf and fdlibm kernel coefficients). Branch-free, so a
// loop over samples becomes SIMD code. Accurate to a few ulp for |a| below kSinCosLimit; callers
// check a chunk's largest |a| and fall back to libm beyond it (see sincos_chunk).
#pragma once

#include <cmath>
#include <cstdint>

namespace qkan_fast {
// Internal linkage: this header is compiled once per instruction set, and the linker must not
// pick one copy (say the AVX-512 one) for all of them.
namespace {

template <class T> struct SinCosConst;

template <> struct SinCosConst<float> {
  static constexpr float limit = 8192.0f;  // q * pio2_hi stays exact (pio2_hi has 8 significant bits)
  static constexpr float pio2_hi = 1.5703125f, pio2_mid = 4.837512969970703125e-4f,
                         pio2_lo = 7.54978995489188216e-8f;
  // templated on the value type so the SIMD-vector kernels (spectral_kernels.h) share them
  template <class V> static V sin_poly(V r, V r2) {
    return r + r * r2 * (-1.6666654611e-1f + r2 * (8.3321608736e-3f + r2 * -1.9515295891e-4f));
  }
  template <class V> static V cos_poly(V r2) {
    return 1.0f - 0.5f * r2 + r2 * r2 * (4.166664568298827e-2f + r2 * (-1.388731625493765e-3f + r2 * 2.443315711809948e-5f));
  }
};

template <> struct SinCosConst<double> {
  static constexpr double limit = 1048576.0;  // q * pio2_1 exact: pio2_1 has 33 significant bits
  static constexpr double pio2_hi = 1.57079632673412561417e+00, pio2_mid = 6.07710050630396597660e-11,
                          pio2_lo = 2.02226624879595063154e-21;
  template <class V> static V sin_poly(V r, V r2) {
    return r + r * r2 * (-1.66666666666666324348e-01 +
                         r2 * (8.33333333332248946124e-03 +
                               r2 * (-1.98412698298579493134e-04 +
                                     r2 * (2.75573137070700676789e-06 +
                                           r2 * (-2.50507602534068634195e-08 + r2 * 1.58969099521155010221e-10)))));
  }
  template <class V> static V cos_poly(V r2) {
    return 1.0 - 0.5 * r2 +
           r2 * r2 * (4.16666666666666019037e-02 +
                      r2 * (-1.38888888888741095749e-03 +
                            r2 * (2.48015872894767294178e-05 +
                                  r2 * (-2.75573143513906633035e-07 +
                                        r2 * (2.08757232129817482790e-09 + r2 * -1.13596475577881948265e-11)))));
  }
};

// Valid for |a| <= SinCosConst<T>::limit.
template <class T> inline void poly_sincos(T a, T* s, T* c) {
  using K = SinCosConst<T>;
  const T q = std::nearbyint(a * T(0.63661977236758134308));  // a / (pi/2), to nearest
  const T r = ((a - q * K::pio2_hi) - q * K::pio2_mid) - q * K::pio2_lo;
  const T r2 = r * r;
  const T ps = K::sin_poly(r, r2), pc = K::cos_poly(r2);
  const int32_t n = static_cast<int32_t>(q);
  const bool swap = n & 1;
  const T sgn_s = (n & 2) ? T(-1) : T(1);
  const T sgn_c = ((n + 1) & 2) ? T(-1) : T(1);
  *s = sgn_s * (swap ? pc : ps);
  *c = sgn_c * (swap ? ps : pc);
}

// s[j], c[j] = sin, cos of a[j] for a chunk: the SIMD polynomial when every |a| is in range,
// libm otherwise (huge inputs keep full accuracy; inf and NaN give NaN either way).
template <class T> inline void sincos_chunk(const T* __restrict a, int n, T* __restrict s, T* __restrict c) {
  T m = T(0);
#pragma omp simd reduction(max : m)
  for (int j = 0; j < n; ++j) m = std::fabs(a[j]) > m ? std::fabs(a[j]) : m;
  if (m <= SinCosConst<T>::limit) {
#pragma GCC ivdep
    for (int j = 0; j < n; ++j) poly_sincos(a[j], s + j, c + j);
  } else {
    for (int j = 0; j < n; ++j) {
      s[j] = std::sin(a[j]);
      c[j] = std::cos(a[j]);
    }
  }
}

}  // namespace
}  // namespace qkan_fast
