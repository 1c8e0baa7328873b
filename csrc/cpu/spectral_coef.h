// The spectral engine's coefficient map on the CPU: theta (and the rpz biases) -> the Fourier
// coefficients of every edge's Bloch components in the data angle u, and its adjoint.
//
// Every ansatz is, up to a global phase (which no Bloch component sees), the product
//   psi(u) = W_R P(u) W_{R-1} P(u) ... W_1 P(u) v_0,   P(u) = diag(1, e^{iu}),
// with u-independent 2x2 matrices W_l and vector v_0 made from the edge's fixed gates F_l (the
// gates of repetition l other than the data gate, built by daruan.h's apply_rep with the data gate
// at u = 0; for rpz that is the phase of the bias b_l, since P(u + b) = P(u) P(b)):
//   - data gate RZ (pz, rpz): v_0 = F_0|+>, W_l = F_l;
//   - data gate RY (real, mix, and px in its mix form): RY(u) = e^{-iu/2} V P(u) V^dag with
//     V = [[1, 1], [i, -i]] / sqrt 2, so v_0 = V^dag F_0|+>, W_l = V^dag F_l V (0 < l < R),
//     W_R = F_R V (F_R the closing gates; the identity for real).
// So alpha and beta are polynomials in e^{iu} of degree R, obtained by propagating their
// coefficient vectors (P(u) shifts beta's coefficients up by one power): O(R^2) per edge, exact
// up to rounding (no sampling, no DFT). The Bloch components follow by correlations:
//   Z(u) = |alpha|^2 - |beta|^2 = sum_k z_k e^{iku},  z_k = sum_j a_{j+k} conj(a_j) - b_{j+k} conj(b_j)
//   X(u) + iY(u) = 2 conj(alpha) beta = sum_k w_k e^{iku},  w_k = 2 sum_j conj(a_j) b_{j+k}
// and are written as real rows [1, cos ku (k = 1..R), sin ku (k = 1..R)].
//
// The adjoint runs the same steps backwards (complex cotangents g = dL/dRe + i dL/dIm, so that
// dL = Re(conj(g) dz)): correlations -> polynomial coefficients -> W_l (and v_0) -> F_l, and the
// F_l cotangents go to theta (and the rpz biases) through daruan.h's adjoint_rep / adjoint_final
// applied to the columns of F_l, the same gradient code the circuit engine runs.
//
// Layout: one edge per SIMD lane. The steps take R at run time; the kernels that run them
// (spectral_coef_kernels.h) pass it as a constant where that was measured to pay.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu/spectral.h"
#include "cpu/spectral_simd.h"
#include "daruan.h"

QKF_SPECTRAL_BEGIN

// One SIMD vector of edges as a number type for daruan.h's gate templates (which need T(scalar),
// +, - and *).
template <class T> struct Lane {
  Vec<T> v;
  Lane() = default;
  Lane(T s) : v(vset<T>(s)) {}  // NOLINT: T(0.5) inside daruan.h
  Lane(Vec<T> x) : v(x) {}      // NOLINT
};
template <class T> inline Lane<T> operator+(Lane<T> a, Lane<T> b) { return Lane<T>(a.v + b.v); }
template <class T> inline Lane<T> operator-(Lane<T> a, Lane<T> b) { return Lane<T>(a.v - b.v); }
template <class T> inline Lane<T> operator*(Lane<T> a, Lane<T> b) { return Lane<T>(a.v * b.v); }
template <class T> inline Lane<T> operator-(Lane<T> a) { return Lane<T>(-a.v); }
template <class T> inline Lane<T>& operator+=(Lane<T>& a, Lane<T> b) { a.v += b.v; return a; }

// complex numbers of one vector of edges
template <class T> struct Cx {
  Vec<T> re, im;
};
template <class T> inline Cx<T> operator+(Cx<T> a, Cx<T> b) { return {a.re + b.re, a.im + b.im}; }
template <class T> inline Cx<T> operator-(Cx<T> a, Cx<T> b) { return {a.re - b.re, a.im - b.im}; }
template <class T> inline Cx<T> operator*(Cx<T> a, Cx<T> b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }
template <class T> inline Cx<T> scale(Cx<T> a, Vec<T> s) { return {a.re * s, a.im * s}; }
template <class T> inline Cx<T> conj(Cx<T> a) { return {a.re, -a.im}; }
template <class T> inline Cx<T> mul_conj(Cx<T> a, Cx<T> b) {  // a * conj(b)
  return {a.re * b.re + a.im * b.im, a.im * b.re - a.re * b.im};
}
template <class T> inline Cx<T> conj_mul(Cx<T> a, Cx<T> b) {  // conj(a) * b
  return {a.re * b.re + a.im * b.im, a.re * b.im - a.im * b.re};
}
template <class T> inline Cx<T> times_i(Cx<T> a) { return {-a.im, a.re}; }

