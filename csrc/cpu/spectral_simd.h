// SIMD helpers of the spectral CPU kernels (GCC vector extensions): the vector type of the
// instruction set this copy is compiled for, loads, stores, lane reductions, per-thread scratch,
// square roots and a vector sin/cos. Compiled once per instruction set inside QKF_ISA_NS::spec
// (see spectral_kernels.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "core_types.h"
#include "cpu/vec_math.h"

#ifndef QKF_ISA_NS
#error "define QKF_ISA_NS before including spectral_simd.h"
#endif

// Every spectral kernel header works inside one scope: this instruction-set copy's namespace.
#define QKF_SPECTRAL_BEGIN \
  namespace qkan_fast {    \
  namespace QKF_ISA_NS {   \
  namespace spec {
#define QKF_SPECTRAL_END \
  }                      \
  }                      \
  }

QKF_SPECTRAL_BEGIN

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// SIMD helpers (GCC vector extensions)

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX2__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif
// coefficients per outer-product tile of the coefficient gradient (kOutBlock x kKGroup vector
// accumulators plus their operands fit the 32 AVX-512 registers; AVX2 and SSE have 16)
constexpr int kKGroup = kVecBytes == 64 ? 4 : 2;

template <class T> struct VecOf {
  typedef T type __attribute__((vector_size(kVecBytes)));
};
template <class T> using Vec = typename VecOf<T>::type;
template <class T> struct IVecOf {
  using I = typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type;
  typedef I type __attribute__((vector_size(kVecBytes)));
};
template <class T> using IVec = typename IVecOf<T>::type;
template <class T> constexpr int lanes() { return kVecBytes / static_cast<int>(sizeof(T)); }

template <class T> inline Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T> inline void vstore(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof(v)); }
template <class T> inline Vec<T> vset(T s) { return Vec<T>{} + s; }
template <class T> inline T hsum(Vec<T> v) {  // pairwise (a tree of vector halves)
  alignas(64) T a[lanes<T>()];
  vstore(a, v);
  for (int w = lanes<T>() / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) a[l] += a[l + w];
  return a[0];
}
template <class T> inline Vec<T> vabs(Vec<T> v) {
  for (int l = 0; l < lanes<T>(); ++l) v[l] = std::fabs(v[l]);  // one andps / andpd
  return v;
}
// Whether any lane of a comparison result is true (the branch that skips rare work per vector).
template <class T> inline bool any_lane(IVec<T> m) {
#if defined(__AVX512F__)
  return _mm512_test_epi32_mask(reinterpret_cast<__m512i>(m), reinterpret_cast<__m512i>(m)) != 0;
#elif defined(__AVX2__)
  return !_mm256_testz_si256(reinterpret_cast<__m256i>(m), reinterpret_cast<__m256i>(m));
#elif defined(__SSE2__)
  return _mm_movemask_epi8(reinterpret_cast<__m128i>(m)) != 0;
#else
  for (int l = 0; l < lanes<T>(); ++l)
    if (m[l]) return true;
  return false;
#endif
}
// out[t] = sum of the lanes of in[t], t < n: groups of L vectors go through a butterfly of
// even/odd lane shuffles (log2 L steps) that leaves one vector holding the L sums.
template <class T>
inline void reduce_lanes(const Vec<T>* in, int n, T* out) {
  constexpr int L = lanes<T>();
  IVec<T> ev, od;
  for (int l = 0; l < L; ++l) {
    ev[l] = 2 * l;
    od[l] = 2 * l + 1;
  }
  for (int g0 = 0; g0 < n; g0 += L) {
    Vec<T> v[L];
    for (int t = 0; t < L; ++t) v[t] = g0 + t < n ? in[g0 + t] : Vec<T>{};
    for (int cnt = L; cnt > 1; cnt /= 2)
      for (int t = 0; t < cnt / 2; ++t)
        v[t] = __builtin_shuffle(v[2 * t], v[2 * t + 1], ev) + __builtin_shuffle(v[2 * t], v[2 * t + 1], od);
    alignas(64) T r[L];
    vstore(r, v[0]);
    for (int t = 0; t < L && g0 + t < n; ++t) out[g0 + t] = r[t];
  }
}

// Per-thread scratch that keeps its pages between calls (fresh multi-MB buffers would page-fault
// on every call); `slot` tells the buffers of one call apart (distinct across T = float/double
// too: scratch<double> and scratch<T> are the same buffers when T is double).
template <class T>
inline std::vector<T>& scratch(int slot, size_t n, bool zero) {
  thread_local std::vector<T> buf[8];
  std::vector<T>& b = buf[slot];
  if (zero)
    b.assign(n, T(0));
  else
    b.resize(n);
  return b;
}

template <class T> inline Vec<T> vsqrt(Vec<T> v) {
  Vec<T> r;
  for (int l = 0; l < lanes<T>(); ++l) r[l] = std::sqrt(v[l]);  // one sqrtps / sqrtpd
  return r;
}

