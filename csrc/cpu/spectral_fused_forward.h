// The fused spectral layer's forward on the CPU (see spectral_fused.h).
#pragma once

#include "cpu/spectral_fused.h"

QKF_SPECTRAL_BEGIN

// Forward: tiles (chunk of kChunk samples, block of kOutBlock outputs), chunk-major so consecutive
// tiles share the chunk's basis. Per vector of samples the kOutBlock dot products share the basis
// loads. NQ = kQ: the fast measure, vectors with a lane near a pole redone with the Bloch formula
// after the tile's pass; NQ = 1: the Born measure, phi = Z (the Born layer without its
// [2R, I, B] basis in memory, for shapes where that GEMM operand would not stay in cache).
template <class T, int RC, int NQ>
void fused_forward(const SpectralLayerParams& p, const Prepared<T>& pr) {
  constexpr int L = lanes<T>(), NV = kChunk / L, OB = kOutBlock;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim, E = O * I, bs = pr.bs;
  const int R = RC ? RC : p.reps, NB = 2 * R, M = NB + 1;
  const T* weight = static_cast<const T*>(p.weight);
  T* y = static_cast<T*>(p.y);
  const int64_t n_ch = cdiv(B, kChunk), n_ob = cdiv(O, OB);
#pragma omp parallel for schedule(static) num_threads(p.num_threads)
  for (int64_t t = 0; t < n_ch * n_ob; ++t) {
    const int64_t b0 = (t / n_ob) * kChunk, o0 = (t % n_ob) * OB;
    const int n = static_cast<int>(std::min<int64_t>(kChunk, B - b0));
    const int no = static_cast<int>(std::min<int64_t>(OB, O - o0));
    Vec<T> acc[OB][NV];
    for (int oo = 0; oo < OB; ++oo)
      for (int v = 0; v < NV; ++v) acc[oo][v] = Vec<T>{};
    for (int64_t i = 0; i < I; ++i) {
      const T* c[OB];
      T w[OB];
      bool any = false;
      for (int oo = 0; oo < OB; ++oo) {
        const int64_t e = (o0 + oo) * I + i;
        c[oo] = pr.edge(pr.cf, e, oo < no, M);
        w[oo] = oo < no ? weight[e] : T(0);
        any |= w[oo] != T(0);
      }
      if (!any) continue;  // pruned edges
      const T* bk = pr.bt + i * NB * bs + b0;
      Vec<T> amax{};
      for (int v = 0; v < NV; ++v) {
        Vec<T> z[OB];
        dots<T, RC, OB>(c, bk + v * L, bs, R, z);
        if (NQ == 1) {
          for (int oo = 0; oo < OB; ++oo) acc[oo][v] += w[oo] * z[oo];
          continue;
        }
        for (int oo = 0; oo < OB; ++oo) {
          Vec<T> phi, gp;
          measure_z<T, false>(z[oo], phi, gp);
          acc[oo][v] += w[oo] * phi;
          const Vec<T> az = vabs<T>(z[oo]);
          amax = az > amax ? az : amax;
        }
      }
      if (NQ == 1 || !any_lane<T>(amax > pole_abs_z<T>())) continue;
      // vectors with a lane near a pole (rare): replace the Z formula by the Bloch formula there;
      // Z is recomputed (keeping it would need OB x NV more registers in the main loop)
      for (int oo = 0; oo < no; ++oo)
        for (int v = 0; v < NV && v * L < n; ++v) {
          Vec<T> zv;
          dots<T, RC, 1>(&c[oo], bk + v * L, bs, R, &zv);
          const auto pole = vabs<T>(zv) > pole_abs_z<T>();
          if (!any_lane<T>(pole)) continue;
          const T* cq[2] = {c[oo] + M, c[oo] + 2 * M};
          Vec<T> xy[2], phi, phiz, g0, g1, g2;
          dots<T, RC, 2>(cq, bk + v * L, bs, R, xy);
          bloch_measure<T, false>(zv, xy[0], xy[1], phi, g0, g1, g2);
          measure_z<T, false>(zv, phiz, g0);
          acc[oo][v] += w[oo] * (pole ? phi - phiz : vset<T>(0));
        }
    }
    for (int oo = 0; oo < no; ++oo)
      for (int j = 0; j < n; ++j) y[(b0 + j) * O + o0 + oo] = acc[oo][j / L][j % L];
  }
}

QKF_SPECTRAL_END  // qkan_fast::QKF_ISA_NS::spec
