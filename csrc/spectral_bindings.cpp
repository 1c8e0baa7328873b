// pybind11 side of the spectral engine: one params struct per kernel family (coefficients, basis,
// fused layer), their CPU entry points and the schedule policy (cpu/spectral_policy.h), added to
// qkan_fast._C by bind_spectral (called from bindings.cpp). python/qkan_fast/spectral.py has
// checked every tensor; pointers arrive as integers, every entry point checks codes, sizes and
// pointers again (checks.cpp), and the GIL is released while kernels run.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bind_util.h"
#include "cpu/spectral.h"
#include "cpu/spectral_policy.h"

namespace py = pybind11;

void bind_spectral(py::module_& m) {
  using namespace qkan_fast;

  py::class_<SpectralCoefParams> coef(m, "SpectralCoefParams");
  coef.def(py::init<>())
      .def_readwrite("out_dim", &SpectralCoefParams::out_dim)
      .def_readwrite("in_dim", &SpectralCoefParams::in_dim)
      .def_readwrite("reps", &SpectralCoefParams::reps)
      .def_readwrite("ansatz", &SpectralCoefParams::ansatz)
      .def_readwrite("dtype", &SpectralCoefParams::dtype)
      .def_readwrite("nq", &SpectralCoefParams::nq)
      .def_readwrite("exact", &SpectralCoefParams::exact)
      .def_readwrite("num_threads", &SpectralCoefParams::num_threads);
  bind_pointer(coef, "theta", &SpectralCoefParams::theta);
  bind_pointer(coef, "pre_b", &SpectralCoefParams::pre_b);
  bind_pointer(coef, "coef_out", &SpectralCoefParams::coef_out);
  bind_pointer(coef, "grad_coef_in", &SpectralCoefParams::grad_coef_in);
  bind_pointer(coef, "grad_theta", &SpectralCoefParams::grad_theta);
  bind_pointer(coef, "grad_pre_b", &SpectralCoefParams::grad_pre_b);
  bind_pointer(coef, "weight", &SpectralCoefParams::weight);
  bind_pointer(coef, "cw", &SpectralCoefParams::cw);
  bind_pointer(coef, "c0", &SpectralCoefParams::c0);
  bind_pointer(coef, "grad_cw", &SpectralCoefParams::grad_cw);
  bind_pointer(coef, "grad_c0", &SpectralCoefParams::grad_c0);
  bind_pointer(coef, "grad_weight", &SpectralCoefParams::grad_weight);

  py::class_<SpectralBasisParams> basis(m, "SpectralBasisParams");
  basis.def(py::init<>())
      .def_readwrite("batch", &SpectralBasisParams::batch)
      .def_readwrite("in_dim", &SpectralBasisParams::in_dim)
      .def_readwrite("reps", &SpectralBasisParams::reps)
      .def_readwrite("px", &SpectralBasisParams::px)
      .def_readwrite("dtype", &SpectralBasisParams::dtype)
      .def_readwrite("num_threads", &SpectralBasisParams::num_threads);
  bind_pointer(basis, "x", &SpectralBasisParams::x);
  bind_pointer(basis, "basis", &SpectralBasisParams::basis);
  bind_pointer(basis, "grad_basis", &SpectralBasisParams::grad_basis);
  bind_pointer(basis, "grad_x", &SpectralBasisParams::grad_x);

  py::class_<SpectralLayerParams> layer(m, "SpectralLayerParams");
  layer.def(py::init<>())
      .def_readwrite("batch", &SpectralLayerParams::batch)
      .def_readwrite("in_dim", &SpectralLayerParams::in_dim)
      .def_readwrite("out_dim", &SpectralLayerParams::out_dim)
      .def_readwrite("reps", &SpectralLayerParams::reps)
      .def_readwrite("px", &SpectralLayerParams::px)
      .def_readwrite("dtype", &SpectralLayerParams::dtype)
      .def_readwrite("nq", &SpectralLayerParams::nq)
      .def_readwrite("num_threads", &SpectralLayerParams::num_threads);
  bind_pointer(layer, "x", &SpectralLayerParams::x);
  bind_pointer(layer, "coef", &SpectralLayerParams::coef);
  bind_pointer(layer, "weight", &SpectralLayerParams::weight);
  bind_pointer(layer, "y", &SpectralLayerParams::y);
  bind_pointer(layer, "grad_y", &SpectralLayerParams::grad_y);
  bind_pointer(layer, "grad_x", &SpectralLayerParams::grad_x);
  bind_pointer(layer, "grad_coef", &SpectralLayerParams::grad_coef);
  bind_pointer(layer, "grad_weight", &SpectralLayerParams::grad_weight);

  m.def("spectral_coef_cpu", &release_gil<SpectralCoefParams, spectral_coef_cpu>,
        "coef_out [O, I, nq, 2R+1]: Fourier coefficients of the components Z (, X, Y) of every edge");
  m.def("spectral_coef_backward_cpu", &release_gil<SpectralCoefParams, spectral_coef_backward_cpu>,
        "grad_theta (and rpz grad_pre_b) from grad_coef_in, by the adjoint of the coefficient map");
  m.def("spectral_born_coef_cpu", &release_gil<SpectralCoefParams, spectral_born_coef_cpu>,
        "cw [2R, I, O] = weight * C[., ., 1+k] and c0 [O] = sum_i weight * C[., i, 0] (Born layer GEMM operands)");
  m.def("spectral_born_coef_backward_cpu", &release_gil<SpectralCoefParams, spectral_born_coef_backward_cpu>,
        "grad_theta, grad_pre_b (rpz) and grad_weight from grad_cw, grad_c0");
  m.def("spectral_basis_cpu", &release_gil<SpectralBasisParams, spectral_basis_cpu>,
        "basis [2R, I, B]: cos ku then sin ku, k = 1..R, of u = x (or arccos x for px)");
  m.def("spectral_basis_backward_cpu", &release_gil<SpectralBasisParams, spectral_basis_backward_cpu>,
        "grad_x [B, I] from grad_basis [2R, I, B]");
  m.def("spectral_fused_forward_cpu", &release_gil<SpectralLayerParams, spectral_fused_forward_cpu>,
        "y[b,o] = sum_i weight[o,i] * g(z_oi(u[b,i])), fused: g(z) = sqrt((1+z)/2) - sqrt((1-z)/2) (nq = 3) or z (Born, nq = 1)");
  m.def("spectral_fused_backward_cpu", &release_gil<SpectralLayerParams, spectral_fused_backward_cpu>,
        "grad_x, grad_coef [O, I, nq, 2R+1], grad_weight of the fused layer");

  m.def("spectral_born_fused_preferred", &spectral_born_fused_preferred, py::arg("batch"), py::arg("in_dim"),
        py::arg("out_dim"), py::arg("reps"), py::arg("dtype"),
        "whether the Born layer runs as the fused kernel rather than the GEMM (cpu/spectral_policy.h)");
  const BornFusedRule& r = kBornFusedRule;
  py::dict rule;
  rule["min_batch"] = r.min_batch;
  rule["max_out"] = r.max_out;
  rule["small_out"] = r.small_out;
  rule["mid_out"] = r.mid_out;
  rule["mid_basis_mib"] = r.mid_basis_mib;
  rule["big_basis_mib"] = r.big_basis_mib;
  m.attr("SPECTRAL_BORN_FUSED_RULE") = rule;
  m.attr("SPECTRAL_AUTO_MIN_EDGE_SAMPLES") = kAutoMinEdgeSamples;
  m.attr("SPECTRAL_AUTO_MIN_OUT") = kAutoMinOut;
  m.def("spectral_auto_preferred", &spectral_auto_preferred, py::arg("batch"), py::arg("in_dim"),
        py::arg("out_dim"), "engine='auto': whether the layer is large enough for the spectral engine");
}
