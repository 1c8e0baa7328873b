// The spectral engine's fused layer on the CPU (see spectral.h), the pieces shared by its forward
// (spectral_fused_forward.h) and backward (spectral_fused_backward.h): the per-call preparation,
// the dot products with the basis and the two forms of the fast measure.
//
// Compiled once per instruction set (spectral_layer_{generic,avx2,avx512}.cpp), each inside its own
// namespace QKF_ISA_NS::spec (nothing here is shared across the copies, so the one-definition rule
// never merges code built for different instruction sets); cpu/isa.h picks one at run time.
//
// Vector axis. The coefficient map runs one edge per SIMD lane. The fused layer kernels run one
// sample per lane, written with GCC vector extensions whose width follows the copy
// (64 bytes with AVX-512, 32 with AVX2, 16 otherwise): they need register tiling that
// auto-vectorisation does not produce (the dot products of several outputs per basis load, to hide
// the FMA latency, and the coefficient-gradient reduction as outer-product tiles). A few common R
// are compile-time constants (the dot products unroll; spectral_simd.h kStaticReps); others use a
// runtime loop.
//
// The fast measure from the Bloch components (Z, X, Y) of the final state (Z = |alpha|^2 - |beta|^2,
// X + iY = 2 conj(alpha) beta, X^2 + Y^2 + Z^2 = 1):
// - g(Z) = sqrt((1+Z)/2) - sqrt((1-Z)/2) = |alpha| - |beta|, with Z clamped to [-1, 1] so that
//   roundoff never makes a square root negative (straight-through for the gradient).
// - g'(Z) = 1/(4 sqrt(pa)) + 1/(4 sqrt(pb)), pa = (1+Z)/2, pb = (1-Z)/2. The circuit engine floors
//   |alpha|^2 and |beta|^2 at measure_floor (daruan.h) and gives a vanished amplitude gradient 0;
//   the matching rule in Z is: the pa term is dropped iff pa <= floor, i.e. Z <= -1 + 2 floor
//   (in practice Z == -1 after the clamp), the pb term iff Z >= 1 - 2 floor (Z == +1). Values use
//   sqrt(max(p, floor)) exactly as the circuit engine does.
// - Near a pole g(Z) is ill-conditioned: an absolute error d of Z (roundoff, ~1e-7 in float32)
//   becomes d / (4 sqrt(p)) in phi, and the gradient (g'(Z) ~ 1/sqrt(p) times dZ ~ sqrt(p)) gets a
//   RELATIVE error ~ d / p, where the circuit engine's is ~ eps / sqrt(p). So where min(pa, pb) <
//   kPole the kernels use the Bloch formula instead: with big = sqrt((1 + |Z|)/2) the larger
//   amplitude and r = sqrt(X^2 + Y^2) = 2 |alpha| |beta|, small = r / (2 big) and
//   phi = sign(Z) (big - small), as accurate as the circuit engine (r has absolute error d).
//   Its gradient: d phi/dZ = (1 + r/(2 big^2)) / (4 big), d phi/dX = -sign(Z) X / (2 big r) (same
//   for Y); at r = 0 (a vanished amplitude) the X, Y terms are 0, the floor rule above. The switch
//   happens per vector of samples (the X and Y dot products run only where some lane needs them),
//   so its cost follows how often states come near a pole: rarely for complex amplitudes, at every
//   zero crossing for the real amplitudes of the `real` ansatz.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/spectral.h"
#include "cpu/spectral_basis.h"
#include "cpu/spectral_simd.h"
#include "daruan.h"
QKF_SPECTRAL_BEGIN

constexpr int kChunk = 64;      // samples per forward tile
constexpr int kOutBlock = 4;    // outputs per register tile: independent FMA chains per basis load
constexpr int kSubBlock = 256;  // samples per backward pass over a buffered gradient tile (L1)

// --------------------------------------------------------------------------------------------
// fused fast-measure layer

// below this min(pa, pb) a vector of samples switches to the Bloch formula (header comment): the
// Z formula's relative gradient error is then at most ~eps/kPole (about 4e-6 in float32)
template <class T> constexpr T pole_threshold() { return sizeof(T) == 4 ? T(1.0 / 64) : T(1.0 / 4096); }
constexpr int kQ = 3;  // components per edge of the fast measure: Z, X, Y (the Born measure has Z only)

