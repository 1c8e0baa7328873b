// The spectral coefficient kernels compiled for one instruction set (generic); see spectral_coef_kernels.h.
#define QKF_ISA_NS isa_generic
#include "cpu/spectral_coef_kernels.h"
