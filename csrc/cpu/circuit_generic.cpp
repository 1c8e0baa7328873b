// The circuit kernels compiled for one instruction set (generic); see circuit_kernels.h.
#define QKF_ISA_NS isa_generic
#include "cpu/circuit_kernels.h"
