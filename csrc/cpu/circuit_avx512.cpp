// The circuit kernels compiled for one instruction set (avx512); see circuit_kernels.h.
#define QKF_ISA_NS isa_avx512
#include "cpu/circuit_kernels.h"
