// CPU schedules of the circuit engine: forward (sum over inputs fused), postacts and backward.
//
// This header is compiled once per instruction set (circuit_generic.cpp, circuit_avx2.cpp,
// circuit_avx512.cpp), each inside its own namespace QKF_ISA_NS and exporting its entry points as
// a CircuitKernels table; cpu/isa.h picks one at run time.
// The batch is the vector axis: for one edge, a chunk of samples runs the same gates with the
// edge's angles broadcast, with one qubit per SIMD lane.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/isa.h"
#include "cpu/vec_math.h"
#include "daruan.h"
#include "params.h"

#ifndef QKF_ISA_NS
#error "define QKF_ISA_NS before including circuit_kernels.h"
#endif

// Independent iterations over the samples of a chunk. GCC vectorises these loops with ivdep but
// not with `omp simd`, whose lowering of the per-lane qubit structs defeats it (checked with
// -fopt-info-vec); reductions keep `omp simd reduction`, which licenses the reordering.
#if defined(__clang__)
#define QKF_VECTOR_LOOP _Pragma("clang loop vectorize(enable) interleave(enable)")
#elif defined(__GNUC__)
#define QKF_VECTOR_LOOP _Pragma("GCC ivdep")
#else
#define QKF_VECTOR_LOOP
#endif

