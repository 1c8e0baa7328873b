// CUDA forward of the circuit engine: y[b,o] = sum_i weight[o,i] * phi_oi(x[b,i]) (fused, no
// (B, O, I) buffer) and the postacts entry phi [B, O, I]. The maths is csrc/daruan.h.
//
// Schedule. A block owns a tile of TB samples x TO outputs, one thread per (b, o) pair, with b
// fastest (TB = 32 when B >= 32, so a warp shares one output and reads every staged edge value as
// a shared-memory broadcast). The block walks the inputs in chunks of CI; per chunk it stages in
// shared memory
//   - the (cos, sin) pairs of the TO x CI edges' theta (daruan.h fold_theta; folded once per block:
//     cheaper than a pre-kernel, and no scratch buffer), and their encodings w, b when encoding;
//   - the TB x CI data gates (daruan.h data_gate of x) or, when encoding, x itself;
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
  bool post = false;  // the postacts entry: stage and write phi [B, O, I] instead of y
};

// The measure and the entry (y or postacts) are uniform run-time branches: one kernel per dtype x
// ansatz x encoding instead of four (build time; the branches are the same for every thread).
template <class T, int A, bool ENC>
QKF_GLOBAL void __launch_bounds__(256) circuit_forward_kernel(const CircuitParams p, const ForwardConfig cfg) {
  using C = Acc<T>;
  const bool POST = cfg.post, FAST = p.fast_measure;
  QKF_DYNAMIC_SMEM(smem_raw);
  C* smem = reinterpret_cast<C*>(smem_raw);
  const int TB = cfg.TB, TO = cfg.TO, CI = cfg.CI, K = cfg.K, S = cfg.S, R = p.reps;
  const int NT = TB * TO;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;

  // Layouts keep the lanes of a warp on distinct banks: lanes differ in b (stride 1) or, when
  // TB < 32, in o (edge slots of odd stride S; weights stride 1); padded rows (TB + 1, CI | 1)
  // keep the staging stores conflict-free too.
  const int DS = TB + 1, CIp = CI | 1;
  C* rot_s = smem;                            // [CI][TO][S]   edge slots
  C* w_s = rot_s + CI * TO * S;               // [CI][TO]      weight (forward only)
  C* d_s = w_s + (POST ? 0 : CI * TO);        // [CI][DS] c, then [CI][DS] s; ENC: [CI][DS] x
  C* out_s = d_s + (ENC ? 1 : 2) * CI * DS;   // [TO][TB][CIp] (postacts only)

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
    // folded theta of the tile's edges; for a fixed o the chunk is contiguous in theta
    for (int idx = tid; idx < TO * nci * K; idx += NT) {
      const int oo = idx / (nci * K), r = idx % (nci * K), ci = r / K, k = r % K;
      const int64_t og = o0 + oo;
      Rot<C> rt{C(1), C(0)};  // identity for padding edges
      if (og < O) rt = fold_theta<C, A>(ld(theta, (og * I + i0 + ci) * K + k), k % theta_cols(A));
      C* slot = rot_s + (ci * TO + oo) * S;
      slot[2 * k] = rt.c;
      slot[2 * k + 1] = rt.s;
    }
    if (ENC) {
      for (int idx = tid; idx < TO * nci * R; idx += NT) {
        const int oo = idx / (nci * R), r = idx % (nci * R), ci = r / R, l = r % R;
        const int64_t og = o0 + oo;
        C* slot = rot_s + (ci * TO + oo) * S + 2 * K;
        const int64_t g = (og * I + i0 + ci) * R + l;
        slot[l] = og < O ? ld(pre_w, g) : C(0);
        slot[R + l] = og < O ? ld(pre_b, g) : C(0);
      }
    }
    if (!POST) {
      for (int idx = tid; idx < TO * nci; idx += NT) {
        const int oo = idx / nci, ci = idx % nci;
        const int64_t og = o0 + oo;
        w_s[ci * TO + oo] = og < O ? ld(weight, og * I + i0 + ci) : C(0);
      }
    }
    // data gates of the tile's samples; i fastest so a row of x is read contiguously
    for (int idx = tid; idx < TB * nci; idx += NT) {
      const int bb = idx / nci, ci = idx % nci;
      const int64_t bg = b0 + bb;
      const C xv = bg < B ? ld(x, bg * I + i0 + ci) : C(0);
      if (ENC) {
        d_s[ci * DS + bb] = xv;
      } else {
        const Rot<C> h = data_gate<C, A>(xv);
        d_s[ci * DS + bb] = h.c;
        d_s[(CI + ci) * DS + bb] = h.s;
      }
    }
    __syncthreads();

    if (active) {
      for (int ci = 0; ci < nci; ++ci) {
        C we = C(1);
        if (!POST) {
          we = w_s[ci * TO + o_off];
          if (we == C(0)) continue;  // pruned edge
        }
        const C* slot = rot_s + (ci * TO + o_off) * S;
        const Rot<C>* rot = reinterpret_cast<const Rot<C>*>(slot);
        Qubit<C> q;
        if (ENC) {
          const C xv = d_s[ci * DS + b_off];
          const C* ew = slot + 2 * K;
          const C* eb = ew + R;
          q = edge_forward<C, A>(rot, R, [&](int l) { return data_gate<C, A>(ew[l] * xv + eb[l]); });
        } else {
          const Rot<C> d{d_s[ci * DS + b_off], d_s[(CI + ci) * DS + b_off]};
          q = edge_forward<C, A>(rot, R, [&](int) { return d; });
        }
        const C phi = FAST ? measure<C, true>(q, nullptr) : measure<C, false>(q, nullptr);
        if (POST)
          out_s[(o_off * TB + b_off) * CIp + ci] = phi;
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
        if (bg < B && og < O) st(post, (bg * O + og) * I + i0 + ci, out_s[(oo * TB + bb) * CIp + ci]);
      }
    }
  }
  if (!POST && active) st(static_cast<T*>(p.y), b * O + o, acc);
}

