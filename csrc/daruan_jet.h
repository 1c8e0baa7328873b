// Taylor mode in x of one edge's DARUAN (docs/math.md, "Higher derivatives"): the maths of the jet
// kernels, phi^(n)(x) for n <= kMaxJetOrder and the parameter gradient of one of them, for every
// ansatz, both measures and trainable encodings. Schedules live elsewhere (csrc/cpu/jet.cpp runs
// 64 samples as the lanes of these functions; a GPU thread would run one lane).
//
// The circuit is taken as rotations of the Bloch vector r = (X, Y, Z) of the state: the gate
// exp(-i a P / 2) turns r by the angle a about the axis P, H|0> is r = (1, 0, 0), and the Born
// value |alpha|^2 - |beta|^2 is Z. Real 3x3 rotations instead of complex 2x2 matrices: a Taylor
// coefficient of r is a plain vector, a data gate's coefficients are two scalars per order.
#pragma once

#include "daruan.h"

// The lane loops below are independent across lanes (QKF_LANES) or sums over them (QKF_LANE_SUM):
// GCC vectorises the first with ivdep and the second with `omp simd reduction` (-fopenmp-simd);
// a GPU thread runs one lane and needs neither.
#define QKF_PRAGMA(x) _Pragma(#x)
#if defined(__CUDACC__) || !defined(__GNUC__)
#define QKF_LANES
#define QKF_LANE_SUM(...)
#elif defined(__clang__)
#define QKF_LANES QKF_PRAGMA(clang loop vectorize(enable))
#define QKF_LANE_SUM(...) QKF_PRAGMA(omp simd reduction(+ : __VA_ARGS__))
#else
#define QKF_LANES QKF_PRAGMA(GCC ivdep)
#define QKF_LANE_SUM(...) QKF_PRAGMA(omp simd reduction(+ : __VA_ARGS__))
#endif

// The lane functions are large: the compiler decides what to inline (daruan.h's QKF_HD forces it,
// which measured about 15% slower here).
#if defined(__CUDACC__)
#define QKF_JET_HD __host__ __device__ inline
#else
#define QKF_JET_HD static inline
#endif

