// CUDA schedule of the fused LSTM recurrence (csrc/recurrence.h), the CPU schedule's
// (csrc/cpu/recurrence_kernels.h) twin: a host loop over time steps, all on the caller's stream,
// around the circuit engine's CUDA entry points for each step's gate layer, with small kernels for
// the rest (z = [x_t, h], the HQKAN's Linear maps, the SiLU base branch and bias, the cell). The
// cell's forward and backward are csrc/lstm_cell.h, the same functions the CPU schedule runs.
// One thread per output element; the sums over the batch for parameter gradients run in a fixed
// order (no atomics), so results are reproducible run to run. The spectral gate kernels are
// CPU-only: python/qkan_fast/recurrence.py sends circuit gate layers here.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "lstm_cell.h"
#include "params.h"
#include "recurrence.h"

namespace qkan_fast {
namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("qkan_fast recurrence (CUDA): ") + what + ": " + cudaGetErrorString(err));
}

constexpr int kBlock = 256;
inline unsigned grid_for(int64_t n) { return static_cast<unsigned>((n + kBlock - 1) / kBlock); }

__device__ __forceinline__ float dev_exp(float v) { return expf(v); }
__device__ __forceinline__ double dev_exp(double v) { return exp(v); }
__device__ __forceinline__ float dev_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double dev_tanh(double v) { return tanh(v); }
template <class T> __device__ __forceinline__ T dev_sigmoid(T v) { return T(1) / (T(1) + dev_exp(-v)); }

// z[b, :] = [x_t[b, :], h_prev[b, :]]   (n = B * I)
template <class T>
__global__ void make_z_kernel(int64_t n, int64_t d, int64_t H, const T* x_t, const T* h_prev, T* z) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const int64_t I = d + H, b = k / I, i = k % I;
  z[k] = i < d ? x_t[b * d + i] : h_prev[b * H + i - d];
}

// y[b, o] = bias[o] + sum_i w[o, i] x[b, i]   (n = B * out)
template <class T>
__global__ void linear_kernel(int64_t n, int64_t in, int64_t out, const T* w, const T* bias, const T* x, T* y) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const int64_t b = k / out, o = k % out;
  T acc = bias ? bias[o] : T(0);
  for (int64_t i = 0; i < in; ++i) acc += w[o * in + i] * x[b * in + i];
  y[k] = acc;
}

// y[b, o] += bias[o] + sum_i bw[o, i] silu(u[b, i])   (n = B * O)
template <class T>
__global__ void base_bias_kernel(int64_t n, int64_t I, int64_t O, const T* bw, const T* bias, const T* u, T* y) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const int64_t b = k / O, o = k % O;
  T acc = bias ? bias[o] : T(0);
  if (bw)
    for (int64_t i = 0; i < I; ++i) {
      const T ui = u[b * I + i];
      acc += bw[o * I + i] * ui * dev_sigmoid(ui);
    }
  y[k] += acc;
}

// the cell of unit (b, u): activated gates to act, c and h   (n = B * H)
template <class T>
__global__ void cell_forward_kernel(int64_t n, int64_t H, const T* a, const T* c_prev, T* act, T* c, T* h) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const int64_t b = k / H, u = k % H, r = b * 4 * H;
  const CellGates<T> g{dev_sigmoid(a[r + u]), dev_sigmoid(a[r + H + u]), dev_tanh(a[r + 2 * H + u]),
                       dev_sigmoid(a[r + 3 * H + u])};
  act[r + u] = g.f; act[r + H + u] = g.i; act[r + 2 * H + u] = g.g; act[r + 3 * H + u] = g.o;
  const T ck = cell_state(g, c_prev[k]);
  c[k] = ck;
  h[k] = g.o * dev_tanh(ck);
}