// Shared memory of a block with chunks of CI inputs, in units of the compute type (see the layouts).
inline int64_t forward_smem_elems(int TB, int TO, int CI, int S, bool enc, bool post) {
  return int64_t(CI) * TO * S + (post ? 0 : int64_t(CI) * TO) + int64_t(enc ? 1 : 2) * CI * (TB + 1) +
         (post ? int64_t(TO) * TB * (CI | 1) : 0);
}

template <class T, int A, bool ENC>
void launch_forward(const CircuitParams& p, bool post) {
  using C = Acc<T>;
  const int64_t B = p.batch, I = p.in_dim, O = p.out_dim;
  const int R = p.reps;
  // 256 threads: 32 samples x 8 outputs when B >= 32, so each staged sincos serves 8 or 32 circuits
  constexpr int kThreads = 256;
  constexpr int64_t kBudget = 24 * 1024;  // bytes per block: 8 blocks (2048 threads) fit an SM

  ForwardConfig cfg;
  cfg.K = theta_rows(A, R) * theta_cols(A);
  cfg.S = edge_slot_stride(cfg.K, R, ENC);
  cfg.TB = next_pow2(B < 32 ? B : 32);
  cfg.TO = kThreads / cfg.TB;
  if (cfg.TO > next_pow2(O)) cfg.TO = next_pow2(O);
  // inputs per chunk: as many as fit the budget (at most 32); fewer outputs per block when even one
  // input does not; past that (hundreds of repetitions) one input per chunk with the opt-in limit
  auto bytes = [&](int ci) { return forward_smem_elems(cfg.TB, cfg.TO, ci, cfg.S, ENC, post) * int64_t(sizeof(C)); };
  while (bytes(1) > kBudget && cfg.TO > 1) cfg.TO /= 2;
  const int ci_max = static_cast<int>(I < 32 ? I : 32);
  cfg.CI = 1;
  while (cfg.CI < ci_max && bytes(cfg.CI + 1) <= kBudget) ++cfg.CI;
  cfg.nbt = ceil_div(B, cfg.TB);
  const int64_t grid = cfg.nbt * ceil_div(O, cfg.TO);
  const int block = cfg.TB * cfg.TO;
  const size_t smem = static_cast<size_t>(bytes(cfg.CI));
  if (grid > 2147483647LL) throw std::runtime_error("qkan_fast CUDA forward: grid too large [" + sizes_str(p) + "]");

  cudaStream_t stream = reinterpret_cast<cudaStream_t>(p.stream);
  cfg.post = post;
  auto kernel = &circuit_forward_kernel<T, A, ENC>;
  if (smem > 48 * 1024) allow_smem(kernel, smem, device_limits(p), "circuit_forward_kernel", p);
  QKF_LAUNCH(kernel, dim3(static_cast<unsigned>(grid)), dim3(block), smem, stream, p, cfg);
  check_launch(post ? "circuit_forward_kernel<postacts>" : "circuit_forward_kernel", p, grid, block, smem);
}

#define QKF_INSTANTIATE_FORWARD(T, A, ENC) template void launch_forward<T, A, ENC>(const CircuitParams&, bool);
QKF_FOR_EACH_CONFIG(QKF_INSTANTIATE_FORWARD)
#undef QKF_INSTANTIATE_FORWARD

}  // namespace cuda_kernels

namespace {
void run_forward(const CircuitParams& p, bool post) {
  using namespace cuda_kernels;
  check_circuit(p, post ? CircuitOp::kPostacts : CircuitOp::kForward, Device::kCuda);
  DeviceGuard guard(p.device, p);
  QKF_DTYPE_SWITCH(p.dtype, T, [&] {
    QKF_ANSATZ_SWITCH(p.ansatz, A, [&] {
      QKF_BOOL_SWITCH(p.encode, ENC, [&] { launch_forward<T, A, ENC>(p, post); });
    });
  });
}
}  // namespace

void circuit_forward_cuda(const CircuitParams& p) { run_forward(p, false); }
void circuit_postacts_cuda(const CircuitParams& p) { run_forward(p, true); }

}  // namespace qkan_fast
