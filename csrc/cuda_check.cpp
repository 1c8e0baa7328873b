// _C.cuda_check(device_index): can this machine's driver and GPU run the CUDA kernels in this
// build? Python calls it once per device before the first launch, so an old driver or a GPU we
// have no code for gives one clear RuntimeError (driver version, GPU, compiled archs) instead of
// "no kernel image is available" from deep inside a launch. Compiled only in CUDA builds; the
// CUDA runtime is linked statically, so nothing here needs a CUDA toolkit on the user's machine.
#include <pybind11/pybind11.h>

#include <cuda_runtime_api.h>

#include <cctype>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef QKAN_FAST_CUDA_ARCHS
#define QKAN_FAST_CUDA_ARCHS ""
#endif

namespace py = pybind11;

namespace qkan_fast {
namespace {

// "12040" -> "12.4" (cudaDriverGetVersion / cudaRuntimeGetVersion encode 1000*major + 10*minor).
std::string cuda_version_str(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// One entry of CMAKE_CUDA_ARCHITECTURES: "80" (SASS + PTX), "80-real" (SASS), "80-virtual"
// (PTX), with an optional a/f suffix on the number ("90a": SASS for 9.0 exactly).
struct CompiledArch {
  int cc = 0;        // 10 * major + minor
  bool sass = false;
  bool ptx = false;
  char suffix = 0;   // 'a' (this exact cc only), 'f' (this major's family), or 0
};

std::vector<CompiledArch> parse_archs(const std::string& list) {
  std::vector<CompiledArch> archs;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    CompiledArch a;
    size_t i = 0;
    while (i < item.size() && std::isdigit(static_cast<unsigned char>(item[i]))) a.cc = a.cc * 10 + (item[i++] - '0');
    if (a.cc == 0) continue;  // "all", "native": cannot be checked here, leave it to the launch
    if (i < item.size() && (item[i] == 'a' || item[i] == 'f')) a.suffix = item[i++];
    const std::string kind = item.substr(i);
    a.sass = kind != "-virtual";
    a.ptx = kind != "-real";
    archs.push_back(a);
  }
  return archs;
}

// How the kernels reach a GPU of compute capability cc: "sass sm_XX", "ptx-jit compute_XX", or ""
// when they cannot. SASS runs on the same major with an equal or newer minor ('a' only on its
// exact cc); PTX is JIT-compiled for any newer GPU, but only by a driver at least as new as the
// compiler that wrote it.
std::string kernel_path(const std::vector<CompiledArch>& archs, int cc, int driver, int runtime) {
  if (archs.empty()) return "unchecked";
  for (const CompiledArch& a : archs)
    if (a.sass && (a.suffix == 'a' ? a.cc == cc : a.cc / 10 == cc / 10 && a.cc <= cc))
      return "sass sm_" + std::to_string(a.cc);
  for (const CompiledArch& a : archs)
    if (a.ptx && a.suffix == 0 && a.cc <= cc && driver >= runtime) return "ptx-jit compute_" + std::to_string(a.cc);
  return "";
}

}  // namespace

py::dict cuda_check(int device_index) {
  const std::string compiled = QKAN_FAST_CUDA_ARCHS;
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);  // 0 when no NVIDIA driver is installed
  cudaRuntimeGetVersion(&runtime);
  const std::string versions =
      (driver ? "driver supports CUDA " + cuda_version_str(driver) : std::string("no NVIDIA driver")) +
      ", qkan_fast's CUDA runtime is " + cuda_version_str(runtime) + ", compiled CUDA archs: " + compiled;

  if (driver == 0)
    throw std::runtime_error("qkan_fast: cannot use CUDA device " + std::to_string(device_index) +
                             ": no NVIDIA driver was found (" + versions + "); run on the CPU");
  // The runtime is linked statically; a driver of an older CUDA major version cannot load it.
  if (driver / 1000 < runtime / 1000)
    throw std::runtime_error("qkan_fast: the NVIDIA driver is too old for this build: " + versions +
                             ". Update the driver to one supporting CUDA " + std::to_string(runtime / 1000) +
                             ".x, or run on the CPU, or build qkan_fast from source with your CUDA toolkit");

  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later CUDA calls (torch's) are not blamed
    throw std::runtime_error(std::string("qkan_fast: CUDA is unusable here: ") + cudaGetErrorString(err) + " (" +
                             versions + ")");
  }
  if (device_index < 0 || device_index >= count)
    throw std::runtime_error("qkan_fast: CUDA device index " + std::to_string(device_index) + " out of range: " +
                             std::to_string(count) + " device(s) visible");

  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, device_index);
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("qkan_fast: cudaGetDeviceProperties failed: ") + cudaGetErrorString(err) +
                             " (" + versions + ")");
  const int cc = 10 * prop.major + prop.minor;

  const std::string runs_as = kernel_path(parse_archs(compiled), cc, driver, runtime);
  const std::string gpu = std::string(prop.name) + ", compute capability " + std::to_string(prop.major) + "." +
                          std::to_string(prop.minor);
  if (runs_as.empty())
    throw std::runtime_error("qkan_fast: CUDA device " + std::to_string(device_index) + " (" + gpu +
                             ") cannot run this build's kernels: " + versions +
                             (driver < runtime ? " (PTX needs a driver at least as new as the runtime)" : "") +
                             ". Run on the CPU, or build from source with QKAN_FAST_CUDA_ARCHS=" +
                             std::to_string(cc) + " and a CUDA toolkit your driver supports");

  py::dict info;
  info["device_index"] = device_index;
  info["device_name"] = std::string(prop.name);
  info["compute_capability"] = py::make_tuple(prop.major, prop.minor);
  info["driver_version"] = cuda_version_str(driver);
  info["runtime_version"] = cuda_version_str(runtime);
  info["compiled_archs"] = compiled;
  info["runs_as"] = runs_as;
  return info;
}

}  // namespace qkan_fast
