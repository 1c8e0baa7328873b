// CPU schedule of the fused LSTM recurrence (recurrence.h): a loop over time steps around the gate
// layer's own CPU entry points (circuit or spectral fused kernel, each with its ISA dispatch and
// threading), with the base branch, the gate nonlinearities and the cell update done here between
// them. Instantiated for float and double only: the gate layer's kernels are the existing ones.
//
// Compiled once per instruction set (recurrence_{generic,avx2,avx512}.cpp, each in its own
// namespace QKF_ISA_NS), like the other kernel families: the base branch is a small matrix product
// per step and the cell's sigmoid and tanh are SIMD loops (vec_math.h), both 2-4x faster in AVX
// registers; cpu/isa.h picks the copy.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/isa.h"
#include "cpu/spectral.h"
#include "cpu/vec_math.h"
#include "daruan.h"
#include "lstm_cell.h"
#include "params.h"
#include "recurrence.h"

#ifndef QKF_ISA_NS
#error "define QKF_ISA_NS before including recurrence_kernels.h"
#endif

namespace qkan_fast {
namespace QKF_ISA_NS {
namespace {

// Below this much gate-layer work per thread (edge-sample-coefficients) the spectral kernel runs on
// fewer threads: an LSTM step is small, and waking a thread costs more than it saves. (The circuit
// entry point has its own rule, circuit_kernels.h kWorkPerThread.)
constexpr int64_t kSpectralWorkPerThread = 256 * 1024;

using Layout = RecurrenceSizes;

// z = [x_t, h_prev] for the B samples of one step: [B, I].
template <class T>
void make_z(const Layout& s, const T* x_t, const T* h_prev, T* z) {
  for (int64_t b = 0; b < s.B; ++b) {
    std::copy(x_t + b * s.d, x_t + (b + 1) * s.d, z + b * s.I);
    std::copy(h_prev + b * s.H, h_prev + (b + 1) * s.H, z + b * s.I + s.d);
  }
}

// The HQKAN's Linear maps: y[b, o] = bias[o] + sum_i w[o, i] x[b, i] (sizes of a few to a few tens).
template <class T>
void linear_forward(int64_t B, int64_t in, int64_t out, const T* w, const T* bias, const T* x, T* y) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < out; ++o) {
      const T* __restrict wo = w + o * in;
      const T* __restrict xb = x + b * in;
      T acc = bias ? bias[o] : T(0);
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < in; ++i) acc += wo[i] * xb[i];
      y[b * out + o] = acc;
    }
}
// Its backward from dy [B, out]: writes dx [B, in]; adds to gw [out, in] and gbias [out] (if set).
template <class T>
void linear_backward(int64_t B, int64_t in, int64_t out, const T* w, const T* x, const T* dy, T* dx, T* gw,
                     T* gbias) {
  std::fill(dx, dx + B * in, T(0));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < out; ++o) {
      const T g = dy[b * out + o];
      const T* __restrict wo = w + o * in;
      const T* __restrict xb = x + b * in;
      T* __restrict dxb = dx + b * in;
#pragma omp simd
      for (int64_t i = 0; i < in; ++i) dxb[i] += g * wo[i];
      if (gw) {
        T* __restrict gwo = gw + o * in;
#pragma omp simd
        for (int64_t i = 0; i < in; ++i) gwo[i] += g * xb[i];
      }
      if (gbias) gbias[o] += g;
    }
}

// theta of the circuit gate layer folded to gate (cos, sin) pairs once per call (daruan.h
// fold_theta; CircuitParams::theta_rot), instead of once per step inside the circuit kernels.
template <class T>
std::vector<Rot<T>> folded_theta(const RecurrenceParams& p) {
  std::vector<Rot<T>> rot;
  if (p.engine != GateEngine::kCircuit) return rot;
  const Layout s(p);
  const int64_t n = s.E * s.K;
  const int P = theta_cols(p.ansatz);
  const T* theta = static_cast<const T*>(p.theta);
  rot.resize(n);
  dispatch_ansatz(p.ansatz, [&](auto tag) {
    constexpr int A = decltype(tag)::value;
    for (int64_t k = 0; k < n; ++k) rot[k] = fold_theta<T, A>(theta[k], static_cast<int>(k % P));
  });
  return rot;
}

