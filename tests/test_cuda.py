"""The CUDA circuit engine (cuda/*.cu) held against the pure-torch reference.

Forward and every gradient for each ansatz x measure x preact flag x dtype (float32, float64,
bfloat16), both backward schedules (the fused edge kernel and the edge + input kernel pair) on
sizes that exercise partial tiles, postacts and their backward, gradcheck in float64,
non-contiguous inputs, a side stream, CUDA-graph capture of a training step, bit-exact
determinism, and clear errors. Everything that needs a GPU is skipped without one; the check of
the Python-side bfloat16 refusal on the CPU runs everywhere.

The reference runs on the CPU in float64 from the very values the kernels see (bfloat16
parameters are rounded first), so each tolerance measures the kernel alone.

QKAN_FAST_TEST_DEVICE=cpu runs the same comparisons on the CPU engine (a dry run of this file on
a machine without a GPU; bfloat16 and CUDA-only tests are skipped there).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F

import qkan_fast
from qkan_fast import circuit, common, engines

from conftest import (
    ANSATZE,
    PARAM_NAMES,
    assert_close_scaled,
    make_gen,
    make_params,
    make_x,
    run_layer,
    stable_seed,
    trainable_names,
    with_grad,
)

DEVICE = os.environ.get("QKAN_FAST_TEST_DEVICE", "cuda")
HAS_DEVICE = DEVICE == "cpu" or torch.cuda.is_available()
needs_device = pytest.mark.skipif(not HAS_DEVICE, reason="no CUDA device (set QKAN_FAST_TEST_DEVICE=cpu for a dry run)")
needs_cuda = pytest.mark.skipif(DEVICE != "cuda" or not torch.cuda.is_available(), reason="needs a CUDA device")

F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16
MEASURES = [pytest.param(True, id="fast"), pytest.param(False, id="born")]
PREACTS = [pytest.param(False, id="nopre"), pytest.param(True, id="pre")]
DTYPES = [
    pytest.param(F32, id="f32"),
    pytest.param(F64, id="f64"),
    pytest.param(BF16, id="bf16", marks=needs_cuda),
]
# max |got - want| <= tol * max(1, max |want|), against a float64 reference
TOL = {F32: 1e-5, F64: 1e-12, BF16: 2e-2}
# the CUDA backward has two schedules; QKAN_FAST_CUDA_BACKWARD forces one (read at every call)
SCHEDULES = [pytest.param(None, id="auto"), pytest.param("fused", id="fused"), pytest.param("split", id="split")]


def _reps_for(*parts) -> int:
    return 1 + stable_seed("cuda-reps", *parts) % 4


def _on(p: dict, dtype: torch.dtype, device=DEVICE) -> dict:
    return {n: t.to(device=device, dtype=dtype) for n, t in p.items()}


def _as_f64_cpu(t):
    return t.detach().to(device="cpu", dtype=F64)


def _compare(got: dict, want: dict, dtype, msg=""):
    for key, w in want.items():
        g = got[key]
        assert g.dtype == dtype, f"{msg} {key}: dtype {g.dtype}"
        assert g.device.type == torch.device(DEVICE).type, f"{msg} {key}: device {g.device}"
        assert_close_scaled(g.detach().to(device=w.device, dtype=F64), w, TOL[dtype], msg=f"{msg} {key}")


def _case(ansatz, fast, pt, dtype, B, I, O, R, tag, ref_device="cpu"):
    """Parameters/inputs in float64, rounded through `dtype`; returns the device copies and the
    float64 copies (on ref_device) of exactly the same values."""
    gen = make_gen("cuda", tag, ansatz, fast, pt, B, I, O, R)
    p = make_params(ansatz, O, I, R, gen=gen, dtype=F64)
    x = make_x(B, I, gen=gen, dtype=F64, ansatz=ansatz)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    p_dev, x_dev, gy_dev = _on(p, dtype), x.to(DEVICE, dtype), gy.to(DEVICE, dtype)

    def ref(t):
        return t.detach().to(device=ref_device, dtype=F64)

    return p_dev, x_dev, gy_dev, {n: ref(t) for n, t in p_dev.items()}, ref(x_dev), ref(gy_dev)


def _layer_vs_reference(ansatz, fast, pt, dtype, B, I, O, R, tag="layer", ref_device="cpu"):
    p, x, gy, p_ref, x_ref, gy_ref = _case(ansatz, fast, pt, dtype, B, I, O, R, tag, ref_device)
    names = trainable_names(ansatz, pt)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt, grad_names=names)
    got = run_layer(x, p, gy, engine="circuit", **kw)
    want = run_layer(x_ref, p_ref, gy_ref, engine="reference", **kw)
    assert set(got) == {"y", "x"} | names
    _compare(got, want, dtype, msg=f"B={B} I={I} O={O} R={R}")


@pytest.fixture
def schedule(request, monkeypatch):
    value = getattr(request, "param", None)
    if value is None:
        monkeypatch.delenv("QKAN_FAST_CUDA_BACKWARD", raising=False)
    else:
        monkeypatch.setenv("QKAN_FAST_CUDA_BACKWARD", value)
    return value


# =============================================================================================
# build
# =============================================================================================


@needs_cuda
def test_build_has_cuda():
    info = qkan_fast.build_info()
    assert info["cuda"] is True, info
    # this GPU runs either its own machine code or PTX of an older architecture
    major, minor = torch.cuda.get_device_capability()
    cap = 10 * major + minor
    archs = [a.strip() for a in info["cuda_archs"].split(",") if a.strip()]
    real = {int(a.split("-")[0]) for a in archs if not a.endswith("-virtual")}
    ptx = {int(a.split("-")[0]) for a in archs if not a.endswith("-real")}
    assert cap in real or any(a <= cap for a in ptx), info


# =============================================================================================
# forward and every gradient against the reference
# =============================================================================================


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_layer_matches_reference(ansatz, fast, pt, dtype):
    _layer_vs_reference(ansatz, fast, pt, dtype, 37, 5, 3, _reps_for(ansatz, fast, pt))


# sizes that cross tile and chunk boundaries: B not a multiple of 32 and smaller than 32, O over
# 32 (several warps per sample in the fused grad_x reduction) and over 256, one input, one output
SIZES = [(1, 3, 1, 2), (5, 33, 3, 1), (70, 2, 40, 3), (300, 4, 9, 2), (9, 2, 300, 1), (130, 1, 64, 2), (64, 17, 64, 2)]


@needs_device
@pytest.mark.parametrize("schedule", SCHEDULES, indirect=True)
@pytest.mark.parametrize("B,I,O,R", SIZES, ids=[f"B{b}-I{i}-O{o}-R{r}" for b, i, o, r in SIZES])
def test_sizes_and_schedules(B, I, O, R, schedule):
    for k, (ansatz, fast, pt) in enumerate([("pz", True, False), ("rpz", False, True), ("mix", True, True)]):
        dtype = (F32, F64, F32)[k]
        _layer_vs_reference(ansatz, fast, pt, dtype, B, I, O, R, tag=f"sizes-{schedule}")


@needs_cuda
@pytest.mark.parametrize("schedule", SCHEDULES, indirect=True)
@pytest.mark.parametrize("pt", PREACTS)
def test_benchmark_sized_layer(pt, schedule):
    """W2 of docs/benchmarks.md (B=1024, I=O=64, R=3), float32; the float64 reference runs on the GPU."""
    _layer_vs_reference("pz", True, pt, F32, 1024, 64, 64, 3, tag="w2", ref_device="cuda")


@needs_device
@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_pruned_edges(ansatz, fast):
    B, I, O, R = 40, 4, 3, 2
    p, x, gy, p_ref, x_ref, gy_ref = _case(ansatz, fast, True, F64, B, I, O, R, "pruned")
    for q in (p, p_ref):
        q["mask"][0, :] = 0.0
        q["mask"][1, 2] = 0.0
    names = trainable_names(ansatz, True)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=True, grad_names=names)
    got = run_layer(x, p, gy, engine="circuit", **kw)
    want = run_layer(x_ref, p_ref, gy_ref, engine="reference", **kw)
    _compare(got, want, F64)
    assert bool((got["y"][:, 0] == 0).all())
    for name in names:
        assert bool((got[name][0] == 0).all()) and bool((got[name][1, 2] == 0).all()), name


# =============================================================================================
# postacts (B, O, I) and their backward (the grad_postacts mode of the backward kernels)
# =============================================================================================


@needs_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_postacts_match_reference(ansatz, fast, pt, dtype):
    B, I, O = 45, 6, 5
    R = _reps_for("post", ansatz, fast, pt)
    p, x, _, p_ref, x_ref, _ = _case(ansatz, fast, pt, dtype, B, I, O, R, "post")
    gen = make_gen("cuda-post-grad", ansatz, fast, pt)
    gpost = torch.randn(B, O, I, generator=gen, dtype=F64).to(DEVICE, dtype)
    encode = pt or ansatz == "rpz"
    names = {"theta"} | ({"preacts_weight", "preacts_bias"} if encode else set())
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt)
    res = {}
    for engine, (pp0, xx0, gp) in {"circuit": (p, x, gpost), "reference": (p_ref, x_ref, _as_f64_cpu(gpost))}.items():
        pp = with_grad(pp0, names)
        xx = xx0.detach().clone().requires_grad_(True)
        phi = engines.daruan_postacts(xx, pp["theta"], pp["preacts_weight"], pp["preacts_bias"], engine=engine, **kw)
        assert phi.shape == (B, O, I)
        phi.backward(gp)
        res[engine] = {"phi": phi.detach(), "x": xx.grad, **{n: pp[n].grad for n in names}}
    _compare(res["circuit"], res["reference"], dtype, msg="postacts")
    assert bool((res["circuit"]["phi"].float().abs() <= 1 + 1e-2).all())


@needs_device
def test_module_postacts_and_forward_no_sum():
    layer = qkan_fast.QKANLayer(6, 4, reps=2, ansatz="mix", engine="circuit", dtype=F64).to(DEVICE)
    x = torch.randn(20, 6, dtype=F64, device=DEVICE)
    assert_close_scaled(layer.forward_no_sum(x).sum(-1), layer(x), 1e-12, msg="forward_no_sum")
    ref_layer = copy.deepcopy(layer).cpu()
    ref_layer.engine = "reference"
    assert_close_scaled(_as_f64_cpu(layer.postacts(x)), ref_layer.postacts(x.cpu()), 1e-12, msg="postacts")


# =============================================================================================
# gradcheck (float64, finite differences)
# =============================================================================================


@needs_device
@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_gradcheck(ansatz, fast, pt):
    B, I, O, R = 4, 3, 2, 2
    gen = make_gen("cuda-gradcheck", ansatz, fast, pt)
    p = _on(make_params(ansatz, O, I, R, gen=gen), F64)
    # |x| <= 0.8 keeps px away from arccos' singular ends
    x = (-0.8 + 1.6 * torch.rand(B, I, generator=gen, dtype=F64)).to(DEVICE).requires_grad_(True)
    pp = with_grad(p, trainable_names(ansatz, pt))
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt, engine="circuit")
    fast_mode = ansatz not in ("pz", "px")
    assert torch.autograd.gradcheck(
        lambda *a: engines.qkan_layer(*a, **kw), (x, *(pp[n] for n in PARAM_NAMES)), eps=1e-6, atol=1e-7, rtol=1e-5,
        fast_mode=fast_mode,
    )

    def post(xv, th, w, b):
        return engines.daruan_postacts(xv, th, w, b, ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt)

    assert torch.autograd.gradcheck(
        post, (x, pp["theta"], pp["preacts_weight"], pp["preacts_bias"]), eps=1e-6, atol=1e-7, fast_mode=fast_mode
    )


# =============================================================================================
# layouts, streams, devices
# =============================================================================================


def _strided(t: torch.Tensor) -> torch.Tensor:
    big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    big[..., ::2] = t
    return big[..., ::2]


@needs_device
@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_non_contiguous_inputs(ansatz, pt):
    B, I, O, R = 37, 5, 3, 2
    p, x, gy, *_ = _case(ansatz, True, pt, F64, B, I, O, R, "noncontig")
    names = trainable_names(ansatz, pt)
    kw = dict(engine="circuit", ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=pt, grad_names=names)
    want = run_layer(x, p, gy, **kw)
    x_t = x.t().contiguous().t()
    assert not x_t.is_contiguous()
    pn = {n: _strided(t) for n, t in p.items()}
    pn["postact_weights"] = p["postact_weights"].t().contiguous().t()
    got = run_layer(x_t, pn, gy.t().contiguous().t(), **kw)
    for key in want:
        assert_close_scaled(got[key], want[key], 1e-13, msg=key)


@needs_cuda
def test_side_stream():
    """Kernels run on torch's current stream: results on a side stream equal the default stream's."""
    p, x, gy, *_ = _case("pz", True, True, F32, 300, 16, 24, 3, "stream")
    names = trainable_names("pz", True)
    kw = dict(engine="circuit", ansatz="pz", reps=3, fast_measure=True, preact_trainable=True, grad_names=names)
    want = run_layer(x, p, gy, **kw)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        got = run_layer(x, p, gy, **kw)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    for key in want:
        assert torch.equal(got[key], want[key]), key


@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device():
    p, x, gy, p_ref, x_ref, gy_ref = _case("mix", False, True, F64, 33, 4, 5, 2, "dev1")
    dev = torch.device("cuda:1")
    names = trainable_names("mix", True)
    kw = dict(ansatz="mix", reps=2, fast_measure=False, preact_trainable=True, grad_names=names)
    got = run_layer(x.to(dev), {n: t.to(dev) for n, t in p.items()}, gy.to(dev), engine="circuit", **kw)
    want = run_layer(x_ref, p_ref, gy_ref, engine="reference", **kw)
    for key in want:
        assert got[key].device == dev
        assert_close_scaled(_as_f64_cpu(got[key]), want[key], 1e-12, msg=key)


# =============================================================================================
# CUDA graphs and determinism
# =============================================================================================


@needs_cuda
@pytest.mark.parametrize("pt", PREACTS)
def test_cuda_graph_training_step(pt):
    """forward + backward + SGD step of a QKANLayer captured once and replayed equals eager steps."""
    torch.manual_seed(0)
    B, I, O = 64, 12, 10
    eager = qkan_fast.QKANLayer(I, O, reps=3, ansatz="pz", preact_trainable=pt, engine="circuit").cuda()
    graphed = copy.deepcopy(eager)
    theta0 = eager.theta.detach().clone()
    xs = [torch.randn(B, I, device="cuda") for _ in range(6)]
    ts = [torch.randn(B, O, device="cuda") for _ in range(6)]
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.05)
    opt_g = torch.optim.SGD(graphed.parameters(), lr=0.05)

    def step(model, opt, x, t):
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), t)
        loss.backward()
        opt.step()
        return loss

    # warm-up on a side stream (as torch.cuda.graph requires), the same steps on both models
    static_x, static_t = xs[0].clone(), ts[0].clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for k in range(2):
            step(graphed, opt_g, xs[k], ts[k])
    torch.cuda.current_stream().wait_stream(s)
    for k in range(2):
        step(eager, opt_e, xs[k], ts[k])

    graph = torch.cuda.CUDAGraph()
    opt_g.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = F.mse_loss(graphed(static_x), static_t)
        static_loss.backward()
        opt_g.step()

    for k in range(2, 6):
        static_x.copy_(xs[k])
        static_t.copy_(ts[k])
        graph.replay()
        loss_e = step(eager, opt_e, xs[k], ts[k])
        torch.cuda.synchronize()
        torch.testing.assert_close(static_loss, loss_e, rtol=1e-6, atol=1e-7)
    for (name, pg), pe in zip(graphed.named_parameters(), eager.parameters()):
        torch.testing.assert_close(pg, pe, rtol=1e-6, atol=1e-7, msg=name)
    assert not torch.equal(graphed.theta, theta0)  # the replays did train


@needs_device
@pytest.mark.parametrize("schedule", SCHEDULES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_bit_exact(dtype, schedule):
    """The kernels use no atomics (fixed-order sums): repeated runs are bit-identical."""
    p, x, gy, *_ = _case("pz", True, True, dtype, 700, 24, 48, 3, "determinism")
    names = trainable_names("pz", True)
    kw = dict(engine="circuit", ansatz="pz", reps=3, fast_measure=True, preact_trainable=True, grad_names=names)
    first = run_layer(x, p, gy, **kw)
    for _ in range(2):
        again = run_layer(x, p, gy, **kw)
        for key in first:
            assert torch.equal(first[key], again[key]), key


# =============================================================================================
# custom ops, errors, dtypes
# =============================================================================================


@needs_cuda
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("encode", [False, True])
def test_opcheck(encode, dtype):
    gen = make_gen("cuda-opcheck", encode)
    p = _on(make_params("pz", 3, 4, 2, gen=gen), dtype, "cuda")
    x = make_x(6, 4, gen=gen, dtype=F64, ansatz="pz").to("cuda", dtype).requires_grad_(True)
    th = p["theta"].requires_grad_(True)
    w = (p["postact_weights"] * p["mask"]).requires_grad_(True)
    args = (x, th, p["preacts_weight"], p["preacts_bias"], w, common.ANSATZ_CODES["pz"], 2, True, encode)
    torch.library.opcheck(circuit.circuit_layer, args)
    torch.library.opcheck(circuit.circuit_postacts, (x, th, p["preacts_weight"], p["preacts_bias"], 0, 2, True, encode))


@needs_cuda
def test_too_many_reps_is_a_clear_error():
    """Thousands of repetitions: the forward still runs (shared-memory opt-in); the backward, whose
    per-thread sums no longer fit a block, refuses with a RuntimeError that says why."""
    R = 3000
    x = torch.full((2, 1), 0.3, dtype=F64, device="cuda")
    th = torch.zeros(1, 1, R + 1, 2, dtype=F64, device="cuda", requires_grad=True)
    w = torch.ones(1, 1, R, dtype=F64, device="cuda")
    weight = torch.ones(1, 1, dtype=F64, device="cuda")
    y = circuit.circuit_layer(x, th, w, w * 0, weight, common.ANSATZ_CODES["pz"], R, True, True)
    # theta = 0 and w = 1, b = 0: the state is RZ(3000 x) H|0>, so |alpha| = |beta| and phi = 0
    assert float(y.abs().max()) < 1e-9
    with pytest.raises(RuntimeError, match="shared memory"):
        y.sum().backward()
        torch.cuda.synchronize()
    assert float(torch.ones(3, device="cuda").sum()) == 3.0  # the device is still usable


@needs_cuda
def test_bfloat16_module_trains():
    torch.manual_seed(1)
    layer = qkan_fast.QKANLayer(8, 4, reps=2, engine="circuit").to("cuda", BF16)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(128, 8, device="cuda", dtype=BF16)
    t = torch.tanh(x[:, :4]).detach()
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.mse_loss(layer(x).float(), t.float())
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert layer.theta.dtype == BF16 and layer.theta.grad.dtype == BF16


def test_bfloat16_on_cpu_is_refused():
    layer = qkan_fast.QKANLayer(4, 3, engine="circuit").to(BF16)
    with pytest.raises(TypeError, match="bfloat16 runs on CUDA only"):
        layer(torch.zeros(5, 4, dtype=BF16))


# ------------------------------------------------------------------------------------------------
# the fused LSTM recurrence on the GPU (cuda/recurrence.cu) against the same model's per-step loop


@needs_cuda
@pytest.mark.parametrize("cls_name", ["QKANLSTM", "HQKANLSTM"])
@pytest.mark.parametrize("ansatz", ["pz", "mix", "real"])
@pytest.mark.parametrize("dtype", [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")])
def test_fused_recurrence_cuda_matches_loop(cls_name, ansatz, dtype):
    cls = getattr(qkan_fast, cls_name)
    torch.manual_seed(stable_seed(cls_name, ansatz))
    m = cls(2, 4, num_layers=2, ansatz=ansatz, dtype=dtype, preact_trainable=ansatz == "mix").cuda()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1:
                p.uniform_(-0.3, 0.3)
    loop = copy.deepcopy(m)
    loop.fused = False
    x = torch.randn(5, 3, 2, dtype=dtype, device="cuda")
    assert qkan_fast.recurrence.unsupported_reason(m.gates[0], x) is None
    outs = []
    for model in (m, loop):
        xx = x.clone().requires_grad_()
        out, (h, c) = model(xx)
        (out.square().sum() + c.sum()).backward()
        outs.append([out, h, c, xx.grad] + [p.grad for p in model.parameters() if p.requires_grad])
    tol = TOL[dtype]
    for got, want in zip(*outs):
        assert_close_scaled(got, want, tol)


@needs_cuda
def test_fused_recurrence_cuda_gradcheck():
    m = qkan_fast.QKANLSTM(2, 2, reps=2, dtype=F64).cuda()
    x = torch.randn(3, 2, 2, dtype=F64, device="cuda", requires_grad=True)
    params = [p for p in m.parameters() if p.requires_grad]
    assert torch.autograd.gradcheck(lambda x, *_: m(x)[0], (x, *params), atol=1e-7, rtol=1e-5)
