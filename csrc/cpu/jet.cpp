// CPU schedule of the jet kernels (Taylor mode in x, daruan_jet.h): for every edge and sample the
// Taylor coefficients of the Bloch vector are carried through the circuit, up to the order asked,
// and the backward sweeps their adjoint back through the gates (each gate undone by its inverse,
// as the circuit engine does, so nothing per gate is stored).
//
//   forward  (order n): y[b,o] = sum_i weight[o,i] * scale[b,i] * phi_oi^(n)(x[b,i])
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

#ifdef QKAN_FAST_OPENMP
#include <omp.h>
#endif

namespace qkan_fast {
namespace {

constexpr int kChunk = 64;  // samples per SIMD batch

#if defined(__GNUC__) && !defined(__clang__)
#define QKF_JET_LOOP _Pragma("GCC ivdep")
#else
#define QKF_JET_LOOP
#endif

// The Bloch vector's Taylor coefficients over a chunk: v[component][order][sample].
template <class T> struct BlochJet {
  T v[3][kJetLen][kChunk];
};

// A data gate's exp(K delta(t)) as the Taylor coefficients of cos delta(t) and sin delta(t), with
// the ingredients its adjoint needs: delta's own coefficients and, for px, arccos' derivatives.
template <class T> struct DataJet {
  T C[kJetLen][kChunk], S[kJetLen][kChunk];
  T delta[kJetLen][kChunk];
  T acos_d[kJetLen + 1][kChunk];  // px: a^(k)(e), k <= len
};

// One edge's parameters, read once per edge.
template <class T> struct Edge {
  std::vector<Rot<T>> rot;  // [Rt * P] (cos, sin) of each theta angle (the Bloch turn is the full angle)
  const T* w = nullptr;     // [R] (encode)
  const T* b = nullptr;     // [R] (encode)
};

template <class T> void load_edge(const CircuitParams& p, int64_t edge, Edge<T>& e) {
  const int K = theta_rows(p.ansatz, p.reps) * theta_cols(p.ansatz);
  const T* th = static_cast<const T*>(p.theta) + edge * K;
  e.rot.resize(K);
  for (int k = 0; k < K; ++k) qkf_sincos(th[k], &e.rot[k].s, &e.rot[k].c);
  if (p.encode) {
    e.w = static_cast<const T*>(p.pre_w) + edge * p.reps;
    e.b = static_cast<const T*>(p.pre_b) + edge * p.reps;
  }
}

template <class T> void turn(BlochJet<T>& r, int len, int n, int ax, T c, T s) {
  const int p = plane_p(ax), q = plane_q(ax);
  for (int k = 0; k < len; ++k) {
    T* rp = r.v[p][k];
    T* rq = r.v[q][k];
    QKF_JET_LOOP
    for (int j = 0; j < n; ++j) {
      const T a = rp[j], b = rq[j];
      rp[j] = c * a - s * b;
      rq[j] = s * a + c * b;
    }
  }
}

template <class T> void flip(BlochJet<T>& r, int len, int n, int ax) {
  const int p = plane_p(ax), q = plane_q(ax);
  for (int k = 0; k < len; ++k)
    for (int j = 0; j < n; ++j) {
      r.v[p][k][j] = -r.v[p][k][j];
      r.v[q][k][j] = -r.v[q][k][j];
    }
}

// The data gate of repetition l over a chunk x[0..n): delta(t) = a(w (x + t) + b), a the identity
// or (px) arccos; C, S from cos' = -sin * delta', sin' = cos * delta', coefficient by coefficient.
// trig [2][kChunk]: cos and sin of delta_0, written when `fresh`, else read (the adjoint sweep
// reuses the forward's: the sine and cosine calls are most of a gate's cost).
template <class T> void data_jet(const T* x, int n, int len, bool px, T w, T b, DataJet<T>& d, T* trig, bool fresh) {
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
    QKF_JET_LOOP
    for (int j = 0; j < n; ++j) d.delta[0][j] = w * x[j] + b;
    for (int k = 1; k < len; ++k) std::fill(d.delta[k], d.delta[k] + n, k == 1 ? w : T(0));
  }
  if (fresh) sincos_chunk(d.delta[0], n, trig + kChunk, trig);
  std::copy(trig, trig + n, d.C[0]);
  std::copy(trig + kChunk, trig + kChunk + n, d.S[0]);
  for (int k = 1; k < len; ++k) {
    const T inv_k = T(1) / T(k);
    std::fill(d.S[k], d.S[k] + n, T(0));
    std::fill(d.C[k], d.C[k] + n, T(0));
    for (int i = 1; i <= (px ? k : 1); ++i) {  // without px only delta_1 is nonzero
      const T f = T(i) * inv_k;
      const T *di = d.delta[i], *cp = d.C[k - i], *sp = d.S[k - i];
      T *sk = d.S[k], *ck = d.C[k];
      QKF_JET_LOOP
      for (int j = 0; j < n; ++j) {
        sk[j] += f * di[j] * cp[j];
        ck[j] -= f * di[j] * sp[j];
      }
    }
  }
}

// r <- exp(sign * K delta(t)) r, coefficient k of the product = sum_i G_i r_{k-i} (in place, from
// the highest order down). sign = -1 undoes the gate.
template <class T> void apply_data(BlochJet<T>& r, int len, int n, int ax, const DataJet<T>& d, T sign) {
  const int p = plane_p(ax), q = plane_q(ax);
  T np[kChunk], nq[kChunk];
  for (int k = len - 1; k >= 0; --k) {
    std::fill(np, np + n, T(0));
    std::fill(nq, nq + n, T(0));
    for (int i = 0; i <= k; ++i) {
      const T *c = d.C[i], *s = d.S[i], *rp = r.v[p][k - i], *rq = r.v[q][k - i];
      QKF_JET_LOOP
      for (int j = 0; j < n; ++j) {
        np[j] += c[j] * rp[j] - sign * s[j] * rq[j];
        nq[j] += sign * s[j] * rp[j] + c[j] * rq[j];
      }
    }
    std::copy(np, np + n, r.v[p][k]);
    std::copy(nq, nq + n, r.v[q][k]);
  }
}

// The adjoint through a data gate: lam_m <- sum_{k >= m} G_{k-m}^T lam_k (in place, lowest order up).
template <class T> void adjoint_data(BlochJet<T>& lam, int len, int n, int ax, const DataJet<T>& d) {
  const int p = plane_p(ax), q = plane_q(ax);
  T np[kChunk], nq[kChunk];
  for (int m = 0; m < len; ++m) {
    std::fill(np, np + n, T(0));
    std::fill(nq, nq + n, T(0));
    for (int i = 0; m + i < len; ++i) {
      const T *c = d.C[i], *s = d.S[i], *lp = lam.v[p][m + i], *lq = lam.v[q][m + i];
      QKF_JET_LOOP
      for (int j = 0; j < n; ++j) {
        np[j] += c[j] * lp[j] + s[j] * lq[j];
        nq[j] += c[j] * lq[j] - s[j] * lp[j];
      }
    }
    std::copy(np, np + n, lam.v[p][m]);
    std::copy(nq, nq + n, lam.v[q][m]);
  }
}

// sum over k and the chunk of lam_k . K r_{k-shift}: the derivative of the adjoint's objective in a
// rotation angle about ax (shift 0), or in coefficient `shift` of a data gate's angle (per sample).
template <class T> T theta_gradient(const BlochJet<T>& lam, const BlochJet<T>& r, int len, int n, int ax) {
  const int p = plane_p(ax), q = plane_q(ax);
  T acc = T(0);
  for (int k = 0; k < len; ++k) {
    const T *lp = lam.v[p][k], *lq = lam.v[q][k], *rp = r.v[p][k], *rq = r.v[q][k];
#pragma omp simd reduction(+ : acc)
    for (int j = 0; j < n; ++j) acc += lq[j] * rp[j] - lp[j] * rq[j];
  }
  return acc;
}

template <class T>
void data_gradient(const BlochJet<T>& lam, const BlochJet<T>& r, int len, int n, int ax, T (*g)[kChunk]) {
  const int p = plane_p(ax), q = plane_q(ax);
  for (int m = 0; m < len; ++m) {
    std::fill(g[m], g[m] + n, T(0));
    for (int k = m; k < len; ++k) {
      const T *lp = lam.v[p][k], *lq = lam.v[q][k], *rp = r.v[p][k - m], *rq = r.v[q][k - m];
      QKF_JET_LOOP
      for (int j = 0; j < n; ++j) g[m][j] += lq[j] * rp[j] - lp[j] * rq[j];
    }
  }
}

// Per-thread work space of one edge and chunk.
template <class T> struct JetWork {
  Edge<T> edge;
  std::vector<T> trig;  // [R][2][kChunk]: cos, sin of each data gate's angle (data_jet)
  BlochJet<T> r, lam;
  DataJet<T> data;
  T gdelta[kJetLen][kChunk];
  T phi[kJetLen][kChunk], dphi[kJetLen][kChunk];  // the measure's coefficients and adjoint seed
};

// The scale of a call without one.
template <class T> struct Ones {
  T v[kChunk];
  Ones() { std::fill(v, v + kChunk, T(1)); }
};

struct Shape {
  int ansatz, reps, P;
  bool px, encode;
};

// The circuit over a chunk: r = the Bloch vector's Taylor coefficients 0..len-1 after the last gate.
template <class T> void forward_chunk(const Shape& sh, JetWork<T>& wk, const T* x, int n, int len) {
  BlochJet<T>& r = wk.r;
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < len; ++k) std::fill(r.v[c][k], r.v[c][k] + n, T(c == 0 && k == 0 ? 1 : 0));
  JetGate g[4];
  wk.trig.resize(static_cast<size_t>(sh.reps) * 2 * kChunk);
  for (int l = 0; l <= sh.reps; ++l) {
    const bool final = l == sh.reps;
    const int count = jet_gates(sh.ansatz, final, g);
    for (int t = 0; t < count; ++t) {
      if (g[t].kind == kGateTheta) {
        const Rot<T> h = wk.edge.rot[l * sh.P + g[t].col];
        turn(r, len, n, g[t].axis, h.c, h.s);
      } else if (g[t].kind == kGateFlip) {
        flip(r, len, n, g[t].axis);
      } else {
        const T w = sh.encode ? wk.edge.w[l] : T(1), b = sh.encode ? wk.edge.b[l] : T(0);
        data_jet(x, n, len, sh.px, w, b, wk.data, &wk.trig[static_cast<size_t>(l) * 2 * kChunk], true);
        apply_data(r, len, n, g[t].axis, wk.data, T(1));
      }
    }
  }
}

