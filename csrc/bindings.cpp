// The pybind11 module qkan_fast._C: the typed enums, the params structs and entry points of the
// circuit engine and of the fused recurrence, and build_info (the spectral engine's part is
// spectral_bindings.cpp). Python (circuit.py, recurrence.py) has already checked every tensor;
// pointers arrive as integers, every entry point checks codes, sizes and pointers again
// (checks.cpp: std::invalid_argument, i.e. ValueError), and the GIL is released while the kernels
// run, so Python threads can call layers concurrently.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bind_util.h"
#include "core_types.h"
#include "cpu/isa.h"
#include "daruan_jet.h"
#include "params.h"
#include "recurrence.h"

namespace py = pybind11;
using qkan_fast::CircuitParams;

#ifndef QKAN_FAST_VERSION
#define QKAN_FAST_VERSION "dev"
#endif

namespace {

#ifdef QKAN_FAST_CUDA
template <class Params, void (*Cuda)(const Params&)>
void call_cuda(const Params& p) {
  py::gil_scoped_release release;
  Cuda(p);
}
#define QKF_CUDA_CALL(Params, fn) &call_cuda<Params, qkan_fast::fn>
#else
template <class Params>
void no_cuda(const Params&) {
  throw std::runtime_error(
      "qkan_fast was built without CUDA (no CUDA compiler at build time, or QKAN_FAST_CUDA=OFF); "
      "rebuild with nvcc on PATH to run on a GPU");
}
#define QKF_CUDA_CALL(Params, fn) &no_cuda<Params>
#endif

}  // namespace

#ifdef QKAN_FAST_CUDA
namespace qkan_fast { py::dict cuda_check(int device_index); }  // csrc/cuda_check.cpp
#else
namespace qkan_fast { py::dict cuda_check(int) { no_cuda(CircuitParams{}); return {}; } }
#endif

void bind_spectral(py::module_& m);  // csrc/spectral_bindings.cpp: the spectral engine's entry points

// The fused LSTM recurrence (recurrence.h). Bound here rather than in a file of its own: each
// pybind11 translation unit costs about 9 s of compile time for its headers alone.
static void bind_recurrence(py::module_& m) {
  using namespace qkan_fast;
  py::enum_<GateEngine>(m, "GateEngine", "engine of a recurrence's gate layer")
      .value("circuit", GateEngine::kCircuit)
      .value("spectral", GateEngine::kSpectral);

  using P = RecurrenceParams;
  py::class_<P> cls(m, "RecurrenceParams");
  cls.def(py::init<>())
      .def_readwrite("steps", &P::steps)
      .def_readwrite("batch", &P::batch)
      .def_readwrite("input_size", &P::input_size)
      .def_readwrite("hidden", &P::hidden)
      .def_readwrite("latent_in", &P::latent_in)
      .def_readwrite("latent_out", &P::latent_out)
      .def_readwrite("dtype", &P::dtype)
      .def_readwrite("engine", &P::engine)
      .def_readwrite("reps", &P::reps)
      .def_readwrite("ansatz", &P::ansatz)
      .def_readwrite("fast_measure", &P::fast_measure)
      .def_readwrite("encode", &P::encode)
      .def_readwrite("px", &P::px)
      .def_readwrite("nq", &P::nq)
      .def_readwrite("num_threads", &P::num_threads)
      .def_readwrite("device", &P::device)
      .def_readwrite("stream", &P::stream);
  for (auto [name, field] : {std::pair{"theta", &P::theta}, {"pre_w", &P::pre_w}, {"pre_b", &P::pre_b},
                             {"coef", &P::coef}, {"weight", &P::weight}, {"base_weight", &P::base_weight},
                             {"bias", &P::bias}, {"down_weight", &P::down_weight}, {"down_bias", &P::down_bias},
                             {"up_weight", &P::up_weight}, {"up_bias", &P::up_bias}, {"x", &P::x}, {"h0", &P::h0},
                             {"c0", &P::c0},
                             {"grad_h_seq", &P::grad_h_seq}, {"grad_c_seq", &P::grad_c_seq}})
    bind_pointer(cls, name, field);
  for (auto [name, field] : {std::pair{"h_seq", &P::h_seq}, {"c_seq", &P::c_seq}, {"gates", &P::gates},
                             {"latent", &P::latent}, {"grad_down_weight", &P::grad_down_weight},
                             {"grad_down_bias", &P::grad_down_bias}, {"grad_up_weight", &P::grad_up_weight},
                             {"grad_up_bias", &P::grad_up_bias},
                             {"grad_x", &P::grad_x}, {"grad_h0", &P::grad_h0}, {"grad_c0", &P::grad_c0},
                             {"grad_theta", &P::grad_theta}, {"grad_pre_w", &P::grad_pre_w},
                             {"grad_pre_b", &P::grad_pre_b}, {"grad_coef", &P::grad_coef},
                             {"grad_weight", &P::grad_weight}, {"grad_base_weight", &P::grad_base_weight},
                             {"grad_bias", &P::grad_bias}})
    bind_pointer(cls, name, field);

  m.def("recurrence_forward_cpu", &release_gil<P, recurrence_forward_cpu>,
        "every step of one LSTM layer: gate layer, nonlinearities, cell update");
  m.def("recurrence_backward_cpu", &release_gil<P, recurrence_backward_cpu>,
        "backpropagation through time of one LSTM layer, each step's gate layer recomputed");
  m.def("recurrence_forward_cuda", QKF_CUDA_CALL(P, recurrence_forward_cuda));
  m.def("recurrence_backward_cuda", QKF_CUDA_CALL(P, recurrence_backward_cuda));
}