// The spectral gate layer of one step as the fused kernel's params, on as many threads as its work
// (`passes` times the forward's) keeps busy.
SpectralLayerParams spectral_gate_params(const RecurrenceParams& p, const Layout& s, int passes) {
  SpectralLayerParams f;
  f.batch = s.B; f.in_dim = s.Ig; f.out_dim = s.Og; f.reps = p.reps; f.px = p.px; f.dtype = p.dtype; f.nq = p.nq;
  f.coef = p.coef; f.weight = p.weight;
  const int64_t work = passes * s.B * s.E * p.nq * (2 * p.reps + 1);
  f.num_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(p.num_threads, work / kSpectralWorkPerThread)));
  return f;
}

// The gate layer's DARUAN part for one step: y[b, o] = sum_i weight[o,i] phi_oi(u[b,i]).
template <class T>
void gate_forward(const RecurrenceParams& p, const Layout& s, const std::vector<Rot<T>>& rot, const T* u, T* y) {
  if (p.engine == GateEngine::kCircuit) {
    CircuitParams c = circuit_gate_params(p, s);
    c.theta_rot = rot.data();
    c.x = u;
    c.y = y;
    circuit_forward_cpu(c);
  } else {
    SpectralLayerParams f = spectral_gate_params(p, s, 1);
    f.x = u;
    f.y = y;
    spectral_fused_forward_cpu(f);
  }
}

// One step's gate-layer parameter gradients (the entry points write theirs; the sums over steps
// are added from here).
template <class T>
struct GateGrads {
  std::vector<T> theta, pre_w, pre_b, coef, weight;
  GateGrads(const RecurrenceParams& p, const Layout& s) {
    if (p.grad_theta) theta.resize(s.E * s.K);
    if (p.grad_pre_w) pre_w.resize(s.E * p.reps);
    if (p.grad_pre_b) pre_b.resize(s.E * p.reps);
    if (p.grad_coef) coef.resize(s.coef_size(p));
    if (p.grad_weight) weight.resize(s.E);
  }
};

template <class T> void add_to(void* out, const std::vector<T>& step) {
  T* o = static_cast<T*>(out);
  const int64_t n = static_cast<int64_t>(step.size());
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) o[k] += step[k];
}

template <class T> T* data_or_null(std::vector<T>& v) { return v.empty() ? nullptr : v.data(); }

// The gate layer's backward for one step from dy [B, Og]: writes du [B, Ig], adds the step's
// parameter gradients to the outputs that were asked for.
template <class T>
void gate_backward(const RecurrenceParams& p, const Layout& s, const std::vector<Rot<T>>& rot, const T* u,
                   const T* dy, T* du, GateGrads<T>& g) {
  if (p.engine == GateEngine::kCircuit) {
    CircuitParams c = circuit_gate_params(p, s);
    c.theta_rot = rot.data();
    c.x = u;
    c.grad_y = dy;
    c.grad_x = du;
    c.grad_theta = data_or_null(g.theta); c.grad_pre_w = data_or_null(g.pre_w);
    c.grad_pre_b = data_or_null(g.pre_b); c.grad_weight = data_or_null(g.weight);
    circuit_backward_cpu(c);
    if (p.grad_theta) add_to(p.grad_theta, g.theta);
    if (p.grad_pre_w) add_to(p.grad_pre_w, g.pre_w);
    if (p.grad_pre_b) add_to(p.grad_pre_b, g.pre_b);
  } else {
    SpectralLayerParams f = spectral_gate_params(p, s, 3);  // the backward does about 3x the forward's work
    f.x = u;
    f.grad_y = dy; f.grad_x = du; f.grad_coef = data_or_null(g.coef); f.grad_weight = data_or_null(g.weight);
    spectral_fused_backward_cpu(f);
    if (p.grad_coef) add_to(p.grad_coef, g.coef);
  }
  if (p.grad_weight) add_to(p.grad_weight, g.weight);
}

