// CPU schedules of the spectral engine (see spectral.h): the basis, the fused fast-measure layer
// forward and backward, and the entry that dispatches them and the coefficient map
// (spectral_coef.h).
//
// Compiled once per instruction set (spectral_generic.cpp, spectral_avx2.cpp, spectral_avx512.cpp),
// each inside its own namespace QKF_ISA_NS::spec (nothing here is shared across the copies, so the
// one-definition rule never merges code built for different instruction sets); spectral.cpp picks
// one at run time.
//
// Vector axis. The coefficient map runs one edge per SIMD lane. The fused layer kernels run one
// sample per lane, written with GCC vector extensions whose width follows the copy
// (64 bytes with AVX-512, 32 with AVX2, 16 otherwise): they need register tiling that
// auto-vectorisation does not produce (the dot products of several outputs per basis load, to hide
// the FMA latency, and the coefficient-gradient reduction as outer-product tiles). R = 1..8 are
// compile-time constants (the dot products unroll); larger R use a runtime loop.
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
#include "cpu/spectral_coef.h"
#include "cpu/spectral_simd.h"
#include "daruan.h"

#ifndef QKF_ISA_NS
#error "define QKF_ISA_NS before including spectral_kernels.h"
#endif

#if defined(__clang__)
#define QKF_SPEC_LANES _Pragma("clang loop vectorize(enable) interleave(enable)")
#elif defined(__GNUC__)
#define QKF_SPEC_LANES _Pragma("GCC ivdep")
#else
#define QKF_SPEC_LANES
#endif

