"""The spectral engine (docs/math.md, "The spectral identity") on the CPU.

truth: the reference engine (qkan_fast.reference, itself held to qkan 0.2.3's golden file in
tests/test_reference.py); on the CPU the spectral engine computes nothing through it (its
coefficients, basis and layers are the compiled kernels of csrc/cpu/spectral*). Two tests name
another truth in their docstring: an exact pole (the circuit engine's floor rule) and gradcheck
(finite differences).

Covers the applicable flag matrix (every ansatz, both measures, R = 1..8, float32 and float64,
random rpz biases, pruned edges, inputs far outside [-pi, pi]) for the output and every gradient;
states near a pole (the kernel's Bloch-formula path) against the float64 reference; px near +-1;
the Fourier coefficients of Z, X, Y against the reference amplitudes; grouped parameters; the
errors where the engine does not apply; engine="auto"; determinism across thread counts;
gradcheck; torch.library.opcheck of the custom ops.
"""

from __future__ import annotations

import math

import pytest
import torch

import qkan_fast
from qkan_fast import common, engines, spectral
from qkan_fast import reference as ref

from conftest import ANSATZE, F32, F64, PARAM_NAMES, assert_close_scaled, make_gen, make_params, run_layer

MEASURES = [pytest.param(True, id="fast"), pytest.param(False, id="born")]
# the fast measure, and the Born measure on each of its two CPU schedules (the GEMM, the fused kernel)
SCHEDULES = [pytest.param(True, None, id="fast"), pytest.param(False, "gemm", id="born-gemm"),
             pytest.param(False, "fused", id="born-fused")]
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]
TOL = {F32: 1e-5, F64: 1e-10}


@pytest.fixture(autouse=True)
def _born_schedule(request, monkeypatch):
    """A test parametrized over born_path runs the Born layer on that schedule (by default the
    engine picks it from the shape: spectral.born_fused_preferred)."""
    callspec = getattr(request.node, "callspec", None)
    path = callspec.params.get("born_path") if callspec else None
    if path is not None:
        monkeypatch.setattr(spectral, "born_fused_preferred", lambda *args, **kwargs: path == "fused")


def _params(ansatz, O, I, R, gen, dtype):
    """make_params with encoding weights at 1 (the spectral identity's premise) and, for rpz (the
    only ansatz that reads them without preact_trainable), wide random biases."""
    p = make_params(ansatz, O, I, R, gen=gen, dtype=dtype)
    p["preacts_weight"] = torch.ones_like(p["preacts_weight"])
    p["preacts_bias"] = 2.0 * torch.randn(p["preacts_bias"].shape, generator=gen, dtype=dtype)
    return p


def _inputs(ansatz, B, I, gen, dtype):
    """px: inside [-1, 1] away from the ends; otherwise far outside [-pi, pi] (up to ~50)."""
    if ansatz == "px":
        return -0.97 + 1.94 * torch.rand(B, I, generator=gen, dtype=dtype)
    x = 4.0 * torch.randn(B, I, generator=gen, dtype=dtype)
    x[::5] *= 8.0
    return x


def _grad_names(ansatz):
    names = {"theta", "base_weight", "postact_weights", "postact_bias"}
    return names | {"preacts_bias"} if ansatz == "rpz" else names


def _compare(p, x, gy, ansatz, R, fast, tol, grad_names=None):
    """The spectral layer's output and gradients against the reference engine's."""
    names = _grad_names(ansatz) if grad_names is None else grad_names
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=False, grad_names=names)
    got = run_layer(x, p, gy, engine="spectral", **kw)
    want = run_layer(x, p, gy, engine="reference", **kw)
    for key in want:
        assert_close_scaled(got[key], want[key], tol, msg=f"{key} vs reference (R={R})")
    return got


# =============================================================================================
# the applicable flag matrix
# =============================================================================================


