// CUDA backward of the circuit engine, by adjoint recomputation (csrc/daruan.h edge_adjoint):
// nothing is saved from the forward but x and the parameters, and no per-repetition state.
//
// Outputs (each only when its pointer is set): grad_x [B, I]; grad_theta [O, I, Rt, P];
// grad_pre_w, grad_pre_b [O, I, R] (encode; zeroed otherwise); grad_weight [O, I] =
// sum_b grad_y[b,o] * phi. The upstream gradient is either grad_y [B, O] (scaled per edge by
// weight [O, I]) or grad_postacts [B, O, I].
//
// Two kernels, one per reduction axis, both free of atomics and scratch memory, so every result
// is a fixed-order sum: bit-identical run to run.
//
// Edge kernel (sums over b). A block owns TO consecutive outputs o of one input i, one thread per
// (edge, sample slot) with the edge fastest; SL = NT / TO sample slots walk the batch in chunks.
// The block stages its edges' folded theta (fold_theta: (cos, sin) pairs) and encodings once, and
// per chunk the samples' data gates (data_gate of x, or x itself when encoding). Each thread recomputes its edge's state at each of its samples,
// sweeps the adjoint back and adds d phi / d theta, d phi / d w, d phi / d b and grad_y * phi to
// its own column of a [NQ][NT] shared-memory accumulator (no conflicts, no atomics). At the end
// the columns of the SL slots are added by a fixed tree and the per-edge sums written directly.
// When one block holds every output (TO >= O) and grad_x is wanted, the same kernel also reduces
// grad_x[b, i] = sum_o over its TO threads of each sample (warp butterfly, then fixed-order sum
// of the warps' partials) and no second pass is needed ("fused").
//
// Input kernel (sums over o, the unfused grad_x). A block owns TB samples x TI inputs, one thread
// per (b, i) with b fastest, and walks the outputs in chunks: it stages the chunk's edges (TI x CO
// folded theta, encodings, weights) and grad_y (or grad_postacts) tile; each thread recomputes
// the state of each edge (o, i) at its sample, sweeps the adjoint and accumulates d y / d x[b,i]
// in a register.
#include "common.cuh"