// Per-call preparation. The basis is kept as rows [I][2R][bs] over the samples, bs = B rounded up
// to kChunk plus one cache line (rows of a power-of-two batch would otherwise alias in L1); padding
// lanes hold the basis of x = 0 so that whole vectors can always be processed. Also: du/dx per
// (i, b) for px, a zero edge (it fills partial output tiles; the coefficients themselves are read
// in place), and for the gradient of x the derivative coefficients of each component:
// dV/du = sum_k k C[R+k] cos ku - k C[k] sin ku. Padding lanes hold a zero basis (finite, and
// never read into a result: dL/dy is zero there and forward tiles store only real samples).
template <class T> struct Prepared {
  int64_t bs = 0;               // padded row length
  const T* bt = nullptr;        // [I][2R][bs]
  const T* slope = nullptr;     // [I][bs] (px backward)
  int nq = kQ;                  // components per edge: kQ (fast measure) or 1 (Born)
  const T* cf = nullptr;        // [E][nq][2R+1]  the caller's coefficients
  const T* df = nullptr;        // [E][nq][2R+1], constant term 0 (the same layout as cf)
  const T* zero = nullptr;      // [kQ][2R+1] zeros: coefficients and derivatives of padding edges
  const T* edge(const T* base, int64_t e, bool real, int M) const { return real ? base + e * nq * M : zero; }
};

template <class T>
Prepared<T> prepare(const SpectralLayerParams& p, bool with_slope, bool with_deriv) {
  constexpr int L = lanes<T>();
  Prepared<T> pr;
  const int64_t B = p.batch, I = p.in_dim, E = p.out_dim * p.in_dim;
  const int R = p.reps, NB = 2 * R, M = NB + 1, NQ = p.nq;
  const T* x = static_cast<const T*>(p.x);
  const T* coef = static_cast<const T*>(p.coef);
  pr.nq = NQ;
  pr.bs = cdiv(B, kChunk) * kChunk + 64 / static_cast<int64_t>(sizeof(T));
  const int64_t bs = pr.bs, nvec = cdiv(B, L);
  T* bt = scratch<T>(2, I * NB * bs, false).data();
  T* slope = with_slope ? scratch<T>(3, I * bs, false).data() : nullptr;
  T* df = with_deriv ? scratch<T>(5, E * NQ * M, false).data() : nullptr;
  pr.bt = bt;
  pr.slope = slope;
  pr.cf = coef;
  pr.df = df;
  pr.zero = scratch<T>(4, kQ * M, true).data();
#pragma omp parallel num_threads(p.num_threads)
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < I * nvec; ++t) {
      const int64_t i = t / nvec, b0 = (t % nvec) * L;
      const Vec<T> xs = load_strided(x + b0 * I + i, I, static_cast<int>(std::min<int64_t>(L, B - b0)));
      harmonics_vec<T>(xs, R, p.px, bt + i * NB * bs + b0, bs, with_slope ? slope + i * bs + b0 : nullptr);
      if (b0 + L >= B)  // the row padding past the last vector: zero
        for (int k = 0; k < NB; ++k) std::fill(bt + (i * NB + k) * bs + nvec * L, bt + (i * NB + k + 1) * bs, T(0));
    }
#pragma omp for schedule(static)
    for (int64_t e = 0; e < (with_deriv ? E : 0); ++e)
      for (int q = 0; q < NQ; ++q) {
        const T* c = coef + (e * NQ + q) * M;
        T* d = df + (e * NQ + q) * M;
        d[0] = T(0);
        for (int k = 0; k < R; ++k) {
          d[1 + k] = T(k + 1) * c[1 + R + k];
          d[1 + R + k] = -T(k + 1) * c[1 + k];
        }
      }
  }
  return pr;
}

