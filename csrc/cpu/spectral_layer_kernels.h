// The spectral layer kernels of one instruction-set copy: the basis, the fused layer forward and
// backward, and this copy's entry points (cpu/isa.h SpectralLayerKernels).
#pragma once

#include <type_traits>

#include "cpu/isa.h"
#include "cpu/spectral_basis.h"
#include "cpu/spectral_fused_backward.h"
#include "cpu/spectral_fused_forward.h"

namespace qkan_fast {
namespace QKF_ISA_NS {
namespace spec {

// entry points of this copy: dtype, measure (nq), whether grad_x is wanted and R become
// compile-time constants here (the params were checked by cpu/spectral.cpp)

inline void basis_entry(const SpectralBasisParams& p) {
  dispatch_float_dtype(p.dtype, [&](auto t) { basis_forward<decltype(t)>(p); });
}

inline void basis_backward_entry(const SpectralBasisParams& p) {
  dispatch_float_dtype(p.dtype, [&](auto t) { basis_backward<decltype(t)>(p); });
}

inline void fused_forward_entry(const SpectralLayerParams& p) {
  dispatch_float_dtype(p.dtype, [&](auto t) {
    using T = decltype(t);
    const Prepared<T> pr = prepare<T>(p, false, false);
    dispatch_reps(p.reps, [&](auto rc) {
      constexpr int RC = decltype(rc)::value;
      if (p.nq == 1)
        fused_forward<T, RC, 1>(p, pr);
      else
        fused_forward<T, RC, kQ>(p, pr);
    });
  });
}

inline void fused_backward_entry(const SpectralLayerParams& p) {
  const bool need_x = p.grad_x;
  if (!need_x && !p.grad_coef && !p.grad_weight) return;
  dispatch_float_dtype(p.dtype, [&](auto t) {
    using T = decltype(t);
    const Prepared<T> pr = prepare<T>(p, need_x && p.px, need_x);
    dispatch_reps(p.reps, [&](auto rc) {
      constexpr int RC = decltype(rc)::value;
      if (p.nq == 1) {
        if (need_x)
          fused_backward<T, RC, 1, true>(p, pr);
        else
          fused_backward<T, RC, 1, false>(p, pr);
      } else if (need_x) {
        fused_backward<T, RC, kQ, true>(p, pr);
      } else {
        fused_backward<T, RC, kQ, false>(p, pr);
      }
    });
  });
}

}  // namespace spec

const SpectralLayerKernels spectral_layer_kernels = {spec::basis_entry, spec::basis_backward_entry,
                                                     spec::fused_forward_entry, spec::fused_backward_entry};

}  // namespace QKF_ISA_NS
}  // namespace qkan_fast
