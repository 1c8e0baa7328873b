// The LSTM cell around a gate map (docs/math.md, "Networks"), per (sample, hidden unit), shared by
// the CPU recurrence (cpu/recurrence.cpp) and any device schedule: scalar code, no memory layout,
// and no transcendental functions (each schedule brings its own sigmoid and tanh).
//
// Gate pre-activations a = [a_f, a_i, a_g, a_o] (the gate map's four output blocks);
// f, i, o = sigmoid(a), g = tanh(a_g), c = f c_prev + i g, h = o tanh(c).
#pragma once

#include "daruan.h"  // QKF_HD

namespace qkan_fast {

// The activated gates of one unit; the forward stores them, the backward reads them back.
template <class T> struct CellGates {
  T f, i, g, o;
};

template <class T> QKF_HD T cell_state(const CellGates<T>& a, T c_prev) { return a.f * c_prev + a.i * a.g; }

// Backward of one unit: dh, dc are dL/dh_t and dL/dc_t (from the outputs and from step t+1),
// tanh_c = tanh(c_t); writes dL/d(pre-activations) and returns dL/dc_{t-1}.
template <class T>
QKF_HD T cell_backward(const CellGates<T>& a, T tanh_c, T c_prev, T dh, T dc, CellGates<T>* da) {
  dc += dh * a.o * (T(1) - tanh_c * tanh_c);
  da->f = dc * c_prev * a.f * (T(1) - a.f);
  da->i = dc * a.g * a.i * (T(1) - a.i);
  da->g = dc * a.i * (T(1) - a.g * a.g);
  da->o = dh * tanh_c * a.o * (T(1) - a.o);
  return dc * a.f;
}

// d silu(z) / dz = s (1 + z (1 - s)) with s = sigmoid(z): the base branch's slope.
template <class T> QKF_HD T silu_slope_from_sigmoid(T z, T s) { return s * (T(1) + z * (T(1) - s)); }

}  // namespace qkan_fast