// Dot products of NO outputs with the basis rows at one vector of samples: v[o] = c[o][0] +
// sum_k c[o][1+k] b_k (two partial sums per output to shorten the FMA chains).
template <class T, int RC, int NO>
inline void dots(const T* const* c, const T* bk, int64_t bs, int R, Vec<T>* v) {
  const int NB = RC ? 2 * RC : 2 * R;
  Vec<T> v1[NO];
  for (int o = 0; o < NO; ++o) {
    v[o] = vset<T>(c[o][0]);
    v1[o] = Vec<T>{};
  }
  for (int k = 0; k < NB; k += 2) {
    const Vec<T> b = vload(bk + k * bs);
    for (int o = 0; o < NO; ++o) v[o] += c[o][1 + k] * b;
    if (k + 1 < NB) {
      const Vec<T> b1 = vload(bk + (k + 1) * bs);
      for (int o = 0; o < NO; ++o) v1[o] += c[o][2 + k] * b1;
    }
  }
  for (int o = 0; o < NO; ++o) v[o] += v1[o];
}

// The same for two consecutive vectors of samples (bk and bk + L): each coefficient broadcast feeds
// two FMAs (v for the first vector, u for the second), half the loads per FMA of two dots calls
// (the Born backward's dL/du pass: 12% faster on W4, 1 thread; no gain measured in the forward).
template <class T, int RC, int NO>
inline void dots2(const T* const* c, const T* bk, int64_t bs, int R, Vec<T>* v, Vec<T>* u) {
  constexpr int L = lanes<T>();
  const int NB = RC ? 2 * RC : 2 * R;
  for (int o = 0; o < NO; ++o) u[o] = v[o] = vset<T>(c[o][0]);
  for (int k = 0; k < NB; ++k) {
    const Vec<T> b0 = vload(bk + k * bs), b1 = vload(bk + k * bs + L);
    for (int o = 0; o < NO; ++o) {
      const Vec<T> ck = vset<T>(c[o][1 + k]);
      v[o] += ck * b0;
      u[o] += ck * b1;
    }
  }
}

// |Z| above this marks a lane near a pole: min(pa, pb) < kPole
template <class T> constexpr T pole_abs_z() { return T(1) - T(2) * pole_threshold<T>(); }

// The Z formula: phi = g(Z) and, when GRAD, gp = g'(Z). Only lanes away from the poles keep these
// values (|Z| <= pole_abs_z, so no clamp or floor rule is needed there); the others are redone by
// bloch_measure, which clamps and applies the floor rule. The floors here only keep pole lanes
// finite (no NaN from roundoff beyond |Z| = 1) until they are replaced.
template <class T, bool GRAD>
inline void measure_z(Vec<T> z, Vec<T>& phi, Vec<T>& gp) {
  const T fl = prob_floor<T>();
  const Vec<T> pa = T(0.5) + T(0.5) * z, pb = T(0.5) - T(0.5) * z;
  const Vec<T> fa = pa > fl ? pa : vset<T>(fl), fb = pb > fl ? pb : vset<T>(fl);
  Vec<T> sa, sb, ra, rb;
  vsqrt_rsqrt<T, GRAD>(fa, sa, ra);
  vsqrt_rsqrt<T, GRAD>(fb, sb, rb);
  phi = sa - sb;
  if (GRAD) gp = T(0.25) * (ra + rb);
}

// The Bloch formula (header comment): phi and, when GRAD, d phi / d(Z, X, Y).
template <class T, bool GRAD>
inline void bloch_measure(Vec<T> z, Vec<T> x, Vec<T> y, Vec<T>& phi, Vec<T>& gz, Vec<T>& gx, Vec<T>& gy) {
  const T fl = prob_floor<T>();
  z = z > T(1) ? vset<T>(1) : z;
  z = z < T(-1) ? vset<T>(-1) : z;
  const Vec<T> sgn = z < T(0) ? vset<T>(-1) : vset<T>(1);
  const Vec<T> big = vsqrt<T>(T(0.5) + T(0.5) * sgn * z);  // >= sqrt(1/2)
  const Vec<T> r2 = x * x + y * y;
  const Vec<T> r = vsqrt<T>(r2);
  const Vec<T> ib = T(1) / big;
  phi = sgn * (big - T(0.5) * r * ib);
  if (GRAD) {
    gz = T(0.25) * ib * (T(1) + T(0.5) * r * ib * ib);
    const Vec<T> k = r2 > fl ? (T(-0.5) * sgn * ib) / (r2 > fl ? r : vset<T>(1)) : vset<T>(0);
    gx = k * x;
    gy = k * y;
  }
}

QKF_SPECTRAL_END  // qkan_fast::QKF_ISA_NS::spec