namespace qkan_fast {
namespace QKF_ISA_NS {
namespace spec {

constexpr int kChunk = 64;      // samples per forward tile
constexpr int kOutBlock = 4;    // outputs per register tile: independent FMA chains per basis load
constexpr int kSubBlock = 256;  // samples per backward pass over a buffered gradient tile (L1)
constexpr int kMaxStaticReps = 8;


// --------------------------------------------------------------------------------------------
// the basis: cos ku, sin ku (k = 1..R) of u = x, or of u = arccos(x) for px, and du/dx

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
void basis_forward(const SpectralParams& p) {
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
void basis_backward(const SpectralParams& p) {
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
Prepared<T> prepare(const SpectralParams& p, bool with_slope, bool with_deriv) {
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

// Forward: tiles (chunk of kChunk samples, block of kOutBlock outputs), chunk-major so consecutive
// tiles share the chunk's basis. Per vector of samples the kOutBlock dot products share the basis
// loads. NQ = kQ: the fast measure, vectors with a lane near a pole redone with the Bloch formula
// after the tile's pass; NQ = 1: the Born measure, phi = Z (the Born layer without its
// [2R, I, B] basis in memory, for shapes where that GEMM operand would not stay in cache).
template <class T, int RC, int NQ>
void fused_forward(const SpectralParams& p, const Prepared<T>& pr) {
  constexpr int L = lanes<T>(), NV = kChunk / L, OB = kOutBlock;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim, E = O * I, bs = pr.bs;
  const int R = RC ? RC : p.reps, NB = 2 * R, M = NB + 1;
  const T* weight = static_cast<const T*>(p.weight);
  T* y = static_cast<T*>(p.y);
  const int64_t n_ch = cdiv(B, kChunk), n_ob = cdiv(O, OB);
#pragma omp parallel for schedule(static) num_threads(p.num_threads)
  for (int64_t t = 0; t < n_ch * n_ob; ++t) {
    const int64_t b0 = (t / n_ob) * kChunk, o0 = (t % n_ob) * OB;
    const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
    const int no = static_cast<int>(std::min<int64_t>(OB, O - o0));
    Vec<T> acc[OB][NV];
    for (int oo = 0; oo < OB; ++oo)
      for (int v = 0; v < NV; ++v) acc[oo][v] = Vec<T>{};
    for (int64_t i = 0; i < I; ++i) {
      const T* c[OB];
      T w[OB];
      bool any = false;
      for (int oo = 0; oo < OB; ++oo) {
        const int64_t e = (o0 + oo) * I + i;
        c[oo] = pr.edge(pr.cf, e, oo < no, M);
        w[oo] = oo < no ? weight[e] : T(0);
        any |= w[oo] != T(0);
      }
      if (!any) continue;  // pruned edges
      const T* bk = pr.bt + i * NB * bs + b0;
      Vec<T> amax{};
      for (int v = 0; v < NV; ++v) {
        Vec<T> z[OB];
        dots<T, RC, OB>(c, bk + v * L, bs, R, z);
        if (NQ == 1) {
          for (int oo = 0; oo < OB; ++oo) acc[oo][v] += w[oo] * z[oo];
          continue;
        }
        for (int oo = 0; oo < OB; ++oo) {
          Vec<T> phi, gp;
          measure_z<T, false>(z[oo], phi, gp);
          acc[oo][v] += w[oo] * phi;
          const Vec<T> az = vabs<T>(z[oo]);
          amax = az > amax ? az : amax;
        }
      }
      if (NQ == 1 || !any_lane<T>(amax > pole_abs_z<T>())) continue;
      // vectors with a lane near a pole (rare): replace the Z formula by the Bloch formula there;
      // Z is recomputed (keeping it would need OB x NV more registers in the main loop)
      for (int oo = 0; oo < no; ++oo)
        for (int v = 0; v < NV && v * L < n; ++v) {
          Vec<T> zv;
          dots<T, RC, 1>(&c[oo], bk + v * L, bs, R, &zv);
          const auto pole = vabs<T>(zv) > pole_abs_z<T>();
          if (!any_lane<T>(pole)) continue;
          const T* cq[2] = {c[oo] + M, c[oo] + 2 * M};
          Vec<T> xy[2], phi, phiz, g0, g1, g2;
          dots<T, RC, 2>(cq, bk + v * L, bs, R, xy);
          bloch_measure<T, false>(zv, xy[0], xy[1], phi, g0, g1, g2);
          measure_z<T, false>(zv, phiz, g0);
          acc[oo][v] += w[oo] * (pole ? phi - phiz : vset<T>(0));
        }
    }
    for (int oo = 0; oo < no; ++oo)
      for (int j = 0; j < n; ++j) y[(b0 + j) * O + o0 + oo] = acc[oo][j / L][j % L];
  }
}

// Backward: work items are (i, block of samples), as in the circuit engine. An item owns
// grad_x[block, i] outright and writes its per-edge sums (3 x (2R+1) coefficients and the weight)
// to its block's float64 partial slot; blocks are added in a fixed order. No atomics,
// deterministic for any thread count. Per block of kOutBlock outputs and kSubBlock samples: pass 1
// computes dL/dZ per sample (buffered), the weight sums and dL/du; vectors near a pole are redone
// with the Bloch formula (their X and Y gradients accumulate directly); pass 2 reduces the Z
// coefficient gradients sum_b dL/dZ * basis as register tiles of kOutBlock x kKGroup vectors.
// NQ = 1 (Born): dL/dZ = weight * dL/dy, no pole pass, grad_coef [E, 1, 2R+1].
template <class T, int RC, int NQ, bool NEED_X>
void fused_backward(const SpectralParams& p, const Prepared<T>& pr) {
  constexpr int L = lanes<T>(), OB = kOutBlock, KG = kKGroup, SB = kSubBlock;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim, E = O * I, bs = pr.bs;
  const int R = RC ? RC : p.reps, NB = 2 * R, M = NB + 1;
  const T* weight = static_cast<const T*>(p.weight);
  const T* gy = static_cast<const T*>(p.grad_y);
  const bool need_c = p.grad_coef, need_w = p.grad_weight;

  std::vector<T>& gyt = scratch<T>(0, (O + 1) * bs, true);  // [O+1][bs]: zero padding and zero row O
  const int64_t n_ch = cdiv(B, kChunk);
  const int64_t n_blocks = std::max<int64_t>(1, std::min<int64_t>(n_ch, cdiv(32, I)));
  const int64_t ch_per_blk = cdiv(n_ch, n_blocks);
  const int64_t per_edge = NQ * M + 1;  // coefficient sums (Z, and X, Y for the fast measure), weight sum
  // several blocks: float64 partial sums per block, added in a fixed order after the items; one
  // block (I >= 32): each item writes its edges' sums straight to the outputs
  const bool direct = n_blocks == 1;
  std::vector<double>& partial = scratch<double>(6, direct ? 0 : n_blocks * E * per_edge, true);  // slot 6: T may be double
  std::vector<T>& dut = scratch<T>(1, NEED_X ? I * bs : 0, true);  // [I][bs] dL/du

#pragma omp parallel num_threads(p.num_threads)
  {
#pragma omp for schedule(static)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t b = 0; b < B; ++b) gyt[o * bs + b] = gy[b * O + o];

    std::vector<Vec<T>> accc(OB * kQ * M + OB);  // coefficient-gradient accumulators [OB][kQ][M], weight [OB]
    std::vector<Vec<T>> red(OB * kQ * M + OB);   // the accumulators to reduce
    std::vector<T> sums_t(OB * kQ * M + OB);
    alignas(64) T gzb[OB][SB];
#pragma omp for schedule(static)
    for (int64_t item = 0; item < I * n_blocks; ++item) {
      const int64_t i = item / n_blocks, blk = item % n_blocks;
      const int64_t s_begin = blk * ch_per_blk * kChunk;
      const int64_t s_end = std::min(B, s_begin + ch_per_blk * kChunk);
      if (s_begin >= s_end) continue;
      const T* bki = pr.bt + i * NB * bs;
      T* dui = NEED_X ? dut.data() + i * bs : nullptr;
      for (int64_t o0 = 0; o0 < O; o0 += OB) {
        const int no = static_cast<int>(std::min<int64_t>(OB, O - o0));
        const T* c[OB];
        const T* d[OB];
        const T* g[OB];
        T w[OB];
        bool live = false;
        for (int oo = 0; oo < OB; ++oo) {
          const int64_t e = (o0 + oo) * I + i;
          c[oo] = pr.edge(pr.cf, e, oo < no, M);
          d[oo] = NEED_X ? pr.edge(pr.df, e, oo < no, M) : nullptr;
          g[oo] = gyt.data() + (oo < no ? o0 + oo : O) * bs;
          w[oo] = oo < no ? weight[e] : T(0);
          live |= w[oo] != T(0);
        }
        if (!live && !need_w) {  // pruned edges: no gradient flows
          if (direct && need_c)
            for (int oo = 0; oo < no; ++oo) {
              T* gc = static_cast<T*>(p.grad_coef) + ((o0 + oo) * I + i) * NQ * M;
              std::fill(gc, gc + NQ * M, T(0));
            }
          continue;
        }
        // Z coefficient sums always; X and Y only once a pole lane occurs (they are rare)
        bool xy_live[OB] = {};
        for (int oo = 0; oo < OB; ++oo)
          for (int k = 0; k < M; ++k) accc[oo * kQ * M + k] = Vec<T>{};
        Vec<T> accw[OB];
        for (int oo = 0; oo < OB; ++oo) accw[oo] = Vec<T>{};

        for (int64_t sb0 = s_begin; sb0 < s_end; sb0 += SB) {
          const int n = static_cast<int>(std::min<int64_t>(SB, s_end - sb0));
          const int nv = static_cast<int>(cdiv(n, L));  // whole vectors: padding has dL/dy = 0
          const T* bk = bki + sb0;
          Vec<T> amax{};
          // the rows pass 2 reduces against the basis: dL/dZ (fast measure, buffered by pass 1), or
          // dL/dy itself (Born: dL/dZ = weight * dL/dy, the weight applied to the lane sums)
          const T* gzr[OB];
          for (int oo = 0; oo < OB; ++oo) gzr[oo] = NQ == 1 ? g[oo] + sb0 : gzb[oo];
          // Born pass 1: dL/du only (dL/dW = C . the pass-2 sums, after the lane reduction)
          for (int v = 0; v < (NQ == 1 && NEED_X ? nv : 0); v += 2) {
            const int j = v * L;
            Vec<T> dz[2][OB];
            if (v + 1 < nv)
              dots2<T, RC, OB>(d, bk + j, bs, R, dz[0], dz[1]);
            else
              dots<T, RC, OB>(d, bk + j, bs, R, dz[0]);
            for (int h = 0; h < (v + 1 < nv ? 2 : 1); ++h) {
              Vec<T> du{};
              for (int oo = 0; oo < OB; ++oo) du += (w[oo] * vload(g[oo] + sb0 + j + h * L)) * dz[h][oo];
              vstore(dui + sb0 + j + h * L, vload(dui + sb0 + j + h * L) + du);
            }
          }
          // pass 1: dL/dZ per sample and output, dL/du, weight sums (Z formula)
          for (int v = 0; v < (NQ == 1 ? 0 : nv); ++v) {
            const int j = v * L;
            Vec<T> z[OB], dz[OB];
            dots<T, RC, OB>(c, bk + j, bs, R, z);
            if (NEED_X) dots<T, RC, OB>(d, bk + j, bs, R, dz);
            Vec<T> du{};
            for (int oo = 0; oo < OB; ++oo) {
              const Vec<T> gyv = vload(g[oo] + sb0 + j);
              Vec<T> phi, gp;
              measure_z<T, true>(z[oo], phi, gp);
              const Vec<T> az = vabs<T>(z[oo]);
              amax = az > amax ? az : amax;
              // pole lanes: dL/dZ here is 0 (it could be huge), the Bloch pass supplies theirs
              const Vec<T> gz = az > pole_abs_z<T>() ? vset<T>(0) : (w[oo] * gyv) * gp;
              vstore(&gzb[oo][j], gz);
              accw[oo] += gyv * phi;  // pole lanes are corrected by the Bloch pass
              if (NEED_X) du += gz * dz[oo];
            }
            if (NEED_X) vstore(dui + sb0 + j, vload(dui + sb0 + j) + du);
          }
          // vectors near a pole: the Bloch formula (dL/dZ goes to the buffer, X and Y directly)
          if (NQ == kQ && any_lane<T>(amax > pole_abs_z<T>())) {
            for (int oo = 0; oo < no; ++oo)
              for (int v = 0; v < nv; ++v) {
                const int j = v * L;
                Vec<T> zv;  // recomputed: keeping Z and dZ/du costs the main loop two stores
                dots<T, RC, 1>(&c[oo], bk + j, bs, R, &zv);
                const Vec<T> pole = vabs<T>(zv) > pole_abs_z<T>() ? vset<T>(1) : vset<T>(0);
                if (!any_lane<T>(vabs<T>(zv) > pole_abs_z<T>())) continue;
                const T* cq[2] = {c[oo] + M, c[oo] + 2 * M};
                Vec<T> xy[2], phi, phiz, gpz, gq[kQ];
                dots<T, RC, 2>(cq, bk + j, bs, R, xy);
                bloch_measure<T, true>(zv, xy[0], xy[1], phi, gq[0], gq[1], gq[2]);
                measure_z<T, false>(zv, phiz, gpz);
                const Vec<T> gyv = vload(g[oo] + sb0 + j);
                const Vec<T> sc = (w[oo] * gyv) * pole;  // only the pole lanes
                for (int q = 0; q < kQ; ++q) gq[q] *= sc;
                accw[oo] += gyv * (phi - phiz) * pole;
                vstore(&gzb[oo][j], vload(&gzb[oo][j]) + gq[0]);
                if (need_c && !xy_live[oo]) {
                  xy_live[oo] = true;
                  for (int k = M; k < kQ * M; ++k) accc[oo * kQ * M + k] = Vec<T>{};
                }
                if (need_c)
                  for (int q = 1; q < kQ; ++q) {
                    Vec<T>* a = &accc[(oo * kQ + q) * M];
                    a[0] += gq[q];
                    for (int k = 0; k < NB; ++k) a[1 + k] += gq[q] * vload(bk + k * bs + j);
                  }
                if (NEED_X) {
                  const T* dq[2] = {d[oo] + M, d[oo] + 2 * M};
                  Vec<T> dv[2];
                  dots<T, RC, 2>(dq, bk + j, bs, R, dv);
                  Vec<T> dzv;
                  dots<T, RC, 1>(&d[oo], bk + j, bs, R, &dzv);
                  const Vec<T> du = gq[0] * dzv + gq[1] * dv[0] + gq[2] * dv[1];
                  vstore(dui + sb0 + j, vload(dui + sb0 + j) + du);
                }
              }
          }
          // pass 2: Z coefficient gradients, tiles of OB outputs x KG coefficients
          if (need_c || (NQ == 1 && need_w)) {
            for (int oo = 0; oo < OB; ++oo) {
              Vec<T> s{};
              for (int v = 0; v < nv; ++v) s += vload(gzr[oo] + v * L);
              accc[oo * kQ * M] += s;
            }
            for (int k0 = 0; k0 < NB; k0 += KG) {
              const int kn = std::min(KG, NB - k0);
              Vec<T> t[OB][KG];
              for (int oo = 0; oo < OB; ++oo)
                for (int kk = 0; kk < KG; ++kk) t[oo][kk] = Vec<T>{};
              if (kn == KG) {
                for (int v = 0; v < nv; ++v) {
                  Vec<T> bv[KG], gv[OB];
                  for (int kk = 0; kk < KG; ++kk) bv[kk] = vload(bk + (k0 + kk) * bs + v * L);
                  for (int oo = 0; oo < OB; ++oo) gv[oo] = vload(gzr[oo] + v * L);
                  for (int oo = 0; oo < OB; ++oo)
                    for (int kk = 0; kk < KG; ++kk) t[oo][kk] += gv[oo] * bv[kk];
                }
              } else {
                for (int v = 0; v < nv; ++v)
                  for (int kk = 0; kk < kn; ++kk) {
                    const Vec<T> bv = vload(bk + (k0 + kk) * bs + v * L);
                    for (int oo = 0; oo < OB; ++oo) t[oo][kk] += vload(gzr[oo] + v * L) * bv;
                  }
              }
              for (int oo = 0; oo < OB; ++oo)
                for (int kk = 0; kk < kn; ++kk) accc[oo * kQ * M + 1 + k0 + kk] += t[oo][kk];
            }
          }
        }
        // lane sums: the Z coefficient sums [OB][M] and weight sums [OB] always, the X and Y sums
        // [2M] only of outputs where a pole lane occurred (elsewhere they are zero)
        int nr = 0;
        for (int oo = 0; oo < OB; ++oo)
          for (int k = 0; k < M; ++k) red[nr++] = accc[oo * kQ * M + k];
        for (int oo = 0; oo < OB; ++oo) red[nr++] = accw[oo];
        for (int oo = 0; oo < OB; ++oo)
          if (xy_live[oo])
            for (int k = M; k < kQ * M; ++k) red[nr++] = accc[oo * kQ * M + k];
        reduce_lanes<T>(red.data(), nr, sums_t.data());
        int xy_at = OB * M + OB;
        for (int oo = 0; oo < no; ++oo) {
          const int64_t e = (o0 + oo) * I + i;
          const T* zs = sums_t.data() + oo * M;
          const T* xy = xy_live[oo] ? sums_t.data() + xy_at : nullptr;
          if (xy_live[oo]) xy_at += 2 * M;
          T ws = sums_t[OB * M + oo];
          if (NQ == 1) {  // Born: zs holds sum_b dL/dy basis; dL/dC = weight * that, dL/dW = C . that
            T* zw = sums_t.data() + oo * M;
            ws = T(0);
            for (int k = 0; k < M; ++k) {
              ws += c[oo][k] * zw[k];
              zw[k] *= w[oo];
            }
          }
          if (direct) {
            if (need_c) {
              T* gc = static_cast<T*>(p.grad_coef) + e * NQ * M;
              std::copy(zs, zs + M, gc);
              if (xy)
                std::copy(xy, xy + 2 * M, gc + M);
              else
                std::fill(gc + M, gc + NQ * M, T(0));
            }
            if (need_w) static_cast<T*>(p.grad_weight)[e] = ws;
          } else {
            double* dst = partial.data() + (blk * E + e) * per_edge;
            for (int k = 0; k < M; ++k) dst[k] = double(zs[k]);
            for (int k = M; k < NQ * M; ++k) dst[k] = xy ? double(xy[k - M]) : 0.0;
            dst[NQ * M] = double(ws);
          }
        }
      }
    }

    // fixed-order sum over blocks, then scatter to the output layouts
    std::vector<double> sums(per_edge);
#pragma omp for schedule(static)
    for (int64_t e = 0; e < (direct ? 0 : E); ++e) {
      std::fill(sums.begin(), sums.end(), 0.0);
      for (int64_t blk = 0; blk < n_blocks; ++blk) {
        const double* src = partial.data() + (blk * E + e) * per_edge;
        for (int64_t k = 0; k < per_edge; ++k) sums[k] += src[k];
      }
      if (need_c)
        for (int k = 0; k < NQ * M; ++k) static_cast<T*>(p.grad_coef)[e * NQ * M + k] = static_cast<T>(sums[k]);
      if (need_w) static_cast<T*>(p.grad_weight)[e] = static_cast<T>(sums[NQ * M]);
    }
    if (NEED_X) {
      T* gx = static_cast<T*>(p.grad_x);
#pragma omp for schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < I; ++i)
          gx[b * I + i] = dut[i * bs + b] * (p.px ? pr.slope[i * bs + b] : T(1));
    }
  }
}

// --------------------------------------------------------------------------------------------
// entry: dtype, ansatz and R become compile-time constants here

enum class Mode { kCoef, kCoefBackward, kBasis, kBasisBackward, kForward, kBackward, kBornCoef, kBornCoefBackward };

template <class F>
void dispatch_reps(int R, F&& f) {
  static_assert(kMaxStaticReps == 8, "dispatch_reps lists 1..kMaxStaticReps");
  switch (R) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    default: f(std::integral_constant<int, 0>{}); break;
  }
}

template <class T>
void run_typed(const SpectralParams& p, Mode mode) {
  switch (mode) {
    case Mode::kCoef:
      dispatch_ansatz(p.ansatz, [&](auto tag) {
        dispatch_reps(p.reps, [&](auto rc) {
          constexpr int A = decltype(tag)::value, RC = decltype(rc)::value;
          if (std::is_same<T, float>::value && p.exact)
            coef_forward<float, double, A, RC>(p);  // float64 arithmetic, rounded once
          else
            coef_forward<T, T, A, RC>(p);
        });
      });
      return;
    case Mode::kCoefBackward:
      dispatch_ansatz(p.ansatz, [&](auto tag) {
        dispatch_reps(p.reps, [&](auto rc) { coef_backward<T, decltype(tag)::value, decltype(rc)::value>(p); });
      });
      return;
    case Mode::kBornCoef:
      dispatch_ansatz(p.ansatz, [&](auto tag) {
        dispatch_reps(p.reps, [&](auto rc) { born_coef_forward<T, decltype(tag)::value, decltype(rc)::value>(p); });
      });
      return;
    case Mode::kBornCoefBackward:
      dispatch_ansatz(p.ansatz, [&](auto tag) {
        dispatch_reps(p.reps, [&](auto rc) { born_coef_backward<T, decltype(tag)::value, decltype(rc)::value>(p); });
      });
      return;
    case Mode::kBasis: basis_forward<T>(p); return;
    case Mode::kBasisBackward: basis_backward<T>(p); return;
    case Mode::kForward: {
      const Prepared<T> pr = prepare<T>(p, false, false);
      dispatch_reps(p.reps, [&](auto rc) {
        constexpr int RC = decltype(rc)::value;
        if (p.nq == 1)
          fused_forward<T, RC, 1>(p, pr);
        else
          fused_forward<T, RC, kQ>(p, pr);
      });
      return;
    }
    case Mode::kBackward: {
      const bool need_x = p.grad_x;
      if (!need_x && !p.grad_coef && !p.grad_weight) return;
      const Prepared<T> pr = prepare<T>(p, need_x && p.px, need_x);
      dispatch_reps(p.reps, [&](auto rc) {
        constexpr int RC = decltype(rc)::value;
        if (p.nq == 1) {
          if (need_x)
            fused_backward<T, RC, 1, true>(p, pr);
          else
            fused_backward<T, RC, 1, false>(p, pr);
        } else if (need_x) {
          fused_backward<T, RC, kQ, true>(p, pr);
        } else {
          fused_backward<T, RC, kQ, false>(p, pr);
        }
      });
      return;
    }
  }
}

inline void run(const SpectralParams& p, Mode mode) {
  if (p.dtype == kFloat64)
    run_typed<double>(p, mode);
  else
    run_typed<float>(p, mode);
}

}  // namespace spec
}  // namespace QKF_ISA_NS
}  // namespace qkan_fast
