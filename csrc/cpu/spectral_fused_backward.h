// The fused spectral layer's backward on the CPU (see spectral_fused.h), as named steps.
//
// Work items are (i, block of samples), as in the circuit engine. An item owns grad_x[block, i]
// outright and writes its per-edge sums (NQ x (2R+1) coefficients and the weight) to its block's
// float64 partial slot; blocks are added in a fixed order (reduce_blocks). No atomics,
// deterministic for any thread count. Per tile of kOutBlock outputs (OutTile) and sub-block of
// kSubBlock samples:
//   born_du_pass   (Born, NQ = 1)  dL/du only: dL/dZ is weight * dL/dy, nothing to buffer;
//   fast_dz_pass   (fast, NQ = 3)  dL/dZ per sample (buffered), the weight sums and dL/du by the
//                                  Z formula; reports whether a lane came near a pole;
//   pole_pass      (fast, rare)    vectors with a lane near a pole redone by the Bloch formula
//                                  (their X and Y gradients accumulate directly);
//   coef_grad_pass                 the Z coefficient gradients sum_b dL/dZ * basis as register
//                                  tiles of kOutBlock x kKGroup vectors;
// then store_tile_sums reduces the lanes and writes (or parks) the tile's per-edge sums.
#pragma once

#include "cpu/spectral_fused.h"

QKF_SPECTRAL_BEGIN

// the steps inline into the R-specialised kernel (R becomes a constant in them)
#define QKF_BWD_STEP inline __attribute__((always_inline))

// kOutBlock outputs o0 .. o0 + no - 1 of one input i (padding outputs read the zero edge and the
// zero dL/dy row, and have weight 0).
template <class T> struct OutTile {
  int no = 0;
  const T* c[kOutBlock];  // [nq][2R+1] coefficients of each edge
  const T* d[kOutBlock];  // [nq][2R+1] their u-derivatives (NEED_X)
  const T* g[kOutBlock];  // [bs] dL/dy of each output over the samples (transposed)
  T w[kOutBlock];         // weight * mask
  bool xy_live[kOutBlock];  // a pole lane occurred: the X and Y sums are live
};

// Per-thread work space of the item loop.
template <class T> struct BackwardWork {
  std::vector<Vec<T>> accc;  // [OB][kQ][M] coefficient-gradient accumulators, then the [OB] weight sums
  std::vector<Vec<T>> red;   // the accumulators to reduce
  std::vector<T> sums;       // their lane sums
  Vec<T> accw[kOutBlock];    // weight-gradient accumulators
  alignas(64) T gzb[kOutBlock][kSubBlock];  // dL/dZ of the sub-block (fast measure)
  explicit BackwardWork(int M)
      : accc(kOutBlock * kQ * M + kOutBlock), red(kOutBlock * kQ * M + kOutBlock), sums(kOutBlock * kQ * M + kOutBlock) {}
};

// gyt[o][b] = grad_y[b][o] (inside the parallel region); rows past B and row O stay zero.
template <class T>
QKF_BWD_STEP void transpose_grad_y(const T* gy, int64_t B, int64_t O, int64_t bs, T* gyt) {
#pragma omp for schedule(static)
  for (int64_t o = 0; o < O; ++o)
    for (int64_t b = 0; b < B; ++b) gyt[o * bs + b] = gy[b * O + o];
}

// The tile's edge pointers and weights; returns whether any weight is non-zero.
template <class T, bool NEED_X>
QKF_BWD_STEP bool load_tile(const Prepared<T>& pr, const T* weight, const T* gyt, int64_t i, int64_t I, int64_t o0,
                            int64_t O, int64_t bs, int M, OutTile<T>& t) {
  t.no = static_cast<int>(std::min<int64_t>(kOutBlock, O - o0));
  bool live = false;
  for (int oo = 0; oo < kOutBlock; ++oo) {
    const int64_t e = (o0 + oo) * I + i;
    const bool real = oo < t.no;
    t.c[oo] = pr.edge(pr.cf, e, real, M);
    t.d[oo] = NEED_X ? pr.edge(pr.df, e, real, M) : nullptr;
    t.g[oo] = gyt + (real ? o0 + oo : O) * bs;
    t.w[oo] = real ? weight[e] : T(0);
    t.xy_live[oo] = false;
    live |= t.w[oo] != T(0);
  }
  return live;
}