// A 2-vector of one vector of edges (a matrix is two of them, its columns), in daruan.h's type.
template <class T> using Col = Qubit<Lane<T>>;
template <class T> inline Cx<T> top(const Col<T>& c) { return {c.ar.v, c.ai.v}; }
template <class T> inline Cx<T> bottom(const Col<T>& c) { return {c.br.v, c.bi.v}; }
template <class T> inline Col<T> make_col(Cx<T> a, Cx<T> b) { return {Lane<T>(a.re), Lane<T>(a.im), Lane<T>(b.re), Lane<T>(b.im)}; }
template <class T> inline Col<T> col_axpy(Col<T> x, Col<T> y, Cx<T> s, T r) {  // r (x + s y)
  const Vec<T> rv = vset<T>(r);
  return make_col<T>(scale<T>(top(x) + s * top(y), rv), scale<T>(bottom(x) + s * bottom(y), rv));
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
// V = [[1, 1], [i, -i]] / sqrt 2: V x = (xa + xb, i (xa - xb)) / sqrt 2, V^dag x = (xa - i xb, xa + i xb) / sqrt 2
template <class T> inline Col<T> apply_v(const Col<T>& x) {
  const Vec<T> r = vset<T>(T(kInvSqrt2));
  return make_col<T>(scale<T>(top(x) + bottom(x), r), scale<T>(times_i<T>(top(x) - bottom(x)), r));
}
template <class T> inline Col<T> apply_vdag(const Col<T>& x) {
  const Vec<T> r = vset<T>(T(kInvSqrt2));
  const Cx<T> ib = times_i<T>(bottom(x));
  return make_col<T>(scale<T>(top(x) - ib, r), scale<T>(top(x) + ib, r));
}
// columns of M V and of M V^dag, from the columns (c0, c1) of M
template <class T> inline void right_v(Col<T>& c0, Col<T>& c1) {
  const Cx<T> i{vset<T>(0), vset<T>(1)};
  const Col<T> n0 = col_axpy<T>(c0, c1, i, T(kInvSqrt2)), n1 = col_axpy<T>(c0, c1, conj<T>(i), T(kInvSqrt2));
  c0 = n0;
  c1 = n1;
}
template <class T> inline void right_vdag(Col<T>& c0, Col<T>& c1) {
  const Cx<T> one{vset<T>(1), vset<T>(0)}, minus_one{vset<T>(-1), vset<T>(0)}, i{vset<T>(0), vset<T>(1)};
  const Col<T> n0 = col_axpy<T>(c0, c1, one, T(kInvSqrt2));
  const Col<T> d = col_axpy<T>(c1, c0, minus_one, T(kInvSqrt2));  // (c1 - c0) / sqrt 2
  c0 = n0;
  c1 = make_col<T>(i * top(d), i * bottom(d));
}

// Per-thread work space of the coefficient map for one vector of edges (runtime R; with R a
// compile-time constant the loops over it unroll).
template <class T> struct CoefWork {
  std::vector<Rot<Lane<T>>> rot;  // [K] theta as daruan.h pairs
  std::vector<Rot<Lane<T>>> dg;   // [R] data gate at u = 0: identity, or the rpz bias phase
  std::vector<Col<T>> F, W;       // [2(R+1)]: columns of F_l and W_l (l = 0: F_0|+> and v_0 in column 0)
  std::vector<Cx<T>> a, b;        // [(R+1)(R+2)/2] coefficients of alpha, beta after each level
  std::vector<Cx<T>> ga, gb;      // [R+1] cotangents of one level's coefficients
  std::vector<T> rows;            // [max(K, 3(2R+1))][L] transposed loads and stores
  std::vector<Col<T>> gW;         // [2(R+1)] cotangents of W_l (and v_0), backward only
  std::vector<Vec<T>> gth, gbias; // [K], [R] theta and rpz bias gradients, backward only
  CoefWork(int R, int K)
      : rot(K), dg(R), F(2 * (R + 1)), W(2 * (R + 1)), a(level(R + 1)), b(level(R + 1)), ga(R + 1), gb(R + 1),
        rows(std::max(K, 3 * (2 * R + 1)) * lanes<T>()), gW(2 * (R + 1)), gth(K), gbias(R) {}
  static int level(int l) { return l * (l + 1) / 2; }  // offset of level l in a, b
};

// the per-vector steps inline into the R-specialised kernels (R becomes a constant in them)
#define QKF_COEF_STEP inline __attribute__((always_inline))

template <int A> constexpr bool data_is_ry() { return A == kREAL || A == kMIX || A == kPX; }

// A vector of edges: lane j is the edge with flat index e0 + j * step of the [O, I] grid, j < n (the
// padding lanes beyond n compute with zero angles and are never stored).
struct EdgeLanes {
  int64_t e0, step;
  int n;
};

// rows[t * L + j] = T(src[edge_j * nt + t]): the transpose of nt values per edge. Written in full
// before any row is loaded as a vector (a vector load right after the scalar stores that fill it
// would stall on store forwarding).
template <class S, class T>
QKF_COEF_STEP void gather_rows(const S* src, int nt, EdgeLanes el, T* rows) {
  constexpr int L = lanes<T>();
  for (int j = 0; j < L; ++j)
    for (int t = 0; t < nt; ++t) rows[t * L + j] = j < el.n ? T(src[(el.e0 + j * el.step) * nt + t]) : T(0);
}
// the inverse: dst[edge_j * nt + t] = S(rows[t * L + j]) for j < n
template <class S, class T>
QKF_COEF_STEP void scatter_rows(const T* rows, int nt, EdgeLanes el, S* dst) {
  constexpr int L = lanes<T>();
  for (int j = 0; j < el.n; ++j)
    for (int t = 0; t < nt; ++t) dst[(el.e0 + j * el.step) * nt + t] = static_cast<S>(rows[t * L + j]);
}

// Fill w.rot and w.dg for a vector of edges (padding lanes: angle 0). S is the storage type.
template <class S, class T, int A>
QKF_COEF_STEP void load_edge_gates(const SpectralCoefParams& p, int R, int K, EdgeLanes el, CoefWork<T>& w) {
  constexpr int L = lanes<T>(), P = theta_cols_of<A>();
  T* rows = w.rows.data();
  gather_rows<S, T>(static_cast<const S*>(p.theta), K, el, rows);
  for (int k = 0; k < K; ++k) {
    const T half = theta_col_is_rz<A>(k % P) ? T(1) : T(0.5);
    Vec<T> s, c;
    vsincos<T>(half * vload(rows + k * L), s, c);
    w.rot[k] = {Lane<T>(c), Lane<T>(s)};
  }
  if (A != kRPZ) {
    for (int l = 0; l < R; ++l) w.dg[l] = {Lane<T>(T(1)), Lane<T>(T(0))};
    return;
  }
  gather_rows<S, T>(static_cast<const S*>(p.pre_b), R, el, rows);
  for (int l = 0; l < R; ++l) {
    Vec<T> s, c;
    vsincos<T>(vload(rows + l * L), s, c);
    w.dg[l] = {Lane<T>(c), Lane<T>(s)};
  }
}

// F_l, W_l and v_0 from the loaded gates (header comment).
template <class T, int A>
QKF_COEF_STEP void build_transfer(int R, CoefWork<T>& w) {
  constexpr int P = theta_cols_of<A>();
  const Col<T> e0 = {Lane<T>(T(1)), Lane<T>(T(0)), Lane<T>(T(0)), Lane<T>(T(0))};
  const Col<T> e1 = {Lane<T>(T(0)), Lane<T>(T(0)), Lane<T>(T(1)), Lane<T>(T(0))};
  Col<T> f0 = plus_state<Lane<T>>();
  apply_rep<Lane<T>, A>(f0, w.rot.data(), w.dg[0]);
  w.F[0] = f0;
  w.W[0] = data_is_ry<A>() ? apply_vdag<T>(f0) : f0;
  for (int l = 1; l <= R; ++l) {
    Col<T> c0 = e0, c1 = e1;
    if (l < R) {
      apply_rep<Lane<T>, A>(c0, w.rot.data() + l * P, w.dg[l]);
      apply_rep<Lane<T>, A>(c1, w.rot.data() + l * P, w.dg[l]);
    } else if (A != kREAL) {
      apply_final<Lane<T>, A>(c0, w.rot.data() + R * P);
      apply_final<Lane<T>, A>(c1, w.rot.data() + R * P);
    }
    w.F[2 * l] = c0;
    w.F[2 * l + 1] = c1;
    if (data_is_ry<A>()) {
      right_v<T>(c0, c1);
      if (l < R) {
        c0 = apply_vdag<T>(c0);
        c1 = apply_vdag<T>(c1);
      }
    }
    w.W[2 * l] = c0;
    w.W[2 * l + 1] = c1;
  }
}

// alpha, beta coefficients of every level: level l = W_l P(u) (level l-1).
template <class T>
QKF_COEF_STEP void propagate(int R, CoefWork<T>& w) {
  w.a[0] = top(w.W[0]);
  w.b[0] = bottom(w.W[0]);
  for (int l = 1; l <= R; ++l) {
    const Cx<T>*pa = &w.a[CoefWork<T>::level(l - 1)], *pb = &w.b[CoefWork<T>::level(l - 1)];
    Cx<T>*na = &w.a[CoefWork<T>::level(l)], *nb = &w.b[CoefWork<T>::level(l)];
    const Cx<T> w00 = top(w.W[2 * l]), w10 = bottom(w.W[2 * l]), w01 = top(w.W[2 * l + 1]), w11 = bottom(w.W[2 * l + 1]);
    // alpha' = alpha (powers 0..l-1), beta' = e^{iu} beta (powers 1..l)
    na[0] = w00 * pa[0];
    nb[0] = w10 * pa[0];
    for (int j = 1; j < l; ++j) {
      na[j] = w00 * pa[j] + w01 * pb[j - 1];
      nb[j] = w10 * pa[j] + w11 * pb[j - 1];
    }
    na[l] = w01 * pb[l - 1];
    nb[l] = w11 * pb[l - 1];
  }
}

// acc[q * M + t] (q = Z, X, Y; t = 1, cos ku, sin ku) from the final coefficients a, b.
template <class T>
QKF_COEF_STEP void correlate(int R, int NQ, const CoefWork<T>& w, Vec<T>* acc) {
  const int M = 2 * R + 1;
  const Cx<T>*a = &w.a[CoefWork<T>::level(R)], *b = &w.b[CoefWork<T>::level(R)];
  for (int k = 0; k <= R; ++k) {
    Cx<T> z{Vec<T>{}, Vec<T>{}};
    for (int j = 0; j + k <= R; ++j) z = z + mul_conj<T>(a[j + k], a[j]) - mul_conj<T>(b[j + k], b[j]);
    if (k == 0) {
      acc[0] = z.re;
    } else {
      acc[k] = T(2) * z.re;
      acc[R + k] = T(-2) * z.im;
    }
  }
  if (NQ == 1) return;
  for (int k = 0; k <= R; ++k) {
    Cx<T> wp{Vec<T>{}, Vec<T>{}}, wm{Vec<T>{}, Vec<T>{}};  // w_k / 2 and w_{-k} / 2
    for (int j = 0; j + k <= R; ++j) {
      wp = wp + conj_mul<T>(a[j], b[j + k]);
      if (k > 0) wm = wm + conj_mul<T>(a[j + k], b[j]);
    }
    if (k == 0) {
      acc[M] = T(2) * wp.re;
      acc[2 * M] = T(2) * wp.im;
    } else {
      acc[M + k] = T(2) * (wp.re + wm.re);
      acc[M + R + k] = T(2) * (wm.im - wp.im);
      acc[2 * M + k] = T(2) * (wp.im + wm.im);
      acc[2 * M + R + k] = T(2) * (wp.re - wm.re);
    }
  }
}

// The adjoint of correlate: w.ga, w.gb (final level) from g[q * M + t] = dL/dC.
template <class T>
QKF_COEF_STEP void correlate_adjoint(int R, int NQ, CoefWork<T>& w, const Vec<T>* g) {
  const int M = 2 * R + 1;
  const Cx<T>*a = &w.a[CoefWork<T>::level(R)], *b = &w.b[CoefWork<T>::level(R)];
  Cx<T>*ga = w.ga.data(), *gb = w.gb.data();
  for (int j = 0; j <= R; ++j) {  // k = 0: d|a_j|^2 = 2 a_j
    const Vec<T> g2 = T(2) * g[0];
    ga[j] = scale<T>(a[j], g2);
    gb[j] = scale<T>(b[j], -g2);
  }
  for (int k = 1; k <= R; ++k) {  // C_cos = 2 Re z_k, C_sin = -2 Im z_k: L = 2 Re(z_k h), h = Gc + i Gs
    const Cx<T> h2{T(2) * g[k], T(2) * g[R + k]};
    for (int j = 0; j + k <= R; ++j) {
      ga[j + k] = ga[j + k] + conj<T>(h2) * a[j];
      ga[j] = ga[j] + h2 * a[j + k];
      gb[j + k] = gb[j + k] - conj<T>(h2) * b[j];
      gb[j] = gb[j] - h2 * b[j + k];
    }
  }
  if (NQ == 1) return;
  // the fast measure's X and Y gradients are zero but where a sample came near a pole: skip them
  IVec<T> live{};
  for (int t = M; t < 3 * M; ++t) live |= g[t] != T(0);
  if (!any_lane<T>(live)) return;
  // L = sum_k Re(w_k conj(c_k)) with c_0 = GX0 + i GY0 and, for k > 0,
  // c_k = (GXc + GYs) + i (GYc - GXs), c_{-k} = (GXc - GYs) + i (GXs + GYc)
  const Vec<T>*gx = g + M, *gy = g + 2 * M;
  for (int k = 0; k <= R; ++k) {
    const Cx<T> cp = k == 0 ? Cx<T>{T(2) * gx[0], T(2) * gy[0]}
                            : Cx<T>{T(2) * (gx[k] + gy[R + k]), T(2) * (gy[k] - gx[R + k])};
    const Cx<T> cm = k == 0 ? Cx<T>{} : Cx<T>{T(2) * (gx[k] - gy[R + k]), T(2) * (gx[R + k] + gy[k])};
    for (int j = 0; j + k <= R; ++j) {
      // w_k: conj(a_j) b_{j+k}
      gb[j + k] = gb[j + k] + cp * a[j];
      ga[j] = ga[j] + conj<T>(cp) * b[j + k];
      if (k > 0) {  // w_{-k}: conj(a_{j+k}) b_j
        gb[j] = gb[j] + cm * a[j + k];
        ga[j + k] = ga[j + k] + conj<T>(cm) * b[j];
      }
    }
  }
}

// The adjoint of propagate: cotangents of W_l (into gW, columns) and of v_0 (gW[0]), from the final
// level's cotangents in w.ga, w.gb (overwritten level by level).
template <class T>
QKF_COEF_STEP void propagate_adjoint(int R, CoefWork<T>& w, Col<T>* gW) {
  Cx<T>*ga = w.ga.data(), *gb = w.gb.data();
  for (int l = R; l >= 1; --l) {
    const Cx<T>*pa = &w.a[CoefWork<T>::level(l - 1)], *pb = &w.b[CoefWork<T>::level(l - 1)];
    const Cx<T> w00 = top(w.W[2 * l]), w10 = bottom(w.W[2 * l]), w01 = top(w.W[2 * l + 1]), w11 = bottom(w.W[2 * l + 1]);
    // inputs of level l: A'_j = pa[j] (j < l), B'_j = pb[j-1] (j >= 1); dW_mn = sum_j g_m conj(in_n)
    Cx<T> g00{}, g01{}, g10{}, g11{};
    for (int j = 0; j < l; ++j) {
      g00 = g00 + mul_conj<T>(ga[j], pa[j]);
      g10 = g10 + mul_conj<T>(gb[j], pa[j]);
    }
    for (int j = 1; j <= l; ++j) {
      g01 = g01 + mul_conj<T>(ga[j], pb[j - 1]);
      g11 = g11 + mul_conj<T>(gb[j], pb[j - 1]);
    }
    gW[2 * l] = make_col<T>(g00, g10);
    gW[2 * l + 1] = make_col<T>(g01, g11);
    // inputs' cotangents W^dag g, shifted back to level l-1's powers
    for (int j = 0; j < l; ++j) {
      const Cx<T> na = conj_mul<T>(w00, ga[j]) + conj_mul<T>(w10, gb[j]);
      const Cx<T> nb = conj_mul<T>(w01, ga[j + 1]) + conj_mul<T>(w11, gb[j + 1]);
      ga[j] = na;
      gb[j] = nb;
    }
  }
  gW[0] = make_col<T>(ga[0], gb[0]);
  gW[1] = gW[0];  // unused
}

// The adjoint of build_transfer: from the cotangents gW of W_l and v_0, theta gradients into gth
// [K] and (rpz) bias gradients into gbias [R], through daruan.h's adjoint on the columns of F_l.
template <class T, int A>
QKF_COEF_STEP void build_transfer_adjoint(int R, const CoefWork<T>& w, Col<T>* gW, Vec<T>* gth, Vec<T>* gbias) {
  constexpr int P = theta_cols_of<A>();
  Lane<T> g[2] = {Lane<T>(T(0)), Lane<T>(T(0))};
  // v_0 = (V^dag) F_0|+>
  {
    Col<T> q = w.F[0], lam = data_is_ry<A>() ? apply_v<T>(gW[0]) : gW[0];
    const Lane<T> gd = adjoint_rep<Lane<T>, A>(q, lam, w.rot.data(), w.dg[0], g);
    for (int c = 0; c < P; ++c) gth[c] += g[c].v;
    if (A == kRPZ) gbias[0] += gd.v;
  }
  for (int l = 1; l <= R; ++l) {
    if (l == R && A == kREAL) break;  // W_R = V: nothing to train
    Col<T> g0 = gW[2 * l], g1 = gW[2 * l + 1];
    if (data_is_ry<A>()) {  // W = V^dag F V (l < R), W_R = F_R V: dF = V dW V^dag, dF_R = dW_R V^dag
      right_vdag<T>(g0, g1);
      if (l < R) {
        g0 = apply_v<T>(g0);
        g1 = apply_v<T>(g1);
      }
    }
    const Col<T> lam[2] = {g0, g1};
    for (int c = 0; c < 2; ++c) {
      Col<T> q = w.F[2 * l + c], lc = lam[c];
      if (l < R) {
        const Lane<T> gd = adjoint_rep<Lane<T>, A>(q, lc, w.rot.data() + l * P, w.dg[l], g);
        for (int t = 0; t < P; ++t) gth[l * P + t] += g[t].v;
        if (A == kRPZ) gbias[l] += gd.v;
      } else {
        adjoint_final<Lane<T>, A>(q, lc, w.rot.data() + R * P, g);
        for (int t = 0; t < P; ++t) gth[R * P + t] += g[t].v;
      }
    }
  }
}

// A vector of edges through the forward steps: its gates, W_l and the polynomial levels in w.
template <class S, class T, int A>
QKF_COEF_STEP void edge_polynomials(const SpectralCoefParams& p, int R, int K, EdgeLanes el, CoefWork<T>& w) {
  load_edge_gates<S, T, A>(p, R, K, el, w);
  build_transfer<T, A>(R, w);
  propagate<T>(R, w);
}

// The adjoint of those steps (after edge_polynomials) from g[q * M + t] = dL/dC: the theta
// gradients into p.grad_theta [E, K] and, for rpz when asked, the bias ones into p.grad_pre_b [E, R].
template <class T, int A>
QKF_COEF_STEP void store_edge_gradients(const SpectralCoefParams& p, int R, int K, int NQ, EdgeLanes el, CoefWork<T>& w,
                                        const Vec<T>* g) {
  constexpr int L = lanes<T>();
  correlate_adjoint<T>(R, NQ, w, g);
  propagate_adjoint<T>(R, w, w.gW.data());
  for (auto& v : w.gth) v = Vec<T>{};
  for (auto& v : w.gbias) v = Vec<T>{};
  build_transfer_adjoint<T, A>(R, w, w.gW.data(), w.gth.data(), w.gbias.data());
  for (int k = 0; k < K; ++k) vstore(w.rows.data() + k * L, w.gth[k]);
  scatter_rows<T, T>(w.rows.data(), K, el, static_cast<T*>(p.grad_theta));
  if (A == kRPZ && p.grad_pre_b) {
    for (int r = 0; r < R; ++r) vstore(w.rows.data() + r * L, w.gbias[r]);
    scatter_rows<T, T>(w.rows.data(), R, el, static_cast<T*>(p.grad_pre_b));
  }
}

QKF_SPECTRAL_END  // qkan_fast::QKF_ISA_NS::spec