// sqrt(p) and, when INV, 1/sqrt(p), for p > 0. float32 with AVX-512: rsqrt14 and one Newton step
// (relative error ~2^-27, below float32 rounding), no sqrt or division; elsewhere IEEE operations.
template <class T, bool INV>
inline void vsqrt_rsqrt(Vec<T> p, Vec<T>& s, Vec<T>& r) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    Vec<T> y = (Vec<T>)_mm512_rsqrt14_ps((__m512)p);
    y = y * (T(1.5) - T(0.5) * p * y * y);
    s = p * y;
    r = y;
    return;
  }
#endif
  s = vsqrt<T>(p);
  if (INV) r = T(1) / s;
}

// sin and cos of a vector: Cody-Waite reduction by pi/2 (three-part constant) and the classic
// minimax kernels on [-pi/4, pi/4] (Cephes sinf/cosf, fdlibm __kernel_sin/__kernel_cos), a few ulp
// for |a| <= limit; beyond it (or for inf/NaN) each lane goes to libm.
// The reduction constants and polynomials are vec_math.h's; only the rounding trick is added here.
// (internal linkage, as its base in vec_math.h: one copy per instruction-set TU)
namespace {
template <class T> struct SinCosK : SinCosConst<T> {
  static constexpr T round = sizeof(T) == 4 ? T(12582912.0f) : T(6755399441055744.0);  // 1.5 * 2^(mantissa bits)
  static constexpr T hi = SinCosConst<T>::pio2_hi, mid = SinCosConst<T>::pio2_mid, lo = SinCosConst<T>::pio2_lo;
};
}  // namespace

template <class T>
inline void vsincos(Vec<T> a, Vec<T>& s, Vec<T>& c) {
  using K = SinCosK<T>;
  if (any_lane<T>((vabs<T>(a) <= K::limit) == 0)) {  // also NaN
    for (int l = 0; l < lanes<T>(); ++l) {
      s[l] = std::sin(a[l]);
      c[l] = std::cos(a[l]);
    }
    return;
  }
  const Vec<T> q = (a * T(0.63661977236758134308) + K::round) - K::round;  // a / (pi/2), to nearest
  const Vec<T> r = ((a - q * K::hi) - q * K::mid) - q * K::lo;
  const Vec<T> r2 = r * r;
  const Vec<T> ps = K::sin_poly(r, r2), pc = K::cos_poly(r2);
  const IVec<T> n = __builtin_convertvector(q, IVec<T>);
  const auto swap = (n & 1) != 0;
  const Vec<T> ss = (n & 2) != 0 ? vset<T>(-1) : vset<T>(1);
  const Vec<T> sc = ((n + 1) & 2) != 0 ? vset<T>(-1) : vset<T>(1);
  s = ss * (swap ? pc : ps);
  c = sc * (swap ? ps : pc);
}

// Calls f(T{}) with T the compute type of a dtype code the entry points checked (float32, float64).
template <class F>
void dispatch_float_dtype(DType dtype, F&& f) {
  if (dtype == kFloat64)
    f(double{});
  else
    f(float{});
}

// A partial vector (n < lanes) through scalar moves; stride-gathered lanes.
template <class T> inline Vec<T> load_lanes(const T* src, int n) {
  if (n == lanes<T>()) return vload(src);
  Vec<T> v{};
  for (int j = 0; j < n; ++j) v[j] = src[j];
  return v;
}
template <class T> inline void store_lanes(T* dst, Vec<T> v, int n) {
  if (n == lanes<T>()) return vstore(dst, v);
  for (int j = 0; j < n; ++j) dst[j] = v[j];
}
template <class T> inline Vec<T> load_strided(const T* src, int64_t stride, int n) {
  Vec<T> v{};
  for (int j = 0; j < n; ++j) v[j] = src[j * stride];
  return v;
}

// The fused layer kernels take R as a compile-time constant for the common R (the dot products
// with the basis unroll): measured at one thread (bench/results/build_time_and_kernel_speed.json,
// "after" vs "after_runtimeR") the runtime loop costs 2-11% of the layer's forward+backward at
// R = 3, 4, 8 (7-17% in an earlier run on a loaded machine). Every other R runs the runtime loop
// (RC = 0), and so does the coefficient map for every R (no difference measured there). Each value listed is one more copy of the
// fused kernels per dtype and ISA: build time.
// QKAN_FAST_STATIC_REPS=0 runs the runtime loop for every R (for measuring the gain).
inline bool static_reps_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("QKAN_FAST_STATIC_REPS");
    return !(v && v[0] == '0');
  }();
  return on;
}
template <class F>
void dispatch_reps(int R, F&& f) {
  if (static_reps_enabled()) {
    switch (R) {
      case 1: return f(std::integral_constant<int, 1>{});
      case 2: return f(std::integral_constant<int, 2>{});
      case 3: return f(std::integral_constant<int, 3>{});
      case 4: return f(std::integral_constant<int, 4>{});
      case 8: return f(std::integral_constant<int, 8>{});
      default: break;
    }
  }
  f(std::integral_constant<int, 0>{});
}

QKF_SPECTRAL_END  // qkan_fast::QKF_ISA_NS::spec