// Born: dL/du[b] += sum_o weight * dL/dy * dZ/du, two sample vectors per coefficient broadcast.
template <class T, int RC, bool NEED_X>
QKF_BWD_STEP void born_du_pass(const OutTile<T>& t, const T* bk, int64_t bs, int R, int nv, int64_t sb0, T* dui) {
  constexpr int L = lanes<T>(), OB = kOutBlock;
  // local copies: the stores to dui could alias the tile's weights (both T), forcing reloads
  const T* d[OB];
  const T* g[OB];
  T w[OB];
  for (int oo = 0; oo < OB; ++oo) {
    d[oo] = t.d[oo];
    g[oo] = t.g[oo] + sb0;
    w[oo] = t.w[oo];
  }
  for (int v = 0; v < (NEED_X ? nv : 0); v += 2) {
    const int j = v * L;
    Vec<T> dz[2][OB];
    if (v + 1 < nv)
      dots2<T, RC, OB>(d, bk + j, bs, R, dz[0], dz[1]);
    else
      dots<T, RC, OB>(d, bk + j, bs, R, dz[0]);
    for (int h = 0; h < (v + 1 < nv ? 2 : 1); ++h) {
      Vec<T> du{};
      for (int oo = 0; oo < OB; ++oo) du += (w[oo] * vload(g[oo] + j + h * L)) * dz[h][oo];
      vstore(dui + sb0 + j + h * L, vload(dui + sb0 + j + h * L) + du);
    }
  }
}

// Fast measure, Z formula: dL/dZ into gzb, weight sums into accw, dL/du into dui. Returns the
// largest |Z| seen (a pole lane needs pole_pass). Pole lanes get dL/dZ = 0 here (it could be huge).
template <class T, int RC, bool NEED_X>
QKF_BWD_STEP Vec<T> fast_dz_pass(const OutTile<T>& t, const T* bk, int64_t bs, int R, int nv, int64_t sb0, T* dui,
                                 BackwardWork<T>& wk) {
  constexpr int L = lanes<T>(), OB = kOutBlock;
  // local copies (kept in registers: the stores below could alias the tile's and work space's T)
  const T* c[OB];
  const T* d[OB];
  const T* g[OB];
  T w[OB];
  Vec<T> accw[OB];
  for (int oo = 0; oo < OB; ++oo) {
    c[oo] = t.c[oo];
    d[oo] = t.d[oo];
    g[oo] = t.g[oo] + sb0;
    w[oo] = t.w[oo];
    accw[oo] = wk.accw[oo];
  }
  Vec<T> amax{};
  for (int v = 0; v < nv; ++v) {
    const int j = v * L;
    Vec<T> z[OB], dz[OB];
    dots<T, RC, OB>(c, bk + j, bs, R, z);
    if (NEED_X) dots<T, RC, OB>(d, bk + j, bs, R, dz);
    Vec<T> du{};
    for (int oo = 0; oo < OB; ++oo) {
      const Vec<T> gyv = vload(g[oo] + j);
      Vec<T> phi, gp;
      measure_z<T, true>(z[oo], phi, gp);
      const Vec<T> az = vabs<T>(z[oo]);
      amax = az > amax ? az : amax;
      const Vec<T> gz = az > pole_abs_z<T>() ? vset<T>(0) : (w[oo] * gyv) * gp;
      vstore(&wk.gzb[oo][j], gz);
      accw[oo] += gyv * phi;  // pole lanes are corrected by pole_pass
      if (NEED_X) du += gz * dz[oo];
    }
    if (NEED_X) vstore(dui + sb0 + j, vload(dui + sb0 + j) + du);
  }
  for (int oo = 0; oo < OB; ++oo) wk.accw[oo] = accw[oo];
  return amax;
}