// its backward: dh, dc carried from step t+1 (dc becomes dL/dc_{t-1}); da = dL/d(pre-activations)
template <class T>
__global__ void cell_backward_kernel(int64_t n, int64_t H, const T* act, const T* c, const T* c_prev, const T* gh,
                                     const T* gc, const T* dh, T* dc, T* da) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const int64_t b = k / H, u = k % H, r = b * 4 * H;
  const CellGates<T> g{act[r + u], act[r + H + u], act[r + 2 * H + u], act[r + 3 * H + u]};
  CellGates<T> d;
  dc[k] = cell_backward(g, dev_tanh(c[k]), c_prev[k], dh[k] + gh[k], dc[k] + gc[k], &d);
  da[r + u] = d.f; da[r + H + u] = d.i; da[r + 2 * H + u] = d.g; da[r + 3 * H + u] = d.o;
}

// dx[b, i] = sum_o dy[b, o] w[o, i] (+ silu'(u[b, i]) times that with the base weight)   (n = B * in)
template <class T>
__global__ void input_grad_kernel(int64_t n, int64_t in, int64_t out, const T* w, const T* dy, const T* u, bool silu,
                                  bool accumulate, T* dx) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const int64_t b = k / in, i = k % in;
  T acc = T(0);
  for (int64_t o = 0; o < out; ++o) acc += dy[b * out + o] * w[o * in + i];
  if (silu) {
    const T ui = u[k], s = dev_sigmoid(ui);
    acc *= silu_slope_from_sigmoid(ui, s);
  }
  dx[k] = accumulate ? dx[k] + acc : acc;
}

// gw[o, i] += sum_b dy[b, o] f(x[b, i]), f = identity or silu   (n = out * in)
template <class T>
__global__ void weight_grad_kernel(int64_t n, int64_t B, int64_t in, int64_t out, const T* dy, const T* x, bool silu,
                                   T* gw) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const int64_t o = k / in, i = k % in;
  T acc = T(0);
  for (int64_t b = 0; b < B; ++b) {
    const T xi = x[b * in + i];
    acc += dy[b * out + o] * (silu ? xi * dev_sigmoid(xi) : xi);
  }
  gw[k] += acc;
}

// gbias[o] += sum_b dy[b, o]   (n = out)
template <class T>
__global__ void bias_grad_kernel(int64_t n, int64_t B, const T* dy, T* gbias) {
  const int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (o >= n) return;
  T acc = T(0);
  for (int64_t b = 0; b < B; ++b) acc += dy[b * n + o];
  gbias[o] += acc;
}

// dz [B, I] -> dx_t [B, d] and dh [B, H]   (n = B * I)
template <class T>
__global__ void split_kernel(int64_t n, int64_t d, int64_t H, const T* dz, T* dx_t, T* dh) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k >= n) return;
  const int64_t I = d + H, b = k / I, i = k % I;
  if (i < d) dx_t[b * d + i] = dz[k]; else dh[b * H + i - d] = dz[k];
}

template <class T>
__global__ void add_kernel(int64_t n, const T* src, T* dst) {
  const int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (k < n) dst[k] += src[k];
}

// Device scratch of one call, from the stream-ordered allocator, freed on the same stream.
template <class T> struct Scratch {
  cudaStream_t stream;
  T* base = nullptr;
  int64_t used = 0, size = 0;
  Scratch(cudaStream_t s, int64_t elems) : stream(s), size(elems) {
    if (elems) check(cudaMallocAsync(reinterpret_cast<void**>(&base), sizeof(T) * elems, s), "cudaMallocAsync");
  }
  ~Scratch() {
    if (base) cudaFreeAsync(base, stream);
  }
  T* take(int64_t n) {
    if (!n) return nullptr;
    T* p = base + used;
    used += n;
    return p;
  }
};

using Sizes = RecurrenceSizes;

template <class T> const T* cp(const void* v) { return static_cast<const T*>(v); }