namespace qkan_fast {
namespace cuda_kernels {

struct EdgeConfig {
  int TO = 1;       // outputs (edges) per block, a power of two
  int NT = 32;      // threads per block, a power of two >= max(32, TO)
  int J = 1;        // samples per thread per chunk
  int K = 1;        // theta entries per edge
  int S = 1;        // shared stride of an edge slot
  int NQ = 1;       // accumulated values per edge
  int64_t n_ot = 1; // output tiles
  bool need_theta = false, need_pw = false, need_pb = false, need_w = false;
  bool gpost = false;  // upstream gradient is grad_postacts [B, O, I] (else grad_y [B, O] with weight)
  bool fuse = false;   // also reduce grad_x over the block's outputs (one block holds every output)
};

// accumulator rows: theta [0, K), pre_w [K, K+R), pre_b [K+R, K+2R) (ENC), weight (grad_y mode)
template <bool ENC> QKF_DEV int acc_row_w(int K, int R) { return K + (ENC ? 2 * R : 0); }

// The measure, the upstream gradient's kind and the fused grad_x are uniform run-time branches:
// one kernel per dtype x ansatz x encoding instead of eight (build time).
template <class T, int A, bool ENC>
QKF_GLOBAL void __launch_bounds__(512) circuit_backward_edge_kernel(const CircuitParams p, const EdgeConfig cfg) {
  using C = Acc<T>;
  const bool FAST = p.fast_measure, GPOST = cfg.gpost, FUSE_DX = cfg.fuse;
  QKF_DYNAMIC_SMEM(smem_raw);
  C* smem = reinterpret_cast<C*>(smem_raw);
  const int TO = cfg.TO, NT = cfg.NT, SL = NT / TO, J = cfg.J, CB = SL * J, K = cfg.K, S = cfg.S, NQ = cfg.NQ;
  const int R = p.reps;
  const int NWO = TO > 32 ? TO / 32 : 1;  // warps per sample slot (fused grad_x partials)
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;

  C* rot_s = smem;                      // [TO][S]  edge slots
  C* acc_s = rot_s + TO * S;            // [NQ][NT] per-thread sums
  C* we_s = acc_s + NQ * NT;            // [TO]     weight (grad_y mode)
  C* d_s = we_s + TO;                   // [CB] c, [CB] s; ENC: [CB] x
  C* dxp_s = d_s + (ENC ? 1 : 2) * CB;  // [CB][NWO] grad_x partials (fused)

  const int tid = static_cast<int>(threadIdx.x);
  const int o_off = tid % TO, slot = tid / TO;
  const int64_t i = static_cast<int64_t>(blockIdx.x) / cfg.n_ot;
  const int64_t o0 = (static_cast<int64_t>(blockIdx.x) % cfg.n_ot) * TO;
  const int64_t o = o0 + o_off;
  const bool o_valid = o < O;

  const T* x = static_cast<const T*>(p.x);
  const T* theta = static_cast<const T*>(p.theta);
  const T* pre_w = static_cast<const T*>(p.pre_w);
  const T* pre_b = static_cast<const T*>(p.pre_b);
  const T* weight = static_cast<const T*>(p.weight);
  const T* gy = static_cast<const T*>(p.grad_y);
  const T* gpost = static_cast<const T*>(p.grad_postacts);
  const bool need_theta = cfg.need_theta, need_pw = ENC && cfg.need_pw, need_pb = ENC && cfg.need_pb;
  const bool need_w = !GPOST && cfg.need_w;
  const bool need_adjoint = need_theta || need_pw || need_pb || FUSE_DX;
  const int row_w = acc_row_w<ENC>(K, R);

  // the block's edges, once
  for (int idx = tid; idx < TO * K; idx += NT) {
    const int oo = idx / K, k = idx % K;
    const int64_t og = o0 + oo;
    Rot<C> rt{C(1), C(0)};  // identity for padding edges
    if (og < O) rt = fold_theta<C, A>(ld(theta, (og * I + i) * K + k), k % theta_cols(A));
    rot_s[oo * S + 2 * k] = rt.c;
    rot_s[oo * S + 2 * k + 1] = rt.s;
  }
  if (ENC) {
    for (int idx = tid; idx < TO * R; idx += NT) {
      const int oo = idx / R, l = idx % R;
      const int64_t og = o0 + oo;
      rot_s[oo * S + 2 * K + l] = og < O ? ld(pre_w, (og * I + i) * R + l) : C(0);
      rot_s[oo * S + 2 * K + R + l] = og < O ? ld(pre_b, (og * I + i) * R + l) : C(0);
    }
  }
  for (int idx = tid; idx < TO; idx += NT) {
    const int64_t og = o0 + idx;
    we_s[idx] = (!GPOST && og < O) ? ld(weight, og * I + i) : C(1);
  }
  for (int idx = tid; idx < NQ * NT; idx += NT) acc_s[idx] = C(0);

  const C* slot_s = rot_s + o_off * S;
  const Rot<C>* rot = reinterpret_cast<const Rot<C>*>(slot_s);
  const C* ew = slot_s + 2 * K;  // encoding weights (ENC)
  const C* eb = ew + R;          // encoding biases (ENC)
  C* acc = acc_s + tid;          // this thread's column: row q at acc[q * NT]

  for (int64_t b0 = 0; b0 < B; b0 += CB) {
    __syncthreads();  // staging buffers free (and, on the first chunk, the edge slots written)
    for (int j = tid; j < CB; j += NT) {
      const int64_t bg = b0 + j;
      const C xv = bg < B ? ld(x, bg * I + i) : C(0);
      if (ENC) {
        d_s[j] = xv;
      } else {
        const Rot<C> h = data_gate<C, A>(xv);
        d_s[j] = h.c;
        d_s[CB + j] = h.s;
      }
    }
    __syncthreads();

    for (int jj = 0; jj < J; ++jj) {
      const int j = jj * SL + slot;
      const int64_t bg = b0 + j;
      C dx = C(0);
      if (o_valid && bg < B) {
        const C we = we_s[o_off];
        C gyv = C(0), coef;
        if (GPOST) {
          coef = ld(gpost, (bg * O + o) * I + i);
        } else {
          gyv = ld(gy, bg * O + o);
          coef = we * gyv;
        }
        if (GPOST || we != C(0) || need_w) {  // a pruned edge passes no gradient but its own weight's
          const C xv = ENC ? d_s[j] : C(0);
          const Rot<C> d0 = ENC ? Rot<C>{C(1), C(0)} : Rot<C>{d_s[j], d_s[CB + j]};
          auto data = [&](int l) { return ENC ? data_gate<C, A>(ew[l] * xv + eb[l]) : d0; };
          const Qubit<C> q = edge_forward<C, A>(rot, R, data);
          Qubit<C> lam;
          const C phi = FAST ? measure<C, true>(q, &lam) : measure<C, false>(q, &lam);
          if (need_w) acc[row_w * NT] += gyv * phi;
          if (need_adjoint) {
            lam = {lam.ar * coef, lam.ai * coef, lam.br * coef, lam.bi * coef};
            const C slope0 = ENC ? C(1) : data_angle_slope<C, A>(d0);
            edge_adjoint<C, A>(
                q, lam, rot, R, data,
                [&](int k, C g) {
                  if (need_theta) acc[k * NT] += g;
                },
                [&](int l, C g) {
                  const C ge = g * (ENC ? data_angle_slope<C, A>(data(l)) : slope0);  // d phi / d e_l
                  if (need_pw) acc[(K + l) * NT] += ge * xv;
                  if (need_pb) acc[(K + R + l) * NT] += ge;
                  if (FUSE_DX) dx += ENC ? ge * ew[l] : ge;
                });
          }
        }
      }
      if (FUSE_DX) {
        // sum over the TO edges of this sample: butterfly within the warp, then warp partials
        dx = group_sum(dx, TO < 32 ? TO : 32);
        if ((o_off & 31) == 0) dxp_s[j * NWO + (o_off >> 5)] = dx;
      }
    }

    if (FUSE_DX) {
      __syncthreads();
      T* gx = static_cast<T*>(p.grad_x);
      for (int j = tid; j < CB; j += NT) {
        const int64_t bg = b0 + j;
        if (bg >= B) continue;
        C s = C(0);
        for (int w = 0; w < NWO; ++w) s += dxp_s[j * NWO + w];
        st(gx, bg * I + i, s);
      }
    }
  }

  // fixed-order tree over the SL sample slots of every (row, edge); slot 0 ends with the sum
  __syncthreads();
  for (int half = SL / 2; half >= 1; half /= 2) {
    for (int idx = tid; idx < NQ * half * TO; idx += NT) {
      const int q = idx / (half * TO), r = idx % (half * TO);  // r = slot * TO + edge, slot < half
      acc_s[q * NT + r] += acc_s[q * NT + r + half * TO];
    }
    __syncthreads();
  }
  for (int idx = tid; idx < NQ * TO; idx += NT) {
    const int q = idx / TO, oo = idx % TO;
    const int64_t og = o0 + oo;
    if (og >= O) continue;
    const int64_t e = og * I + i;
    const C v = acc_s[q * NT + oo];
    if (q < K) {
      if (need_theta) st(static_cast<T*>(p.grad_theta), e * K + q, v);
    } else if (ENC && q < K + R) {
      if (need_pw) st(static_cast<T*>(p.grad_pre_w), e * R + (q - K), v);
    } else if (ENC && q < K + 2 * R) {
      if (need_pb) st(static_cast<T*>(p.grad_pre_b), e * R + (q - K - R), v);
    } else if (need_w) {
      st(static_cast<T*>(p.grad_weight), e, v);
    }
  }
}

struct InputConfig {
  int TB = 1;       // samples per block (fastest)
  int TI = 1;       // inputs per block
  int CO = 1;       // outputs per staged chunk
  int K = 1;
  int S = 1;
  int64_t nbt = 1;  // sample tiles
  bool gpost = false;  // upstream gradient is grad_postacts (else grad_y with weight)
};

template <class T, int A, bool ENC>
QKF_GLOBAL void __launch_bounds__(256) circuit_backward_input_kernel(const CircuitParams p, const InputConfig cfg) {
  using C = Acc<T>;
  const bool FAST = p.fast_measure, GPOST = cfg.gpost;
  QKF_DYNAMIC_SMEM(smem_raw);
  C* smem = reinterpret_cast<C*>(smem_raw);
  const int TB = cfg.TB, TI = cfg.TI, CO = cfg.CO, K = cfg.K, S = cfg.S, R = p.reps;
  const int NT = TB * TI;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;

  // lanes differ in b (stride 1) or, when TB < 32, in i (edge slots of odd stride S); rows of TB
  // samples are padded to DS = TB + 1 so the staging stores are conflict-free too
  const int DS = TB + 1;
  C* rot_s = smem;                          // [CO][TI][S]  edge slots
  C* w_s = rot_s + CO * TI * S;             // [CO][TI]     weight (grad_y mode)
  C* g_s = w_s + (GPOST ? 0 : CO * TI);     // grad_y: [CO][DS]; grad_postacts: [CO][TI][DS]

  const int tid = static_cast<int>(threadIdx.x);
  const int b_off = tid % TB, i_off = tid / TB;
  const int64_t b0 = (static_cast<int64_t>(blockIdx.x) % cfg.nbt) * TB;
  const int64_t i0 = (static_cast<int64_t>(blockIdx.x) / cfg.nbt) * TI;
  const int64_t b = b0 + b_off, i = i0 + i_off;
  const bool active = b < B && i < I;

  const T* x = static_cast<const T*>(p.x);
  const T* theta = static_cast<const T*>(p.theta);
  const T* pre_w = static_cast<const T*>(p.pre_w);
  const T* pre_b = static_cast<const T*>(p.pre_b);
  const T* weight = static_cast<const T*>(p.weight);
  const T* gy = static_cast<const T*>(p.grad_y);
  const T* gpost = static_cast<const T*>(p.grad_postacts);

  const C xv = active ? ld(x, b * I + i) : C(0);
  const Rot<C> d0 = ENC ? Rot<C>{C(1), C(0)} : data_gate<C, A>(xv);
  const C slope0 = ENC ? C(1) : data_angle_slope<C, A>(d0);
  C dx = C(0);

  for (int64_t oc = 0; oc < O; oc += CO) {
    const int nco = static_cast<int>(imin64(CO, O - oc));
    __syncthreads();
    // for a fixed o the TI edges of the tile are contiguous in theta
    for (int idx = tid; idx < nco * TI * K; idx += NT) {
      const int oo = idx / (TI * K), r = idx % (TI * K), ii = r / K, k = r % K;
      const int64_t ig = i0 + ii;
      Rot<C> rt{C(1), C(0)};  // identity for padding edges
      if (ig < I) rt = fold_theta<C, A>(ld(theta, ((oc + oo) * I + ig) * K + k), k % theta_cols(A));
      C* slot = rot_s + (oo * TI + ii) * S;
      slot[2 * k] = rt.c;
      slot[2 * k + 1] = rt.s;
    }
    if (ENC) {
      for (int idx = tid; idx < nco * TI * R; idx += NT) {
        const int oo = idx / (TI * R), r = idx % (TI * R), ii = r / R, l = r % R;
        const int64_t ig = i0 + ii;
        C* slot = rot_s + (oo * TI + ii) * S + 2 * K;
        const int64_t g = ((oc + oo) * I + ig) * R + l;
        slot[l] = ig < I ? ld(pre_w, g) : C(0);
        slot[R + l] = ig < I ? ld(pre_b, g) : C(0);
      }
    }
    if (GPOST) {
      for (int idx = tid; idx < TB * nco * TI; idx += NT) {
        const int ii = idx % TI, r = idx / TI, oo = r % nco, bb = r / nco;
        const int64_t bg = b0 + bb, ig = i0 + ii;
        g_s[(oo * TI + ii) * DS + bb] = (bg < B && ig < I) ? ld(gpost, (bg * O + oc + oo) * I + ig) : C(0);
      }
    } else {
      for (int idx = tid; idx < nco * TI; idx += NT) {
        const int oo = idx / TI, ii = idx % TI;
        const int64_t ig = i0 + ii;
        w_s[oo * TI + ii] = ig < I ? ld(weight, (oc + oo) * I + ig) : C(0);
      }
      for (int idx = tid; idx < TB * nco; idx += NT) {
        const int oo = idx % nco, bb = idx / nco;
        const int64_t bg = b0 + bb;
        g_s[oo * DS + bb] = bg < B ? ld(gy, bg * O + oc + oo) : C(0);
      }
    }
    __syncthreads();

    if (active) {
      for (int oo = 0; oo < nco; ++oo) {
        C coef;
        if (GPOST) {
          coef = g_s[(oo * TI + i_off) * DS + b_off];
        } else {
          const C we = w_s[oo * TI + i_off];
          if (we == C(0)) continue;  // pruned edge
          coef = we * g_s[oo * DS + b_off];
        }
        const C* slot = rot_s + (oo * TI + i_off) * S;
        const Rot<C>* rot = reinterpret_cast<const Rot<C>*>(slot);
        const C* ew = slot + 2 * K;
        const C* eb = ew + R;
        auto data = [&](int l) { return ENC ? data_gate<C, A>(ew[l] * xv + eb[l]) : d0; };
        const Qubit<C> q = edge_forward<C, A>(rot, R, data);
        Qubit<C> lam;
        if (FAST)
          measure<C, true>(q, &lam);
        else
          measure<C, false>(q, &lam);
        lam = {lam.ar * coef, lam.ai * coef, lam.br * coef, lam.bi * coef};
        edge_adjoint<C, A>(
            q, lam, rot, R, data, [](int, C) {},
            [&](int l, C g) {
              if (ENC)
                dx += g * data_angle_slope<C, A>(data(l)) * ew[l];
              else
                dx += g * slope0;
            });
      }
    }
  }
  if (active) st(static_cast<T*>(p.grad_x), b * I + i, dx);
}

// ------------------------------------------------------------------------------------------------
// host side

inline int64_t edge_smem_elems(const EdgeConfig& c, bool enc, bool fuse) {
  const int SL = c.NT / c.TO, CB = SL * c.J, NWO = c.TO > 32 ? c.TO / 32 : 1;
  return int64_t(c.TO) * c.S + int64_t(c.NQ) * c.NT + c.TO + int64_t(enc ? 1 : 2) * CB + (fuse ? int64_t(CB) * NWO : 0);
}

inline void set_chunk(EdgeConfig& c) {
  const int SL = c.NT / c.TO;
  c.J = SL >= 64 ? 1 : 64 / SL;  // chunks of at least 64 samples between barriers
}

// Which backward schedule: "fused" (one edge kernel that also reduces grad_x) or "split" (edge
// kernel + input kernel). QKAN_FAST_CUDA_BACKWARD=fused|split overrides the size heuristic.
inline int backward_override() {
  const char* v = std::getenv("QKAN_FAST_CUDA_BACKWARD");
  if (!v) return 0;
  if (std::strcmp(v, "fused") == 0) return 1;
  if (std::strcmp(v, "split") == 0) return 2;
  return 0;
}

template <class T, int A, bool ENC>
void launch_backward(const CircuitParams& p) {
  using C = Acc<T>;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int R = p.reps;
  const bool gpost = p.grad_postacts != nullptr;
  const int K = theta_rows(A, R) * theta_cols(A);
  const DeviceLimits lim = device_limits(p);
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(p.stream);

  // gradients of encodings that this configuration does not read are zero
  if (!ENC) {
    const size_t bytes = sizeof(T) * static_cast<size_t>(O * I * R);
    if (p.grad_pre_w) cuda_check(cudaMemsetAsync(p.grad_pre_w, 0, bytes, stream), "cudaMemsetAsync(grad_pre_w)", p);
    if (p.grad_pre_b) cuda_check(cudaMemsetAsync(p.grad_pre_b, 0, bytes, stream), "cudaMemsetAsync(grad_pre_b)", p);
  }

  EdgeConfig ec;
  ec.K = K;
  ec.S = edge_slot_stride(K, R, ENC);
  ec.NQ = K + (ENC ? 2 * R : 0) + (gpost ? 0 : 1);
  ec.need_theta = p.grad_theta != nullptr;
  ec.need_pw = ENC && p.grad_pre_w != nullptr;
  ec.need_pb = ENC && p.grad_pre_b != nullptr;
  ec.need_w = !gpost && p.grad_weight != nullptr;
  const bool need_edges = ec.need_theta || ec.need_pw || ec.need_pb || ec.need_w;
  const bool need_x = p.grad_x != nullptr;
  if (!need_edges && !need_x) return;

  const int64_t resident = int64_t(lim.sm_count) * 1024;  // threads that keep the GPU busy
  const int bpow = next_pow2(B);

  // fused: one block per input holds all outputs and reduces grad_x too (no second recompute)
  bool fused = false;
  EdgeConfig fc = ec;
  if (need_edges && need_x && next_pow2(O) <= 512) {
    fc.TO = next_pow2(O);
    fc.NT = fc.TO < 32 ? 32 : fc.TO;
    while (fc.NT < 512 && fc.NT < int64_t(fc.TO) * bpow) fc.NT *= 2;
    set_chunk(fc);
    while (edge_smem_elems(fc, ENC, true) * int64_t(sizeof(C)) > int64_t(lim.smem_default) && fc.NT > 32 &&
           fc.NT > fc.TO) {
      fc.NT /= 2;
      set_chunk(fc);
    }
    fc.n_ot = 1;
    const bool fits = edge_smem_elems(fc, ENC, true) * int64_t(sizeof(C)) <= int64_t(lim.smem_optin);
    // cost ~ (edge slots per real edge) / (busy threads), against twice the work at full occupancy
    const int64_t busy = I * fc.NT < resident ? I * fc.NT : resident;
    const double cost_fused = double(fc.TO) / double(O) / double(busy);
    const double cost_split = 2.0 / double(resident);
    fused = fits && cost_fused <= cost_split;
    const int force = backward_override();
    if (force == 1 && fits) fused = true;
    if (force == 2) fused = false;
  }

  auto run_edges = [&](const EdgeConfig& cfg, bool fuse) {
    EdgeConfig c = cfg;
    c.gpost = gpost;
    c.fuse = fuse;
    const size_t smem = static_cast<size_t>(edge_smem_elems(c, ENC, fuse)) * sizeof(C);
    const int64_t grid = c.n_ot * I;
    auto kernel = &circuit_backward_edge_kernel<T, A, ENC>;
    allow_smem(kernel, smem, lim, "circuit_backward_edge_kernel", p);
    QKF_LAUNCH(kernel, dim3(static_cast<unsigned>(grid)), dim3(c.NT), smem, stream, p, c);
    check_launch(fuse ? "circuit_backward_edge_kernel<fused grad_x>" : "circuit_backward_edge_kernel", p, grid,
                 c.NT, smem);
  };

  if (fused) {
    run_edges(fc, true);
    return;
  }

  if (need_edges) {
    // enough blocks to spread over the SMs: fewer edges per block when O * I is small
    EdgeConfig c = ec;
    c.TO = next_pow2(O) < 32 ? next_pow2(O) : 32;
    while (c.TO > 1 && ceil_div(O, c.TO) * I < 4 * int64_t(lim.sm_count)) c.TO /= 2;
    c.n_ot = ceil_div(O, c.TO);
    c.NT = c.TO < 32 ? 32 : c.TO;
    while (c.NT < 256 && c.NT < int64_t(c.TO) * bpow) c.NT *= 2;
    while (c.NT < 512 && c.NT < int64_t(c.TO) * bpow && c.n_ot * I * c.NT < resident) c.NT *= 2;
    set_chunk(c);
    while (edge_smem_elems(c, ENC, false) * int64_t(sizeof(C)) > int64_t(lim.smem_default) && c.NT > 32 &&
           c.NT > c.TO) {
      c.NT /= 2;
      set_chunk(c);
    }
    while (edge_smem_elems(c, ENC, false) * int64_t(sizeof(C)) > int64_t(lim.smem_default) && c.TO > 1) {
      c.TO /= 2;  // NT stays >= 32 >= TO
      c.n_ot = ceil_div(O, c.TO);
      set_chunk(c);
    }
    run_edges(c, false);  // allow_smem raises the limit or explains why it cannot
  }

  if (need_x) {
    constexpr int kThreads = 128;
    constexpr int64_t kBudget = 24 * 1024;
    InputConfig c;
    c.K = K;
    c.S = edge_slot_stride(K, R, ENC);
    c.TB = next_pow2(B < 32 ? B : 32);
    c.TI = kThreads / c.TB;
    if (c.TI > next_pow2(I)) c.TI = next_pow2(I);
    // shared memory for chunks of co outputs (see the kernel's layouts)
    auto bytes = [&](int co) {
      const int64_t per = int64_t(c.TI) * c.S + (gpost ? int64_t(c.TI) * (c.TB + 1) : int64_t(c.TI) + c.TB + 1);
      return per * co * int64_t(sizeof(C));
    };
    while (bytes(1) > kBudget && c.TI > 1) c.TI /= 2;
    const int co_max = static_cast<int>(O < 32 ? O : 32);
    c.CO = 1;
    while (c.CO < co_max && bytes(c.CO + 1) <= kBudget) ++c.CO;
    c.nbt = ceil_div(B, c.TB);
    const int64_t grid = c.nbt * ceil_div(I, c.TI);
    const int block = c.TB * c.TI;
    const size_t smem = static_cast<size_t>(bytes(c.CO));
    c.gpost = gpost;
    auto kernel = &circuit_backward_input_kernel<T, A, ENC>;
    allow_smem(kernel, smem, lim, "circuit_backward_input_kernel", p);
    QKF_LAUNCH(kernel, dim3(static_cast<unsigned>(grid)), dim3(block), smem, stream, p, c);
    check_launch("circuit_backward_input_kernel", p, grid, block, smem);
  }
}

#define QKF_INSTANTIATE_BACKWARD(T, A, ENC) template void launch_backward<T, A, ENC>(const CircuitParams&);
QKF_FOR_EACH_CONFIG(QKF_INSTANTIATE_BACKWARD)
#undef QKF_INSTANTIATE_BACKWARD

}  // namespace cuda_kernels

void circuit_backward_cuda(const CircuitParams& p) {
  using namespace cuda_kernels;
  check_circuit(p, CircuitOp::kBackward, Device::kCuda);
  DeviceGuard guard(p.device, p);
  QKF_DTYPE_SWITCH(p.dtype, T, [&] {
    QKF_ANSATZ_SWITCH(p.ansatz, A, [&] {
      QKF_BOOL_SWITCH(p.encode, ENC, [&] { launch_backward<T, A, ENC>(p); });
    });
  });
}

}  // namespace qkan_fast
