// Shared pieces of the CUDA circuit kernels (cuda/circuit_forward.cu, cuda/circuit_backward.cu):
// storage <-> compute conversions (bf16 is stored as __nv_bfloat16 and computed in float), the
// static switches that turn the dtype, ansatz and encoding of CircuitParams into template arguments, launch
// helpers (device guard, shared-memory opt-in, error checks) and small integer helpers.
//
// The kernels use nothing beyond __syncthreads, __shfl_xor_sync, dynamic shared memory and the
// math of csrc/daruan.h. With QKF_EMULATE defined, an emulation header provides those on the host
// (one std::thread per CUDA thread), so the kernel bodies can be checked without a GPU.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#ifndef QKF_EMULATE
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define QKF_DEV __device__ __forceinline__
#define QKF_GLOBAL __global__
// kernel<<<grid, block, smem, stream>>>(args...) as a macro, so the emulator can replace it
#define QKF_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
// dynamic shared memory of the block, 16-byte aligned
#define QKF_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

#include "daruan.h"
#include "params.h"

namespace qkan_fast {
namespace cuda_kernels {

// ------------------------------------------------------------------------------------------------
// dtypes: every tensor is stored as T; the maths runs in Acc<T> (float for float and bf16)

template <class T> struct AccOf { using type = T; };
template <> struct AccOf<__nv_bfloat16> { using type = float; };
template <class T> using Acc = typename AccOf<T>::type;

QKF_DEV float ld(const float* p, int64_t i) { return p[i]; }
QKF_DEV double ld(const double* p, int64_t i) { return p[i]; }
QKF_DEV float ld(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
QKF_DEV void st(float* p, int64_t i, float v) { p[i] = v; }
QKF_DEV void st(double* p, int64_t i, double v) { p[i] = v; }
QKF_DEV void st(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }  // round to nearest

QKF_DEV int imin(int a, int b) { return a < b ? a : b; }
QKF_DEV int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }

// Butterfly sum over aligned groups of `width` lanes (a power of two <= 32); every lane of the
// warp must call it (full mask). Each group ends with its sum in every lane of the group; the
// order of additions depends on the lane only, so results are reproducible run to run.
template <class C> QKF_DEV C group_sum(C v, int width) {
  for (int m = width >> 1; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

// Layout of one edge's staged parameters in shared memory, in units of Acc<T>:
//   [2K]  (c, s) of every theta entry (read as Rot<C>[K] by edge_forward / edge_adjoint)
//   [R]   encoding weights w (ENC only)
//   [R]   encoding biases b (ENC only)
// The stride is odd so that 32 lanes reading 32 different edges hit 32 different banks.
inline int edge_slot_stride(int K, int R, bool enc) {
  int s = 2 * K + (enc ? 2 * R : 0);
  return (s % 2 == 0) ? s + 1 : s;
}

// ------------------------------------------------------------------------------------------------
// host helpers

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int next_pow2(int64_t v) {
  int p = 1;
  while (p < v && p < (1 << 30)) p <<= 1;
  return p;
}

inline std::string sizes_str(const CircuitParams& p) {
  return "B=" + std::to_string(p.batch) + ", I=" + std::to_string(p.in_dim) + ", O=" + std::to_string(p.out_dim) +
         ", reps=" + std::to_string(p.reps) + ", ansatz=" + std::to_string(p.ansatz) +
         ", dtype=" + std::to_string(p.dtype);
}

inline void cuda_check(cudaError_t err, const char* what, const CircuitParams& p) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("qkan_fast CUDA: ") + what + " failed: " + cudaGetErrorName(err) + " (" +
                             cudaGetErrorString(err) + ") [" + sizes_str(p) + ", device " +
                             std::to_string(p.device) + "]");
}

// After a launch: a bad configuration or a sticky error from earlier work surfaces here (no
// synchronisation: errors inside the kernel show at the next synchronising call, as in torch).
inline void check_launch(const char* kernel, const CircuitParams& p, int64_t grid, int block, size_t smem) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("qkan_fast CUDA: launch of ") + kernel + " failed: " + cudaGetErrorName(err) +
                             " (" + cudaGetErrorString(err) + ") [" + sizes_str(p) + ", grid=" + std::to_string(grid) +
                             ", block=" + std::to_string(block) + ", shared memory=" + std::to_string(smem) +
                             " bytes, device " + std::to_string(p.device) + "]");
}