// The base branch's weight transposed to [Ig][Og] once per call, so that every product with it runs
// along the gate layer's outputs (contiguous): empty without a base branch.
template <class T>
std::vector<T> transposed_base(const RecurrenceParams& p, const Layout& s) {
  std::vector<T> wt;
  const T* bw = static_cast<const T*>(p.base_weight);
  if (!bw) return wt;
  wt.resize(s.Ig * s.Og);
  for (int64_t o = 0; o < s.Og; ++o)
    for (int64_t i = 0; i < s.Ig; ++i) wt[i * s.Og + o] = bw[o * s.Ig + i];
  return wt;
}

// y[b, o] += bias[o] + sum_i base_weight[o,i] silu(u[b,i])
template <class T>
void add_base_and_bias(const RecurrenceParams& p, const Layout& s, const std::vector<T>& wt, const T* u, T* y) {
  const T* bias = static_cast<const T*>(p.bias);
  const int64_t O = s.Og;
  for (int64_t b = 0; b < s.B; ++b) {
    T* __restrict yb = y + b * O;
    if (bias)
#pragma omp simd
      for (int64_t o = 0; o < O; ++o) yb[o] += bias[o];
    if (wt.empty()) continue;
    for (int64_t i = 0; i < s.Ig; ++i) {
      const T ui = u[b * s.Ig + i], si = ui * vec_sigmoid(ui);
      const T* __restrict w = wt.data() + i * O;
#pragma omp simd
      for (int64_t o = 0; o < O; ++o) yb[o] += w[o] * si;
    }
  }
}

// Backward of the base branch and the bias for one step, from dy [B, Og]: adds to du [B, Ig] and to
// the base weight's and bias's gradients ([Ig][Og] transposed, and [Og]).
template <class T>
void base_and_bias_backward(const Layout& s, const std::vector<T>& wt, const T* u, const T* dy, T* du, T* gwt,
                            T* gbias) {
  const int64_t O = s.Og;
  for (int64_t b = 0; b < s.B; ++b) {
    const T* __restrict db = dy + b * O;
    if (gbias)
#pragma omp simd
      for (int64_t o = 0; o < O; ++o) gbias[o] += db[o];
    if (wt.empty()) continue;
    for (int64_t i = 0; i < s.Ig; ++i) {
      const T ui = u[b * s.Ig + i], sg = vec_sigmoid(ui);
      const T* __restrict w = wt.data() + i * O;
      T acc = T(0);
#pragma omp simd reduction(+ : acc)
      for (int64_t o = 0; o < O; ++o) acc += w[o] * db[o];
      du[b * s.Ig + i] += acc * silu_slope_from_sigmoid(ui, sg);
      if (gwt) {
        T* __restrict g = gwt + i * O;
        const T si = ui * sg;
#pragma omp simd
        for (int64_t o = 0; o < O; ++o) g[o] += db[o] * si;
      }
    }
  }
}

// The cell of one sample's H units from its pre-activations a [4H]: activated gates to act [4H],
// c and h [H]. One SIMD loop over the units (vec_math.h's sigmoid and tanh inline).
template <class T>
void cell_step_forward(int64_t H, const T* __restrict a, const T* __restrict c_prev, T* __restrict act,
                       T* __restrict c, T* __restrict h) {
#pragma omp simd
  for (int64_t u = 0; u < H; ++u) {
    const CellGates<T> g{vec_sigmoid(a[u]), vec_sigmoid(a[H + u]), vec_tanh(a[2 * H + u]), vec_sigmoid(a[3 * H + u])};
    act[u] = g.f; act[H + u] = g.i; act[2 * H + u] = g.g; act[3 * H + u] = g.o;
    c[u] = cell_state(g, c_prev[u]);
    h[u] = g.o * vec_tanh(c[u]);
  }
}

