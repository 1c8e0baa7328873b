// The fused LSTM recurrence compiled for one instruction set (avx2); see recurrence_kernels.h.
#define QKF_ISA_NS isa_avx2
#include "cpu/recurrence_kernels.h"
