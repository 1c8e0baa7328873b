// The circuit kernels compiled for one instruction set (avx2); see circuit_kernels.h.
#define QKF_ISA_NS isa_avx2
#include "cpu/circuit_kernels.h"