// The adjoint sweep over a chunk, from r (the final state) and lam (the seed on Z) back to the start,
// both of len coefficients, after forward_chunk on the same chunk; adds the chunk's parameter gradients into gtheta [Rt * P], gw and gb [R].
template <class T>
void adjoint_chunk(const Shape& sh, JetWork<T>& wk, const T* x, int n, int len, T* gtheta, T* gw, T* gb) {
  BlochJet<T>&r = wk.r, &lam = wk.lam;
  JetGate g[4];
  for (int l = sh.reps; l >= 0; --l) {
    const bool final = l == sh.reps;
    const int count = jet_gates(sh.ansatz, final, g);
    for (int t = count - 1; t >= 0; --t) {
      const int ax = g[t].axis;
      if (g[t].kind == kGateTheta) {
        const Rot<T> h = wk.edge.rot[l * sh.P + g[t].col];
        gtheta[l * sh.P + g[t].col] += theta_gradient(lam, r, len, n, ax);
        turn(r, len, n, ax, h.c, -h.s);
        turn(lam, len, n, ax, h.c, -h.s);
      } else if (g[t].kind == kGateFlip) {
        flip(r, len, n, ax);
        flip(lam, len, n, ax);
      } else {
        const T w = sh.encode ? wk.edge.w[l] : T(1), b = sh.encode ? wk.edge.b[l] : T(0);
        data_jet(x, n, len, sh.px, w, b, wk.data, &wk.trig[static_cast<size_t>(l) * 2 * kChunk], false);
        if (sh.encode) {
          data_gradient(lam, r, len, n, ax, wk.gdelta);
          // delta_k = w^k a^(k)(e) / k!, e = w x + b (without px: delta_0 = e, delta_1 = w). ge: the
          // gradient in e; gw_explicit: in w through the factor w^k
          T ge[kChunk], gw_explicit[kChunk];
          if (sh.px) {
            std::fill(ge, ge + n, T(0));
            std::fill(gw_explicit, gw_explicit + n, T(0));
            T w_pow = T(1), w_pow_prev = T(0);  // w^k, w^(k-1)
            for (int k = 0; k < len; ++k) {
              const T ce = w_pow / factorial<T>(k), cw = T(k) * w_pow_prev / factorial<T>(k);
              const T *g = wk.gdelta[k], *a_next = wk.data.acos_d[k + 1], *a = wk.data.acos_d[k];
              QKF_JET_LOOP
              for (int j = 0; j < n; ++j) {
                ge[j] += ce * g[j] * a_next[j];
                gw_explicit[j] += cw * g[j] * a[j];
              }
              w_pow_prev = w_pow;
              w_pow *= w;
            }
          } else {
            std::copy(wk.gdelta[0], wk.gdelta[0] + n, ge);
            if (len > 1) std::copy(wk.gdelta[1], wk.gdelta[1] + n, gw_explicit);
            else std::fill(gw_explicit, gw_explicit + n, T(0));
          }
          T sw = T(0), sb = T(0);
#pragma omp simd reduction(+ : sw, sb)
          for (int j = 0; j < n; ++j) {
            sw += ge[j] * x[j] + gw_explicit[j];
            sb += ge[j];
          }
          gw[l] += sw;
          gb[l] += sb;
        }
        apply_data(r, len, n, ax, wk.data, T(-1));
        adjoint_data(lam, len, n, ax, wk.data);
      }
    }
  }
}

