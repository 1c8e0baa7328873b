// Taylor mode in x of one edge's DARUAN (docs/math.md, "Higher derivatives"): the scalar pieces of
// the jet kernels (csrc/cpu/jet.cpp), which compute phi^(n)(x) for n <= kMaxJetOrder and the
// parameter gradient of one of them, for every ansatz, both measures and trainable encodings.
//
// The circuit is taken as rotations of the Bloch vector r = (X, Y, Z) of the state: the gate
// exp(-i a P / 2) turns r by the angle a about the axis P, H|0> is r = (1, 0, 0), and the Born
// value |alpha|^2 - |beta|^2 is Z. Real 3x3 rotations instead of complex 2x2 matrices: a Taylor
// coefficient of r is a plain vector, a data gate's coefficients are two scalars per order.
#pragma once

#include "daruan.h"

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

// The measured value's Taylor coefficients phi[k][j], k < len, from those of the Born value
// z[k][j] (same len), for lanes j < n (L lanes: samples side by side, so that every loop below
// over them vectorises; a GPU thread would take L = 1). With dphi set, also the seed of the
// adjoint sweep: dphi[m][j] = d phi[order][j] / d z[m][j], m <= order (order < kJetLen).
//
// Fast measure f(z) = sqrt(u) - sqrt(v), u = (1 + z) / 2 = |alpha|^2, v = (1 - z) / 2 = |beta|^2,
// by Faa di Bruno: phi = sum_i f_i (z - z[0])^i with f_i = f^(i)(z[0]) / i! =
// C(1/2, i) (sqrt(u) (1/(2u))^i - sqrt(v) (-1/(2v))^i). As in daruan.h's measure, z[0] is clamped
// to [-1, 1] (its derivatives pass straight through), and a vanished amplitude (u or v under the
// floor) contributes sqrt(floor) to the value and nothing to any derivative.
template <class T, int L>
QKF_HD void measure_jet(const T (*z)[L], int n, int len, bool fast, int order, T (*phi)[L], T (*dphi)[L]) {
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
    const T u = T(0.5) * (T(1) + zc), v = T(0.5) * (T(1) - zc);
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

}  // namespace qkan_fast