namespace qkan_fast {
namespace QKF_ISA_NS {

constexpr int kChunk = 64;  // samples per SIMD batch: a few vectors, small enough for L1 buffers

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per-call preparation shared by forward and backward: theta folded to (cos, sin) pairs once per
// edge, and the data gate's pair once per (b, i) (transposed to [I][B] so a chunk of
// samples is contiguous). With encodings the data gate differs per edge, so only x^T is kept.
template <class T> struct Prepared {
  const Rot<T>* rot = nullptr;  // [O*I][K], K = Rt*P: rot_store, or the caller's (CircuitParams::theta_rot)
  std::vector<Rot<T>> rot_store;
  std::vector<T> dc, ds;     // [I][B] (not encode)
  std::vector<T> xt;         // [I][B] (encode)
  int K = 0;
};

// Data gate pairs (c, s) of n encoded values e (c may alias e).
template <class T, int A>
void data_gates(const T* e, int64_t n, T* c, T* s) {
  if (A == kPX) {
    QKF_VECTOR_LOOP
    for (int64_t j = 0; j < n; ++j) {
      const Rot<T> h = px_data_gate<T, A>(e[j]);
      c[j] = h.c;
      s[j] = h.s;
    }
    return;
  }
  alignas(64) T arg[kChunk];
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int m = static_cast<int>(std::min<int64_t>(kChunk, n - j0));
    for (int j = 0; j < m; ++j) arg[j] = data_trig_arg<T, A>(e[j0 + j]);
    sincos_chunk(arg, m, s + j0, c + j0);
  }
}

template <class T, int A>
Prepared<T> prepare(const CircuitParams& p) {
  Prepared<T> pr;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  constexpr int P = theta_cols_of<A>();
  pr.K = theta_rows(A, p.reps) * P;
  const int64_t n_theta = O * I * pr.K;
  const T* theta = static_cast<const T*>(p.theta);
  const T* x = static_cast<const T*>(p.x);
  const bool fold = p.theta_rot == nullptr;
  if (fold) {
    pr.rot_store.resize(n_theta);
    pr.rot = pr.rot_store.data();
  } else {
    pr.rot = static_cast<const Rot<T>*>(p.theta_rot);
  }
#pragma omp parallel num_threads(p.num_threads)
  {
    if (fold) {
#pragma omp for schedule(static)
      for (int64_t k = 0; k < n_theta; ++k) pr.rot_store[k] = fold_theta<T, A>(theta[k], static_cast<int>(k % P));
    }
    if (p.encode) {
#pragma omp single
      pr.xt.resize(B * I);
#pragma omp for schedule(static)
      for (int64_t i = 0; i < I; ++i)
        for (int64_t b = 0; b < B; ++b) pr.xt[i * B + b] = x[b * I + i];
    } else {
#pragma omp single
      {
        pr.dc.resize(B * I);
        pr.ds.resize(B * I);
      }
#pragma omp for schedule(static)
      for (int64_t i = 0; i < I; ++i) {
        T* dc = pr.dc.data() + i * B;
        T* ds = pr.ds.data() + i * B;
        for (int64_t b = 0; b < B; ++b) dc[b] = x[b * I + i];
        data_gates<T, A>(dc, B, dc, ds);
      }
    }
  }
  return pr;
}

// Inputs of one edge over one chunk of samples.
template <class T> struct EdgeChunk {
  int n;                // samples in the chunk (<= kChunk)
  const Rot<T>* rot;    // [K] this edge's folded theta
  const T* dc;          // [n] data half-angle cos (not encode)
  const T* ds;          // [n] data half-angle sin (not encode)
  const T* xs;          // [n] inputs (encode)
  const T* w;           // [R] encoding weights of this edge (encode)
  const T* b;           // [R] encoding biases of this edge (encode)
};

// The qubits of one chunk, one per sample, kept as four arrays so that every gate is one SIMD loop
// over the chunk (GCC does not vectorise an outer loop around the repetition loop).
template <class T> struct ChunkState {
  alignas(64) T ar[kChunk];
  alignas(64) T ai[kChunk];
  alignas(64) T br[kChunk];
  alignas(64) T bi[kChunk];
  inline Qubit<T> get(int j) const { return {ar[j], ai[j], br[j], bi[j]}; }
  inline void set(int j, const Qubit<T>& q) { ar[j] = q.ar; ai[j] = q.ai; br[j] = q.br; bi[j] = q.bi; }
};

// Data gate (cos, sin) pairs of repetition l for the chunk. Without encodings they are the same for
// every repetition and were computed once per (b, i); with encodings they are made here.
// Kept as two arrays (cos, sin): GCC does not vectorise loads of a struct array here.
template <class T> struct ChunkData {
  alignas(64) T c[kChunk];
  alignas(64) T s[kChunk];
};

template <class T, int A, bool ENC>
void chunk_data(const EdgeChunk<T>& c, int l, ChunkData<T>& buf) {
  if constexpr (ENC) {
    const T w = c.w[l], b = c.b[l];
    QKF_VECTOR_LOOP
    for (int j = 0; j < c.n; ++j) buf.c[j] = w * c.xs[j] + b;
    data_gates<T, A>(buf.c, c.n, buf.c, buf.s);
  } else {
    std::copy(c.dc, c.dc + c.n, buf.c);
    std::copy(c.ds, c.ds + c.n, buf.s);
  }
}

// Run the circuit of one edge over a chunk of samples: st holds the final states.
template <class T, int A, bool ENC>
void chunk_forward(const EdgeChunk<T>& c, int reps, ChunkState<T>& st, ChunkData<T>& dbuf) {
  constexpr int P = theta_cols_of<A>();
  const Qubit<T> q0 = plus_state<T>();
  for (int j = 0; j < c.n; ++j) st.set(j, q0);
  if (!ENC) chunk_data<T, A, ENC>(c, 0, dbuf);
  for (int l = 0; l < reps; ++l) {
    if (ENC) chunk_data<T, A, ENC>(c, l, dbuf);
    Rot<T> row[P];
    for (int k = 0; k < P; ++k) row[k] = c.rot[l * P + k];
QKF_VECTOR_LOOP
    for (int j = 0; j < c.n; ++j) {
      Qubit<T> q = st.get(j);
      apply_rep<T, A>(q, row, Rot<T>{dbuf.c[j], dbuf.s[j]});
      st.set(j, q);
    }
  }
  if (A != kREAL) {
    Rot<T> row[P];
    for (int k = 0; k < P; ++k) row[k] = c.rot[reps * P + k];
QKF_VECTOR_LOOP
    for (int j = 0; j < c.n; ++j) {
      Qubit<T> q = st.get(j);
      apply_final<T, A>(q, row);
      st.set(j, q);
    }
  }
}

// phi[j] for the samples of one chunk.
template <class T, int A, bool FAST, bool ENC>
void chunk_phi(const EdgeChunk<T>& c, int reps, T* __restrict phi) {
  ChunkState<T> st;
  ChunkData<T> dbuf;
  chunk_forward<T, A, ENC>(c, reps, st, dbuf);
QKF_VECTOR_LOOP
  for (int j = 0; j < c.n; ++j) phi[j] = measure<T, FAST>(st.get(j), nullptr);
}

// Per-lane gradient sums of one edge over the chunks of a block. Lanes are added up once per
// edge at the end: horizontal sums would otherwise dominate short chunks.
template <class T> struct EdgeGrads {
  std::vector<T> th;  // [K][kChunk]  d/d theta
  std::vector<T> pw;  // [R][kChunk]  d/d preacts_weight (encode)
  std::vector<T> pb;  // [R][kChunk]  d/d preacts_bias (encode)
  std::vector<T> w;   // [kChunk]     d/d weight = grad_y * phi
  EdgeGrads(int K, int R)
      : th(static_cast<size_t>(K) * kChunk), pw(static_cast<size_t>(R) * kChunk),
        pb(static_cast<size_t>(R) * kChunk), w(kChunk) {}
  void clear() {
    std::fill(th.begin(), th.end(), T(0));
    std::fill(pw.begin(), pw.end(), T(0));
    std::fill(pb.begin(), pb.end(), T(0));
    std::fill(w.begin(), w.end(), T(0));
  }
  static T lane_sum(const T* v) {
    T s = T(0);
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < kChunk; ++j) s += v[j];
    return s;
  }
};