template <class T> std::vector<T> transposed(const void* src, int64_t rows, int64_t cols) {
  std::vector<T> out(rows * cols);
  const T* s = static_cast<const T*>(src);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = s[r * cols + c];
  return out;
}

Shape shape_of(const CircuitParams& p) {
  return {p.ansatz, p.reps, theta_cols(p.ansatz), p.ansatz == kPX, p.encode};
}

template <class T> void jet_forward(const CircuitParams& p) {
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int order = p.order, len = order + 1;
  const Shape sh = shape_of(p);
  const std::vector<T> xt = transposed<T>(p.x, B, I);                                  // [I][B]
  const std::vector<T> st = p.scale ? transposed<T>(p.scale, B, I) : std::vector<T>();  // [I][B]
  const T* weight = static_cast<const T*>(p.weight);
  T* y = static_cast<T*>(p.y);
  const T fact = factorial<T>(order);
  const Ones<T> unit;
  const T* ones = unit.v;
#pragma omp parallel num_threads(p.num_threads)
  {
    std::unique_ptr<JetWork<T>> wk(new JetWork<T>());
    std::vector<T> ycol(B);
#pragma omp for schedule(dynamic)
    for (int64_t o = 0; o < O; ++o) {
      std::fill(ycol.begin(), ycol.end(), T(0));
      for (int64_t i = 0; i < I; ++i) {
        const T wt = weight[o * I + i] * fact;
        load_edge(p, o * I + i, wk->edge);
        for (int64_t b0 = 0; b0 < B; b0 += kChunk) {
          const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
          forward_chunk(sh, *wk, xt.data() + i * B + b0, n, len);
          measure_jet<T, kChunk>(wk->r.v[2], n, len, p.fast_measure, order, wk->phi, nullptr);
          const T* s = p.scale ? st.data() + i * B + b0 : ones;
          T* yc = ycol.data() + b0;
          QKF_JET_LOOP
          for (int j = 0; j < n; ++j) yc[j] += wt * s[j] * wk->phi[order][j];
        }
      }
      for (int64_t b = 0; b < B; ++b) y[b * O + o] = ycol[b];
    }
  }
}

