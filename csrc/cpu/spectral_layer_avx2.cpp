// The spectral layer kernels compiled for one instruction set (avx2); see spectral_layer_kernels.h.
#define QKF_ISA_NS isa_avx2
#include "cpu/spectral_layer_kernels.h"