template <class T>
void forward_cuda(const RecurrenceParams& p) {
  const Sizes s(p);
  cudaStream_t st = reinterpret_cast<cudaStream_t>(p.stream);
  Scratch<T> mem(st, s.B * s.I + (s.hqkan ? s.B * s.Ig : 0) + s.B * s.G);
  T* z = mem.take(s.B * s.I);
  T* u = s.hqkan ? mem.take(s.B * s.Ig) : z;
  T* a = mem.take(s.B * s.G);
  T* h_seq = static_cast<T*>(p.h_seq);
  T* c_seq = static_cast<T*>(p.c_seq);
  CircuitParams c = circuit_gate_params(p, s);
  for (int64_t t = 0; t < s.L; ++t) {
    const T* h_prev = t ? h_seq + (t - 1) * s.B * s.H : cp<T>(p.h0);
    const T* c_prev = t ? c_seq + (t - 1) * s.B * s.H : cp<T>(p.c0);
    make_z_kernel<T><<<grid_for(s.B * s.I), kBlock, 0, st>>>(s.B * s.I, s.d, s.H, cp<T>(p.x) + t * s.B * s.d, h_prev, z);
    T* y = a;
    if (s.hqkan) {
      linear_kernel<T><<<grid_for(s.B * s.Ig), kBlock, 0, st>>>(s.B * s.Ig, s.I, s.Ig, cp<T>(p.down_weight),
                                                              cp<T>(p.down_bias), z, u);
      y = static_cast<T*>(p.latent) + t * s.B * s.Og;
    }
    c.x = u;
    c.y = y;
    circuit_forward_cuda(c);
    base_bias_kernel<T><<<grid_for(s.B * s.Og), kBlock, 0, st>>>(s.B * s.Og, s.Ig, s.Og, cp<T>(p.base_weight),
                                                               cp<T>(p.bias), u, y);
    if (s.hqkan)
      linear_kernel<T><<<grid_for(s.B * s.G), kBlock, 0, st>>>(s.B * s.G, s.Og, s.G, cp<T>(p.up_weight),
                                                             cp<T>(p.up_bias), y, a);
    cell_forward_kernel<T><<<grid_for(s.B * s.H), kBlock, 0, st>>>(s.B * s.H, s.H, a, c_prev,
                                                                 static_cast<T*>(p.gates) + t * s.B * s.G,
                                                                 c_seq + t * s.B * s.H, h_seq + t * s.B * s.H);
    check(cudaGetLastError(), "a recurrence kernel launch");
  }
}

