"""The compiled CPU circuit engine in a running program: the memory saved for backward (no B*O*I
term), bit-identical results across runs and thread counts, concurrent Python threads,
`torch.library.opcheck` of the three custom ops and `torch.compile`.

truth: the same engine's own outputs (determinism), torch's op checker, and the reference engine
(tests/test_circuit.py holds the values to it).
"""
from __future__ import annotations

import math
import re
import shutil
import threading
from pathlib import Path

import pytest
import torch

import qkan_fast
from qkan_fast import circuit, common

from conftest import (
    F32,
    F64,
    assert_close_scaled,
    make_gen,
    make_params,
    make_x,
    stable_seed,
)

MEASURES = [pytest.param(True, id="fast"), pytest.param(False, id="born")]
PREACTS = [pytest.param(False, id="nopre"), pytest.param(True, id="pre")]
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]


def _reps_for(*parts) -> int:
    """R in 1..5, sampled per case (deterministically) to keep the grid small."""
    return 1 + stable_seed("reps", *parts) % 5


def _encode(ansatz, pt):
    return pt or ansatz == "rpz"



# =============================================================================================
# memory: nothing of size B*O*I is saved for backward
# =============================================================================================


class _SavedBytes:
    def __init__(self):
        self.items = []

    def pack(self, t):
        self.items.append((tuple(t.shape), t.numel() * t.element_size()))
        return t

    def unpack(self, t):
        return t

    @property
    def total(self):
        return sum(n for _, n in self.items)


@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_saved_for_backward_has_no_boi_term(dtype, pt):
    B, I, O, R = 512, 16, 16, 3
    layer = qkan_fast.QKANLayer(
        I, O, reps=R, preact_trainable=pt, postact_weight_trainable=True, postact_bias_trainable=True, dtype=dtype
    )
    x = torch.randn(B, I, dtype=dtype, requires_grad=True)
    item = torch.finfo(dtype).bits // 8
    boi_bytes = B * O * I * item
    param_bytes = sum(t.numel() * t.element_size() for t in layer.parameters())
    x_bytes = x.numel() * item

    # the fused op alone: exactly x and the parameters
    saved = _SavedBytes()
    weight = layer.postact_weights * layer.mask
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        y = circuit.circuit_layer(x, layer.theta, layer.preacts_weight, layer.preacts_bias, weight, 0, R, True, pt)
    want = x_bytes + sum(t.numel() * item for t in (layer.theta, layer.preacts_weight, layer.preacts_bias, weight))
    assert saved.total == want, saved.items
    y.sum().backward()

    # the whole layer (base term and epilogue included): x a few times and the parameters
    saved = _SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        y = layer(x)
    assert saved.total < boi_bytes / 2, saved.items
    assert saved.total <= 4 * x_bytes + 2 * param_bytes, saved.items
    assert all(n < boi_bytes for _, n in saved.items)
    y.sum().backward()
    assert x.grad is not None and layer.theta.grad is not None


# =============================================================================================
# determinism and threads
# =============================================================================================


def _fwd_bwd(layer, x, gy):
    xx = x.clone().requires_grad_(True)
    params = [t for t in layer.parameters() if t.requires_grad]
    y = layer(xx)
    grads = torch.autograd.grad(y, [xx, *params], gy)
    return [y.detach(), *grads]


def _kernel_work_per_thread() -> int:
    """kWorkPerThread of csrc/cpu/circuit_kernels.h: `run` gives a call min(threads, work //
    kWorkPerThread) threads, work = B*O*I*(R+1), times 4 for the backward. Read from the source so
    that a retuned threshold cannot quietly turn the thread tests below into one-thread runs."""
    header = Path(__file__).resolve().parents[1] / "csrc" / "cpu" / "circuit_kernels.h"
    found = re.search(r"constexpr\s+int64_t\s+kWorkPerThread\s*=\s*([0-9\s*]+);", header.read_text())
    assert found, f"kWorkPerThread = <product of integers>; not found in {header}: update this test"
    return math.prod(int(f) for f in found.group(1).split("*"))