// Vectors with a lane near a pole: the Bloch formula (header of spectral_fused.h). Z is recomputed
// (keeping Z and dZ/du costs the main loop two stores); dL/dZ goes to the buffer, the X and Y
// coefficient gradients straight to their accumulators.
template <class T, int RC, bool NEED_X>
QKF_BWD_STEP void pole_pass(OutTile<T>& t, const T* bk, int64_t bs, int R, int nv, int64_t sb0, bool need_c, T* dui,
                            BackwardWork<T>& wk) {
  constexpr int L = lanes<T>();
  const int NB = 2 * R, M = NB + 1;
  for (int oo = 0; oo < t.no; ++oo)
    for (int v = 0; v < nv; ++v) {
      const int j = v * L;
      Vec<T> zv;
      dots<T, RC, 1>(&t.c[oo], bk + j, bs, R, &zv);
      if (!any_lane<T>(vabs<T>(zv) > pole_abs_z<T>())) continue;
      const Vec<T> pole = vabs<T>(zv) > pole_abs_z<T>() ? vset<T>(1) : vset<T>(0);
      const T* cq[2] = {t.c[oo] + M, t.c[oo] + 2 * M};
      Vec<T> xy[2], phi, phiz, gpz, gq[kQ];
      dots<T, RC, 2>(cq, bk + j, bs, R, xy);
      bloch_measure<T, true>(zv, xy[0], xy[1], phi, gq[0], gq[1], gq[2]);
      measure_z<T, false>(zv, phiz, gpz);
      const Vec<T> gyv = vload(t.g[oo] + sb0 + j);
      const Vec<T> sc = (t.w[oo] * gyv) * pole;  // only the pole lanes
      for (int q = 0; q < kQ; ++q) gq[q] *= sc;
      wk.accw[oo] += gyv * (phi - phiz) * pole;
      vstore(&wk.gzb[oo][j], vload(&wk.gzb[oo][j]) + gq[0]);
      if (need_c && !t.xy_live[oo]) {
        t.xy_live[oo] = true;
        for (int k = M; k < kQ * M; ++k) wk.accc[oo * kQ * M + k] = Vec<T>{};
      }
      if (need_c)
        for (int q = 1; q < kQ; ++q) {
          Vec<T>* a = &wk.accc[(oo * kQ + q) * M];
          a[0] += gq[q];
          for (int k = 0; k < NB; ++k) a[1 + k] += gq[q] * vload(bk + k * bs + j);
        }
      if (NEED_X) {
        const T* dq[2] = {t.d[oo] + M, t.d[oo] + 2 * M};
        Vec<T> dv[2];
        dots<T, RC, 2>(dq, bk + j, bs, R, dv);
        Vec<T> dzv;
        dots<T, RC, 1>(&t.d[oo], bk + j, bs, R, &dzv);
        const Vec<T> du = gq[0] * dzv + gq[1] * dv[0] + gq[2] * dv[1];
        vstore(dui + sb0 + j, vload(dui + sb0 + j) + du);
      }
    }
}

// sum over the sub-block's samples of gzr[oo][b] * (1, basis_k[b]) into the Z accumulators: the
// constant term, then register tiles of kOutBlock outputs x kKGroup basis rows.
template <class T>
QKF_BWD_STEP void coef_grad_pass(const T* const* gzr, const T* bk, int64_t bs, int NB, int nv, Vec<T>* accc, int M) {
  constexpr int L = lanes<T>(), OB = kOutBlock, KG = kKGroup;
  for (int oo = 0; oo < OB; ++oo) {
    Vec<T> s{};
    for (int v = 0; v < nv; ++v) s += vload(gzr[oo] + v * L);
    accc[oo * kQ * M] += s;
  }
  for (int k0 = 0; k0 < NB; k0 += KG) {
    const int kn = std::min(KG, NB - k0);
    Vec<T> t[OB][KG];
    for (int oo = 0; oo < OB; ++oo)
      for (int kk = 0; kk < KG; ++kk) t[oo][kk] = Vec<T>{};
    if (kn == KG) {
      for (int v = 0; v < nv; ++v) {
        Vec<T> bv[KG], gv[OB];
        for (int kk = 0; kk < KG; ++kk) bv[kk] = vload(bk + (k0 + kk) * bs + v * L);
        for (int oo = 0; oo < OB; ++oo) gv[oo] = vload(gzr[oo] + v * L);
        for (int oo = 0; oo < OB; ++oo)
          for (int kk = 0; kk < KG; ++kk) t[oo][kk] += gv[oo] * bv[kk];
      }
    } else {
      for (int v = 0; v < nv; ++v)
        for (int kk = 0; kk < kn; ++kk) {
          const Vec<T> bv = vload(bk + (k0 + kk) * bs + v * L);
          for (int oo = 0; oo < OB; ++oo) t[oo][kk] += vload(gzr[oo] + v * L) * bv;
        }
    }
    for (int oo = 0; oo < OB; ++oo)
      for (int kk = 0; kk < kn; ++kk) accc[oo * kQ * M + 1 + k0 + kk] += t[oo][kk];
  }
}