template <class T>
void backward_cuda(const RecurrenceParams& p) {
  const Sizes s(p);
  cudaStream_t st = reinterpret_cast<cudaStream_t>(p.stream);
  auto zero = [&](void* ptr, int64_t n) {
    if (ptr) check(cudaMemsetAsync(ptr, 0, sizeof(T) * n, st), "cudaMemsetAsync");
  };
  const int64_t n_theta = s.E * s.K;
  zero(p.grad_theta, n_theta);
  zero(p.grad_pre_w, s.E * p.reps);
  zero(p.grad_pre_b, s.E * p.reps);
  zero(p.grad_weight, s.E);
  zero(p.grad_base_weight, s.E);
  zero(p.grad_bias, s.Og);
  zero(p.grad_down_weight, s.Ig * s.I);
  zero(p.grad_down_bias, s.Ig);
  zero(p.grad_up_weight, s.G * s.Og);
  zero(p.grad_up_bias, s.G);

  // per step: z, u, dz, du, dy, da; carried dh, dc; one step's gate-layer parameter gradients
  const int64_t step_grads = (p.grad_theta ? n_theta : 0) + (p.grad_pre_w ? s.E * p.reps : 0) +
                             (p.grad_pre_b ? s.E * p.reps : 0) + (p.grad_weight ? s.E : 0);
  const int64_t hq = s.hqkan ? 2 * s.B * s.Ig + s.B * s.Og : 0;
  Scratch<T> mem(st, 2 * s.B * s.I + hq + s.B * s.G + 2 * s.B * s.H + step_grads);
  T* z = mem.take(s.B * s.I);
  T* dz = mem.take(s.B * s.I);
  T* u = s.hqkan ? mem.take(s.B * s.Ig) : z;
  T* du = s.hqkan ? mem.take(s.B * s.Ig) : dz;
  T* da = mem.take(s.B * s.G);
  T* dy = s.hqkan ? mem.take(s.B * s.Og) : da;
  T* dh = mem.take(s.B * s.H);
  T* dc = mem.take(s.B * s.H);
  T* g_theta = p.grad_theta ? mem.take(n_theta) : nullptr;
  T* g_pre_w = p.grad_pre_w ? mem.take(s.E * p.reps) : nullptr;
  T* g_pre_b = p.grad_pre_b ? mem.take(s.E * p.reps) : nullptr;
  T* g_weight = p.grad_weight ? mem.take(s.E) : nullptr;
  zero(dh, s.B * s.H);
  zero(dc, s.B * s.H);

  const T* h_seq = cp<T>(p.h_seq);
  const T* c_seq = cp<T>(p.c_seq);
  CircuitParams c = circuit_gate_params(p, s);
  for (int64_t t = s.L - 1; t >= 0; --t) {
    const T* h_prev = t ? h_seq + (t - 1) * s.B * s.H : cp<T>(p.h0);
    const T* c_prev = t ? c_seq + (t - 1) * s.B * s.H : cp<T>(p.c0);
    const int64_t step = t * s.B * s.H;
    cell_backward_kernel<T><<<grid_for(s.B * s.H), kBlock, 0, st>>>(
        s.B * s.H, s.H, cp<T>(p.gates) + t * s.B * s.G, c_seq + step, c_prev, cp<T>(p.grad_h_seq) + step,
        cp<T>(p.grad_c_seq) + step, dh, dc, da);
    make_z_kernel<T><<<grid_for(s.B * s.I), kBlock, 0, st>>>(s.B * s.I, s.d, s.H, cp<T>(p.x) + t * s.B * s.d, h_prev, z);
    if (s.hqkan) {
      const T* y = cp<T>(p.latent) + t * s.B * s.Og;
      input_grad_kernel<T><<<grid_for(s.B * s.Og), kBlock, 0, st>>>(s.B * s.Og, s.Og, s.G, cp<T>(p.up_weight), da,
                                                                  nullptr, false, false, dy);
      if (p.grad_up_weight)
        weight_grad_kernel<T><<<grid_for(s.G * s.Og), kBlock, 0, st>>>(s.G * s.Og, s.B, s.Og, s.G, da, y, false,
                                                                     static_cast<T*>(p.grad_up_weight));
      if (p.grad_up_bias)
        bias_grad_kernel<T><<<grid_for(s.G), kBlock, 0, st>>>(s.G, s.B, da, static_cast<T*>(p.grad_up_bias));
      linear_kernel<T><<<grid_for(s.B * s.Ig), kBlock, 0, st>>>(s.B * s.Ig, s.I, s.Ig, cp<T>(p.down_weight),
                                                              cp<T>(p.down_bias), z, u);
    }
    // the gate layer's backward at this step writes du and this step's parameter gradients
    c.x = u;
    c.grad_y = dy;
    c.grad_x = du;
    c.grad_theta = g_theta; c.grad_pre_w = g_pre_w; c.grad_pre_b = g_pre_b; c.grad_weight = g_weight;
    circuit_backward_cuda(c);
    if (g_theta) add_kernel<T><<<grid_for(n_theta), kBlock, 0, st>>>(n_theta, g_theta, static_cast<T*>(p.grad_theta));
    if (g_pre_w)
      add_kernel<T><<<grid_for(s.E * p.reps), kBlock, 0, st>>>(s.E * p.reps, g_pre_w, static_cast<T*>(p.grad_pre_w));
    if (g_pre_b)
      add_kernel<T><<<grid_for(s.E * p.reps), kBlock, 0, st>>>(s.E * p.reps, g_pre_b, static_cast<T*>(p.grad_pre_b));
    if (g_weight) add_kernel<T><<<grid_for(s.E), kBlock, 0, st>>>(s.E, g_weight, static_cast<T*>(p.grad_weight));
    // base branch and bias
    if (p.base_weight) {
      input_grad_kernel<T><<<grid_for(s.B * s.Ig), kBlock, 0, st>>>(s.B * s.Ig, s.Ig, s.Og, cp<T>(p.base_weight), dy, u,
                                                                  true, true, du);
      if (p.grad_base_weight)
        weight_grad_kernel<T><<<grid_for(s.E), kBlock, 0, st>>>(s.E, s.B, s.Ig, s.Og, dy, u, true,
                                                              static_cast<T*>(p.grad_base_weight));
    }
    if (p.grad_bias) bias_grad_kernel<T><<<grid_for(s.Og), kBlock, 0, st>>>(s.Og, s.B, dy, static_cast<T*>(p.grad_bias));
    if (s.hqkan) {
      input_grad_kernel<T><<<grid_for(s.B * s.I), kBlock, 0, st>>>(s.B * s.I, s.I, s.Ig, cp<T>(p.down_weight), du,
                                                                 nullptr, false, false, dz);
      if (p.grad_down_weight)
        weight_grad_kernel<T><<<grid_for(s.Ig * s.I), kBlock, 0, st>>>(s.Ig * s.I, s.B, s.I, s.Ig, du, z, false,
                                                                     static_cast<T*>(p.grad_down_weight));
      if (p.grad_down_bias)
        bias_grad_kernel<T><<<grid_for(s.Ig), kBlock, 0, st>>>(s.Ig, s.B, du, static_cast<T*>(p.grad_down_bias));
    }
    split_kernel<T><<<grid_for(s.B * s.I), kBlock, 0, st>>>(s.B * s.I, s.d, s.H, dz,
                                                          static_cast<T*>(p.grad_x) + t * s.B * s.d, dh);
    check(cudaGetLastError(), "a recurrence kernel launch");
  }
  check(cudaMemcpyAsync(p.grad_h0, dh, sizeof(T) * s.B * s.H, cudaMemcpyDeviceToDevice, st), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(p.grad_c0, dc, sizeof(T) * s.B * s.H, cudaMemcpyDeviceToDevice, st), "cudaMemcpyAsync");
}

