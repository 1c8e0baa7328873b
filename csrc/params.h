// Plain pointers and sizes handed from Python to every kernel (CPU and CUDA). No torch here:
// python/qkan_fast/ops.py checks device, dtype, contiguity and shapes before filling this in;
// the entry points check codes, sizes and pointers again (check_circuit) and refuse what they do
// not handle.
#pragma once

#include <cstdint>

#include "core_types.h"

namespace qkan_fast {

struct CircuitParams {
  int64_t batch = 0;    // B
  int64_t in_dim = 0;   // I
  int64_t out_dim = 0;  // O
  int reps = 0;         // R
  Ansatz ansatz = kPZ;
  DType dtype = kFloat32;
  bool fast_measure = true;
  bool encode = false;  // e_l = w[o,i,l] * x + b[o,i,l] instead of e_l = x

  // inputs, all contiguous
  const void* x = nullptr;       // [B, I]
  const void* theta = nullptr;   // [O, I, Rt, P]
  // CPU only, optional: theta already folded to gate (cos, sin) pairs, [O, I, Rt, P, 2] as
  // daruan.h fold_theta makes them (the fused recurrence folds once per sequence, not per step);
  // when set, theta is not read
  const void* theta_rot = nullptr;
  const void* pre_w = nullptr;   // [O, I, R]   (encode only)
  const void* pre_b = nullptr;   // [O, I, R]   (encode only)
  const void* weight = nullptr;  // [O, I]      postact weight * mask (forward / backward of y)
  // jet entry points only (cpu/jet.cpp): the x-derivative of phi they compute, and an optional
  // per-(b, i) factor on every edge's term (null: 1)
  int order = 0;
  const void* scale = nullptr;  // [B, I]

  // forward outputs
  void* y = nullptr;         // [B, O]      y[b,o] = sum_i weight[o,i] * phi_oi(x[b,i])
  void* postacts = nullptr;  // [B, O, I]   phi_oi(x[b,i]) (postacts entry)

  // backward: exactly one of grad_y (with weight) or grad_postacts is set
  const void* grad_y = nullptr;         // [B, O]
  const void* grad_postacts = nullptr;  // [B, O, I]
  void* grad_x = nullptr;               // [B, I]        null when not needed
  void* grad_theta = nullptr;           // [O, I, Rt, P] null when not needed
  void* grad_pre_w = nullptr;           // [O, I, R]     null when not needed
  void* grad_pre_b = nullptr;           // [O, I, R]     null when not needed
  void* grad_weight = nullptr;          // [O, I]  sum_b grad_y[b,o] * phi; null when not needed
  void* grad_scale = nullptr;           // [B, I]  jet backward only; null when not needed

  // CPU schedule
  int num_threads = 1;
  // CUDA launch
  int device = 0;
  std::uintptr_t stream = 0;
};

// Which entry point a CircuitParams is checked for (checks.cpp).
enum class CircuitOp : int { kForward, kPostacts, kBackward, kJetForward, kJetBackward };
enum class Device : int { kCpu, kCuda };

// Throws std::invalid_argument (Python: ValueError) for a code, size or pointer that the entry
// point does not handle; every circuit entry point, CPU and CUDA, calls it first.
void check_circuit(const CircuitParams& p, CircuitOp op, Device device);

// CPU entry points (csrc/cpu/circuit.cpp)
void circuit_forward_cpu(const CircuitParams& p);
void circuit_postacts_cpu(const CircuitParams& p);
void circuit_backward_cpu(const CircuitParams& p);

// CPU jet entry points (csrc/cpu/jet.cpp), Taylor mode in x for higher derivatives:
// forward y[b,o] = sum_i weight[o,i] * scale[b,i] * phi_oi^(order)(x[b,i]) (or, with postacts set,
// each edge's term without weight), and its backward (grad_x from phi^(order+1), grad_scale,
// grad_weight and the parameter gradients of phi^(order); grad_postacts for the per-edge form).
void circuit_jet_forward_cpu(const CircuitParams& p);
void circuit_jet_backward_cpu(const CircuitParams& p);

// CUDA entry points (cuda/*.cu), compiled only with QKAN_FAST_CUDA
void circuit_forward_cuda(const CircuitParams& p);
void circuit_postacts_cuda(const CircuitParams& p);
void circuit_backward_cuda(const CircuitParams& p);

}  // namespace qkan_fast
