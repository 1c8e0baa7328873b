// The spectral coefficient kernels compiled for one instruction set (avx2); see spectral_coef_kernels.h.
#define QKF_ISA_NS isa_avx2
#include "cpu/spectral_coef_kernels.h"
