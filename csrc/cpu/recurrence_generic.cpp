// The fused LSTM recurrence compiled for one instruction set (generic); see recurrence_kernels.h.
#define QKF_ISA_NS isa_generic
#include "cpu/recurrence_kernels.h"
