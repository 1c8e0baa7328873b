// The per-edge mathematics of a DARUAN (data re-uploading activation), SPEC.md section 1.
//
// One header, shared word for word by the CPU kernels (csrc/cpu/) and the CUDA kernels (cuda/):
// a single-qubit state, the gates, the forward circuit of every ansatz and its adjoint sweep.
// Everything here is scalar code on one (edge, sample) pair; schedules live elsewhere.
#pragma once

#include <cmath>
#include <cstdint>

#include "core_types.h"

#if defined(__CUDACC__)
#define QKF_HD __host__ __device__ __forceinline__
#else
// static: each per-ISA translation unit keeps its own copies (no ODR merging of AVX-512 code
// into the portable path by the linker)
#define QKF_HD static inline __attribute__((always_inline))
#endif

namespace qkan_fast {

// Number of trainable angles per repetition row of theta, and the number of rows.
QKF_HD int theta_cols(int ansatz) { return (ansatz == kPZ || ansatz == kMIX) ? 2 : 1; }
QKF_HD int theta_rows(int ansatz, int reps) { return ansatz == kREAL ? reps : reps + 1; }

template <class T> QKF_HD T qkf_sqrt(T v) { return std::sqrt(v); }
template <class T> QKF_HD void qkf_sincos(T a, T* s, T* c) {
  *s = std::sin(a);
  *c = std::cos(a);
}
#if defined(__CUDACC__)
template <> __device__ __forceinline__ void qkf_sincos<float>(float a, float* s, float* c) { sincosf(a, s, c); }
template <> __device__ __forceinline__ void qkf_sincos<double>(double a, double* s, double* c) { sincos(a, s, c); }
#endif

// alpha|0> + beta|1>, in registers.
template <class T> struct Qubit {
  T ar, ai, br, bi;
};

// H|0> = (|0> + |1>) / sqrt(2)
template <class T> QKF_HD Qubit<T> plus_state() {
  const T h = T(0.70710678118654752440);
  return {h, T(0), h, T(0)};
}

// A gate's angle as a (cos, sin) pair. RY and RX keep the half angle (c, s) = (cos a/2, sin a/2).
// RZ(a) = e^{-ia/2} diag(1, e^{ia}) is applied as the phase gate diag(1, e^{ia}) with the full
// angle (cos a, sin a): the global phase changes neither |alpha|, |beta| nor any gradient, and
// the phase gate costs half the flops. fold_theta and data_gate below make the right pair.
template <class T> struct Rot {
  T c, s;
};

// The inverse of every gate here is the same gate with the sine negated.
template <class T> QKF_HD Rot<T> inverse(Rot<T> h) { return {h.c, -h.s}; }

// RZ(a) up to a global phase: beta *= e^{ia}
template <class T> QKF_HD void apply_rz(Qubit<T>& q, Rot<T> p) {
  const T br = q.br * p.c - q.bi * p.s, bi = q.bi * p.c + q.br * p.s;
  q.br = br;
  q.bi = bi;
}
// RY = [[c, -s], [s, c]]
template <class T> QKF_HD void apply_ry(Qubit<T>& q, Rot<T> h) {
  const T ar = h.c * q.ar - h.s * q.br, ai = h.c * q.ai - h.s * q.bi;
  const T br = h.s * q.ar + h.c * q.br, bi = h.s * q.ai + h.c * q.bi;
  q = {ar, ai, br, bi};
}
// RX = [[c, -is], [-is, c]]
template <class T> QKF_HD void apply_rx(Qubit<T>& q, Rot<T> h) {
  const T ar = h.c * q.ar + h.s * q.bi, ai = h.c * q.ai - h.s * q.br;
  const T br = h.c * q.br + h.s * q.ai, bi = h.c * q.bi - h.s * q.ar;
  q = {ar, ai, br, bi};
}
template <class T> QKF_HD void apply_x(Qubit<T>& q) { q = {q.br, q.bi, q.ar, q.ai}; }
template <class T> QKF_HD void apply_z(Qubit<T>& q) { q = {q.ar, q.ai, -q.br, -q.bi}; }

// Gradients by the adjoint method: with psi the state and lam the cotangent (d phi / d conj(psi),
// swept back through the inverse gates) both taken just after a gate exp(-i a P / 2),
// d phi / d a = Im(lam^dag P psi) / 2.
// For the phase gate diag(1, e^{ia}) it is -Im(conj(lam_b) beta): the same value, because
// lam^dag psi stays real along the sweep (it is |alpha| - |beta| or 2<Z> at the end).
template <class T> QKF_HD T im_z(const Qubit<T>& l, const Qubit<T>& p) { return l.bi * p.br - l.br * p.bi; }
template <class T> QKF_HD T im_y(const Qubit<T>& l, const Qubit<T>& p) {
  return T(0.5) * ((l.br * p.ar + l.bi * p.ai) - (l.ar * p.br + l.ai * p.bi));
}
template <class T> QKF_HD T im_x(const Qubit<T>& l, const Qubit<T>& p) {
  return T(0.5) * ((l.ar * p.bi - l.ai * p.br) + (l.br * p.ai - l.bi * p.ar));
}

// Floor under |alpha|^2 and |beta|^2 before the square root of the fast measure, so its gradient
// stays finite (and 0, as torch's abs gives) where an amplitude vanishes.
template <class T> QKF_HD T measure_floor() { return sizeof(T) == 4 ? T(1e-30) : T(1e-300); }

// phi = |alpha| - |beta| (fast, quantum-inspired) or |alpha|^2 - |beta|^2 (Born rule, <Z>).
// Writes the cotangent lam = d phi / d conj(state) for the adjoint sweep when asked.
template <class T, bool FAST> QKF_HD T measure(const Qubit<T>& q, Qubit<T>* lam) {
  const T pa = q.ar * q.ar + q.ai * q.ai, pb = q.br * q.br + q.bi * q.bi;
  if (FAST) {
    // comparisons written so that NaN passes through (a NaN input must give a NaN output)
    const T fl = measure_floor<T>();
    const T na = qkf_sqrt(pa < fl ? fl : pa);
    const T nb = qkf_sqrt(pb < fl ? fl : pb);
    if (lam) {
      const T ia = pa < fl ? T(0) : T(1) / na;
      const T ib = pb < fl ? T(0) : T(1) / nb;
      *lam = {q.ar * ia, q.ai * ia, -q.br * ib, -q.bi * ib};
    }
    return na - nb;
  } else {
    if (lam) *lam = {T(2) * q.ar, T(2) * q.ai, T(-2) * q.br, T(-2) * q.bi};
    return pa - pb;
  }
}

// Which gates are RZ (phase gates): theta column 0 of pz, px and mix; the data gate of pz and rpz.
template <int A> constexpr bool theta_col_is_rz(int col) { return col == 0 && (A == kPZ || A == kPX || A == kMIX); }
template <int A> constexpr bool data_is_rz() { return A == kPZ || A == kRPZ; }

// The (cos, sin) pair of theta entry `angle` in column `col` (see Rot).
template <class T, int A> QKF_HD Rot<T> fold_theta(T angle, int col) {
  Rot<T> r;
  qkf_sincos(theta_col_is_rz<A>(col) ? angle : T(0.5) * angle, &r.s, &r.c);
  return r;
}

// The (cos, sin) pair of the data gate of one repetition, from the encoded value e.
// px encodes RX(arccos e): cos(arccos(e)/2) = sqrt((1+e)/2), sin = sqrt((1-e)/2), no trig needed;
// callers validated e in [-1, 1], the clamp only absorbs roundoff of w*x+b.
template <class T, int A> QKF_HD Rot<T> px_data_gate(T e) {
  const T ec = e > T(1) ? T(1) : (e < T(-1) ? T(-1) : e);
  return {qkf_sqrt(T(0.5) * (T(1) + ec)), qkf_sqrt(T(0.5) * (T(1) - ec))};
}
// The trigonometric argument of the other data gates: the full angle for RZ, half for RY.
template <class T, int A> QKF_HD T data_trig_arg(T e) { return data_is_rz<A>() ? e : T(0.5) * e; }

template <class T, int A> QKF_HD Rot<T> data_gate(T e) {
  if (A == kPX) return px_data_gate<T, A>(e);
  Rot<T> h;
  qkf_sincos(data_trig_arg<T, A>(e), &h.s, &h.c);
  return h;
}

// d(data angle)/de from the data gate's (cos, sin) pair: 1, except px where the angle is arccos(e) and
// the slope is -1/sqrt(1-e^2) = -1/(2cs) (no cancellation near e = +-1); floored so e = +-1 stays finite.
template <class T, int A> QKF_HD T data_angle_slope(Rot<T> h) {
  if (A != kPX) return T(1);
  const T r = T(2) * h.c * h.s;
  const T fl = sizeof(T) == 4 ? T(1e-6) : T(1e-12);
  return T(-1) / (r > fl ? r : fl);
}

// The circuit of one edge, in pieces that schedules can interleave (the CPU runs each piece over a
// chunk of samples as one SIMD loop; the GPU keeps one qubit per thread and calls edge_forward).
// `rot` holds the half-angle (c, s) of every theta entry, row-major over (row, col):
// rot[row * P + col]; `d` is the data gate of the repetition.
template <class T, int A> QKF_HD void apply_rep(Qubit<T>& q, const Rot<T>* row, Rot<T> d) {
  if (A == kPZ) {
    apply_rz(q, row[0]); apply_ry(q, row[1]); apply_rz(q, d);
  } else if (A == kRPZ) {
    apply_ry(q, row[0]); apply_rz(q, d);
  } else if (A == kPX) {
    apply_rz(q, row[0]); apply_rx(q, d);
  } else if (A == kREAL) {
    apply_x(q); apply_ry(q, row[0]); apply_z(q); apply_ry(q, d);
  } else {  // kMIX
    apply_rz(q, row[0]); apply_rx(q, row[1]); apply_ry(q, d);
  }
}

// The closing gates after the last repetition (`row` = theta row R; real has none).
template <class T, int A> QKF_HD void apply_final(Qubit<T>& q, const Rot<T>* row) {
  if (A == kPZ) {
    apply_rz(q, row[0]); apply_ry(q, row[1]);
  } else if (A == kRPZ) {
    apply_ry(q, row[0]);
  } else if (A == kPX) {
    apply_rz(q, row[0]);
  } else if (A == kMIX) {
    apply_rz(q, row[0]); apply_rx(q, row[1]);
  }
}

template <int A> constexpr int theta_cols_of() { return (A == kPZ || A == kMIX) ? 2 : 1; }

// `data(l)` returns the data gate half-angles of repetition l.
template <class T, int A, class DataFn>
QKF_HD Qubit<T> edge_forward(const Rot<T>* rot, int reps, DataFn data) {
  constexpr int P = theta_cols_of<A>();
  Qubit<T> q = plus_state<T>();
  for (int l = 0; l < reps; ++l) apply_rep<T, A>(q, rot + l * P, data(l));
  if (A != kREAL) apply_final<T, A>(q, rot + reps * P);
  return q;
}

// Undo a rotation on both the state and the cotangent (every gate is unitary, so the states of
// earlier gates are recovered exactly instead of being stored).
template <class T> QKF_HD void undo_rz(Qubit<T>& q, Qubit<T>& l, Rot<T> h) {
  apply_rz(q, inverse(h)); apply_rz(l, inverse(h));
}
template <class T> QKF_HD void undo_ry(Qubit<T>& q, Qubit<T>& l, Rot<T> h) {
  apply_ry(q, inverse(h)); apply_ry(l, inverse(h));
}
template <class T> QKF_HD void undo_rx(Qubit<T>& q, Qubit<T>& l, Rot<T> h) {
  apply_rx(q, inverse(h)); apply_rx(l, inverse(h));
}

// Adjoint of the closing gates: q and l are the state and the cotangent (d phi / d conj(state))
// just after them; on return, just before them. g[c] = d phi / d theta[R, c].
template <class T, int A> QKF_HD void adjoint_final(Qubit<T>& q, Qubit<T>& l, const Rot<T>* row, T* g) {
  if (A == kPZ) {
    g[1] = im_y(l, q); undo_ry(q, l, row[1]);
    g[0] = im_z(l, q); undo_rz(q, l, row[0]);
  } else if (A == kRPZ) {
    g[0] = im_y(l, q); undo_ry(q, l, row[0]);
  } else if (A == kPX) {
    g[0] = im_z(l, q); undo_rz(q, l, row[0]);
  } else if (A == kMIX) {
    g[1] = im_x(l, q); undo_rx(q, l, row[1]);
    g[0] = im_z(l, q); undo_rz(q, l, row[0]);
  }
}

// Adjoint of one repetition: g[c] = d phi / d theta[l, c]; returns d phi / d(data angle).
template <class T, int A>
QKF_HD T adjoint_rep(Qubit<T>& q, Qubit<T>& l, const Rot<T>* row, Rot<T> d, T* g) {
  T gd;
  if (A == kPZ) {
    gd = im_z(l, q); undo_rz(q, l, d);
    g[1] = im_y(l, q); undo_ry(q, l, row[1]);
    g[0] = im_z(l, q); undo_rz(q, l, row[0]);
  } else if (A == kRPZ) {
    gd = im_z(l, q); undo_rz(q, l, d);
    g[0] = im_y(l, q); undo_ry(q, l, row[0]);
  } else if (A == kPX) {
    gd = im_x(l, q); undo_rx(q, l, d);
    g[0] = im_z(l, q); undo_rz(q, l, row[0]);
  } else if (A == kREAL) {
    gd = im_y(l, q); undo_ry(q, l, d);
    apply_z(q); apply_z(l);  // Z and X are their own inverses
    g[0] = im_y(l, q); undo_ry(q, l, row[0]);
    apply_x(q); apply_x(l);
  } else {  // kMIX
    gd = im_y(l, q); undo_ry(q, l, d);
    g[1] = im_x(l, q); undo_rx(q, l, row[1]);
    g[0] = im_z(l, q); undo_rz(q, l, row[0]);
  }
  return gd;
}

// Adjoint sweep of one edge, from the final state q and cotangent l (from measure) back to the
// start. Calls grad_theta(k, g) with g = d phi / d theta_flat[k] (k = row*P + col) and
// grad_data(l, g) with g = d phi / d(data angle of repetition l).
template <class T, int A, class DataFn, class ThetaSink, class DataSink>
QKF_HD void edge_adjoint(Qubit<T> q, Qubit<T> l, const Rot<T>* rot, int reps, DataFn data,
                         ThetaSink grad_theta, DataSink grad_data) {
  constexpr int P = theta_cols_of<A>();
  T g[2] = {T(0), T(0)};
  if (A != kREAL) {
    adjoint_final<T, A>(q, l, rot + reps * P, g);
    for (int c = 0; c < P; ++c) grad_theta(reps * P + c, g[c]);
  }
  for (int r = reps - 1; r >= 0; --r) {
    grad_data(r, adjoint_rep<T, A>(q, l, rot + r * P, data(r), g));
    for (int c = 0; c < P; ++c) grad_theta(r * P + c, g[c]);
  }
}

// Calls f(std::integral_constant-like tag) with the ansatz as a compile-time constant.
template <int A> struct AnsatzTag {
  static constexpr int value = A;
};
template <class F> QKF_HD void dispatch_ansatz(int ansatz, F&& f) {
  switch (ansatz) {
    case kPZ: f(AnsatzTag<kPZ>{}); break;
    case kRPZ: f(AnsatzTag<kRPZ>{}); break;
    case kPX: f(AnsatzTag<kPX>{}); break;
    case kREAL: f(AnsatzTag<kREAL>{}); break;
    default: f(AnsatzTag<kMIX>{}); break;
  }
}

}  // namespace qkan_fast
