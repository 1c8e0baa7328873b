// The per-edge mathematics of a DARUAN (data re-uploading activation), SPEC.md section 1.
//
// One header, shared word for word by the CPU kernels (csrc/cpu/) and the CUDA kernels (cuda/):
// a single-qubit state, the gates, the forward circuit of every ansatz and its adjoint sweep.
// Everything here is scalar code on one (edge, sample) pair; schedules live elsewhere.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define QKF_HD __host__ __device__ __forceinline__
#else
#define QKF_HD inline __attribute__((always_inline))
#endif

namespace qkan_fast {

// Stable codes shared with python/qkan_fast/ops.py.
enum Ansatz : int { kPZ = 0, kRPZ = 1, kPX = 2, kREAL = 3, kMIX = 4 };
enum DType : int { kFloat32 = 0, kFloat64 = 1, kBFloat16 = 2 };

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

// Half-angle cosine and sine of a rotation: every rotation gate is exp(-i a P / 2).
template <class T> struct Half {
  T c, s;
};

// The inverse of a rotation is the same rotation with the sine negated.
template <class T> QKF_HD Half<T> inverse(Half<T> h) { return {h.c, -h.s}; }

// RZ = diag(e^{-ia/2}, e^{+ia/2})
template <class T> QKF_HD void apply_rz(Qubit<T>& q, Half<T> h) {
  const T ar = q.ar * h.c + q.ai * h.s, ai = q.ai * h.c - q.ar * h.s;
  const T br = q.br * h.c - q.bi * h.s, bi = q.bi * h.c + q.br * h.s;
  q = {ar, ai, br, bi};
}
// RY = [[c, -s], [s, c]]
template <class T> QKF_HD void apply_ry(Qubit<T>& q, Half<T> h) {
  const T ar = h.c * q.ar - h.s * q.br, ai = h.c * q.ai - h.s * q.bi;
  const T br = h.s * q.ar + h.c * q.br, bi = h.s * q.ai + h.c * q.bi;
  q = {ar, ai, br, bi};
}
// RX = [[c, -is], [-is, c]]
template <class T> QKF_HD void apply_rx(Qubit<T>& q, Half<T> h) {
  const T ar = h.c * q.ar + h.s * q.bi, ai = h.c * q.ai - h.s * q.br;
  const T br = h.c * q.br + h.s * q.ai, bi = h.c * q.bi - h.s * q.ar;
  q = {ar, ai, br, bi};
}
template <class T> QKF_HD void apply_x(Qubit<T>& q) { q = {q.br, q.bi, q.ar, q.ai}; }
template <class T> QKF_HD void apply_z(Qubit<T>& q) { q = {q.ar, q.ai, -q.br, -q.bi}; }

// d phi / d a for a gate exp(-i a P / 2) equals Im(lam^dag P psi) / 2, with psi the state and lam
// the cotangent both taken just after the gate (lam = d phi / d conj(psi_final), swept back).
template <class T> QKF_HD T im_z(const Qubit<T>& l, const Qubit<T>& p) {
  return T(0.5) * ((l.ar * p.ai - l.ai * p.ar) - (l.br * p.bi - l.bi * p.br));
}
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
    const T na = qkf_sqrt(pa > measure_floor<T>() ? pa : measure_floor<T>());
    const T nb = qkf_sqrt(pb > measure_floor<T>() ? pb : measure_floor<T>());
    if (lam) {
      const T ia = pa > measure_floor<T>() ? T(1) / na : T(0);
      const T ib = pb > measure_floor<T>() ? T(1) / nb : T(0);
      *lam = {q.ar * ia, q.ai * ia, -q.br * ib, -q.bi * ib};
    }
    return na - nb;
  } else {
    if (lam) *lam = {T(2) * q.ar, T(2) * q.ai, T(-2) * q.br, T(-2) * q.bi};
    return pa - pb;
  }
}

// Half-angles of the data gate of one repetition, from the encoded value e.
// px encodes RX(arccos e): cos(arccos(e)/2) = sqrt((1+e)/2), sin = sqrt((1-e)/2), no trig needed;
// callers validated e in [-1, 1], the clamp only absorbs roundoff of w*x+b.
template <class T, int A> QKF_HD Half<T> data_half(T e) {
  Half<T> h;
  if (A == kPX) {
    const T ec = e > T(1) ? T(1) : (e < T(-1) ? T(-1) : e);
    h.c = qkf_sqrt(T(0.5) * (T(1) + ec));
    h.s = qkf_sqrt(T(0.5) * (T(1) - ec));
  } else {
    qkf_sincos(T(0.5) * e, &h.s, &h.c);
  }
  return h;
}

// d(data angle)/de from the data gate's half-angles: 1, except px where the angle is arccos(e) and
// the slope is -1/sqrt(1-e^2) = -1/(2cs) (no cancellation near e = +-1); floored so e = +-1 stays finite.
template <class T, int A> QKF_HD T data_angle_slope(Half<T> h) {
  if (A != kPX) return T(1);
  const T r = T(2) * h.c * h.s;
  const T fl = sizeof(T) == 4 ? T(1e-6) : T(1e-12);
  return T(-1) / (r > fl ? r : fl);
}

