// The pybind11 module qkan_fast._C: plain functions over CircuitParams. Python (ops.py) has
// already checked every tensor; here pointers arrive as integers and the GIL is released while
// the kernels run, so Python threads can call layers concurrently.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "cpu/dispatch.h"
#include "params.h"

namespace py = pybind11;
using qkan_fast::CircuitParams;

#ifndef QKAN_FAST_VERSION
#define QKAN_FAST_VERSION "dev"
#endif

namespace {

template <class Ptr>
void def_pointer(py::class_<CircuitParams>& cls, const char* name, Ptr CircuitParams::*field) {
  cls.def_property(
      name, [field](const CircuitParams& p) { return reinterpret_cast<std::uintptr_t>(p.*field); },
      [field](CircuitParams& p, std::uintptr_t v) { p.*field = reinterpret_cast<Ptr>(v); });
}

void require_cuda() {
#ifndef QKAN_FAST_CUDA
  throw std::runtime_error(
      "qkan_fast was built without CUDA (no CUDA compiler at build time, or QKAN_FAST_CUDA=OFF); "
      "rebuild with nvcc on PATH to run on a GPU");
#endif
}

template <void (*Cpu)(const CircuitParams&)>
void call_cpu(const CircuitParams& p) {
  py::gil_scoped_release release;
  Cpu(p);
}

}  // namespace

#ifdef QKAN_FAST_CUDA
#define QKF_CUDA_CALL(fn) \
  [](const CircuitParams& p) { py::gil_scoped_release release; qkan_fast::fn(p); }
namespace qkan_fast { py::dict cuda_check(int device_index); }  // csrc/cuda_check.cpp
#else
#define QKF_CUDA_CALL(fn) [](const CircuitParams&) { require_cuda(); }
namespace qkan_fast { py::dict cuda_check(int) { require_cuda(); return {}; } }
#endif

void bind_spectral(py::module_& m);  // csrc/spectral_bindings.cpp: the spectral engine's entry points

PYBIND11_MODULE(_C, m) {
  m.doc() = "qkan_fast compiled core (framework-free: no libtorch)";

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
      .def_readwrite("num_threads", &CircuitParams::num_threads)
      .def_readwrite("device", &CircuitParams::device)
      .def_readwrite("stream", &CircuitParams::stream)
      .def_readwrite("deterministic", &CircuitParams::deterministic);
  def_pointer(cls, "x", &CircuitParams::x);
  def_pointer(cls, "theta", &CircuitParams::theta);
  def_pointer(cls, "pre_w", &CircuitParams::pre_w);
  def_pointer(cls, "pre_b", &CircuitParams::pre_b);
  def_pointer(cls, "weight", &CircuitParams::weight);
  def_pointer(cls, "y", &CircuitParams::y);
  def_pointer(cls, "postacts", &CircuitParams::postacts);
  def_pointer(cls, "grad_y", &CircuitParams::grad_y);
  def_pointer(cls, "grad_postacts", &CircuitParams::grad_postacts);
  def_pointer(cls, "grad_x", &CircuitParams::grad_x);
  def_pointer(cls, "grad_theta", &CircuitParams::grad_theta);
  def_pointer(cls, "grad_pre_w", &CircuitParams::grad_pre_w);
  def_pointer(cls, "grad_pre_b", &CircuitParams::grad_pre_b);
  def_pointer(cls, "grad_weight", &CircuitParams::grad_weight);

  m.def("circuit_forward_cpu", &call_cpu<qkan_fast::circuit_forward_cpu>,
        "y[b,o] = sum_i weight[o,i] * phi_oi(x[b,i])");
  m.def("circuit_postacts_cpu", &call_cpu<qkan_fast::circuit_postacts_cpu>, "phi (B, O, I)");
  m.def("circuit_backward_cpu", &call_cpu<qkan_fast::circuit_backward_cpu>,
        "gradients of y (or of postacts) by adjoint recomputation");
  m.def("circuit_forward_cuda", QKF_CUDA_CALL(circuit_forward_cuda));
  m.def("circuit_postacts_cuda", QKF_CUDA_CALL(circuit_postacts_cuda));
  m.def("circuit_backward_cuda", QKF_CUDA_CALL(circuit_backward_cuda));
  m.def("cuda_check", &qkan_fast::cuda_check, py::arg("device_index"), "driver/GPU/arch check; dict or RuntimeError");

  bind_spectral(m);

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
    info["cpu_isa"] = qkan_fast::cpu_isa();
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
