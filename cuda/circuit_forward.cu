// CUDA forward of the circuit engine: y[b,o] = sum_i weight[o,i] * phi_oi(x[b,i]) (fused, no
// (B, O, I) buffer) and the postacts entry phi [B, O, I]. The maths is csrc/daruan.h.
//
// Schedule. A block owns a tile of TB samples x TO outputs, one thread per (b, o) pair, with b
// fastest (TB = 32 when B >= 32, so a warp shares one output and reads every staged edge value as
// a shared-memory broadcast). The block walks the inputs in chunks of CI; per chunk it stages in
// shared memory
//   - the (c, s) = sincos(theta/2) of the TO x CI edges of the tile (folded once per block: cheaper
//     than a pre-kernel, and no scratch buffer), and their encodings w, b when encoding;
//   - the TB x CI data-gate half-angles sincos(x/2) (px: sqrt((1 +- x)/2)) or, when encoding, x;
//   - the edge weights (forward) ;
// then every thread runs the circuit of each edge of the chunk in registers (all R repetitions)
// and accumulates weight * phi. Pruned edges (weight == 0) are skipped. The postacts entry stages
// the chunk's outputs in shared memory and writes them with i fastest (coalesced rows of CI).
// No atomics, no scratch memory, no host synchronisation: the kernel is captured by CUDA graphs.
#include "common.cuh"