// Lane sums of the tile's accumulators (the Z sums [OB][M] and weight sums [OB] always, the X and
// Y sums [2M] only of outputs where a pole lane occurred) and their destination: the outputs
// directly (one block) or the block's float64 partial slot. Born: the Z sums hold sum_b dL/dy *
// basis, so dL/dC = weight * that and dL/dW = C . that.
template <class T, int NQ>
QKF_BWD_STEP void store_tile_sums(const SpectralLayerParams& p, const OutTile<T>& t, int64_t o0, int64_t i,
                                  int64_t blk, int M, bool direct, double* partial, BackwardWork<T>& wk) {
  constexpr int OB = kOutBlock;
  const int64_t I = p.in_dim, E = p.out_dim * I, per_edge = NQ * M + 1;
  const bool need_c = p.grad_coef, need_w = p.grad_weight;
  int nr = 0;
  for (int oo = 0; oo < OB; ++oo)
    for (int k = 0; k < M; ++k) wk.red[nr++] = wk.accc[oo * kQ * M + k];
  for (int oo = 0; oo < OB; ++oo) wk.red[nr++] = wk.accw[oo];
  for (int oo = 0; oo < OB; ++oo)
    if (t.xy_live[oo])
      for (int k = M; k < kQ * M; ++k) wk.red[nr++] = wk.accc[oo * kQ * M + k];
  reduce_lanes<T>(wk.red.data(), nr, wk.sums.data());
  int xy_at = OB * M + OB;
  for (int oo = 0; oo < t.no; ++oo) {
    const int64_t e = (o0 + oo) * I + i;
    T* zs = wk.sums.data() + oo * M;
    const T* xy = t.xy_live[oo] ? wk.sums.data() + xy_at : nullptr;
    if (t.xy_live[oo]) xy_at += 2 * M;
    T ws = wk.sums[OB * M + oo];
    if (NQ == 1) {
      ws = T(0);
      for (int k = 0; k < M; ++k) {
        ws += t.c[oo][k] * zs[k];
        zs[k] *= t.w[oo];
      }
    }
    if (direct) {
      if (need_c) {
        T* gc = static_cast<T*>(p.grad_coef) + e * NQ * M;
        std::copy(zs, zs + M, gc);
        if (xy)
          std::copy(xy, xy + 2 * M, gc + M);
        else
          std::fill(gc + M, gc + NQ * M, T(0));
      }
      if (need_w) static_cast<T*>(p.grad_weight)[e] = ws;
    } else {
      double* dst = partial + (blk * E + e) * per_edge;
      for (int k = 0; k < M; ++k) dst[k] = double(zs[k]);
      for (int k = M; k < NQ * M; ++k) dst[k] = xy ? double(xy[k - M]) : 0.0;
      dst[NQ * M] = double(ws);
    }
  }
}

// After the items (inside the parallel region): the fixed-order sum over blocks of the partial
// slots into grad_coef and grad_weight, and grad_x from dL/du (times du/dx for px).
template <class T, int NQ, bool NEED_X>
QKF_BWD_STEP void reduce_blocks(const SpectralLayerParams& p, const Prepared<T>& pr, int M, int64_t n_blocks, bool direct,
                                const double* partial, const T* dut) {
  const int64_t B = p.batch, I = p.in_dim, E = p.out_dim * I, per_edge = NQ * M + 1, bs = pr.bs;
  const bool need_c = p.grad_coef, need_w = p.grad_weight;
  std::vector<double> sums(per_edge);
#pragma omp for schedule(static)
  for (int64_t e = 0; e < (direct ? 0 : E); ++e) {
    std::fill(sums.begin(), sums.end(), 0.0);
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const double* src = partial + (blk * E + e) * per_edge;
      for (int64_t k = 0; k < per_edge; ++k) sums[k] += src[k];
    }
    if (need_c)
      for (int k = 0; k < NQ * M; ++k) static_cast<T*>(p.grad_coef)[e * NQ * M + k] = static_cast<T>(sums[k]);
    if (need_w) static_cast<T*>(p.grad_weight)[e] = static_cast<T>(sums[NQ * M]);
  }
  if (NEED_X) {
    T* gx = static_cast<T*>(p.grad_x);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < I; ++i) gx[b * I + i] = dut[i * bs + b] * (p.px ? pr.slope[i * bs + b] : T(1));
  }
}