template <class T> void jet_backward(const CircuitParams& p) {
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int order = p.order, rev_len = order + 1;
  const bool need_x = p.grad_x != nullptr, need_params = p.grad_theta || p.grad_pre_w || p.grad_pre_b;
  const int len = need_x ? order + 2 : order + 1;
  const Shape sh = shape_of(p);
  const int K = theta_rows(p.ansatz, p.reps) * sh.P;
  const std::vector<T> xt = transposed<T>(p.x, B, I);
  const std::vector<T> st = p.scale ? transposed<T>(p.scale, B, I) : std::vector<T>();
  const std::vector<T> gyt = transposed<T>(p.grad_y, B, O);  // [O][B]
  const T* weight = static_cast<const T*>(p.weight);
  T *gx = static_cast<T*>(p.grad_x), *gs = static_cast<T*>(p.grad_scale);
  T *gth = static_cast<T*>(p.grad_theta), *gwt = static_cast<T*>(p.grad_weight);
  T *gpw = static_cast<T*>(p.grad_pre_w), *gpb = static_cast<T*>(p.grad_pre_b);
  const T fact = factorial<T>(order), fact_next = factorial<T>(order + 1);
  const Ones<T> unit;
  const T* ones = unit.v;
#pragma omp parallel num_threads(p.num_threads)
  {
    std::unique_ptr<JetWork<T>> wk(new JetWork<T>());
    std::vector<T> gxcol(B), gscol(B), gtheta(K), gw(p.reps), gb(p.reps);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < I; ++i) {
      std::fill(gxcol.begin(), gxcol.end(), T(0));
      std::fill(gscol.begin(), gscol.end(), T(0));
      const T* xc = xt.data() + i * B;
      for (int64_t o = 0; o < O; ++o) {
        const int64_t edge = o * I + i;
        const T wt = weight[edge];
        load_edge(p, edge, wk->edge);
        std::fill(gtheta.begin(), gtheta.end(), T(0));
        std::fill(gw.begin(), gw.end(), T(0));
        std::fill(gb.begin(), gb.end(), T(0));
        T gweight = T(0);
        for (int64_t b0 = 0; b0 < B; b0 += kChunk) {
          const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
          forward_chunk(sh, *wk, xc + b0, n, len);
          measure_jet<T, kChunk>(wk->r.v[2], n, len, p.fast_measure, order, wk->phi,
                                 need_params ? wk->dphi : nullptr);
          const T* s = p.scale ? st.data() + i * B + b0 : ones;
          const T* gy = gyt.data() + o * B + b0;
          const T *phi = wk->phi[order], *phi_next = wk->phi[need_x ? order + 1 : order];
          if (need_x) {
            QKF_JET_LOOP
            for (int j = 0; j < n; ++j) gxcol[b0 + j] += gy[j] * wt * s[j] * fact_next * phi_next[j];
          }
          QKF_JET_LOOP
          for (int j = 0; j < n; ++j) gscol[b0 + j] += gy[j] * wt * fact * phi[j];
          T gw_chunk = T(0);
#pragma omp simd reduction(+ : gw_chunk)
          for (int j = 0; j < n; ++j) gw_chunk += gy[j] * s[j] * phi[j];
          gweight += fact * gw_chunk;
          if (need_params) {
            for (int k = 0; k < rev_len; ++k) {
              std::fill(wk->lam.v[0][k], wk->lam.v[0][k] + n, T(0));
              std::fill(wk->lam.v[1][k], wk->lam.v[1][k] + n, T(0));
              const T* d = wk->dphi[k];
              T* seed = wk->lam.v[2][k];
              QKF_JET_LOOP
              for (int j = 0; j < n; ++j) seed[j] = gy[j] * wt * s[j] * fact * d[j];
            }
          }
          if (need_params) adjoint_chunk(sh, *wk, xc + b0, n, rev_len, gtheta.data(), gw.data(), gb.data());
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