// Its backward: dh, dc [H] hold dL/dh_t, dL/dc_t from step t+1 on entry (the outputs' gradients
// gh, gc are added here) and dL/dc_{t-1} in dc on return; da [4H] gets dL/d(pre-activations).
template <class T>
void cell_step_backward(int64_t H, const T* __restrict act, const T* __restrict c, const T* __restrict c_prev,
                        const T* __restrict dh, const T* __restrict gh, const T* __restrict gc, T* __restrict dc,
                        T* __restrict da) {
#pragma omp simd
  for (int64_t u = 0; u < H; ++u) {
    const CellGates<T> g{act[u], act[H + u], act[2 * H + u], act[3 * H + u]};
    CellGates<T> d;
    dc[u] = cell_backward(g, vec_tanh(c[u]), c_prev[u], dh[u] + gh[u], dc[u] + gc[u], &d);
    da[u] = d.f; da[H + u] = d.i; da[2 * H + u] = d.g; da[3 * H + u] = d.o;
  }
}

template <class T> const T* cptr(const void* v) { return static_cast<const T*>(v); }

template <class T>
void forward_typed(const RecurrenceParams& p) {
  const Layout s(p);
  const T* x = cptr<T>(p.x);
  T* h_seq = static_cast<T*>(p.h_seq);
  T* c_seq = static_cast<T*>(p.c_seq);
  T* gates = static_cast<T*>(p.gates);
  T* latent = static_cast<T*>(p.latent);
  const std::vector<T> wt = transposed_base<T>(p, s);
  const std::vector<Rot<T>> rot = folded_theta<T>(p);
  // z [B, I] -> u [B, Ig] -> y [B, Og] -> a [B, G]; without the HQKAN's maps u is z and y is a
  std::vector<T> z(s.B * s.I), u(s.hqkan ? s.B * s.Ig : 0), a(s.B * s.G);
  for (int64_t t = 0; t < s.L; ++t) {
    const T* h_prev = t ? h_seq + (t - 1) * s.B * s.H : cptr<T>(p.h0);
    const T* c_prev = t ? c_seq + (t - 1) * s.B * s.H : cptr<T>(p.c0);
    make_z(s, x + t * s.B * s.d, h_prev, z.data());
    const T* ut = z.data();
    T* y = a.data();
    if (s.hqkan) {
      linear_forward(s.B, s.I, s.Ig, cptr<T>(p.down_weight), cptr<T>(p.down_bias), z.data(), u.data());
      ut = u.data();
      y = latent + t * s.B * s.Og;
    }
    gate_forward(p, s, rot, ut, y);
    add_base_and_bias(p, s, wt, ut, y);
    if (s.hqkan) linear_forward(s.B, s.Og, s.G, cptr<T>(p.up_weight), cptr<T>(p.up_bias), y, a.data());
    T* act = gates + t * s.B * s.G;
    T* h = h_seq + t * s.B * s.H;
    T* c = c_seq + t * s.B * s.H;
    for (int64_t b = 0; b < s.B; ++b)
      cell_step_forward(s.H, a.data() + b * s.G, c_prev + b * s.H, act + b * s.G, c + b * s.H, h + b * s.H);
  }
}

