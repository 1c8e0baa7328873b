// The one place where the compiled core refuses what it does not handle: every entry point (CPU
// and CUDA) calls one of these first. Each throws std::invalid_argument (pybind11: ValueError)
// naming what was expected and what came, so a code that Python let through by mistake (a
// bfloat16 dtype on the CPU, an unknown ansatz) never reaches a kernel that would misread it.
#include <stdexcept>
#include <string>

#include "cpu/spectral.h"
#include "daruan_jet.h"
#include "params.h"
#include "recurrence.h"

namespace qkan_fast {
namespace {

[[noreturn]] void fail(const char* entry, const std::string& what) {
  throw std::invalid_argument(std::string("qkan_fast._C.") + entry + ": " + what);
}

void check_dtype(const char* entry, DType dtype, bool allow_bf16) {
  if (dtype == kFloat32 || dtype == kFloat64 || (allow_bf16 && dtype == kBFloat16)) return;
  fail(entry, std::string("dtype code ") + std::to_string(static_cast<int>(dtype)) + " (" +
                  dtype_name(dtype) + ") is not handled here; expected " +
                  (allow_bf16 ? "float32, float64 or bfloat16" : "float32 or float64 (bfloat16 runs on CUDA only)"));
}

void check_ansatz(const char* entry, Ansatz a) {
  if (a >= kPZ && a <= kMIX) return;
  fail(entry, "unknown ansatz code " + std::to_string(static_cast<int>(a)) +
                  " (expected 0 pz, 1 rpz, 2 px, 3 real, 4 mix)");
}

void check_reps(const char* entry, int reps) {
  if (reps >= 1 && reps <= kMaxReps) return;
  fail(entry, "reps must be in [1, " + std::to_string(kMaxReps) + "], got " + std::to_string(reps));
}

void check_size(const char* entry, const char* name, int64_t v) {
  if (v >= 1) return;
  fail(entry, std::string(name) + " must be >= 1, got " + std::to_string(v));
}

void check_threads(const char* entry, int n) {
  if (n >= 1) return;
  fail(entry, "num_threads must be >= 1, got " + std::to_string(n));
}

void need(const char* entry, const void* ptr, const char* name) {
  if (ptr) return;
  fail(entry, std::string(name) + " must be set (a null pointer came)");
}

}  // namespace

void check_circuit(const CircuitParams& p, CircuitOp op, Device device) {
  const bool cuda = device == Device::kCuda;
  const char* entry = op == CircuitOp::kForward       ? (cuda ? "circuit_forward_cuda" : "circuit_forward_cpu")
                      : op == CircuitOp::kPostacts    ? (cuda ? "circuit_postacts_cuda" : "circuit_postacts_cpu")
                      : op == CircuitOp::kBackward    ? (cuda ? "circuit_backward_cuda" : "circuit_backward_cpu")
                      : op == CircuitOp::kJetForward  ? "circuit_jet_forward_cpu"
                                                      : "circuit_jet_backward_cpu";
  check_dtype(entry, p.dtype, cuda);
  check_ansatz(entry, p.ansatz);
  check_reps(entry, p.reps);
  check_size(entry, "batch", p.batch);
  check_size(entry, "in_dim", p.in_dim);
  check_size(entry, "out_dim", p.out_dim);
  if (!cuda) check_threads(entry, p.num_threads);
  need(entry, p.x, "x");
  need(entry, p.theta, "theta");
  if (p.encode) {
    need(entry, p.pre_w, "pre_w (encode=True)");
    need(entry, p.pre_b, "pre_b (encode=True)");
  }
  switch (op) {
    case CircuitOp::kForward:
      need(entry, p.weight, "weight");
      need(entry, p.y, "y");
      break;
    case CircuitOp::kPostacts:
      need(entry, p.postacts, "postacts");
      break;
    case CircuitOp::kBackward:
      if ((p.grad_y != nullptr) == (p.grad_postacts != nullptr))
        fail(entry, "set exactly one of grad_y (with weight) or grad_postacts");
      if (p.grad_y) need(entry, p.weight, "weight (grad_y given)");
      if (p.grad_postacts && p.grad_weight)
        fail(entry, "grad_weight is defined for grad_y only, not for grad_postacts");
      break;
    case CircuitOp::kJetForward:
    case CircuitOp::kJetBackward: {
      const bool fwd = op == CircuitOp::kJetForward;
      // the backward's x-gradient is phi^(order+1): one order more in the Taylor coefficients
      const int top = fwd || !p.grad_x ? kMaxJetOrder : kMaxJetOrder - 1;
      if (p.order < 0 || p.order > top)
        fail(entry, "order must be in [0, " + std::to_string(top) + "]" + (fwd || !p.grad_x ? "" : " with grad_x") +
                        ", got " + std::to_string(p.order));
      if (fwd && (p.y != nullptr) == (p.postacts != nullptr))
        fail(entry, "set exactly one of y (with weight) or postacts");
      if (!fwd && (p.grad_y != nullptr) == (p.grad_postacts != nullptr))
        fail(entry, "set exactly one of grad_y (with weight) or grad_postacts");
      if (p.y || p.grad_y) need(entry, p.weight, "weight (y or grad_y given)");
      if (p.grad_postacts && p.grad_weight)
        fail(entry, "grad_weight is defined for grad_y only, not for grad_postacts");
      if (p.theta_rot) fail(entry, "theta_rot is not read by the jet kernels; pass theta");
      break;
    }
  }
  if (cuda && p.theta_rot) fail(entry, "theta_rot is a CPU option; pass theta");
  if (cuda) {
    const int64_t lim = (int64_t(1) << 31) - 1;
    if (p.batch * p.out_dim > lim || p.batch * p.in_dim > lim || p.out_dim * p.in_dim > lim)
      fail(entry, "tensors over 2**31 - 1 elements are not supported (B=" + std::to_string(p.batch) +
                      ", I=" + std::to_string(p.in_dim) + ", O=" + std::to_string(p.out_dim) + ")");
  }
}

namespace {
const char* spectral_entry(SpectralOp op) {
  switch (op) {
    case SpectralOp::kCoef: return "spectral_coef_cpu";
    case SpectralOp::kCoefBackward: return "spectral_coef_backward_cpu";
    case SpectralOp::kBornCoef: return "spectral_born_coef_cpu";
    case SpectralOp::kBornCoefBackward: return "spectral_born_coef_backward_cpu";
    case SpectralOp::kBasis: return "spectral_basis_cpu";
    case SpectralOp::kBasisBackward: return "spectral_basis_backward_cpu";
    case SpectralOp::kLayerForward: return "spectral_fused_forward_cpu";
    default: return "spectral_fused_backward_cpu";
  }
}
}  // namespace

void check_spectral(const SpectralCoefParams& p, SpectralOp op) {
  const char* entry = spectral_entry(op);
  check_dtype(entry, p.dtype, false);
  check_ansatz(entry, p.ansatz);
  check_reps(entry, p.reps);
  check_size(entry, "out_dim", p.out_dim);
  check_size(entry, "in_dim", p.in_dim);
  check_threads(entry, p.num_threads);
  const bool born = op == SpectralOp::kBornCoef || op == SpectralOp::kBornCoefBackward;
  if (p.nq != 1 && !(p.nq == 3 && !born))
    fail(entry, "nq must be " + std::string(born ? "1" : "1 or 3") + ", got " + std::to_string(p.nq));
  if (p.ansatz == kPX) fail(entry, "ansatz px runs in its mix form (python/qkan_fast/spectral.py mix_form_of_px)");
  need(entry, p.theta, "theta");
  if (p.ansatz == kRPZ) need(entry, p.pre_b, "pre_b (ansatz rpz)");
  switch (op) {
    case SpectralOp::kCoef:
      need(entry, p.coef_out, "coef_out");
      break;
    case SpectralOp::kCoefBackward:
      need(entry, p.grad_coef_in, "grad_coef_in");
      need(entry, p.grad_theta, "grad_theta");
      break;
    case SpectralOp::kBornCoef:
      need(entry, p.weight, "weight");
      need(entry, p.cw, "cw");
      need(entry, p.c0, "c0");
      break;
    default:  // kBornCoefBackward
      need(entry, p.weight, "weight");
      need(entry, p.grad_cw, "grad_cw");
      need(entry, p.grad_c0, "grad_c0");
      need(entry, p.grad_theta, "grad_theta");
      break;
  }
  if (p.exact && op != SpectralOp::kCoef) fail(entry, "exact is an option of spectral_coef_cpu only");
}

void check_spectral(const SpectralBasisParams& p, SpectralOp op) {
  const char* entry = spectral_entry(op);
  check_dtype(entry, p.dtype, false);
  check_reps(entry, p.reps);
  check_size(entry, "batch", p.batch);
  check_size(entry, "in_dim", p.in_dim);
  check_threads(entry, p.num_threads);
  need(entry, p.x, "x");
  if (op == SpectralOp::kBasis) {
    need(entry, p.basis, "basis");
  } else {
    need(entry, p.grad_basis, "grad_basis");
    need(entry, p.grad_x, "grad_x");
  }
}

void check_spectral(const SpectralLayerParams& p, SpectralOp op) {
  const char* entry = spectral_entry(op);
  check_dtype(entry, p.dtype, false);
  check_reps(entry, p.reps);
  check_size(entry, "batch", p.batch);
  check_size(entry, "in_dim", p.in_dim);
  check_size(entry, "out_dim", p.out_dim);
  check_threads(entry, p.num_threads);
  if (p.nq != 1 && p.nq != 3)
    fail(entry, "nq must be 3 (fast measure: Z, X, Y) or 1 (Born: Z), got " + std::to_string(p.nq));
  need(entry, p.x, "x");
  need(entry, p.coef, "coef");
  need(entry, p.weight, "weight");
  if (op == SpectralOp::kLayerForward)
    need(entry, p.y, "y");
  else
    need(entry, p.grad_y, "grad_y");
}

void check_recurrence(const RecurrenceParams& p, RecurrenceOp op, Device device) {
  const bool cuda = device == Device::kCuda;
  const char* entry = op == RecurrenceOp::kForward ? (cuda ? "recurrence_forward_cuda" : "recurrence_forward_cpu")
                                                   : (cuda ? "recurrence_backward_cuda" : "recurrence_backward_cpu");
  check_dtype(entry, p.dtype, false);
  check_reps(entry, p.reps);
  check_size(entry, "steps", p.steps);
  check_size(entry, "batch", p.batch);
  check_size(entry, "input_size", p.input_size);
  check_size(entry, "hidden", p.hidden);
  check_threads(entry, p.num_threads);
  if (p.engine == GateEngine::kCircuit) {
    check_ansatz(entry, p.ansatz);
    need(entry, p.theta, "theta (circuit gate layer)");
    if (p.encode) {
      need(entry, p.pre_w, "pre_w (encode=True)");
      need(entry, p.pre_b, "pre_b (encode=True)");
    }
    if (p.grad_coef) fail(entry, "grad_coef belongs to the spectral gate layer, not the circuit one");
  } else if (p.engine == GateEngine::kSpectral) {
    if (p.nq != 1 && p.nq != 3)
      fail(entry, "nq must be 3 (fast measure: Z, X, Y) or 1 (Born: Z), got " + std::to_string(p.nq));
    need(entry, p.coef, "coef (spectral gate layer)");
    if (p.grad_theta || p.grad_pre_w || p.grad_pre_b)
      fail(entry, "the spectral gate layer gives grad_coef; theta and encoding gradients come from the coefficient map");
  } else {
    fail(entry, "unknown gate engine code " + std::to_string(static_cast<int>(p.engine)) + " (0 circuit, 1 spectral)");
  }
  need(entry, p.weight, "weight");
  if (p.latent_in || p.latent_out) {  // HQKAN gate map
    check_size(entry, "latent_in", p.latent_in);
    check_size(entry, "latent_out", p.latent_out);
    need(entry, p.down_weight, "down_weight (HQKAN gate map)");
    need(entry, p.up_weight, "up_weight (HQKAN gate map)");
    need(entry, p.latent, "latent (HQKAN gate map)");
  } else if (p.down_weight || p.up_weight) {
    fail(entry, "down_weight/up_weight given without latent sizes");
  }
  need(entry, p.x, "x");
  need(entry, p.h0, "h0");
  need(entry, p.c0, "c0");
  need(entry, p.h_seq, "h_seq");
  need(entry, p.c_seq, "c_seq");
  need(entry, p.gates, "gates");
  if (op == RecurrenceOp::kBackward) {
    need(entry, p.grad_h_seq, "grad_h_seq");
    need(entry, p.grad_c_seq, "grad_c_seq");
    need(entry, p.grad_x, "grad_x");
    need(entry, p.grad_h0, "grad_h0");
    need(entry, p.grad_c0, "grad_c0");
    if (p.grad_base_weight && !p.base_weight) fail(entry, "grad_base_weight asked for without base_weight");
    if (p.grad_bias && !p.bias) fail(entry, "grad_bias asked for without bias");
    if (p.grad_down_bias && !p.down_bias) fail(entry, "grad_down_bias asked for without down_bias");
    if (p.grad_up_bias && !p.up_bias) fail(entry, "grad_up_bias asked for without up_bias");
    if (!p.latent_in && (p.grad_down_weight || p.grad_up_weight))
      fail(entry, "grad_down_weight/grad_up_weight asked for without an HQKAN gate map");
  }
}

}  // namespace qkan_fast
