// pybind11 side of the spectral engine: SpectralParams and the four CPU entry points, added to
// qkan_fast._C by bind_spectral (called from bindings.cpp). python/qkan_fast/spectral.py has
// checked every tensor; pointers arrive as integers and the GIL is released while kernels run.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/spectral.h"

namespace py = pybind11;
using qkan_fast::SpectralParams;

namespace {

template <class Ptr>
void def_pointer(py::class_<SpectralParams>& cls, const char* name, Ptr SpectralParams::*field) {
  cls.def_property(
      name, [field](const SpectralParams& p) { return reinterpret_cast<std::uintptr_t>(p.*field); },
      [field](SpectralParams& p, std::uintptr_t v) { p.*field = reinterpret_cast<Ptr>(v); });
}

template <void (*Cpu)(const SpectralParams&)>
void call_cpu(const SpectralParams& p) {
  py::gil_scoped_release release;
  Cpu(p);
}

}  // namespace

void bind_spectral(py::module_& m) {
  py::class_<SpectralParams> cls(m, "SpectralParams", py::module_local());
  cls.def(py::init<>())
      .def_readwrite("batch", &SpectralParams::batch)
      .def_readwrite("in_dim", &SpectralParams::in_dim)
      .def_readwrite("out_dim", &SpectralParams::out_dim)
      .def_readwrite("reps", &SpectralParams::reps)
      .def_readwrite("px", &SpectralParams::px)
      .def_readwrite("dtype", &SpectralParams::dtype)
      .def_readwrite("ansatz", &SpectralParams::ansatz)
      .def_readwrite("nq", &SpectralParams::nq)
      .def_readwrite("exact", &SpectralParams::exact)
      .def_readwrite("num_threads", &SpectralParams::num_threads);
  def_pointer(cls, "theta", &SpectralParams::theta);
  def_pointer(cls, "pre_b", &SpectralParams::pre_b);
  def_pointer(cls, "coef_out", &SpectralParams::coef_out);
  def_pointer(cls, "grad_coef_in", &SpectralParams::grad_coef_in);
  def_pointer(cls, "grad_theta", &SpectralParams::grad_theta);
  def_pointer(cls, "grad_pre_b", &SpectralParams::grad_pre_b);
  def_pointer(cls, "cw", &SpectralParams::cw);
  def_pointer(cls, "c0", &SpectralParams::c0);
  def_pointer(cls, "grad_cw", &SpectralParams::grad_cw);
  def_pointer(cls, "grad_c0", &SpectralParams::grad_c0);
  def_pointer(cls, "x", &SpectralParams::x);
  def_pointer(cls, "coef", &SpectralParams::coef);
  def_pointer(cls, "weight", &SpectralParams::weight);
  def_pointer(cls, "y", &SpectralParams::y);
  def_pointer(cls, "basis", &SpectralParams::basis);
  def_pointer(cls, "grad_y", &SpectralParams::grad_y);
  def_pointer(cls, "grad_basis", &SpectralParams::grad_basis);
  def_pointer(cls, "grad_x", &SpectralParams::grad_x);
  def_pointer(cls, "grad_coef", &SpectralParams::grad_coef);
  def_pointer(cls, "grad_weight", &SpectralParams::grad_weight);

  m.def("spectral_coef_cpu", &call_cpu<qkan_fast::spectral_coef_cpu>,
        "coef_out [O, I, nq, 2R+1]: the circuit at 2R+1 angles and a DFT, components Z (, X, Y)");
  m.def("spectral_coef_backward_cpu", &call_cpu<qkan_fast::spectral_coef_backward_cpu>,
        "grad_theta (and rpz grad_pre_b) from grad_coef_in, by an adjoint sweep per sample angle");
  m.def("spectral_born_coef_cpu", &call_cpu<qkan_fast::spectral_born_coef_cpu>,
        "cw [2R, I, O] = weight * C[., ., 1+k] and c0 [O] = sum_i weight * C[., i, 0] (Born layer GEMM operands)");
  m.def("spectral_born_coef_backward_cpu", &call_cpu<qkan_fast::spectral_born_coef_backward_cpu>,
        "grad_theta, grad_pre_b (rpz) and grad_weight from grad_cw, grad_c0");
  m.def("spectral_basis_cpu", &call_cpu<qkan_fast::spectral_basis_cpu>,
        "basis [2R, I, B]: cos ku then sin ku, k = 1..R, of u = x (or arccos x for px)");
  m.def("spectral_basis_backward_cpu", &call_cpu<qkan_fast::spectral_basis_backward_cpu>,
        "grad_x [B, I] from grad_basis [2R, I, B]");
  m.def("spectral_fused_forward_cpu", &call_cpu<qkan_fast::spectral_fused_forward_cpu>,
        "y[b,o] = sum_i weight[o,i] * g(z_oi(u[b,i])), fused: g(z) = sqrt((1+z)/2) - sqrt((1-z)/2) (nq = 3) or z (Born, nq = 1)");
  m.def("spectral_fused_backward_cpu", &call_cpu<qkan_fast::spectral_fused_backward_cpu>,
        "grad_x, grad_coef [O, I, nq, 2R+1], grad_weight of the fused layer");
}