def _kernel_threads(B, I, O, R, *, backward: bool, available: int) -> int:
    """The thread count circuit_kernels.h `run` gives a call of these sizes."""
    work = B * O * I * (R + 1) * (4 if backward else 1)
    return max(1, min(available, work // _kernel_work_per_thread()))


def _op_fwd_bwd(x, th, w, b, weight, ansatz, R, fast, gy):
    """The fused op alone (forward and its backward op): no torch BLAS in the way."""
    inputs = [t.detach().clone().requires_grad_(True) for t in (x, th, w, b, weight)]
    y = circuit.circuit_layer(*inputs, common.ANSATZ_CODES[ansatz], R, fast, True)
    return [y.detach(), *torch.autograd.grad(y, inputs, gy)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ansatz", ["pz", "rpz", "mix"])
def test_bit_identical_across_runs_and_thread_counts(ansatz, dtype, restore_threads):
    """circuit_kernels.h splits the work by sizes only and sums partial blocks in a fixed order:
    two runs on 2 threads, and a run on 1 thread, give the same bits (forward and every gradient)."""
    B, I, O, R = 1024, 8, 8, 3  # B spans 16 chunks, 4 backward blocks per input
    for backward in (False, True):  # the sizes really get 2 threads in both passes
        assert _kernel_threads(B, I, O, R, backward=backward, available=2) == 2, (backward, _kernel_work_per_thread())
    gen = make_gen("det", ansatz, dtype)
    p = make_params(ansatz, O, I, R, gen=gen, dtype=dtype)
    x = make_x(B, I, gen=gen, dtype=dtype, ansatz="pz")
    gy = torch.randn(B, O, generator=gen, dtype=dtype)
    args = (x, p["theta"], p["preacts_weight"], p["preacts_bias"], p["postact_weights"] * p["mask"], ansatz, R, True, gy)
    torch.set_num_threads(2)
    a = _op_fwd_bwd(*args)
    b = _op_fwd_bwd(*args)
    torch.set_num_threads(1)
    c = _op_fwd_bwd(*args)
    for k, (u, v, w) in enumerate(zip(a, b, c)):
        assert torch.equal(u, v), f"output {k} differs between two runs on 2 threads"
        assert torch.equal(u, w), f"output {k} differs between 1 and 2 threads"


def test_concurrent_python_threads():
    B, I, O, R = 64, 6, 4, 2
    torch.manual_seed(1)
    layer = qkan_fast.QKANLayer(I, O, reps=R, preact_trainable=True, dtype=F64)
    gen = make_gen("threads")
    xs = [make_x(B, I, gen=gen, ansatz="pz") for _ in range(2)]
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    expected = [_fwd_bwd(layer, x, gy) for x in xs]
    results, errors = [[], []], []
    barrier = threading.Barrier(2)

    def work(k):
        try:
            barrier.wait()
            for _ in range(8):
                results[k].append(_fwd_bwd(layer, xs[k], gy))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    for k in range(2):
        assert len(results[k]) == 8
        for run in results[k]:
            for u, v in zip(run, expected[k]):
                assert_close_scaled(u, v, 1e-12, msg=f"thread {k}")


# =============================================================================================
# torch.library.opcheck on the custom ops
# =============================================================================================


def _op_samples(ansatz, encode, dtype=F64):
    B, I, O, R = 6, 3, 2, 2
    gen = make_gen("opcheck", ansatz, encode)
    p = make_params(ansatz, O, I, R, gen=gen, dtype=dtype)
    x = make_x(B, I, gen=gen, dtype=dtype).requires_grad_(True)
    th = p["theta"].requires_grad_(True)
    w = p["preacts_weight"].requires_grad_(encode)
    b = p["preacts_bias"].requires_grad_(encode)
    weight = (p["postact_weights"] * p["mask"]).requires_grad_(True)
    return x, th, w, b, weight, common.ANSATZ_CODES[ansatz], R, gen


OPCHECK_CASES = [("pz", False, True), ("pz", True, False), ("px", True, True), ("real", False, False), ("mix", True, True)]


@pytest.mark.parametrize(
    "ansatz,encode,fast", OPCHECK_CASES,
    ids=[f"{a}-{'encode' if e else 'plain'}-{'fast' if f else 'born'}" for a, e, f in OPCHECK_CASES],
)
def test_opcheck(ansatz, encode, fast):
    x, th, w, b, weight, code, R, gen = _op_samples(ansatz, encode)
    torch.library.opcheck(torch.ops.qkan_fast.circuit_layer.default, (x, th, w, b, weight, code, R, fast, encode))
    torch.library.opcheck(torch.ops.qkan_fast.circuit_postacts.default, (x, th, w, b, code, R, fast, encode))
    gy = torch.randn(x.shape[0], th.shape[0], generator=gen, dtype=F64)
    gpost = torch.randn(x.shape[0], th.shape[0], x.shape[1], generator=gen, dtype=F64)
    d = [t.detach() for t in (x, th, w, b, weight)]
    for needs in ([True] * 5, [True, False, False, False, False], [False, True, encode, encode, True]):
        torch.library.opcheck(torch.ops.qkan_fast.circuit_backward.default, (gy, *d, code, R, fast, encode, needs))
    torch.library.opcheck(
        torch.ops.qkan_fast.circuit_backward.default, (gpost, *d[:4], None, code, R, fast, encode, [True] * 4 + [False])
    )


# =============================================================================================
# torch.compile
# =============================================================================================


def _have_c_compiler() -> bool:
    return any(shutil.which(c) for c in ("cc", "gcc", "clang", "c++", "g++"))


@pytest.mark.slow
@pytest.mark.parametrize("ansatz,pt", [("px", True), ("rpz", False)])
def test_torch_compile_fullgraph(ansatz, pt):
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available in this torch")
    if not _have_c_compiler():
        pytest.skip("torch.compile (inductor) needs a C compiler; none found")
    import torch._dynamo as dynamo

    torch.manual_seed(stable_seed("compile", ansatz))
    layer = qkan_fast.QKANLayer(5, 3, reps=2, ansatz=ansatz, preact_trainable=pt, postact_weight_trainable=True)
    gen = make_gen("compile-x", ansatz)
    x = make_x(9, 5, gen=gen, dtype=F32)
    gy = torch.randn(9, 3, generator=gen)
    eager = _fwd_bwd(layer, x, gy)
    dynamo.reset()
    try:
        compiled = torch.compile(layer, fullgraph=True)
        got = _fwd_bwd(compiled, x, gy)
    finally:
        dynamo.reset()
    for k, (u, v) in enumerate(zip(got, eager)):
        assert_close_scaled(u, v, 1e-5, msg=f"compiled output {k}")