namespace qkan_fast {

// Highest x-derivative a jet kernel computes. The forward of order n needs Taylor coefficients
// 0..n, the backward of order n coefficients 0..n+1 (its x-gradient is phi^(n+1)).
constexpr int kMaxJetOrder = 4;
constexpr int kJetLen = kMaxJetOrder + 1;  // Taylor coefficients held per quantity

// A rotation about axis ax (0 = x, 1 = y, 2 = z) acts in the plane (p, q) = (ax + 1, ax + 2) mod 3:
// r_p' = c r_p - s r_q, r_q' = s r_p + c r_q (the right-hand rule: about z, X turns into Y).
QKF_HD int plane_p(int ax) { return (ax + 1) % 3; }
QKF_HD int plane_q(int ax) { return (ax + 2) % 3; }

// One gate of the circuit: a theta angle (column col of the repetition's theta row), the data
// angle, or a fixed half turn (the X and Z gates of `real`: a rotation by pi about their axis).
enum JetGateKind : int { kGateTheta = 0, kGateData = 1, kGateFlip = 2 };
struct JetGate {
  int kind, axis, col;
};

// The gates of one repetition of the ansatz (SPEC.md section 1), in order of application, and, with
// `final`, the closing gates after the last repetition (theta row R; `real` has none). Returns how
// many (at most 4).
QKF_HD int jet_gates(int ansatz, bool final, JetGate* g) {
  int n = 0;
  switch (ansatz) {
    case kPZ:
      g[n++] = {kGateTheta, 2, 0}; g[n++] = {kGateTheta, 1, 1};
      if (!final) g[n++] = {kGateData, 2, 0};
      break;
    case kRPZ:
      g[n++] = {kGateTheta, 1, 0};
      if (!final) g[n++] = {kGateData, 2, 0};
      break;
    case kPX:
      g[n++] = {kGateTheta, 2, 0};
      if (!final) g[n++] = {kGateData, 0, 0};
      break;
    case kREAL:
      if (!final) {
        g[n++] = {kGateFlip, 0, 0}; g[n++] = {kGateTheta, 1, 0}; g[n++] = {kGateFlip, 2, 0};
        g[n++] = {kGateData, 1, 0};
      }
      break;
    default:  // kMIX
      g[n++] = {kGateTheta, 2, 0}; g[n++] = {kGateTheta, 0, 1};
      if (!final) g[n++] = {kGateData, 1, 0};
      break;
  }
  return n;
}

// d[k] = a^(k)(e) for k = 0..count-1 (count <= 6) of px's data angle a(e) = arccos(e):
// a^(k) = -P_k(e) (1 - e^2)^(1/2 - k) with P_1 = 1, P_{k+1} = P_k' (1 - e^2) + (2k - 1) e P_k.
// sqrt(1 - e^2) is floored as daruan.h's data_angle_slope floors it, so e = +-1 stays finite.
template <class T> QKF_HD void arccos_derivatives(T e, int count, T* d) {
  const T ec = e > T(1) ? T(1) : (e < T(-1) ? T(-1) : e);
  const T root_floor = sizeof(T) == 4 ? T(1e-6) : T(1e-12);
  T root = qkf_sqrt(T(1) - ec * ec);
  root = root > root_floor ? root : root_floor;
  const T inv = T(1) / root, inv2 = inv * inv, e2 = ec * ec;
  d[0] = std::acos(ec);
  T pw = inv;  // (1 - e^2)^(1/2 - k)
  const T poly[5] = {T(1), ec, T(1) + T(2) * e2, ec * (T(9) + T(6) * e2), T(9) + e2 * (T(72) + T(24) * e2)};
  for (int k = 1; k < count; ++k) {
    d[k] = -poly[k - 1] * pw;
    pw *= inv2;
  }
}

// The measured value's Taylor coefficients phi[k][j], k < len, from those of the Bloch vector
// r[c][k][j] (same len; the Born value is z = r[2]), for lanes j < n (L lanes: samples side by side, so that every loop below
// over them vectorises; a GPU thread would take L = 1). With dphi set, also the seed of the
// adjoint sweep: dphi[m][j] = d phi[order][j] / d z[m][j], m <= order (order < kJetLen).
//
// Fast measure f(z) = sqrt(u) - sqrt(v), u = (1 + z) / 2 = |alpha|^2, v = (1 - z) / 2 = |beta|^2,
// by Faa di Bruno: phi = sum_i f_i (z - z[0])^i with f_i = f^(i)(z[0]) / i! =
// C(1/2, i) (sqrt(u) (1/(2u))^i - sqrt(v) (-1/(2v))^i). As in daruan.h's measure, z[0] is clamped
// to [-1, 1] (its derivatives pass straight through), and a vanished amplitude (u or v under the
// floor) contributes sqrt(floor) to the value and nothing to any derivative.
template <class T, int L>
QKF_HD void measure_jet(const T (*r)[kJetLen][L], int n, int len, bool fast, int order, T (*phi)[L], T (*dphi)[L]) {
  const T(*z)[L] = r[2];
  if (!fast) {
    for (int k = 0; k < len; ++k)
      for (int j = 0; j < n; ++j) phi[k][j] = z[k][j];
    if (dphi)
      for (int m = 0; m <= order; ++m)
        for (int j = 0; j < n; ++j) dphi[m][j] = m == order ? T(1) : T(0);
    return;
  }
  const int span = len > order + 1 ? len : order + 1;  // coefficients in play
  const T fl = measure_floor<T>();
  T f[kJetLen + 1][L], tu[L], tv[L], step_u[L], step_v[L];
  for (int j = 0; j < n; ++j) {
    const T z0 = z[0][j];
    const T zc = z0 > T(1) ? T(1) : (z0 < T(-1) ? T(-1) : z0);
    // the larger of u, v from Z, the smaller from uv = (X^2 + Y^2) / 4: (1 - Z) / 2 near Z = 1 would
    // cancel, and its rounding is what the derivatives of sqrt near a pole magnify
    const T xy = r[0][0][j] * r[0][0][j] + r[1][0][j] * r[1][0][j];
    const T big = T(0.5) * (T(1) + (zc >= T(0) ? zc : -zc)), small = T(0.25) * xy / big;
    const T u = zc >= T(0) ? big : small, v = zc >= T(0) ? small : big;
    tu[j] = qkf_sqrt(u < fl ? fl : u);
    tv[j] = qkf_sqrt(v < fl ? fl : v);
    step_u[j] = u < fl ? T(0) : T(0.5) / u;
    step_v[j] = v < fl ? T(0) : T(-0.5) / v;
  }
  T binom = T(1);  // C(1/2, i)
  for (int i = 0; i <= span; ++i) {
    for (int j = 0; j < n; ++j) {
      f[i][j] = binom * (tu[j] - tv[j]);
      tu[j] *= step_u[j];
      tv[j] *= step_v[j];
    }
    binom *= (T(0.5) - T(i)) / T(i + 1);
  }
  // pw[i][k]: coefficient k of (z - z[0])^i; pw[0] is 1 and pw[1] is z without its constant
  T pw[kJetLen][kJetLen][L];
  for (int k = 0; k < span; ++k)
    for (int j = 0; j < n; ++j) {
      pw[0][k][j] = k == 0 ? T(1) : T(0);
      if (span > 1) pw[1][k][j] = k == 0 ? T(0) : z[k][j];
    }
  for (int i = 2; i < span; ++i)
    for (int k = 0; k < span; ++k) {
      for (int j = 0; j < n; ++j) pw[i][k][j] = T(0);
      for (int a = 1; a < k; ++a)
        for (int j = 0; j < n; ++j) pw[i][k][j] += pw[1][a][j] * pw[i - 1][k - a][j];
    }
  for (int k = 0; k < len; ++k) {
    for (int j = 0; j < n; ++j) phi[k][j] = T(0);
    for (int i = 0; i <= k; ++i)
      for (int j = 0; j < n; ++j) phi[k][j] += f[i][j] * pw[i][k][j];
  }
  if (!dphi) return;
  for (int j = 0; j < n; ++j) dphi[0][j] = T(0);
  for (int i = 0; i <= order; ++i)  // through f_i's dependence on z[0]: d f_i / d z0 = (i+1) f_{i+1}
    for (int j = 0; j < n; ++j) dphi[0][j] += T(i + 1) * f[i + 1][j] * pw[i][order][j];
  for (int m = 1; m <= order; ++m) {
    for (int j = 0; j < n; ++j) dphi[m][j] = T(0);
    for (int i = 1; i <= order; ++i)
      for (int j = 0; j < n; ++j) dphi[m][j] += T(i) * f[i][j] * pw[i - 1][order - m][j];
  }
}

// n! for n <= kJetLen: a Taylor coefficient times it is the derivative.
template <class T> QKF_HD T factorial(int n) {
  T f = T(1);
  for (int k = 2; k <= n; ++k) f *= T(k);
  return f;
}

// ---------------------------------------------------------------------------------------------
// The circuit in Taylor mode, over L lanes (samples side by side: the CPU's chunk; a GPU thread
// takes L = 1), n <= L of them in use, len <= kJetLen Taylor coefficients.

// The Bloch vector's Taylor coefficients: v[component][order][lane].
template <class T, int L> struct BlochJet {
  T v[3][kJetLen][L];
};

// A data gate's exp(K delta(t)) as the Taylor coefficients of cos delta(t) and sin delta(t), with
// the ingredients its adjoint needs: delta's own coefficients and, for px, arccos' derivatives.
template <class T, int L> struct DataJet {
  T C[kJetLen][L], S[kJetLen][L];
  T delta[kJetLen][L];
  T acos_d[kJetLen + 1][L];  // px: a^(k)(e), k <= len
};

// Where the circuit of one edge reads its parameters, and its shape.
template <class T> struct JetEdge {
  const Rot<T>* rot;  // [Rt * P] (cos, sin) of each theta angle: the Bloch turn is the full angle
  const T* w;         // [R] encoding weights (encode), else unused
  const T* b;         // [R] encoding biases (encode), else unused
  int ansatz, reps;
  bool encode;
};

// A turn about axis ax by the angle with cosine c and sine s, every coefficient alike.
template <class T, int L> QKF_JET_HD void jet_turn(BlochJet<T, L>& r, int len, int n, int ax, T c, T s) {
  const int p = plane_p(ax), q = plane_q(ax);
  for (int k = 0; k < len; ++k) {
    T* rp = r.v[p][k];
    T* rq = r.v[q][k];
    QKF_LANES
    for (int j = 0; j < n; ++j) {
      const T a = rp[j], b = rq[j];
      rp[j] = c * a - s * b;
      rq[j] = s * a + c * b;
    }
  }
}

// A half turn (the X and Z gates of `real`).
template <class T, int L> QKF_JET_HD void jet_flip(BlochJet<T, L>& r, int len, int n, int ax) {
  const int p = plane_p(ax), q = plane_q(ax);
  for (int k = 0; k < len; ++k)
    for (int j = 0; j < n; ++j) {
      r.v[p][k][j] = -r.v[p][k][j];
      r.v[q][k][j] = -r.v[q][k][j];
    }
}

// The data gate's angle delta(t) = a(w (x + t) + b) over the lanes x[0..n), a the identity or (px)
// arccos: its coefficients delta_k = w^k a^(k)(e) / k! (without px: delta_0 = e, delta_1 = w).
template <class T, int L> QKF_JET_HD void jet_data_angle(const T* x, int n, int len, bool px, T w, T b, DataJet<T, L>& d) {
  if (px) {
    for (int j = 0; j < n; ++j) {
      T a[kJetLen + 1];
      arccos_derivatives(w * x[j] + b, len + 1, a);
      for (int k = 0; k <= len; ++k) d.acos_d[k][j] = a[k];
    }
    T wk = T(1);
    for (int k = 0; k < len; ++k) {
      const T c = wk / factorial<T>(k);
      for (int j = 0; j < n; ++j) d.delta[k][j] = c * d.acos_d[k][j];
      wk *= w;
    }
  } else {
    QKF_LANES
    for (int j = 0; j < n; ++j) d.delta[0][j] = w * x[j] + b;
    for (int k = 1; k < len; ++k)
      for (int j = 0; j < n; ++j) d.delta[k][j] = k == 1 ? w : T(0);
  }
}

// C, S of the data gate from delta and from C[0] = cos delta_0, S[0] = sin delta_0 (filled by the
// caller: the CPU evaluates them as SIMD polynomials), by cos' = -sin * delta', sin' = cos * delta'.
template <class T, int L> QKF_JET_HD void jet_data_turn(int n, int len, bool px, DataJet<T, L>& d) {
  for (int k = 1; k < len; ++k) {
    const T inv_k = T(1) / T(k);
    for (int j = 0; j < n; ++j) {
      d.S[k][j] = T(0);
      d.C[k][j] = T(0);
    }
    for (int i = 1; i <= (px ? k : 1); ++i) {  // without px only delta_1 is nonzero
      const T f = T(i) * inv_k;
      const T *di = d.delta[i], *cp = d.C[k - i], *sp = d.S[k - i];
      T *sk = d.S[k], *ck = d.C[k];
      QKF_LANES
      for (int j = 0; j < n; ++j) {
        sk[j] += f * di[j] * cp[j];
        ck[j] -= f * di[j] * sp[j];
      }
    }
  }
}

// r <- exp(sign * K delta(t)) r: coefficient k of the product is sum_i G_i r_{k-i} (in place, from
// the highest order down). sign = -1 undoes the gate.
template <class T, int L>
QKF_JET_HD void jet_apply_data(BlochJet<T, L>& r, int len, int n, int ax, const DataJet<T, L>& d, T sign) {
  const int p = plane_p(ax), q = plane_q(ax);
  T np[L], nq[L];
  for (int k = len - 1; k >= 0; --k) {
    for (int j = 0; j < n; ++j) np[j] = nq[j] = T(0);
    for (int i = 0; i <= k; ++i) {
      const T *c = d.C[i], *s = d.S[i], *rp = r.v[p][k - i], *rq = r.v[q][k - i];
      QKF_LANES
      for (int j = 0; j < n; ++j) {
        np[j] += c[j] * rp[j] - sign * s[j] * rq[j];
        nq[j] += sign * s[j] * rp[j] + c[j] * rq[j];
      }
    }
    for (int j = 0; j < n; ++j) {
      r.v[p][k][j] = np[j];
      r.v[q][k][j] = nq[j];
    }
  }
}

// The adjoint through a data gate: lam_m <- sum_{k >= m} G_{k-m}^T lam_k (in place, lowest order up).
template <class T, int L> QKF_JET_HD void jet_adjoint_data(BlochJet<T, L>& lam, int len, int n, int ax, const DataJet<T, L>& d) {
  const int p = plane_p(ax), q = plane_q(ax);
  T np[L], nq[L];
  for (int m = 0; m < len; ++m) {
    for (int j = 0; j < n; ++j) np[j] = nq[j] = T(0);
    for (int i = 0; m + i < len; ++i) {
      const T *c = d.C[i], *s = d.S[i], *lp = lam.v[p][m + i], *lq = lam.v[q][m + i];
      QKF_LANES
      for (int j = 0; j < n; ++j) {
        np[j] += c[j] * lp[j] + s[j] * lq[j];
        nq[j] += c[j] * lq[j] - s[j] * lp[j];
      }
    }
    for (int j = 0; j < n; ++j) {
      lam.v[p][m][j] = np[j];
      lam.v[q][m][j] = nq[j];
    }
  }
}

// d/d(angle) of sum_k lam_k . r_k after a turn about ax (r, lam taken after it), summed over lanes.
template <class T, int L>
QKF_JET_HD T jet_turn_gradient(const BlochJet<T, L>& lam, const BlochJet<T, L>& r, int len, int n, int ax) {
  const int p = plane_p(ax), q = plane_q(ax);
  T acc = T(0);
  for (int k = 0; k < len; ++k) {
    const T *lp = lam.v[p][k], *lq = lam.v[q][k], *rp = r.v[p][k], *rq = r.v[q][k];
    QKF_LANE_SUM(acc)
    for (int j = 0; j < n; ++j) acc += lq[j] * rp[j] - lp[j] * rq[j];
  }
  return acc;
}

// The same in each coefficient delta_m of a data gate's angle, per lane: sum_{k >= m} lam_k . K r_{k-m}.
template <class T, int L>
QKF_JET_HD void jet_data_gradient(const BlochJet<T, L>& lam, const BlochJet<T, L>& r, int len, int n, int ax, T (*g)[L]) {
  const int p = plane_p(ax), q = plane_q(ax);
  for (int m = 0; m < len; ++m) {
    for (int j = 0; j < n; ++j) g[m][j] = T(0);
    for (int k = m; k < len; ++k) {
      const T *lp = lam.v[p][k], *lq = lam.v[q][k], *rp = r.v[p][k - m], *rq = r.v[q][k - m];
      QKF_LANES
      for (int j = 0; j < n; ++j) g[m][j] += lq[j] * rp[j] - lp[j] * rq[j];
    }
  }
}

// The gradients in w and b (summed over lanes) from those in delta's coefficients g[k][j]:
// d delta_k / d e = w^k a^(k+1) / k!, d delta_k / d w (through w^k) = k w^(k-1) a^(k) / k!, e = w x + b.
template <class T, int L>
QKF_JET_HD void jet_encoding_gradient(const T (*g)[L], const DataJet<T, L>& d, const T* x, int n, int len, bool px, T w,
                                  T* gw, T* gb) {
  T ge[L], gw_explicit[L];
  if (px) {
    for (int j = 0; j < n; ++j) ge[j] = gw_explicit[j] = T(0);
    T w_pow = T(1), w_pow_prev = T(0);  // w^k, w^(k-1)
    for (int k = 0; k < len; ++k) {
      const T ce = w_pow / factorial<T>(k), cw = T(k) * w_pow_prev / factorial<T>(k);
      const T *gk = g[k], *a_next = d.acos_d[k + 1], *a = d.acos_d[k];
      QKF_LANES
      for (int j = 0; j < n; ++j) {
        ge[j] += ce * gk[j] * a_next[j];
        gw_explicit[j] += cw * gk[j] * a[j];
      }
      w_pow_prev = w_pow;
      w_pow *= w;
    }
  } else {
    for (int j = 0; j < n; ++j) {
      ge[j] = g[0][j];
      gw_explicit[j] = len > 1 ? g[1][j] : T(0);
    }
  }
  T sw = T(0), sb = T(0);
  QKF_LANE_SUM(sw, sb)
  for (int j = 0; j < n; ++j) {
    sw += ge[j] * x[j] + gw_explicit[j];
    sb += ge[j];
  }
  *gw += sw;
  *gb += sb;
}

// The circuit of one edge over the lanes x[0..n): r = the Bloch vector's Taylor coefficients
// 0..len-1 after the last gate. trig [R][2][L]: receives cos and sin of every data angle's delta_0
// (the adjoint sweep reads them back), evaluated by sincos(a, n, sin, cos) over the lanes.
template <class T, int L, class SinCos>
QKF_JET_HD void jet_circuit(const JetEdge<T>& e, const T* x, int n, int len, BlochJet<T, L>& r, DataJet<T, L>& d, T* trig,
                        SinCos sincos) {
  const int P = theta_cols(e.ansatz);
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < len; ++k)
      for (int j = 0; j < n; ++j) r.v[c][k][j] = c == 0 && k == 0 ? T(1) : T(0);
  JetGate g[4];
  for (int l = 0; l <= e.reps; ++l) {
    const int count = jet_gates(e.ansatz, l == e.reps, g);
    for (int t = 0; t < count; ++t) {
      if (g[t].kind == kGateTheta) {
        const Rot<T> h = e.rot[l * P + g[t].col];
        jet_turn(r, len, n, g[t].axis, h.c, h.s);
      } else if (g[t].kind == kGateFlip) {
        jet_flip(r, len, n, g[t].axis);
      } else {
        const T w = e.encode ? e.w[l] : T(1), b = e.encode ? e.b[l] : T(0);
        jet_data_angle(x, n, len, e.ansatz == kPX, w, b, d);
        T* cs = trig + static_cast<size_t>(l) * 2 * L;
        sincos(d.delta[0], n, cs + L, cs);
        for (int j = 0; j < n; ++j) {
          d.C[0][j] = cs[j];
          d.S[0][j] = cs[L + j];
        }
        jet_data_turn(n, len, e.ansatz == kPX, d);
        jet_apply_data(r, len, n, g[t].axis, d, T(1));
      }
    }
  }
}