// Makes p.device current for the scope of a call and restores the caller's device afterwards.
class DeviceGuard {
 public:
  DeviceGuard(int device, const CircuitParams& p) : device_(device) {
    cuda_check(cudaGetDevice(&prev_), "cudaGetDevice", p);
    if (prev_ != device_) cuda_check(cudaSetDevice(device_), "cudaSetDevice", p);
  }
  ~DeviceGuard() {
    if (prev_ != device_) cudaSetDevice(prev_);  // no throw from a destructor
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int prev_ = 0;
};

struct DeviceLimits {
  int sm_count = 1;
  size_t smem_default = 48 * 1024;  // per block without opt-in
  size_t smem_optin = 48 * 1024;    // per block with cudaFuncAttributeMaxDynamicSharedMemorySize
};

inline DeviceLimits device_limits(const CircuitParams& p) {
  DeviceLimits d;
  int v = 0;
  cuda_check(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, p.device), "cudaDeviceGetAttribute", p);
  d.sm_count = v > 0 ? v : 1;
  v = 0;
  cuda_check(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, p.device),
             "cudaDeviceGetAttribute", p);
  if (static_cast<size_t>(v) > d.smem_optin) d.smem_optin = static_cast<size_t>(v);
  return d;
}

// Raises the kernel's dynamic shared-memory limit when a launch needs more than the default 48 KiB.
template <class Kernel>
void allow_smem(Kernel kernel, size_t smem, const DeviceLimits& lim, const char* name, const CircuitParams& p) {
  if (smem <= lim.smem_default) return;
  if (smem > lim.smem_optin)
    throw std::runtime_error(std::string("qkan_fast CUDA: ") + name + " needs " + std::to_string(smem) +
                             " bytes of shared memory per block but the device allows " +
                             std::to_string(lim.smem_optin) + " [" + sizes_str(p) +
                             "]; use fewer repetitions or the CPU engine");
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
             "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", p);
}

// ------------------------------------------------------------------------------------------------
// static switches: runtime flags -> compile-time constants (causal-conv1d / flash-attention style)

#define QKF_BOOL_SWITCH(COND, NAME, ...)  \
  [&] {                                   \
    if (COND) {                           \
      constexpr static bool NAME = true;  \
      return __VA_ARGS__();               \
    } else {                              \
      constexpr static bool NAME = false; \
      return __VA_ARGS__();               \
    }                                     \
  }()

#define QKF_ANSATZ_SWITCH(CODE, NAME, ...)                     \
  [&] {                                                        \
    switch (CODE) {                                            \
      case ::qkan_fast::kPZ: {                                 \
        constexpr static int NAME = ::qkan_fast::kPZ;          \
        return __VA_ARGS__();                                  \
      }                                                        \
      case ::qkan_fast::kRPZ: {                                \
        constexpr static int NAME = ::qkan_fast::kRPZ;         \
        return __VA_ARGS__();                                  \
      }                                                        \
      case ::qkan_fast::kPX: {                                 \
        constexpr static int NAME = ::qkan_fast::kPX;          \
        return __VA_ARGS__();                                  \
      }                                                        \
      case ::qkan_fast::kREAL: {                               \
        constexpr static int NAME = ::qkan_fast::kREAL;        \
        return __VA_ARGS__();                                  \
      }                                                        \
      default: {                                               \
        constexpr static int NAME = ::qkan_fast::kMIX;         \
        return __VA_ARGS__();                                  \
      }                                                        \
    }                                                          \
  }()

#define QKF_DTYPE_SWITCH(CODE, TYPE, ...)       \
  [&] {                                         \
    if ((CODE) == ::qkan_fast::kFloat64) {      \
      using TYPE = double;                      \
      return __VA_ARGS__();                     \
    } else if ((CODE) == ::qkan_fast::kBFloat16) { \
      using TYPE = __nv_bfloat16;               \
      return __VA_ARGS__();                     \
    } else {                                    \
      using TYPE = float;                       \
      return __VA_ARGS__();                     \
    }                                           \
  }()

// Every (dtype, ansatz, encode) combination, for explicit instantiation (the measure and the other
// flags are run-time branches inside the kernels).
#define QKF_FOR_EACH_CONFIG_T(MACRO, T)                                                \
  MACRO(T, ::qkan_fast::kPZ, true) MACRO(T, ::qkan_fast::kPZ, false)                   \
  MACRO(T, ::qkan_fast::kRPZ, true) MACRO(T, ::qkan_fast::kRPZ, false)                 \
  MACRO(T, ::qkan_fast::kPX, true) MACRO(T, ::qkan_fast::kPX, false)                   \
  MACRO(T, ::qkan_fast::kREAL, true) MACRO(T, ::qkan_fast::kREAL, false)               \
  MACRO(T, ::qkan_fast::kMIX, true) MACRO(T, ::qkan_fast::kMIX, false)
#define QKF_FOR_EACH_CONFIG(MACRO)          \
  QKF_FOR_EACH_CONFIG_T(MACRO, float)       \
  QKF_FOR_EACH_CONFIG_T(MACRO, double)      \
  QKF_FOR_EACH_CONFIG_T(MACRO, __nv_bfloat16)

}  // namespace cuda_kernels
}  // namespace qkan_fast
