// pybind11 side of the fused LSTM recurrence (recurrence.h), added to qkan_fast._C by
// bind_recurrence (called from bindings.cpp). python/qkan_fast/recurrence.py has checked every
// tensor; the entry points check codes, sizes and pointers again, and run without the GIL.
#include <pybind11/pybind11.h>

#include "bind_util.h"
#include "recurrence.h"

namespace py = pybind11;

void bind_recurrence(py::module_& m) {
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
      .def_readwrite("num_threads", &P::num_threads);
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
}