// NQ = 3: the fast measure; NQ = 1 (Born): dL/dZ = weight * dL/dy, no pole pass, grad_coef [E, 1, 2R+1].
template <class T, int RC, int NQ, bool NEED_X>
void fused_backward(const SpectralLayerParams& p, const Prepared<T>& pr) {
  constexpr int L = lanes<T>(), OB = kOutBlock, SB = kSubBlock;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim, E = O * I, bs = pr.bs;
  const int R = RC ? RC : p.reps, NB = 2 * R, M = NB + 1;
  const T* weight = static_cast<const T*>(p.weight);
  const bool need_c = p.grad_coef, need_w = p.grad_weight;

  std::vector<T>& gyt = scratch<T>(0, (O + 1) * bs, true);  // [O+1][bs]: zero padding and zero row O
  const int64_t n_ch = cdiv(B, kChunk);
  const int64_t n_blocks = std::max<int64_t>(1, std::min<int64_t>(n_ch, cdiv(32, I)));
  const int64_t ch_per_blk = cdiv(n_ch, n_blocks);
  // several blocks: float64 partial sums per block, added in a fixed order after the items; one
  // block (I >= 32): each item writes its edges' sums straight to the outputs
  const bool direct = n_blocks == 1;
  std::vector<double>& partial = scratch<double>(6, direct ? 0 : n_blocks * E * (NQ * M + 1), true);  // slot 6: T may be double
  std::vector<T>& dut = scratch<T>(1, NEED_X ? I * bs : 0, true);  // [I][bs] dL/du

#pragma omp parallel num_threads(p.num_threads)
  {
    transpose_grad_y<T>(static_cast<const T*>(p.grad_y), B, O, bs, gyt.data());
    BackwardWork<T> wk(M);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < I * n_blocks; ++item) {
      const int64_t i = item / n_blocks, blk = item % n_blocks;
      const int64_t s_begin = blk * ch_per_blk * kChunk;
      const int64_t s_end = std::min(B, s_begin + ch_per_blk * kChunk);
      if (s_begin >= s_end) continue;
      const T* bki = pr.bt + i * NB * bs;
      T* dui = NEED_X ? dut.data() + i * bs : nullptr;
      for (int64_t o0 = 0; o0 < O; o0 += OB) {
        OutTile<T> t;
        if (!load_tile<T, NEED_X>(pr, weight, gyt.data(), i, I, o0, O, bs, M, t) && !need_w) {
          // pruned edges: no gradient flows
          if (direct && need_c)
            for (int oo = 0; oo < t.no; ++oo) {
              T* gc = static_cast<T*>(p.grad_coef) + ((o0 + oo) * I + i) * NQ * M;
              std::fill(gc, gc + NQ * M, T(0));
            }
          continue;
        }
        // Z coefficient sums always; X and Y only once a pole lane occurs (they are rare)
        for (int oo = 0; oo < OB; ++oo) {
          for (int k = 0; k < M; ++k) wk.accc[oo * kQ * M + k] = Vec<T>{};
          wk.accw[oo] = Vec<T>{};
        }
        for (int64_t sb0 = s_begin; sb0 < s_end; sb0 += SB) {
          const int n = static_cast<int>(std::min<int64_t>(SB, s_end - sb0));
          const int nv = static_cast<int>(cdiv(n, L));  // whole vectors: padding has dL/dy = 0
          const T* bk = bki + sb0;
          // the rows coef_grad_pass reduces against the basis: dL/dZ (fast measure, buffered), or
          // dL/dy itself (Born: the weight is applied to the lane sums)
          const T* gzr[OB];
          for (int oo = 0; oo < OB; ++oo) gzr[oo] = NQ == 1 ? t.g[oo] + sb0 : wk.gzb[oo];
          if (NQ == 1) {
            born_du_pass<T, RC, NEED_X>(t, bk, bs, R, nv, sb0, dui);
          } else {
            const Vec<T> amax = fast_dz_pass<T, RC, NEED_X>(t, bk, bs, R, nv, sb0, dui, wk);
            if (any_lane<T>(amax > pole_abs_z<T>())) pole_pass<T, RC, NEED_X>(t, bk, bs, R, nv, sb0, need_c, dui, wk);
          }
          if (need_c || (NQ == 1 && need_w)) coef_grad_pass<T>(gzr, bk, bs, NB, nv, wk.accc.data(), M);
        }
        store_tile_sums<T, NQ>(p, t, o0, i, blk, M, direct, partial.data(), wk);
      }
    }
    reduce_blocks<T, NQ, NEED_X>(p, pr, M, n_blocks, direct, partial.data(), dut.data());
  }
}

#undef QKF_BWD_STEP

QKF_SPECTRAL_END  // qkan_fast::QKF_ISA_NS::spec