@pytest.mark.parametrize("R", range(1, 9))
@pytest.mark.parametrize("fast,born_path", SCHEDULES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_matches_reference_f64(ansatz, fast, R, born_path):
    gen = make_gen("spectral64", ansatz, fast, R)
    B, I, O = 37, 5, 3
    p = _params(ansatz, O, I, R, gen, F64)
    x = _inputs(ansatz, B, I, gen, F64)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    _compare(p, x, gy, ansatz, R, fast, TOL[F64])


@pytest.mark.parametrize("R", [1, 2, 4, 8])
@pytest.mark.parametrize("fast,born_path", SCHEDULES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_matches_reference_f32(ansatz, fast, R, born_path):
    gen = make_gen("spectral32", ansatz, fast, R)
    B, I, O = 70, 6, 5  # two 64-sample chunks, a partial output tile
    p = _params(ansatz, O, I, R, gen, F32)
    x = _inputs(ansatz, B, I, gen, F32)
    gy = torch.randn(B, O, generator=gen, dtype=F32)
    _compare(p, x, gy, ansatz, R, fast, TOL[F32])


@pytest.mark.parametrize("fast,born_path", SCHEDULES)
def test_larger_layer_every_block_path(fast, born_path):
    """Batches over several backward blocks and sub-blocks, R > 8 (the runtime-R kernels), outputs
    over more than one SIMD vector with a partial last one (the Born coefficient tiles)."""
    for R, (B, I, O) in ((3, (600, 3, 9)), (10, (130, 4, 5)), (2, (50, 7, 37))):
        gen = make_gen("spectral-large", fast, R)
        p = _params("pz", O, I, R, gen, F64)
        x = _inputs("pz", B, I, gen, F64)
        gy = torch.randn(B, O, generator=gen, dtype=F64)
        _compare(p, x, gy, "pz", R, fast, TOL[F64])


@pytest.mark.parametrize("fast,born_path", SCHEDULES)
def test_wide_layer_pruned_edges_and_poles(fast, born_path):
    """I >= 32 with several 64-sample chunks (the fast backward writes each edge's sums directly),
    pruned edges (mask 0: zero gradients, not stale memory) and theta ~ N(0, 1) (pole lanes)."""
    gen = make_gen("spectral-wide", fast)
    B, I, O, R = 150, 40, 6, 3
    p = _params("pz", O, I, R, gen, F64)
    p["theta"] = torch.randn(p["theta"].shape, generator=gen, dtype=F64)
    p["mask"] = (torch.rand(O, I, generator=gen, dtype=F64) > 0.3).to(F64)
    p["mask"][:4, ::3] = 0  # whole output blocks pruned
    x = _inputs("pz", B, I, gen, F64)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    _compare(p, x, gy, "pz", R, fast, TOL[F64])
    # postact weights frozen: the kernels skip the pruned blocks altogether
    got = _compare(p, x, gy, "pz", R, fast, TOL[F64], grad_names={"theta"})
    assert not got["theta"][:4, ::3].any()


# =============================================================================================
# near a pole: the Bloch formula keeps circuit-engine precision
# =============================================================================================


def _float64_truth(p, x, gy, ansatz, R, fast):
    """The reference engine in float64 on the same values."""
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=False, grad_names=_grad_names(ansatz))
    p64 = {k: v.double() for k, v in p.items()}
    return run_layer(x.double(), p64, gy.double(), engine="reference", **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ansatz", ["real", "pz", "mix"])
def test_near_pole_precision(ansatz, dtype):
    """Haar-like parameters and a dense input grid put many samples near |alpha| = 0 or |beta| = 0
    (for `real` every zero crossing of a real amplitude is one). The Z formula alone loses
    precision there (relative gradient error ~ eps/|amplitude|^2); the kernel switches to the
    Bloch formula and must stay as close to the float64 reference as the circuit engine is."""
    R, B, I, O = 3, 256, 4, 4
    gen = make_gen("pole", ansatz, dtype)
    p = _params(ansatz, O, I, R, gen, dtype)
    p["theta"] = 2.0 * torch.randn(p["theta"].shape, generator=gen, dtype=dtype)
    x = torch.linspace(-4, 4, B, dtype=dtype)[:, None].repeat(1, I) + 0.01 * torch.arange(I, dtype=dtype)
    gy = torch.randn(B, O, generator=gen, dtype=dtype)
    # the data really has lanes near a pole
    alpha, beta = ref.amplitudes(x.double(), p["theta"].double(), None, None, ansatz=ansatz, reps=R)
    pmin = torch.minimum(alpha.abs() ** 2, beta.abs() ** 2)
    assert int((pmin < 1 / 64).sum()) > 20  # the kernel's Bloch path runs
    if ansatz == "real":
        assert float(pmin.min()) < 1e-5  # right next to a zero crossing
    truth = _float64_truth(p, x, gy, ansatz, R, True)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=False, grad_names=_grad_names(ansatz))
    got = run_layer(x, p, gy, engine="spectral", **kw)
    circ = run_layer(x, p, gy, engine="circuit", **kw)
    for key in truth:
        scale = max(1.0, float(truth[key].abs().max()))
        err_s = float((got[key].double() - truth[key]).abs().max()) / scale
        err_c = float((circ[key].double() - truth[key]).abs().max()) / scale
        # as close to the truth as the circuit engine, up to a small factor; in float64 both are
        # within rounding of the truth, so an absolute floor far below the 1e-10 float64 target
        floor = 20 * torch.finfo(F32).eps if dtype == F32 else 1e-12
        assert err_s <= max(4 * err_c, floor), f"{key}: spectral {err_s:.2e}, circuit {err_c:.2e}"


def test_pole_exactly_on_a_sample():
    """A state exactly at a pole for every input (pz with RY(pi/2) on |+> gives |1>): finite
    values and gradients equal to the circuit engine's.

    truth: the circuit engine. At an exact zero amplitude |beta| has no derivative; both compiled
    engines apply the same floor rule there (daruan.h), the reference's autograd does not."""
    R, B, I, O = 2, 9, 2, 2
    theta = torch.zeros(O, I, R + 1, 2, dtype=F64)
    theta[..., 0, 1] = math.pi / 2
    gen = make_gen("pole-exact")
    p = _params("pz", O, I, R, gen, F64)
    p["theta"] = theta
    x = torch.linspace(-3, 3, B, dtype=F64)[:, None].repeat(1, I)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    kw = dict(ansatz="pz", reps=R, fast_measure=True, preact_trainable=False, grad_names=_grad_names("pz"))
    got = run_layer(x, p, gy, engine="spectral", **kw)
    want = run_layer(x, p, gy, engine="circuit", **kw)
    for key in want:
        assert torch.isfinite(got[key]).all(), key
        assert_close_scaled(got[key], want[key], 1e-7, msg=key)


# =============================================================================================
# px at the ends of its domain
# =============================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fast,born_path", SCHEDULES)
def test_px_near_the_ends_forward(fast, dtype, born_path):
    R, I, O = 3, 4, 3
    gen = make_gen("px-ends", fast, dtype)
    p = _params("px", O, I, R, gen, dtype)
    ends = torch.tensor([-1.0, 1.0, -1 + 1e-7, 1 - 1e-7, -1 + 1e-4, 1 - 1e-4, 0.0], dtype=dtype)
    x = ends[:, None].repeat(1, I)
    kw = dict(ansatz="px", reps=R, fast_measure=fast, preact_trainable=False)
    from conftest import call_layer

    y = call_layer(x, p, engine="spectral", **kw)
    assert_close_scaled(y, call_layer(x, p, engine="reference", **kw), TOL[dtype], msg="vs reference")
    # the gradient stays finite at x = +-1 (du/dx floored like the circuit engine)
    xx = x.clone().requires_grad_()
    call_layer(xx, p, engine="spectral", **kw).sum().backward()
    assert torch.isfinite(xx.grad).all()


# =============================================================================================
# coefficients: Z, X, Y against the reference amplitudes at random angles
# =============================================================================================


@pytest.mark.parametrize("ansatz", ANSATZE)
def test_coefficients_reproduce_bloch_vector(ansatz):
    R, O, I = 4, 3, 2
    gen = make_gen("coef", ansatz)
    p = _params(ansatz, O, I, R, gen, F64)
    c = spectral.coefficients(p["theta"], p["preacts_bias"], ansatz=ansatz, reps=R, in_dim=I, bloch=True)
    assert c.shape == (O, I, 3, 2 * R + 1)
    u = (0 if ansatz == "px" else -9) + (math.pi if ansatz == "px" else 18) * torch.rand(20, dtype=F64, generator=gen)
    k = torch.arange(1, R + 1, dtype=F64)
    basis = torch.cat([torch.ones(20, 1, dtype=F64), torch.cos(u[:, None] * k), torch.sin(u[:, None] * k)], dim=1)
    zxy = torch.einsum("mk,oiqk->moiq", basis, c)  # [20, O, I, 3]
    xin = torch.cos(u) if ansatz == "px" else u  # px: u = arccos(x), u in [0, pi]
    alpha, beta = ref.amplitudes(xin[:, None].expand(20, I), p["theta"], p["preacts_weight"], p["preacts_bias"],
                                 ansatz=ansatz, reps=R)
    ab = 2 * alpha.conj() * beta
    want = torch.stack([alpha.abs() ** 2 - beta.abs() ** 2, ab.real, ab.imag], dim=-1)
    torch.testing.assert_close(zxy, want, rtol=0, atol=1e-12)


# =============================================================================================
# modules, grouped parameters, engine choice, errors
# =============================================================================================


@pytest.mark.parametrize("fast,born_path", SCHEDULES)
@pytest.mark.parametrize("ansatz", ["pz", "rpz", "px"])
def test_grouped_parameters(ansatz, fast, born_path):
    torch.manual_seed(0)
    kw = dict(reps=3, group=2, ansatz=ansatz, fast_measure=fast, dtype=F64)
    a = qkan_fast.QKANLayer(6, 4, engine="spectral", **kw)
    b = qkan_fast.QKANLayer(6, 4, engine="reference", **kw)
    with torch.no_grad():
        a.theta.normal_()
        if ansatz == "rpz":
            a.preacts_bias.normal_()
    b.load_state_dict(a.state_dict())
    x = torch.rand(11, 6, dtype=F64) * 1.8 - 0.9
    ya, yb = a(x), b(x)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(ya, yb, rtol=0, atol=1e-12)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        if pa.grad is not None or pb.grad is not None:
            torch.testing.assert_close(pa.grad, pb.grad, rtol=0, atol=1e-11, msg=n)


def test_qkan_network_engine_spectral():
    torch.manual_seed(1)
    net = qkan_fast.QKAN([5, 7, 3], reps=4, engine="spectral", dtype=F64)
    ref_net = qkan_fast.QKAN([5, 7, 3], reps=4, engine="reference", dtype=F64)
    ref_net.load_state_dict(net.state_dict())
    x = torch.randn(20, 5, dtype=F64)
    torch.testing.assert_close(net(x), ref_net(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("ansatz", ANSATZE)
def test_trainable_encodings_raise(ansatz):
    layer = qkan_fast.QKANLayer(4, 3, reps=2, ansatz=ansatz, preact_trainable=True, engine="spectral")
    x = torch.rand(5, 4) * 1.6 - 0.8
    with pytest.raises(ValueError, match="engine='spectral' does not apply.*preact_trainable=True"):
        layer(x)
    layer.engine = "auto"  # falls back to the circuit engine
    y_auto = layer(x)
    layer.engine = "circuit"
    assert torch.equal(y_auto, layer(x))


def test_rpz_with_stored_weights_other_than_one_raises():
    layer = qkan_fast.QKANLayer(4, 3, reps=2, ansatz="rpz", engine="spectral")
    with torch.no_grad():
        layer.preacts_weight[0, 0, 1] = 0.5  # e.g. from a checkpoint
    with pytest.raises(ValueError, match="not 1 everywhere"):
        layer(torch.randn(5, 4))
    layer.engine = "auto"
    torch.testing.assert_close(layer(torch.ones(2, 4)), qkan_fast.qkan_layer(
        torch.ones(2, 4), *(getattr(layer, n) for n in PARAM_NAMES), ansatz="rpz", reps=2,
        base_activation=layer.base_activation, engine="circuit"))


def test_spectral_rejects_bad_input_clearly():
    layer = qkan_fast.QKANLayer(4, 3, reps=2, ansatz="px", engine="spectral")
    with pytest.raises(ValueError, match=r"px.*\[-1, 1\]"):
        layer(torch.full((2, 4), 1.5))
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(2, 5))


@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_auto_runs_the_engine_prefer_names(ansatz, fast):
    """engine='auto' is, bit for bit, the engine spectral.prefer picks, on a layer large enough for
    the spectral engine and on a small one (the circuit engine)."""
    from conftest import call_layer

    kw = dict(ansatz=ansatz, reps=3, fast_measure=fast, preact_trainable=False)
    for B, I, O in ((1024, 16, 8), (33, 5, 4)):
        gen = make_gen("auto-spectral", ansatz, fast, B)
        p = _params(ansatz, O, I, 3, gen, F32)
        x = _inputs(ansatz, B, I, gen, F32)
        chosen = "spectral" if spectral.prefer(x, p["theta"], p["preacts_weight"], **kw) else "circuit"
        assert torch.equal(call_layer(x, p, engine="auto", **kw), call_layer(x, p, engine=chosen, **kw)), chosen


def test_auto_rule():
    """engine='auto' takes the spectral engine for large applicable layers (measured faster, see
    spectral.prefer) and the circuit engine for small ones, `real` with the fast measure, trainable
    encodings and grouped parameters (test_auto_runs_the_engine_prefer_names: the dispatch follows it)."""
    big, small = torch.randn(2048, 16), torch.randn(64, 16)
    th = torch.randn(16, 16, 4, 2)
    w = torch.ones(16, 16, 3)
    kw = dict(reps=3, fast_measure=True, preact_trainable=False)
    assert spectral.prefer(big, th, w, ansatz="pz", **kw)
    assert not spectral.prefer(small, th, w, ansatz="pz", **kw)
    assert not spectral.prefer(big, th[..., :1], w, ansatz="real", **kw)
    assert spectral.prefer(big, th[..., :1], w, ansatz="real", **{**kw, "fast_measure": False})
    assert not spectral.prefer(big, th, w, ansatz="pz", **{**kw, "preact_trainable": True})
    assert not spectral.prefer(big, th[0], w[0], ansatz="pz", **kw)  # grouped


def test_born_schedule_rule_and_choice():
    """The Born layer's CPU schedule: the fused kernel for large batches at small O (W1, W4 of
    docs/benchmarks.md), the GEMM at B = 256 or larger O (W2, W3); born_path forces one or says what it
    takes."""
    assert spectral.born_fused_preferred(1024, 16, 16, 3)  # W1
    assert not spectral.born_fused_preferred(1024, 64, 64, 3)  # W2
    assert not spectral.born_fused_preferred(256, 128, 128, 4)  # W3
    assert spectral.born_fused_preferred(4096, 32, 32, 8)  # W4
    assert spectral.born_fused_preferred(1024, 128, 64, 8)  # an 8 MiB basis
    assert not spectral.born_fused_preferred(4096, 32, 128, 8)
    assert not spectral.born_fused_preferred(1024, 32, 32, 2)  # a 0.5 MiB basis stays in cache
    gen = make_gen("born-schedule")
    p = _params("pz", 4, 3, 2, gen, F64)
    x = _inputs("pz", 20, 3, gen, F64)
    args = (x, p["theta"], p["preacts_weight"], p["preacts_bias"], p["postact_weights"])
    kw = dict(ansatz="pz", reps=2, fast_measure=False, preact_trainable=False)
    y_gemm, y_fused = (spectral.layer(*args, **kw, born_path=path) for path in ("gemm", "fused"))
    assert_close_scaled(y_fused, y_gemm, TOL[F64])
    with pytest.raises(ValueError, match="born_path must be 'gemm', 'fused' or None, got 'blas'"):
        spectral.layer(*args, **kw, born_path="blas")


@pytest.mark.parametrize("fast,born_path", SCHEDULES)
def test_deterministic_across_thread_counts(restore_threads, fast, born_path):
    """Bit-identical on 1 and 2 threads. The spectral kernels have no work threshold (they take
    torch's thread count), and these sizes give every parallel loop several items: 5 chunks x 3
    output tiles forward, 7 inputs x 5 sample blocks backward."""
    gen = make_gen("det")
    p = _params("pz", 9, 7, 3, gen, F32)
    x = _inputs("pz", 300, 7, gen, F32)
    gy = torch.randn(300, 9, generator=gen, dtype=F32)
    kw = dict(ansatz="pz", reps=3, fast_measure=fast, preact_trainable=False, grad_names=_grad_names("pz"))
    runs = []
    for n in (1, 2, 1):
        torch.set_num_threads(n)
        runs.append(run_layer(x, p, gy, engine="spectral", **kw))
    for r in runs[1:]:
        for key in r:
            assert torch.equal(r[key], runs[0][key]), key


# =============================================================================================
# gradcheck and opcheck
# =============================================================================================


@pytest.mark.parametrize("fast,born_path", SCHEDULES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_gradcheck(ansatz, fast, born_path):
    """truth: finite differences of the spectral layer itself (torch.autograd.gradcheck)."""
    R, B, I, O = 2, 4, 3, 2
    gen = make_gen("gradcheck-spectral", ansatz, fast)
    p = _params(ansatz, O, I, R, gen, F64)
    x = _inputs(ansatz, B, I, gen, F64).requires_grad_()
    theta = p["theta"].clone().requires_grad_()
    bias = p["preacts_bias"].clone().requires_grad_(ansatz == "rpz")
    pw = p["postact_weights"].clone().requires_grad_()

    def f(x, theta, bias, pw):
        return engines.qkan_layer(x, theta, p["preacts_weight"], bias, p["base_weight"], pw, p["postact_bias"], p["mask"],
                              ansatz=ansatz, reps=R, fast_measure=fast, engine="spectral")

    # the full Jacobian for pz, gradcheck's fast mode (a random projection) elsewhere: keeps it quick
    assert torch.autograd.gradcheck(f, (x, theta, bias, pw), eps=1e-6, atol=1e-7, rtol=1e-5,
                                    fast_mode=ansatz != "pz")


@pytest.mark.parametrize("px", [False, True])
def test_basis_kernel_and_its_backward(px):
    """spectral_basis (the Born GEMM's operand) and its backward kernel against the formula written
    here: [cos(k u), sin(k u)] for k = 1..R, u = x or arccos(x), and torch autograd through it."""
    gen = make_gen("basis", px)
    R, B, I = 3, 21, 5
    x = torch.rand(B, I, generator=gen, dtype=F64)
    x = 0.95 * (2 * x - 1) if px else 3 * torch.special.ndtri(x.clamp(1e-3, 1 - 1e-3))

    def basis(xv):  # [B, I] -> [2R, I, B]
        u = torch.arccos(xv) if px else xv
        ku = torch.arange(1, R + 1, dtype=F64)[:, None, None] * u.t()
        return torch.cat([torch.cos(ku), torch.sin(ku)])

    torch.testing.assert_close(spectral.spectral_basis(x, R, px), basis(x), rtol=0, atol=1e-12)
    g = torch.randn(2 * R, I, B, generator=gen, dtype=F64)
    xx = x.clone().requires_grad_()
    (basis(xx) * g).sum().backward()
    torch.testing.assert_close(spectral.spectral_basis_backward(g, x, R, px), xx.grad, rtol=0, atol=1e-9)


def test_opcheck_custom_ops():
    gen = make_gen("opcheck")
    R, B, I, O = 2, 5, 3, 2
    theta = torch.randn(O, I, R + 1, 2, generator=gen, dtype=F64, requires_grad=True)
    bias = torch.randn(O, I, R, generator=gen, dtype=F64, requires_grad=True)
    theta_rpz = torch.randn(O, I, R + 1, 1, generator=gen, dtype=F64, requires_grad=True)
    x = torch.randn(B, I, generator=gen, dtype=F64, requires_grad=True)
    coef = torch.randn(O, I, 3, 2 * R + 1, generator=gen, dtype=F64) * 0.2
    w = torch.randn(O, I, generator=gen, dtype=F64, requires_grad=True)
    cases = [
        (spectral.spectral_coef, (theta, theta.new_empty(0), common.ANSATZ_CODES["pz"], R, 3, False)),
        (spectral.spectral_coef, (theta_rpz, bias, common.ANSATZ_CODES["rpz"], R, 1, False)),
        (spectral.spectral_coef, (theta.detach().float().requires_grad_(), theta.new_empty(0).float(),
                                  common.ANSATZ_CODES["pz"], R, 3, True)),
        (spectral.spectral_basis, (x, R, False)),
        (spectral.spectral_basis, ((0.9 * torch.rand(B, I, generator=gen, dtype=F64)).requires_grad_(), R, True)),
        (spectral.spectral_born_coef, (theta, theta.new_empty(0), w, common.ANSATZ_CODES["pz"], R)),
        (spectral.spectral_born_coef, (theta_rpz, bias, w, common.ANSATZ_CODES["rpz"], R)),
        (spectral.spectral_fused_layer, (x, coef.requires_grad_(), w, R, False)),
        (spectral.spectral_fused_layer, (x, coef[:, :, :1].detach().clone().requires_grad_(), w, R, False)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)
