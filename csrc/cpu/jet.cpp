// CPU schedule of the jet kernels (Taylor mode in x, daruan_jet.h): for every edge and sample the
// Taylor coefficients of the Bloch vector are carried through the circuit, up to the order asked,
// and the backward sweeps their adjoint back through the gates (each gate undone by its inverse,
// as the circuit engine does, so nothing per gate is stored).
//
//   forward  (order n): y[b,o] = sum_i weight[o,i] * scale[b,i] * phi_oi^(n)(x[b,i]), or per edge
//                       postacts[b,o,i] = scale[b,i] * phi_oi^(n)(x[b,i]) (grad_postacts in the backward)
//   backward (order n): grad_x[b,i]     = scale[b,i] * sum_o grad_y[b,o] weight[o,i] phi_oi^(n+1)
//                       grad_scale[b,i] = sum_o grad_y[b,o] weight[o,i] phi_oi^(n)
//                       grad_weight, grad_theta, grad_pre_w, grad_pre_b: of phi^(n), summed over b
//
// Layout: a chunk of samples is the inner (SIMD) axis of every array, the Taylor order and the
// Bloch component the outer ones. One translation unit, built once (no per-ISA copies): these
// kernels run only inside higher-order derivatives, and each ISA copy would cost build time.
#include <algorithm>
#include <memory>
#include <vector>

#include "cpu/vec_math.h"
#include "daruan_jet.h"
#include "params.h"