// The caller's device for the duration of a call.
struct DeviceScope {
  int prev = -1;
  explicit DeviceScope(int device) {
    check(cudaGetDevice(&prev), "cudaGetDevice");
    if (prev != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() {
    int now = -1;
    if (cudaGetDevice(&now) == cudaSuccess && now != prev) cudaSetDevice(prev);
  }
};

void check_cuda_gate(const RecurrenceParams& p, const char* entry) {
  if (p.engine != GateEngine::kCircuit)
    throw std::invalid_argument(std::string("qkan_fast._C.") + entry +
                                ": the spectral gate kernels are CPU-only; pass a circuit gate layer");
}

}  // namespace

void recurrence_forward_cuda(const RecurrenceParams& p) {
  check_recurrence(p, RecurrenceOp::kForward, Device::kCuda);
  check_cuda_gate(p, "recurrence_forward_cuda");
  DeviceScope scope(p.device);
  if (p.dtype == kFloat64) forward_cuda<double>(p); else forward_cuda<float>(p);
}

void recurrence_backward_cuda(const RecurrenceParams& p) {
  check_recurrence(p, RecurrenceOp::kBackward, Device::kCuda);
  check_cuda_gate(p, "recurrence_backward_cuda");
  DeviceScope scope(p.device);
  if (p.dtype == kFloat64) backward_cuda<double>(p); else backward_cuda<float>(p);
}

}  // namespace qkan_fast
