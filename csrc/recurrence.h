// The whole recurrence of one QKAN-LSTM layer in one call forward and one call backward
// (docs/math.md, "Networks"): every time step's gate layer, gate nonlinearities and cell update,
// with backpropagation through time inside the backward. Plain pointers and sizes, no torch:
// python/qkan_fast/recurrence.py checks the tensors; check_recurrence checks the rest.
//
// Gate map of the layer: z_t = [x_t, h_{t-1}] (I = d + H inputs) -> 4H gates [f, i, g, o], either
// one gate layer (QKAN-LSTM) or an HQKAN, Linear(I -> a) -> gate layer (a -> b) -> Linear(b -> 4H)
// (HQKAN-LSTM). The gate layer, u -> y:
//   y[b,o] = sum_i weight[o,i] phi_oi(u[b,i]) + sum_i base_weight[o,i] silu(u[b,i]) + bias[o],
// with phi by the circuit engine (every ansatz and flag) or by the spectral engine's fused kernel
// from coefficients the caller made (frozen encodings). Saved for backward: the inputs, h and c of
// every step and the activated gates, O(L B H) numbers; each step's gate layer is recomputed in
// the backward (no (B, 4H, d + H) tensor at any time).
#pragma once

#include <cstdint>

#include "core_types.h"
#include "daruan.h"  // theta_rows, theta_cols
#include "params.h"  // CircuitParams, Device

namespace qkan_fast {

enum class GateEngine : int { kCircuit = 0, kSpectral = 1 };

struct RecurrenceParams {
  int64_t steps = 0;       // L
  int64_t batch = 0;       // B
  int64_t input_size = 0;  // d
  int64_t hidden = 0;      // H
  // HQKAN gate map: latent sizes a, b of the gate layer between two Linear maps; 0: none (the gate
  // layer has I = d + H inputs and O = 4H outputs). Below, [O, I, ...] are the gate layer's sizes.
  int64_t latent_in = 0;   // a
  int64_t latent_out = 0;  // b
  DType dtype = kFloat32;
  GateEngine engine = GateEngine::kCircuit;
  int reps = 0;  // R

  // circuit gate layer
  Ansatz ansatz = kPZ;
  bool fast_measure = true;
  bool encode = false;          // e_l = pre_w * z + pre_b
  const void* theta = nullptr;  // [O, I, Rt, P]
  const void* pre_w = nullptr;  // [O, I, R] (encode)
  const void* pre_b = nullptr;  // [O, I, R] (encode)
  // spectral gate layer
  bool px = false;             // u = arccos(z)
  int nq = 3;                  // 3: fast measure (Z, X, Y); 1: Born
  const void* coef = nullptr;  // [O, I, nq, 2R+1]

  const void* weight = nullptr;       // [O, I] postact weight * mask
  const void* base_weight = nullptr;  // [O, I] SiLU base branch (times mask); null: no base branch
  const void* bias = nullptr;         // [O] null: none
  const void* down_weight = nullptr;  // [a, d + H] (HQKAN)
  const void* down_bias = nullptr;    // [a] or null
  const void* up_weight = nullptr;    // [4H, b]     (HQKAN)
  const void* up_bias = nullptr;      // [4H] or null

  const void* x = nullptr;   // [L, B, d]
  const void* h0 = nullptr;  // [B, H]
  const void* c0 = nullptr;  // [B, H]

  // forward outputs, read back by the backward
  void* h_seq = nullptr;  // [L, B, H]
  void* c_seq = nullptr;  // [L, B, H]
  void* gates = nullptr;  // [L, B, 4H] activated gates (sigmoid f, sigmoid i, tanh g, sigmoid o)
  void* latent = nullptr; // [L, B, b] the gate layer's outputs (HQKAN only)

  // backward
  const void* grad_h_seq = nullptr;  // [L, B, H]
  const void* grad_c_seq = nullptr;  // [L, B, H]
  void* grad_x = nullptr;            // [L, B, d]
  void* grad_h0 = nullptr;           // [B, H]
  void* grad_c0 = nullptr;           // [B, H]
  // parameter gradients, summed over the steps; null when not needed
  void* grad_theta = nullptr;        // [O, I, Rt, P] (circuit)
  void* grad_pre_w = nullptr;        // [O, I, R]     (circuit)
  void* grad_pre_b = nullptr;        // [O, I, R]     (circuit)
  void* grad_coef = nullptr;         // [O, I, nq, 2R+1] (spectral)
  void* grad_weight = nullptr;       // [O, I]
  void* grad_base_weight = nullptr;  // [O, I]
  void* grad_bias = nullptr;         // [O]
  void* grad_down_weight = nullptr;  // [a, d + H]
  void* grad_down_bias = nullptr;    // [a]
  void* grad_up_weight = nullptr;    // [4H, b]
  void* grad_up_bias = nullptr;      // [4H]

  // CPU schedule
  int num_threads = 1;
  // CUDA launch (cuda/recurrence.cu: circuit gate layers only)
  int device = 0;
  std::uintptr_t stream = 0;
};

// Sizes of one call, shared by the CPU and CUDA schedules. The gate layer maps u [B, Ig] to
// y [B, Og]: u = z and y = the gates (Ig = I = d + H, Og = G = 4H), or between the HQKAN's Linear
// maps (Ig = a, Og = b). E edges, K theta entries per edge.
struct RecurrenceSizes {
  int64_t L, B, d, H, I, G, Ig, Og, E, K;
  bool hqkan;
  explicit RecurrenceSizes(const RecurrenceParams& p)
      : L(p.steps), B(p.batch), d(p.input_size), H(p.hidden), I(p.input_size + p.hidden), G(4 * p.hidden),
        Ig(p.latent_in ? p.latent_in : I), Og(p.latent_in ? p.latent_out : G), E(Ig * Og),
        K(theta_rows(p.ansatz, p.reps) * theta_cols(p.ansatz)), hqkan(p.latent_in > 0) {}
  int64_t coef_size(const RecurrenceParams& p) const { return E * p.nq * (2 * p.reps + 1); }
};

// The circuit gate layer of one step as the circuit engine's params (both devices; the caller sets
// x and the output or gradient pointers).
inline CircuitParams circuit_gate_params(const RecurrenceParams& p, const RecurrenceSizes& s) {
  CircuitParams c;
  c.batch = s.B; c.in_dim = s.Ig; c.out_dim = s.Og; c.reps = p.reps;
  c.ansatz = p.ansatz; c.dtype = p.dtype; c.fast_measure = p.fast_measure; c.encode = p.encode;
  c.theta = p.theta; c.pre_w = p.pre_w; c.pre_b = p.pre_b; c.weight = p.weight;
  c.num_threads = p.num_threads; c.device = p.device; c.stream = p.stream;
  return c;
}

enum class RecurrenceOp : int { kForward, kBackward };
// Throws std::invalid_argument for what the entry point does not handle (checks.cpp).
void check_recurrence(const RecurrenceParams& p, RecurrenceOp op, Device device);

void recurrence_forward_cpu(const RecurrenceParams& p);
void recurrence_backward_cpu(const RecurrenceParams& p);
// compiled only with QKAN_FAST_CUDA
void recurrence_forward_cuda(const RecurrenceParams& p);
void recurrence_backward_cuda(const RecurrenceParams& p);

}  // namespace qkan_fast