template <class T>
void backward_typed(const RecurrenceParams& p) {
  const Layout s(p);
  const T* x = cptr<T>(p.x);
  const T* h_seq = cptr<T>(p.h_seq);
  const T* c_seq = cptr<T>(p.c_seq);
  const T* gates = cptr<T>(p.gates);
  const T* gh = cptr<T>(p.grad_h_seq);
  const T* gc = cptr<T>(p.grad_c_seq);
  T* gx = static_cast<T*>(p.grad_x);
  T* gbw = static_cast<T*>(p.grad_base_weight);
  T* gbias = static_cast<T*>(p.grad_bias);
  T* g_down_w = static_cast<T*>(p.grad_down_weight);
  T* g_down_b = static_cast<T*>(p.grad_down_bias);
  T* g_up_w = static_cast<T*>(p.grad_up_weight);
  T* g_up_b = static_cast<T*>(p.grad_up_bias);

  // the parameter gradients are sums over steps
  const int64_t E = s.E;
  auto zero = [](void* ptr, int64_t n) {
    if (ptr) std::memset(ptr, 0, sizeof(T) * n);
  };
  zero(p.grad_theta, E * s.K);
  zero(p.grad_pre_w, E * p.reps);
  zero(p.grad_pre_b, E * p.reps);
  zero(p.grad_coef, s.coef_size(p));
  zero(p.grad_weight, E);
  zero(gbias, s.Og);
  zero(g_down_w, s.Ig * s.I);
  zero(g_down_b, s.Ig);
  zero(g_up_w, s.G * s.Og);
  zero(g_up_b, s.G);

  GateGrads<T> step_grads(p, s);
  const std::vector<T> wt = transposed_base<T>(p, s);
  const std::vector<Rot<T>> rot = folded_theta<T>(p);
  std::vector<T> gwt(gbw ? s.Ig * s.Og : 0, T(0));  // base weight gradient, [Ig][Og] as wt
  std::vector<T> z(s.B * s.I), da(s.B * s.G), dz(s.B * s.I);
  std::vector<T> u(s.hqkan ? s.B * s.Ig : 0), du(s.hqkan ? s.B * s.Ig : 0), dy(s.hqkan ? s.B * s.Og : 0);
  std::vector<T> dh(s.B * s.H, T(0)), dc(s.B * s.H, T(0));  // dL/dh_t, dL/dc_t carried from step t+1
  for (int64_t t = s.L - 1; t >= 0; --t) {
    const T* h_prev = t ? h_seq + (t - 1) * s.B * s.H : cptr<T>(p.h0);
    const T* c_prev = t ? c_seq + (t - 1) * s.B * s.H : cptr<T>(p.c0);
    const T* c = c_seq + t * s.B * s.H;
    const T* act = gates + t * s.B * s.G;
    const int64_t step = t * s.B * s.H;
    for (int64_t b = 0; b < s.B; ++b) {
      const int64_t k = b * s.H;
      cell_step_backward(s.H, act + b * s.G, c + k, c_prev + k, dh.data() + k, gh + step + k, gc + step + k,
                         dc.data() + k, da.data() + b * s.G);
    }
    make_z(s, x + t * s.B * s.d, h_prev, z.data());
    if (s.hqkan) {
      const T* y = cptr<T>(p.latent) + t * s.B * s.Og;
      linear_backward(s.B, s.Og, s.G, cptr<T>(p.up_weight), y, da.data(), dy.data(), g_up_w, g_up_b);
      linear_forward(s.B, s.I, s.Ig, cptr<T>(p.down_weight), cptr<T>(p.down_bias), z.data(), u.data());
      gate_backward(p, s, rot, u.data(), dy.data(), du.data(), step_grads);
      base_and_bias_backward(s, wt, u.data(), dy.data(), du.data(), data_or_null(gwt), gbias);
      linear_backward(s.B, s.I, s.Ig, cptr<T>(p.down_weight), z.data(), du.data(), dz.data(), g_down_w, g_down_b);
    } else {
      gate_backward(p, s, rot, z.data(), da.data(), dz.data(), step_grads);
      base_and_bias_backward(s, wt, z.data(), da.data(), dz.data(), data_or_null(gwt), gbias);
    }
    for (int64_t b = 0; b < s.B; ++b) {
      std::copy(dz.data() + b * s.I, dz.data() + b * s.I + s.d, gx + (t * s.B + b) * s.d);
      std::copy(dz.data() + b * s.I + s.d, dz.data() + (b + 1) * s.I, dh.data() + b * s.H);
    }
  }
  if (gbw)
    for (int64_t o = 0; o < s.Og; ++o)
      for (int64_t i = 0; i < s.Ig; ++i) gbw[o * s.Ig + i] = gwt[i * s.Og + o];
  std::copy(dh.begin(), dh.end(), static_cast<T*>(p.grad_h0));
  std::copy(dc.begin(), dc.end(), static_cast<T*>(p.grad_c0));
}

}  // namespace

const RecurrenceKernels recurrence_kernels = {
    [](const RecurrenceParams& p) { if (p.dtype == kFloat64) forward_typed<double>(p); else forward_typed<float>(p); },
    [](const RecurrenceParams& p) { if (p.dtype == kFloat64) backward_typed<double>(p); else backward_typed<float>(p); },
};

}  // namespace QKF_ISA_NS
}  // namespace qkan_fast