// The circuit of one edge. `rot` holds the half-angle (c, s) of every theta entry, row-major
// over (row, col): rot[row * P + col]. `data(l)` returns the data gate half-angles of repetition l.
template <class T, int A, class DataFn>
QKF_HD Qubit<T> edge_forward(const Half<T>* rot, int reps, DataFn data) {
  constexpr int P = (A == kPZ || A == kMIX) ? 2 : 1;
  Qubit<T> q = plus_state<T>();
  for (int l = 0; l < reps; ++l) {
    const Half<T> d = data(l);
    if (A == kPZ) {
      apply_rz(q, rot[l * P]); apply_ry(q, rot[l * P + 1]); apply_rz(q, d);
    } else if (A == kRPZ) {
      apply_ry(q, rot[l]); apply_rz(q, d);
    } else if (A == kPX) {
      apply_rz(q, rot[l]); apply_rx(q, d);
    } else if (A == kREAL) {
      apply_x(q); apply_ry(q, rot[l]); apply_z(q); apply_ry(q, d);
    } else {  // kMIX
      apply_rz(q, rot[l * P]); apply_rx(q, rot[l * P + 1]); apply_ry(q, d);
    }
  }
  if (A == kPZ) {
    apply_rz(q, rot[reps * P]); apply_ry(q, rot[reps * P + 1]);
  } else if (A == kRPZ) {
    apply_ry(q, rot[reps]);
  } else if (A == kPX) {
    apply_rz(q, rot[reps]);
  } else if (A == kMIX) {
    apply_rz(q, rot[reps * P]); apply_rx(q, rot[reps * P + 1]);
  }
  return q;
}

// Undo a rotation on both the state and the cotangent (every gate is unitary, so the states of
// earlier gates are recovered exactly instead of being stored).
template <class T> QKF_HD void undo_rz(Qubit<T>& q, Qubit<T>& l, Half<T> h) {
  apply_rz(q, inverse(h)); apply_rz(l, inverse(h));
}
template <class T> QKF_HD void undo_ry(Qubit<T>& q, Qubit<T>& l, Half<T> h) {
  apply_ry(q, inverse(h)); apply_ry(l, inverse(h));
}
template <class T> QKF_HD void undo_rx(Qubit<T>& q, Qubit<T>& l, Half<T> h) {
  apply_rx(q, inverse(h)); apply_rx(l, inverse(h));
}

// Adjoint sweep of one edge. Starts from the final state q and cotangent l (from measure) and
// walks the gates backwards. Calls grad_theta(k, g) with g = d phi / d theta_flat[k] (k = row*P+col)
// and grad_data(l, g) with g = d phi / d(data angle of repetition l).
template <class T, int A, class DataFn, class ThetaSink, class DataSink>
QKF_HD void edge_adjoint(Qubit<T> q, Qubit<T> l, const Half<T>* rot, int reps, DataFn data,
                         ThetaSink grad_theta, DataSink grad_data) {
  constexpr int P = (A == kPZ || A == kMIX) ? 2 : 1;
  if (A == kPZ) {
    grad_theta(reps * P + 1, im_y(l, q)); undo_ry(q, l, rot[reps * P + 1]);
    grad_theta(reps * P, im_z(l, q)); undo_rz(q, l, rot[reps * P]);
  } else if (A == kRPZ) {
    grad_theta(reps, im_y(l, q)); undo_ry(q, l, rot[reps]);
  } else if (A == kPX) {
    grad_theta(reps, im_z(l, q)); undo_rz(q, l, rot[reps]);
  } else if (A == kMIX) {
    grad_theta(reps * P + 1, im_x(l, q)); undo_rx(q, l, rot[reps * P + 1]);
    grad_theta(reps * P, im_z(l, q)); undo_rz(q, l, rot[reps * P]);
  }
  for (int r = reps - 1; r >= 0; --r) {
    const Half<T> d = data(r);
    if (A == kPZ) {
      grad_data(r, im_z(l, q)); undo_rz(q, l, d);
      grad_theta(r * P + 1, im_y(l, q)); undo_ry(q, l, rot[r * P + 1]);
      grad_theta(r * P, im_z(l, q)); undo_rz(q, l, rot[r * P]);
    } else if (A == kRPZ) {
      grad_data(r, im_z(l, q)); undo_rz(q, l, d);
      grad_theta(r, im_y(l, q)); undo_ry(q, l, rot[r]);
    } else if (A == kPX) {
      grad_data(r, im_x(l, q)); undo_rx(q, l, d);
      grad_theta(r, im_z(l, q)); undo_rz(q, l, rot[r]);
    } else if (A == kREAL) {
      grad_data(r, im_y(l, q)); undo_ry(q, l, d);
      apply_z(q); apply_z(l);  // Z and X are their own inverses
      grad_theta(r, im_y(l, q)); undo_ry(q, l, rot[r]);
      apply_x(q); apply_x(l);
    } else {  // kMIX
      grad_data(r, im_y(l, q)); undo_ry(q, l, d);
      grad_theta(r * P + 1, im_x(l, q)); undo_rx(q, l, rot[r * P + 1]);
      grad_theta(r * P, im_z(l, q)); undo_rz(q, l, rot[r * P]);
    }
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