// The adjoint sweep of one edge over the same lanes, after jet_circuit: from r (the final state)
// and lam (the seed on Z), both of len coefficients, back to the start. Adds the lanes' summed
// gradients into gtheta [Rt * P] and, with encodings, gw and gb [R]. gdelta [len][L]: work space.
template <class T, int L>
QKF_JET_HD void jet_adjoint(const JetEdge<T>& e, const T* x, int n, int len, BlochJet<T, L>& r, BlochJet<T, L>& lam,
                        DataJet<T, L>& d, const T* trig, T (*gdelta)[L], T* gtheta, T* gw, T* gb) {
  const int P = theta_cols(e.ansatz);
  JetGate g[4];
  for (int l = e.reps; l >= 0; --l) {
    const int count = jet_gates(e.ansatz, l == e.reps, g);
    for (int t = count - 1; t >= 0; --t) {
      const int ax = g[t].axis;
      if (g[t].kind == kGateTheta) {
        const Rot<T> h = e.rot[l * P + g[t].col];
        gtheta[l * P + g[t].col] += jet_turn_gradient(lam, r, len, n, ax);
        jet_turn(r, len, n, ax, h.c, -h.s);
        jet_turn(lam, len, n, ax, h.c, -h.s);
      } else if (g[t].kind == kGateFlip) {
        jet_flip(r, len, n, ax);
        jet_flip(lam, len, n, ax);
      } else {
        const T w = e.encode ? e.w[l] : T(1), b = e.encode ? e.b[l] : T(0);
        jet_data_angle(x, n, len, e.ansatz == kPX, w, b, d);
        const T* cs = trig + static_cast<size_t>(l) * 2 * L;
        for (int j = 0; j < n; ++j) {
          d.C[0][j] = cs[j];
          d.S[0][j] = cs[L + j];
        }
        jet_data_turn(n, len, e.ansatz == kPX, d);
        if (e.encode) {
          jet_data_gradient(lam, r, len, n, ax, gdelta);
          jet_encoding_gradient<T, L>(gdelta, d, x, n, len, e.ansatz == kPX, w, gw + l, gb + l);
        }
        jet_apply_data(r, len, n, ax, d, T(-1));
        jet_adjoint_data(lam, len, n, ax, d);
      }
    }
  }
}

}  // namespace qkan_fast
