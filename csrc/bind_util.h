// Small helpers shared by the two binding files: pointer fields as integers, GIL release.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

// A pointer field of a params struct, read and written from Python as an integer (data_ptr()).
template <class Params, class Ptr>
void bind_pointer(pybind11::class_<Params>& cls, const char* name, Ptr Params::*field) {
  cls.def_property(
      name, [field](const Params& p) { return reinterpret_cast<std::uintptr_t>(p.*field); },
      [field](Params& p, std::uintptr_t v) { p.*field = reinterpret_cast<Ptr>(v); });
}

// Runs an entry point without the GIL (its checks throw before any kernel starts).
template <class Params, void (*Fn)(const Params&)>
void release_gil(const Params& p) {
  pybind11::gil_scoped_release release;
  Fn(p);
}