namespace qkan_fast {
namespace {

constexpr int kChunk = 64;  // samples per SIMD batch: the lanes of daruan_jet.h's circuit

// One edge's theta (cos, sin) pairs, made once per edge.
template <class T> struct Edge {
  std::vector<Rot<T>> rot;  // [Rt * P]
  JetEdge<T> view;
};

template <class T> void load_edge(const CircuitParams& p, int64_t edge, Edge<T>& e) {
  const int K = theta_rows(p.ansatz, p.reps) * theta_cols(p.ansatz);
  const T* th = static_cast<const T*>(p.theta) + edge * K;
  e.rot.resize(K);
  for (int k = 0; k < K; ++k) qkf_sincos(th[k], &e.rot[k].s, &e.rot[k].c);
  e.view = {e.rot.data(), nullptr, nullptr, p.ansatz, p.reps, p.encode};
  if (p.encode) {
    e.view.w = static_cast<const T*>(p.pre_w) + edge * p.reps;
    e.view.b = static_cast<const T*>(p.pre_b) + edge * p.reps;
  }
}

// Per-thread work space of one edge and chunk.
template <class T> struct JetWork {
  Edge<T> edge;
  std::vector<T> trig;  // [R][2][kChunk]: cos, sin of each data gate's angle (jet_circuit)
  BlochJet<T, kChunk> r, lam;
  DataJet<T, kChunk> data;
  T gdelta[kJetLen][kChunk];
  T phi[kJetLen][kChunk], dphi[kJetLen][kChunk];  // the measure's coefficients and adjoint seed
  T cotangent[kChunk];                             // of each sample's phi^(n) term
  explicit JetWork(int reps) : trig(static_cast<size_t>(reps) * 2 * kChunk) {}
};

// The data angles' sine and cosine: SIMD polynomials (cpu/vec_math.h), or, without encodings, where
// every edge of input i turns by the same angle in every repetition, the chunk's rows of a table
// made once per call (AngleTable) instead of once per output.
template <class T> struct ChunkSinCos {
  const T* table_cos = nullptr;  // the chunk's entries, or null
  const T* table_sin = nullptr;
  void operator()(const T* a, int n, T* s, T* c) const {
    if (!table_cos) return sincos_chunk(a, n, s, c);
    std::copy(table_cos, table_cos + n, c);
    std::copy(table_sin, table_sin + n, s);
  }
};

// cos and sin of the data angle of every (i, b), [I][2][B], when the layer has no encodings; empty
// otherwise. The angle is jet_data_angle's delta_0 with w = 1, b = 0.
template <class T> struct AngleTable {
  std::vector<T> cs;
  int64_t B = 0;
  AngleTable(const CircuitParams& p, const std::vector<T>& xt) : B(p.batch) {
    if (p.encode) return;
    cs.resize(static_cast<size_t>(p.in_dim) * 2 * B);
    std::unique_ptr<DataJet<T, kChunk>> d(new DataJet<T, kChunk>());
    for (int64_t i = 0; i < p.in_dim; ++i)
      for (int64_t b0 = 0; b0 < B; b0 += kChunk) {
        const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
        jet_data_angle(xt.data() + i * B + b0, n, 1, p.ansatz == kPX, T(1), T(0), *d);
        sincos_chunk(d->delta[0], n, &cs[(2 * i + 1) * B + b0], &cs[2 * i * B + b0]);
      }
  }
  ChunkSinCos<T> at(int64_t i, int64_t b0) const {
    if (cs.empty()) return {};
    return {&cs[2 * i * B + b0], &cs[(2 * i + 1) * B + b0]};
  }
};

// The scale of a call without one.
template <class T> struct Ones {
  T v[kChunk];
  Ones() { std::fill(v, v + kChunk, T(1)); }
};

template <class T> std::vector<T> transposed(const void* src, int64_t rows, int64_t cols) {
  std::vector<T> out(rows * cols);
  const T* s = static_cast<const T*>(src);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = s[r * cols + c];
  return out;
}

template <class T> void jet_forward(const CircuitParams& p) {
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int order = p.order, len = order + 1;
  const std::vector<T> xt = transposed<T>(p.x, B, I);                                  // [I][B]
  const std::vector<T> st = p.scale ? transposed<T>(p.scale, B, I) : std::vector<T>();  // [I][B]
  const AngleTable<T> angles(p, xt);
  // per-edge mode (postacts set): postacts[b,o,i] = scale[b,i] * phi_oi^(n), no weight, no sum
  const bool per_edge = p.postacts != nullptr;
  const T* weight = static_cast<const T*>(p.weight);
  T* y = static_cast<T*>(p.y);
  T* post = static_cast<T*>(p.postacts);
  const T fact = factorial<T>(order);
  const Ones<T> unit;
  const T* ones = unit.v;
#pragma omp parallel num_threads(p.num_threads)
  {
    std::unique_ptr<JetWork<T>> wk(new JetWork<T>(p.reps));
    std::vector<T> ycol(B);
#pragma omp for schedule(dynamic)
    for (int64_t o = 0; o < O; ++o) {
      std::fill(ycol.begin(), ycol.end(), T(0));
      for (int64_t i = 0; i < I; ++i) {
        const T wt = (per_edge ? T(1) : weight[o * I + i]) * fact;
        load_edge(p, o * I + i, wk->edge);
        for (int64_t b0 = 0; b0 < B; b0 += kChunk) {
          const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
          jet_circuit(wk->edge.view, xt.data() + i * B + b0, n, len, wk->r, wk->data, wk->trig.data(),
                      angles.at(i, b0));
          measure_jet<T, kChunk>(wk->r.v, n, len, p.fast_measure, order, wk->phi, nullptr);
          const T* s = p.scale ? st.data() + i * B + b0 : ones;
          if (per_edge) {
            for (int j = 0; j < n; ++j) post[((b0 + j) * O + o) * I + i] = wt * s[j] * wk->phi[order][j];
            continue;
          }
          T* yc = ycol.data() + b0;
          QKF_LANES
          for (int j = 0; j < n; ++j) yc[j] += wt * s[j] * wk->phi[order][j];
        }
      }
      if (!per_edge)
        for (int64_t b = 0; b < B; ++b) y[b * O + o] = ycol[b];
    }
  }
}

template <class T> void jet_backward(const CircuitParams& p) {
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int order = p.order, rev_len = order + 1;
  const bool need_x = p.grad_x != nullptr, need_params = p.grad_theta || p.grad_pre_w || p.grad_pre_b;
  const int len = need_x ? order + 2 : order + 1;
  const int K = theta_rows(p.ansatz, p.reps) * theta_cols(p.ansatz);
  const std::vector<T> xt = transposed<T>(p.x, B, I);
  const std::vector<T> st = p.scale ? transposed<T>(p.scale, B, I) : std::vector<T>();
  const AngleTable<T> angles(p, xt);
  // the cotangent: grad_y[b,o] times weight[o,i], or (per-edge mode) grad_postacts[b,o,i]
  const bool per_edge = p.grad_postacts != nullptr;
  const std::vector<T> gyt = per_edge ? std::vector<T>() : transposed<T>(p.grad_y, B, O);  // [O][B]
  const T* gpost = static_cast<const T*>(p.grad_postacts);
  const T* weight = static_cast<const T*>(p.weight);
  T *gx = static_cast<T*>(p.grad_x), *gs = static_cast<T*>(p.grad_scale);
  T *gth = static_cast<T*>(p.grad_theta), *gwt = static_cast<T*>(p.grad_weight);
  T *gpw = static_cast<T*>(p.grad_pre_w), *gpb = static_cast<T*>(p.grad_pre_b);
  const T fact = factorial<T>(order), fact_next = factorial<T>(order + 1);
  const Ones<T> unit;
  const T* ones = unit.v;
#pragma omp parallel num_threads(p.num_threads)
  {
    std::unique_ptr<JetWork<T>> wk(new JetWork<T>(p.reps));
    std::vector<T> gxcol(B), gscol(B), gtheta(K), gw(p.reps), gb(p.reps);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < I; ++i) {
      std::fill(gxcol.begin(), gxcol.end(), T(0));
      std::fill(gscol.begin(), gscol.end(), T(0));
      const T* xc = xt.data() + i * B;
      for (int64_t o = 0; o < O; ++o) {
        const int64_t edge = o * I + i;
        const T wt = per_edge ? T(1) : weight[edge];
        load_edge(p, edge, wk->edge);
        std::fill(gtheta.begin(), gtheta.end(), T(0));
        std::fill(gw.begin(), gw.end(), T(0));
        std::fill(gb.begin(), gb.end(), T(0));
        T gweight = T(0);
        for (int64_t b0 = 0; b0 < B; b0 += kChunk) {
          const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
          jet_circuit(wk->edge.view, xc + b0, n, len, wk->r, wk->data, wk->trig.data(), angles.at(i, b0));
          measure_jet<T, kChunk>(wk->r.v, n, len, p.fast_measure, order, wk->phi,
                                 need_params ? wk->dphi : nullptr);
          const T* s = p.scale ? st.data() + i * B + b0 : ones;
          T* cb = wk->cotangent;
          if (per_edge) {
            for (int j = 0; j < n; ++j) cb[j] = gpost[((b0 + j) * O + o) * I + i];
          } else {
            const T* gy = gyt.data() + o * B + b0;
            QKF_LANES
            for (int j = 0; j < n; ++j) cb[j] = gy[j] * wt;
            T gw_chunk = T(0);
            QKF_LANE_SUM(gw_chunk)
            for (int j = 0; j < n; ++j) gw_chunk += gy[j] * s[j] * wk->phi[order][j];
            gweight += fact * gw_chunk;
          }
          const T *phi = wk->phi[order], *phi_next = wk->phi[need_x ? order + 1 : order];
          if (need_x) {
            QKF_LANES
            for (int j = 0; j < n; ++j) gxcol[b0 + j] += cb[j] * s[j] * fact_next * phi_next[j];
          }
          QKF_LANES
          for (int j = 0; j < n; ++j) gscol[b0 + j] += cb[j] * fact * phi[j];
          if (need_params) {
            for (int k = 0; k < rev_len; ++k) {
              std::fill(wk->lam.v[0][k], wk->lam.v[0][k] + n, T(0));
              std::fill(wk->lam.v[1][k], wk->lam.v[1][k] + n, T(0));
              const T* d = wk->dphi[k];
              T* seed = wk->lam.v[2][k];
              QKF_LANES
              for (int j = 0; j < n; ++j) seed[j] = cb[j] * s[j] * fact * d[j];
            }
          }
          if (need_params)
            jet_adjoint(wk->edge.view, xc + b0, n, rev_len, wk->r, wk->lam, wk->data, wk->trig.data(), wk->gdelta,
                        gtheta.data(), gw.data(), gb.data());
        }
        if (gth) std::copy(gtheta.begin(), gtheta.end(), gth + edge * K);
        if (gpw) std::copy(gw.begin(), gw.end(), gpw + edge * p.reps);
        if (gpb) std::copy(gb.begin(), gb.end(), gpb + edge * p.reps);
        if (gwt) gwt[edge] = gweight;
      }
      if (gx)
        for (int64_t b = 0; b < B; ++b) gx[b * I + i] = gxcol[b];
      if (gs)
        for (int64_t b = 0; b < B; ++b) gs[b * I + i] = gscol[b];
    }
  }
}

}  // namespace

void circuit_jet_forward_cpu(const CircuitParams& p) {
  check_circuit(p, CircuitOp::kJetForward, Device::kCpu);
  if (p.dtype == kFloat64) jet_forward<double>(p);
  else jet_forward<float>(p);
}

void circuit_jet_backward_cpu(const CircuitParams& p) {
  check_circuit(p, CircuitOp::kJetBackward, Device::kCpu);
  if (p.dtype == kFloat64) jet_backward<double>(p);
  else jet_backward<float>(p);
}

}  // namespace qkan_fast