PYBIND11_MODULE(_C, m) {
  using namespace qkan_fast;
  m.doc() = "qkan_fast compiled core (framework-free: no libtorch)";

  py::enum_<Ansatz>(m, "Ansatz", "the circuit of one edge (SPEC.md section 1)")
      .value("pz", kPZ)
      .value("rpz", kRPZ)
      .value("px", kPX)
      .value("real", kREAL)
      .value("mix", kMIX);
  py::enum_<DType>(m, "DType", "storage type of every tensor of a call; bfloat16 runs on CUDA only")
      .value("float32", kFloat32)
      .value("float64", kFloat64)
      .value("bfloat16", kBFloat16);
  py::enum_<Isa>(m, "Isa", "instruction-set copy of the CPU kernels")
      .value("generic", Isa::kGeneric)
      .value("avx2", Isa::kAvx2)
      .value("avx512", Isa::kAvx512);
  m.attr("MAX_REPS") = kMaxReps;
  m.def("cpu_isa", &cpu_isa, "the ISA copy the CPU kernels run (QKAN_FAST_ISA=generic|avx2 lowers it)");

  py::class_<CircuitParams> cls(m, "CircuitParams");
  cls.def(py::init<>())
      .def_readwrite("batch", &CircuitParams::batch)
      .def_readwrite("in_dim", &CircuitParams::in_dim)
      .def_readwrite("out_dim", &CircuitParams::out_dim)
      .def_readwrite("reps", &CircuitParams::reps)
      .def_readwrite("ansatz", &CircuitParams::ansatz)
      .def_readwrite("dtype", &CircuitParams::dtype)
      .def_readwrite("fast_measure", &CircuitParams::fast_measure)
      .def_readwrite("encode", &CircuitParams::encode)
      .def_readwrite("order", &CircuitParams::order)
      .def_readwrite("num_threads", &CircuitParams::num_threads)
      .def_readwrite("device", &CircuitParams::device)
      .def_readwrite("stream", &CircuitParams::stream);
  bind_pointer(cls, "x", &CircuitParams::x);
  bind_pointer(cls, "theta", &CircuitParams::theta);
  bind_pointer(cls, "pre_w", &CircuitParams::pre_w);
  bind_pointer(cls, "pre_b", &CircuitParams::pre_b);
  bind_pointer(cls, "weight", &CircuitParams::weight);
  bind_pointer(cls, "y", &CircuitParams::y);
  bind_pointer(cls, "postacts", &CircuitParams::postacts);
  bind_pointer(cls, "grad_y", &CircuitParams::grad_y);
  bind_pointer(cls, "grad_postacts", &CircuitParams::grad_postacts);
  bind_pointer(cls, "grad_x", &CircuitParams::grad_x);
  bind_pointer(cls, "grad_theta", &CircuitParams::grad_theta);
  bind_pointer(cls, "grad_pre_w", &CircuitParams::grad_pre_w);
  bind_pointer(cls, "grad_pre_b", &CircuitParams::grad_pre_b);
  bind_pointer(cls, "grad_weight", &CircuitParams::grad_weight);
  bind_pointer(cls, "scale", &CircuitParams::scale);
  bind_pointer(cls, "grad_scale", &CircuitParams::grad_scale);

  m.def("circuit_forward_cpu", &release_gil<CircuitParams, circuit_forward_cpu>,
        "y[b,o] = sum_i weight[o,i] * phi_oi(x[b,i])");
  m.def("circuit_postacts_cpu", &release_gil<CircuitParams, circuit_postacts_cpu>, "phi (B, O, I)");
  m.def("circuit_backward_cpu", &release_gil<CircuitParams, circuit_backward_cpu>,
        "gradients of y (or of postacts) by adjoint recomputation");
  m.def("circuit_jet_forward_cpu", &release_gil<CircuitParams, circuit_jet_forward_cpu>,
        "y[b,o] = sum_i weight[o,i] * scale[b,i] * phi_oi^(order)(x[b,i]) (Taylor mode in x)");
  m.def("circuit_jet_backward_cpu", &release_gil<CircuitParams, circuit_jet_backward_cpu>,
        "gradients of the jet forward (x from phi^(order+1), scale, weight, parameters)");
  m.def("jet_max_order", []() { return qkan_fast::kMaxJetOrder; }, "highest x-derivative of the jet kernels");
  m.def("circuit_forward_cuda", QKF_CUDA_CALL(CircuitParams, circuit_forward_cuda));
  m.def("circuit_postacts_cuda", QKF_CUDA_CALL(CircuitParams, circuit_postacts_cuda));
  m.def("circuit_backward_cuda", QKF_CUDA_CALL(CircuitParams, circuit_backward_cuda));
  m.def("cuda_check", &qkan_fast::cuda_check, py::arg("device_index"), "driver/GPU/arch check; dict or RuntimeError");

  bind_spectral(m);
  bind_recurrence(m);

  m.def("build_info", []() {
    py::dict info;
    info["version"] = QKAN_FAST_VERSION;
#ifdef QKAN_FAST_OPENMP
    info["openmp"] = true;
#else
    info["openmp"] = false;
#endif
#if QKF_X86
    info["cpu_isa_compiled"] = py::make_tuple("generic", "avx2", "avx512");
#else
    info["cpu_isa_compiled"] = py::make_tuple("generic");
#endif
    info["cpu_isa"] = isa_name(cpu_isa());
#ifdef QKAN_FAST_CUDA
    info["cuda"] = true;
    info["cuda_archs"] = QKAN_FAST_CUDA_ARCHS;
    info["cuda_version"] = QKAN_FAST_CUDA_VERSION;
#else
    info["cuda"] = false;
    info["cuda_archs"] = "";
#endif
#ifdef __VERSION__
    info["compiler"] = __VERSION__;
#endif
    return info;
  });
}