// Recompute one chunk of an edge and sweep the adjoint back, each sample weighted by coef[j]
// (d loss / d phi). Adds the per-lane gradients to acc, coef * d phi / d x to dx[j], and
// gy[j] * phi[j] to acc.w when gy is given (the weight gradient of the fused layer).
template <class T, int A, bool FAST, bool ENC>
void chunk_grad(const EdgeChunk<T>& c, int reps, const T* __restrict coef, const T* __restrict gy,
                EdgeGrads<T>& acc, T* __restrict dx) {
  constexpr int P = theta_cols_of<A>();
  ChunkState<T> st, lam;
  ChunkData<T> dbuf;
  chunk_forward<T, A, ENC>(c, reps, st, dbuf);
  alignas(64) T phi[kChunk];
QKF_VECTOR_LOOP
  for (int j = 0; j < c.n; ++j) {
    Qubit<T> l;
    phi[j] = measure<T, FAST>(st.get(j), &l);
    const T cj = coef[j];
    lam.set(j, {l.ar * cj, l.ai * cj, l.br * cj, l.bi * cj});
  }
  if (gy) {
    T* __restrict wa = acc.w.data();
QKF_VECTOR_LOOP
    for (int j = 0; j < c.n; ++j) wa[j] += gy[j] * phi[j];
  }
  if (A != kREAL) {
    Rot<T> row[P];
    for (int k = 0; k < P; ++k) row[k] = c.rot[reps * P + k];
    T* __restrict g0 = acc.th.data() + (reps * P) * kChunk;
    T* __restrict g1 = acc.th.data() + (reps * P + P - 1) * kChunk;
QKF_VECTOR_LOOP
    for (int j = 0; j < c.n; ++j) {
      Qubit<T> q = st.get(j), l = lam.get(j);
      T g[2];
      adjoint_final<T, A>(q, l, row, g);
      g0[j] += g[0];
      if (P == 2) g1[j] += g[1];
      st.set(j, q);
      lam.set(j, l);
    }
  }
  if (!ENC) chunk_data<T, A, ENC>(c, 0, dbuf);
  for (int r = reps - 1; r >= 0; --r) {
    if (ENC) chunk_data<T, A, ENC>(c, r, dbuf);
    Rot<T> row[P];
    for (int k = 0; k < P; ++k) row[k] = c.rot[r * P + k];
    T* __restrict g0 = acc.th.data() + (r * P) * kChunk;
    T* __restrict g1 = acc.th.data() + (r * P + P - 1) * kChunk;
    T* __restrict pw = acc.pw.data() + r * kChunk;
    T* __restrict pb = acc.pb.data() + r * kChunk;
    const T wr = ENC ? c.w[r] : T(1);
QKF_VECTOR_LOOP
    for (int j = 0; j < c.n; ++j) {
      Qubit<T> q = st.get(j), l = lam.get(j);
      T g[2];
      const Rot<T> d{dbuf.c[j], dbuf.s[j]};
      const T gd = adjoint_rep<T, A>(q, l, row, d, g) * data_angle_slope<T, A>(d);  // d/d e_r
      g0[j] += g[0];
      if (P == 2) g1[j] += g[1];
      if (ENC) {
        pb[j] += gd;
        pw[j] += gd * c.xs[j];
      }
      dx[j] += wr * gd;
      st.set(j, q);
      lam.set(j, l);
    }
  }
}

