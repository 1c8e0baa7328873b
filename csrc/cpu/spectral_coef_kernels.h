// The coefficient-map kernels on the CPU (the steps are spectral_coef.h's): the coefficients of
// every edge and their adjoint, and the Born layer's GEMM operand and its adjoint; plus the
// entry points of this instruction-set copy (cpu/isa.h SpectralCoefKernels).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/isa.h"
#include "cpu/spectral_coef.h"

namespace qkan_fast {
namespace QKF_ISA_NS {
namespace spec {

template <class S, class T, int A, int RC>
void coef_forward(const SpectralCoefParams& p) {
  constexpr int L = lanes<T>();
  const int64_t E = p.out_dim * p.in_dim;
  const int R = RC ? RC : p.reps, M = 2 * R + 1, NQ = p.nq, K = theta_rows(A, R) * theta_cols_of<A>();
  S* out = static_cast<S*>(p.coef_out);
#pragma omp parallel num_threads(p.num_threads)
  {
    CoefWork<T> w(R, K);
    std::vector<Vec<T>> acc(3 * M);
#pragma omp for schedule(static)
    for (int64_t e0 = 0; e0 < E; e0 += L) {
      const EdgeLanes el{e0, 1, static_cast<int>(std::min<int64_t>(L, E - e0))};
      edge_polynomials<S, T, A>(p, R, K, el, w);
      correlate<T>(R, NQ, w, acc.data());
      for (int t = 0; t < NQ * M; ++t) vstore(w.rows.data() + t * L, acc[t]);
      scatter_rows<S, T>(w.rows.data(), NQ * M, el, out);
    }
  }
}

// grad_theta [E, K] and (rpz, when asked) grad_pre_b [E, R] from grad_coef_in [E, NQ, M].
template <class T, int A, int RC>
void coef_backward(const SpectralCoefParams& p) {
  constexpr int L = lanes<T>();
  const int64_t E = p.out_dim * p.in_dim;
  const int R = RC ? RC : p.reps, M = 2 * R + 1, NQ = p.nq, K = theta_rows(A, R) * theta_cols_of<A>();
  const T* gin = static_cast<const T*>(p.grad_coef_in);
#pragma omp parallel num_threads(p.num_threads)
  {
    CoefWork<T> w(R, K);
    std::vector<Vec<T>> g(3 * M);
#pragma omp for schedule(static)
    for (int64_t e0 = 0; e0 < E; e0 += L) {
      const EdgeLanes el{e0, 1, static_cast<int>(std::min<int64_t>(L, E - e0))};
      gather_rows<T, T>(gin, NQ * M, el, w.rows.data());
      for (int t = 0; t < NQ * M; ++t) g[t] = vload(w.rows.data() + t * L);
      edge_polynomials<T, T, A>(p, R, K, el, w);
      store_edge_gradients<T, A>(p, R, K, NQ, el, w, g.data());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The Born layer's coefficient matrix: the weights folded in, in the layout of the GEMM
//   y = c0 + basis^T @ cwt,  basis [2R, I, B] (spectral_kernels.h), cwt [2R, I, O]:
// cwt[k, i, o] = weight[o, i] * C[o, i, 1 + k] (rows cos ku then sin ku) and c0[o] =
// sum_i weight[o, i] C[o, i, 0]. Vectors of edges run over o at fixed i, so cwt, c0 and their
// gradients move as whole vectors; theta and the weights are gathered (stride I).


template <class T, int A, int RC>
void born_coef_forward(const SpectralCoefParams& p) {
  constexpr int L = lanes<T>();
  const int64_t O = p.out_dim, I = p.in_dim, nvo = cdiv(O, L);
  const int R = RC ? RC : p.reps, NB = 2 * R, K = theta_rows(A, R) * theta_cols_of<A>();
  const T* weight = static_cast<const T*>(p.weight);
  T* cwt = static_cast<T*>(p.cw);
  T* c0 = static_cast<T*>(p.c0);
  std::vector<T>& c0w = scratch<T>(0, I * O, false);  // [I, O] weight * C[., ., 0]
#pragma omp parallel num_threads(p.num_threads)
  {
    CoefWork<T> w(R, K);
    std::vector<Vec<T>> acc(2 * R + 1);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < I * nvo; ++t) {
      const int64_t i = t / nvo, o0 = (t % nvo) * L;
      const EdgeLanes el{o0 * I + i, I, static_cast<int>(std::min<int64_t>(L, O - o0))};
      edge_polynomials<T, T, A>(p, R, K, el, w);
      correlate<T>(R, 1, w, acc.data());
      const Vec<T> wv = load_strided(weight + o0 * I + i, I, el.n);
      store_lanes(c0w.data() + i * O + o0, acc[0] * wv, el.n);
      for (int k = 0; k < NB; ++k) store_lanes(cwt + (k * I + i) * O + o0, acc[1 + k] * wv, el.n);
    }
#pragma omp for schedule(static)
    for (int64_t o0 = 0; o0 < O; o0 += L) {
      const int n = static_cast<int>(std::min<int64_t>(L, O - o0));
      Vec<T> s{};
      for (int64_t i = 0; i < I; ++i) s += load_lanes(c0w.data() + i * O + o0, n);
      store_lanes(c0 + o0, s, n);
    }
  }
}

// grad_theta, grad_pre_b (rpz, when asked) and grad_weight (when asked) from grad_cw [2R, I, O] and
// grad_c0 [O].
template <class T, int A, int RC>
void born_coef_backward(const SpectralCoefParams& p) {
  constexpr int L = lanes<T>();
  const int64_t O = p.out_dim, I = p.in_dim, nvo = cdiv(O, L);
  const int R = RC ? RC : p.reps, NB = 2 * R, M = NB + 1, K = theta_rows(A, R) * theta_cols_of<A>();
  const T* weight = static_cast<const T*>(p.weight);
  const T* gcw = static_cast<const T*>(p.grad_cw);
  const T* gc0 = static_cast<const T*>(p.grad_c0);
  T* gweight = static_cast<T*>(p.grad_weight);
#pragma omp parallel num_threads(p.num_threads)
  {
    CoefWork<T> w(R, K);
    std::vector<Vec<T>> g(M), c(M);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < I * nvo; ++t) {
      const int64_t i = t / nvo, o0 = (t % nvo) * L;
      const EdgeLanes el{o0 * I + i, I, static_cast<int>(std::min<int64_t>(L, O - o0))};
      // dL/dC[0] = grad_c0[o] * weight, dL/dC[1+k] = grad_cw[k, i, o] * weight
      g[0] = load_lanes(gc0 + o0, el.n);
      for (int k = 0; k < NB; ++k) g[1 + k] = load_lanes(gcw + (k * I + i) * O + o0, el.n);
      const Vec<T> wv = load_strided(weight + o0 * I + i, I, el.n);
      edge_polynomials<T, T, A>(p, R, K, el, w);
      if (gweight) {
        correlate<T>(R, 1, w, c.data());
        Vec<T> s{};
        for (int m = 0; m < M; ++m) s += g[m] * c[m];
        for (int j = 0; j < el.n; ++j) gweight[(o0 + j) * I + i] = s[j];
      }
      for (int m = 0; m < M; ++m) g[m] *= wv;
      store_edge_gradients<T, A>(p, R, K, 1, el, w, g.data());
    }
  }
}

// --------------------------------------------------------------------------------------------
// entry points of this copy: dtype and ansatz become compile-time constants here, R stays a run-time
// value (RC = 0: no gain measured from a constant R here, see spectral_simd.h dispatch_reps). The
// params were checked by cpu/spectral.cpp: float32 or float64, a known ansatz, nq 1 or 3.

inline void coef_entry(const SpectralCoefParams& p) {
  dispatch_float_dtype(p.dtype, [&](auto t) {
    using T = decltype(t);
    dispatch_ansatz(p.ansatz, [&](auto tag) {
      constexpr int A = decltype(tag)::value;
      if (std::is_same<T, float>::value && p.exact)
        coef_forward<float, double, A, 0>(p);  // float64 arithmetic, rounded once
      else
        coef_forward<T, T, A, 0>(p);
    });
  });
}

inline void coef_backward_entry(const SpectralCoefParams& p) {
  dispatch_float_dtype(p.dtype, [&](auto t) {
    dispatch_ansatz(p.ansatz, [&](auto tag) {
      coef_backward<decltype(t), decltype(tag)::value, 0>(p);
    });
  });
}

inline void born_coef_entry(const SpectralCoefParams& p) {
  dispatch_float_dtype(p.dtype, [&](auto t) {
    dispatch_ansatz(p.ansatz, [&](auto tag) {
      born_coef_forward<decltype(t), decltype(tag)::value, 0>(p);
    });
  });
}

inline void born_coef_backward_entry(const SpectralCoefParams& p) {
  dispatch_float_dtype(p.dtype, [&](auto t) {
    dispatch_ansatz(p.ansatz, [&](auto tag) {
      born_coef_backward<decltype(t), decltype(tag)::value, 0>(p);
    });
  });
}

}  // namespace spec

const SpectralCoefKernels spectral_coef_kernels = {spec::coef_entry, spec::coef_backward_entry, spec::born_coef_entry,
                                                   spec::born_coef_backward_entry};

}  // namespace QKF_ISA_NS
}  // namespace qkan_fast
