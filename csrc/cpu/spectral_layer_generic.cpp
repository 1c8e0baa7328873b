// The spectral layer kernels compiled for one instruction set (generic); see spectral_layer_kernels.h.
#define QKF_ISA_NS isa_generic
#include "cpu/spectral_layer_kernels.h"