template <class T, int A, bool FAST, bool ENC>
void forward_impl(const CircuitParams& p, const Prepared<T>& pr, bool store_postacts) {
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int R = p.reps, K = pr.K;
  const T* weight = static_cast<const T*>(p.weight);
  const T* pre_w = static_cast<const T*>(p.pre_w);
  const T* pre_b = static_cast<const T*>(p.pre_b);
  T* y = static_cast<T*>(p.y);
  T* post = static_cast<T*>(p.postacts);
  const int64_t n_chunks = ceil_div(B, kChunk);
  // tiles (o, chunk of b): every tile loops over i and owns its outputs
#pragma omp parallel for schedule(static) num_threads(p.num_threads)
  for (int64_t t = 0; t < O * n_chunks; ++t) {
    const int64_t o = t / n_chunks, b0 = (t % n_chunks) * kChunk;
    const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
    alignas(64) T acc[kChunk] = {};
    alignas(64) T phi[kChunk];
    for (int64_t i = 0; i < I; ++i) {
      const int64_t e = o * I + i;
      if (!store_postacts && weight[e] == T(0)) continue;  // pruned edge
      EdgeChunk<T> c{n, pr.rot + e * K, nullptr, nullptr, nullptr, nullptr, nullptr};
      if constexpr (ENC) {
        c.xs = pr.xt.data() + i * B + b0;
        c.w = pre_w + e * R;
        c.b = pre_b + e * R;
      } else {
        c.dc = pr.dc.data() + i * B + b0;
        c.ds = pr.ds.data() + i * B + b0;
      }
      chunk_phi<T, A, FAST, ENC>(c, R, phi);
      if (store_postacts) {
        for (int j = 0; j < n; ++j) post[(b0 + j) * O * I + e] = phi[j];
      } else {
        const T we = weight[e];
QKF_VECTOR_LOOP
        for (int j = 0; j < n; ++j) acc[j] += we * phi[j];
      }
    }
    if (!store_postacts)
      for (int j = 0; j < n; ++j) y[(b0 + j) * O + o] = acc[j];
  }
}

