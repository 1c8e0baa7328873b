// The fused LSTM recurrence compiled for one instruction set (avx512); see recurrence_kernels.h.
#define QKF_ISA_NS isa_avx512
#include "cpu/recurrence_kernels.h"
