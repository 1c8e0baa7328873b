// sin, cos and exp that GCC can vectorise (libm's are opaque calls that stop the SIMD loops).
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
  // a / (pi/2) to nearest (even) by adding and subtracting 1.5 * 2^(mantissa bits): the same
  // value as nearbyint, without the call that SSE2 cannot vectorise
  const T magic = sizeof(T) == 4 ? T(12582912.0) : T(6755399441055744.0);
  const T q = (a * T(0.63661977236758134308) + magic) - magic;
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

// exp(x) for the LSTM cell's sigmoid and tanh (cpu/recurrence.cpp): Cody-Waite reduction by ln 2,
// then the Cephes expf polynomial (float) or Pade form (double) on [-ln2/2, ln2/2], scaled by 2^k
// through the exponent bits. Branch-free and SSE2-only (k is rounded by adding and subtracting
// 1.5 * 2^(mantissa bits), which also leaves k in the sum's low bits: no nearbyint or float-to-int
// conversion, which SSE2 cannot vectorise), so GCC vectorises loops of it in every ISA copy.
// Accurate to about 1 ulp for x in [min, 0]; x below min gives exp(min) (about 1e-38 / 1e-307
// instead of a subnormal or 0, an absolute error far below every tolerance); NaN gives NaN.
template <class T> struct ExpConst;
template <> struct ExpConst<float> {
  using Bits = uint32_t;
  static constexpr float min = -87.0f;
  static constexpr float round_magic = 12582912.0f;  // 1.5 * 2^23
  static constexpr Bits magic_bits = 0x4B400000u, bias = 127, shift = 23;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static float reduced(float r) {  // exp(r) on [-ln2/2, ln2/2]
    const float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
                     1.6666665459e-1f) * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
  }
};
template <> struct ExpConst<double> {
  using Bits = uint64_t;
  static constexpr double min = -708.0;
  static constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr Bits magic_bits = 0x4338000000000000ull, bias = 1023, shift = 52;
  static constexpr double ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
  static double reduced(double r) {
    const double xx = r * r;
    const double px = r * ((1.26177193074810590878e-4 * xx + 3.02994407707441961300e-2) * xx + 9.99999999999999999910e-1);
    const double qx = ((3.00198505138664455042e-6 * xx + 2.52448340349684104192e-3) * xx + 2.27265548208155028766e-1) * xx +
                      2.00000000000000000009e0;
    return 1.0 + 2.0 * px / (qx - px);
  }
};

// exp(x) for x <= 0 (see ExpConst).
template <class T> inline T exp_nonpositive(T x) {
  using K = ExpConst<T>;
  using Bits = typename K::Bits;
  x = x < K::min ? K::min : x;  // NaN passes through
  const T shifted = x * T(1.44269504088896340736) + K::round_magic;  // k + magic, k = round(x / ln 2)
  const T k = shifted - K::round_magic;
  const T r = (x - k * K::ln2_hi) - k * K::ln2_lo;
  const Bits k_bits = __builtin_bit_cast(Bits, shifted) - K::magic_bits;  // k, two's complement
  return K::reduced(r) * __builtin_bit_cast(T, static_cast<Bits>((k_bits + K::bias) << K::shift));
}

// sigmoid and tanh from exp(-|v|) (no overflow for any v).
template <class T> inline T vec_sigmoid(T v) {
  const T e = exp_nonpositive(-std::fabs(v));
  return (v >= T(0) ? T(1) : e) / (T(1) + e);
}
template <class T> inline T vec_tanh(T v) {
  const T e = exp_nonpositive(T(-2) * std::fabs(v));
  const T t = (T(1) - e) / (T(1) + e);
  return v < T(0) ? -t : t;
}

}  // namespace
}  // namespace qkan_fast