// Backward: work items are (i, block of samples). An item owns grad_x[block, i] outright and
// writes its per-edge sums (theta, encodings, weight) to its block's partial slot; the blocks are
// then added in a fixed order. No atomics, and the split depends on the sizes only, so results
// are bit-identical run to run whatever the thread count.
template <class T, int A, bool FAST, bool ENC>
void backward_impl(const CircuitParams& p, const Prepared<T>& pr) {
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int R = p.reps, K = pr.K;
  const T* weight = static_cast<const T*>(p.weight);
  const T* pre_w = static_cast<const T*>(p.pre_w);
  const T* pre_b = static_cast<const T*>(p.pre_b);
  const T* gy = static_cast<const T*>(p.grad_y);
  const T* gpost = static_cast<const T*>(p.grad_postacts);
  const bool need_x = p.grad_x, need_theta = p.grad_theta, need_w = p.grad_weight;
  const bool need_pw = ENC && p.grad_pre_w, need_pb = ENC && p.grad_pre_b;

  // grad_y transposed to [O][B] so a chunk's coefficients are contiguous
  std::vector<T> gyt;
  if (gy) {
    gyt.resize(O * B);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t o = 0; o < O; ++o) gyt[o * B + b] = gy[b * O + o];
  }
  const int64_t n_chunks = ceil_div(B, kChunk);
  // enough items to keep threads busy when I is small; a function of the sizes only
  const int64_t n_blocks = std::max<int64_t>(1, std::min<int64_t>(n_chunks, ceil_div(32, I)));
  const int64_t chunks_per_block = ceil_div(n_chunks, n_blocks);
  const int64_t per_edge = K + 2 * R + 1;  // theta, pre_w, pre_b, weight sums of one edge
  std::vector<T> partial(n_blocks * O * I * per_edge, T(0));  // [blk][O*I][per_edge]
  std::vector<T> dxt(I * B, T(0));                             // [I][B]

#pragma omp parallel num_threads(p.num_threads)
  {
    EdgeGrads<T> acc(K, R);
    alignas(64) T coef[kChunk];
#pragma omp for schedule(static)
    for (int64_t item = 0; item < I * n_blocks; ++item) {
      const int64_t i = item / n_blocks, blk = item % n_blocks;
      const int64_t c_begin = blk * chunks_per_block;
      const int64_t c_end = std::min(n_chunks, c_begin + chunks_per_block);
      for (int64_t o = 0; o < O; ++o) {
        const int64_t e = o * I + i;
        const T we = weight ? weight[e] : T(1);
        if (!gpost && we == T(0) && !need_w) continue;  // pruned edge: no gradient flows
        acc.clear();
        for (int64_t ch = c_begin; ch < c_end; ++ch) {
          const int64_t b0 = ch * kChunk;
          const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
          const T* gy_o = gy ? gyt.data() + o * B + b0 : nullptr;
          if (gpost) {
            for (int j = 0; j < n; ++j) coef[j] = gpost[(b0 + j) * O * I + e];
          } else {
QKF_VECTOR_LOOP
            for (int j = 0; j < n; ++j) coef[j] = we * gy_o[j];
          }
          EdgeChunk<T> c{n, pr.rot + e * K, nullptr, nullptr, nullptr, nullptr, nullptr};
          if constexpr (ENC) {
            c.xs = pr.xt.data() + i * B + b0;
            c.w = pre_w + e * R;
            c.b = pre_b + e * R;
          } else {
            c.dc = pr.dc.data() + i * B + b0;
            c.ds = pr.ds.data() + i * B + b0;
          }
          chunk_grad<T, A, FAST, ENC>(c, R, coef, need_w ? gy_o : nullptr, acc, dxt.data() + i * B + b0);
        }
        T* out = partial.data() + (blk * O * I + e) * per_edge;
        for (int k = 0; k < K; ++k) out[k] = EdgeGrads<T>::lane_sum(acc.th.data() + k * kChunk);
        if (ENC)
          for (int l = 0; l < R; ++l) {
            out[K + l] = EdgeGrads<T>::lane_sum(acc.pw.data() + l * kChunk);
            out[K + R + l] = EdgeGrads<T>::lane_sum(acc.pb.data() + l * kChunk);
          }
        out[K + 2 * R] = EdgeGrads<T>::lane_sum(acc.w.data());
      }
    }

    // fixed-order sum over blocks, then scatter to the output layouts
    std::vector<T> sums(per_edge);
#pragma omp for schedule(static)
    for (int64_t e = 0; e < O * I; ++e) {
      std::fill(sums.begin(), sums.end(), T(0));
      for (int64_t blk = 0; blk < n_blocks; ++blk) {
        const T* src = partial.data() + (blk * O * I + e) * per_edge;
        for (int64_t k = 0; k < per_edge; ++k) sums[k] += src[k];
      }
      if (need_theta) std::copy(sums.begin(), sums.begin() + K, static_cast<T*>(p.grad_theta) + e * K);
      if (need_pw) std::copy(sums.begin() + K, sums.begin() + K + R, static_cast<T*>(p.grad_pre_w) + e * R);
      if (need_pb) std::copy(sums.begin() + K + R, sums.begin() + K + 2 * R, static_cast<T*>(p.grad_pre_b) + e * R);
      if (need_w) static_cast<T*>(p.grad_weight)[e] = sums[K + 2 * R];
    }
    if (need_x) {
      T* gx = static_cast<T*>(p.grad_x);
#pragma omp for schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < I; ++i) gx[b * I + i] = dxt[i * B + b];
    }
  }
  // encodings that were asked for but not used (frozen path) have zero gradient
  if (!ENC) {
    if (p.grad_pre_w) std::memset(p.grad_pre_w, 0, sizeof(T) * O * I * R);
    if (p.grad_pre_b) std::memset(p.grad_pre_b, 0, sizeof(T) * O * I * R);
  }
}