namespace qkan_fast {
namespace cuda_kernels {

struct ForwardConfig {
  int TB = 1;      // samples per block (lanes, fastest)
  int TO = 1;      // outputs per block
  int CI = 1;      // inputs per staged chunk
  int K = 1;       // theta entries per edge (Rt * P)
  int S = 1;       // shared-memory stride of one edge (edge_slot_stride)
  int64_t nbt = 1; // number of sample tiles
};

template <class T, int A, bool FAST, bool ENC, bool POST>
QKF_GLOBAL void __launch_bounds__(256) circuit_forward_kernel(const CircuitParams p, const ForwardConfig cfg) {
  using C = Acc<T>;
  QKF_DYNAMIC_SMEM(smem_raw);
  C* smem = reinterpret_cast<C*>(smem_raw);
  const int TB = cfg.TB, TO = cfg.TO, CI = cfg.CI, K = cfg.K, S = cfg.S, R = p.reps;
  const int NT = TB * TO;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;

  C* rot_s = smem;                            // [TO][CI][S]  edge slots
  C* w_s = rot_s + TO * CI * S;               // [TO][CI]     weight (forward only)
  C* d_s = w_s + (POST ? 0 : TO * CI);        // [CI][TB] (c), then [CI][TB] (s); ENC: [CI][TB] x
  C* out_s = d_s + (ENC ? 1 : 2) * CI * TB;   // [TB][TO][CI] (postacts only)

  const int tid = static_cast<int>(threadIdx.x);
  const int b_off = tid % TB, o_off = tid / TB;
  const int64_t b0 = (static_cast<int64_t>(blockIdx.x) % cfg.nbt) * TB;
  const int64_t o0 = (static_cast<int64_t>(blockIdx.x) / cfg.nbt) * TO;
  const int64_t b = b0 + b_off, o = o0 + o_off;
  const bool active = b < B && o < O;

  const T* x = static_cast<const T*>(p.x);
  const T* theta = static_cast<const T*>(p.theta);
  const T* pre_w = static_cast<const T*>(p.pre_w);
  const T* pre_b = static_cast<const T*>(p.pre_b);
  const T* weight = static_cast<const T*>(p.weight);

  C acc = C(0);
  for (int64_t i0 = 0; i0 < I; i0 += CI) {
    const int nci = static_cast<int>(imin64(CI, I - i0));
    __syncthreads();  // the previous chunk's readers are done with the staging buffers
    // theta half-angles of the tile's edges; for a fixed o the chunk is contiguous in theta
    for (int idx = tid; idx < TO * nci * K; idx += NT) {
      const int oo = idx / (nci * K), r = idx % (nci * K), ci = r / K, k = r % K;
      const int64_t og = o0 + oo;
      C c = C(1), s = C(0);
      if (og < O) qkf_sincos(C(0.5) * ld(theta, (og * I + i0 + ci) * K + k), &s, &c);
      C* slot = rot_s + (oo * CI + ci) * S;
      slot[2 * k] = c;
      slot[2 * k + 1] = s;
    }
    if (ENC) {
      for (int idx = tid; idx < TO * nci * R; idx += NT) {
        const int oo = idx / (nci * R), r = idx % (nci * R), ci = r / R, l = r % R;
        const int64_t og = o0 + oo;
        C* slot = rot_s + (oo * CI + ci) * S + 2 * K;
        const int64_t g = (og * I + i0 + ci) * R + l;
        slot[l] = og < O ? ld(pre_w, g) : C(0);
        slot[R + l] = og < O ? ld(pre_b, g) : C(0);
      }
    }
    if (!POST) {
      for (int idx = tid; idx < TO * nci; idx += NT) {
        const int oo = idx / nci, ci = idx % nci;
        const int64_t og = o0 + oo;
        w_s[oo * CI + ci] = og < O ? ld(weight, og * I + i0 + ci) : C(0);
      }
    }
    // data gates of the tile's samples; i fastest so a row of x is read contiguously
    for (int idx = tid; idx < TB * nci; idx += NT) {
      const int bb = idx / nci, ci = idx % nci;
      const int64_t bg = b0 + bb;
      const C xv = bg < B ? ld(x, bg * I + i0 + ci) : C(0);
      if (ENC) {
        d_s[ci * TB + bb] = xv;
      } else {
        const Half<C> h = data_half<C, A>(xv);
        d_s[ci * TB + bb] = h.c;
        d_s[CI * TB + ci * TB + bb] = h.s;
      }
    }
    __syncthreads();

    if (active) {
      for (int ci = 0; ci < nci; ++ci) {
        C we = C(1);
        if (!POST) {
          we = w_s[o_off * CI + ci];
          if (we == C(0)) continue;  // pruned edge
        }
        const C* slot = rot_s + (o_off * CI + ci) * S;
        const Half<C>* rot = reinterpret_cast<const Half<C>*>(slot);
        Qubit<C> q;
        if (ENC) {
          const C xv = d_s[ci * TB + b_off];
          const C* ew = slot + 2 * K;
          const C* eb = ew + R;
          q = edge_forward<C, A>(rot, R, [&](int l) { return data_half<C, A>(ew[l] * xv + eb[l]); });
        } else {
          const Half<C> d{d_s[ci * TB + b_off], d_s[CI * TB + ci * TB + b_off]};
          q = edge_forward<C, A>(rot, R, [&](int) { return d; });
        }
        const C phi = measure<C, FAST>(q, nullptr);
        if (POST)
          out_s[(b_off * TO + o_off) * CI + ci] = phi;
        else
          acc += we * phi;
      }
    }

    if (POST) {
      __syncthreads();
      T* post = static_cast<T*>(p.postacts);
      for (int idx = tid; idx < TB * TO * nci; idx += NT) {
        const int ci = idx % nci, r = idx / nci, oo = r % TO, bb = r / TO;
        const int64_t bg = b0 + bb, og = o0 + oo;
        if (bg < B && og < O) st(post, (bg * O + og) * I + i0 + ci, out_s[(bb * TO + oo) * CI + ci]);
      }
    }
  }
  if (!POST && active) st(static_cast<T*>(p.y), b * O + o, acc);
}

// Shared memory of one input of a chunk, in units of the compute type.
inline int64_t forward_smem_per_input(int TB, int TO, int S, bool enc, bool post) {
  return int64_t(TO) * S + (post ? 0 : TO) + int64_t(TB) * (enc ? 1 : 2) + (post ? int64_t(TB) * TO : 0);
}

template <class T, int A, bool FAST, bool ENC>
void launch_forward(const CircuitParams& p, bool post) {
  using C = Acc<T>;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int R = p.reps;
  constexpr int kThreads = 128;
  constexpr int64_t kBudget = 24 * 1024;  // bytes per block: several blocks per SM

  ForwardConfig cfg;
  cfg.K = theta_rows(A, R) * theta_cols(A);
  cfg.S = edge_slot_stride(cfg.K, R, ENC);
  cfg.TB = next_pow2(B < 32 ? B : 32);
  cfg.TO = kThreads / cfg.TB;
  if (cfg.TO > next_pow2(O)) cfg.TO = next_pow2(O);
  // inputs per chunk: as many as fit (at most 32); fewer outputs per block when even one does not
  int64_t per_input = 0;
  for (;;) {
    per_input = forward_smem_per_input(cfg.TB, cfg.TO, cfg.S, ENC, post) * int64_t(sizeof(C));
    if (per_input <= kBudget || cfg.TO == 1) break;
    cfg.TO /= 2;
  }
  int64_t ci = kBudget / per_input;
  if (ci < 1 && per_input <= 48 * 1024) ci = 1;
  if (ci < 1)
    throw std::runtime_error("qkan_fast CUDA forward: reps=" + std::to_string(R) +
                             " needs more shared memory per edge than a block has [" + sizes_str(p) +
                             "]; use fewer repetitions or the CPU engine");
  if (ci > 32) ci = 32;
  if (ci > I) ci = I;
  cfg.CI = static_cast<int>(ci);
  cfg.nbt = ceil_div(B, cfg.TB);
  const int64_t grid = cfg.nbt * ceil_div(O, cfg.TO);
  const int block = cfg.TB * cfg.TO;
  const size_t smem = static_cast<size_t>(per_input * cfg.CI);
  if (grid > 2147483647LL) throw std::runtime_error("qkan_fast CUDA forward: grid too large [" + sizes_str(p) + "]");

  cudaStream_t stream = reinterpret_cast<cudaStream_t>(p.stream);
  auto kernel = post ? &circuit_forward_kernel<T, A, FAST, ENC, true> : &circuit_forward_kernel<T, A, FAST, ENC, false>;
  QKF_LAUNCH(kernel, dim3(static_cast<unsigned>(grid)), dim3(block), smem, stream, p, cfg);
  check_launch(post ? "circuit_forward_kernel<postacts>" : "circuit_forward_kernel", p, grid, block, smem);
}

#define QKF_INSTANTIATE_FORWARD(T, A, FAST, ENC) template void launch_forward<T, A, FAST, ENC>(const CircuitParams&, bool);
QKF_FOR_EACH_CONFIG(QKF_INSTANTIATE_FORWARD)
#undef QKF_INSTANTIATE_FORWARD

}  // namespace cuda_kernels

namespace {
void run_forward(const CircuitParams& p, bool post) {
  using namespace cuda_kernels;
  const char* entry = post ? "postacts" : "forward";
  check_common(p, entry);
  if (post ? !p.postacts : (!p.y || !p.weight))
    throw std::invalid_argument(std::string("qkan_fast CUDA ") + entry +
                                (post ? ": the postacts output must be set" : ": y and weight must be set"));
  DeviceGuard guard(p.device, p);
  QKF_DTYPE_SWITCH(p.dtype, T, [&] {
    QKF_ANSATZ_SWITCH(p.ansatz, A, [&] {
      QKF_BOOL_SWITCH(p.fast_measure, FAST, [&] {
        QKF_BOOL_SWITCH(p.encode, ENC, [&] { launch_forward<T, A, FAST, ENC>(p, post); });
      });
    });
  });
}
}  // namespace

void circuit_forward_cuda(const CircuitParams& p) { run_forward(p, false); }
void circuit_postacts_cuda(const CircuitParams& p) { run_forward(p, true); }

}  // namespace qkan_fast