// Entry: dtype, ansatz, measure and encoding become compile-time constants here.
enum class Mode { kForward, kPostacts, kBackward };

template <class T>
void run_typed(const CircuitParams& p, Mode mode) {
  dispatch_ansatz(p.ansatz, [&](auto tag) {
    constexpr int A = decltype(tag)::value;
    const Prepared<T> pr = prepare<T, A>(p);
    auto go = [&](auto fast_c, auto enc_c) {
      constexpr bool FAST = decltype(fast_c)::value, ENC = decltype(enc_c)::value;
      if (mode == Mode::kBackward)
        backward_impl<T, A, FAST, ENC>(p, pr);
      else
        forward_impl<T, A, FAST, ENC>(p, pr, mode == Mode::kPostacts);
    };
    using TT = std::true_type;
    using FF = std::false_type;
    if (p.fast_measure) {
      if (p.encode) go(TT{}, TT{}); else go(TT{}, FF{});
    } else {
      if (p.encode) go(FF{}, TT{}); else go(FF{}, FF{});
    }
  });
}

// Below this much work per thread (edge-sample-repetitions, about 20 us) waking another thread
// costs more than it saves: small layers (LSTM steps, HQKAN latents) run on fewer threads.
constexpr int64_t kWorkPerThread = 64 * 1024;

inline void run(const CircuitParams& p, Mode mode) {
  CircuitParams q = p;
  const int64_t work = p.batch * p.out_dim * p.in_dim * (p.reps + 1) * (mode == Mode::kBackward ? 4 : 1);
  q.num_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(p.num_threads, work / kWorkPerThread)));
  // circuit.cpp checked the dtype: float32 or float64
  if (p.dtype == kFloat64)
    run_typed<double>(q, mode);
  else
    run_typed<float>(q, mode);
}

}  // namespace QKF_ISA_NS

namespace QKF_ISA_NS {
const CircuitKernels circuit_kernels = {
    [](const CircuitParams& p) { run(p, Mode::kForward); },
    [](const CircuitParams& p) { run(p, Mode::kPostacts); },
    [](const CircuitParams& p) { run(p, Mode::kBackward); },
};
}  // namespace QKF_ISA_NS
}  // namespace qkan_fast
