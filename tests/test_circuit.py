"""The compiled CPU circuit engine held against the pure-torch reference and the qkan golden file.

Covers forward and every gradient for each ansatz x measure x preact flag x dtype on odd sizes,
pruned edges, group sharing, postacts, gradcheck, non-contiguous inputs and partial gradients;
tests/test_circuit_runtime.py has memory, determinism, threads, opcheck and torch.compile.
"""

from __future__ import annotations

import math

import pytest
import torch

from qkan_fast import circuit, common, engines
from qkan_fast import reference as ref

from conftest import (
    ANSATZE,
    F32,
    F64,
    PARAM_NAMES,
    REL_TOL,
    assert_close_scaled,
    call_layer,
    golden_case,
    golden_params,
    make_gen,
    make_params,
    make_x,
    run_layer,
    stable_seed,
    trainable_names,
    with_grad,
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
# forward and every gradient against the reference
# =============================================================================================


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_layer_matches_reference(ansatz, fast, pt, dtype):
    B, I, O = 37, 5, 3
    R = _reps_for(ansatz, fast, pt, dtype)
    gen = make_gen("layer", ansatz, fast, pt, dtype)
    p = make_params(ansatz, O, I, R, gen=gen, dtype=dtype)
    assert (p["mask"] == 0).any()  # pruned entries are part of every case
    x = make_x(B, I, gen=gen, dtype=dtype, ansatz=ansatz)
    gy = torch.randn(B, O, generator=gen, dtype=dtype)
    names = trainable_names(ansatz, pt)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt, grad_names=names)
    got = run_layer(x, p, gy, engine="circuit", **kw)
    want = run_layer(x, p, gy, engine="reference", **kw)
    assert set(got) == {"y", "x"} | names
    for key in want:
        assert_close_scaled(got[key], want[key], REL_TOL[dtype], msg=f"{key} (R={R})")


# batches of several 64-sample chunks split over several backward blocks (partial sums over
# blocks, a ragged last chunk), and a wide layer with one block
BIG_CASES = [(200, 3, 2, "pz"), (333, 2, 3, "rpz"), (130, 40, 2, "mix"), (257, 5, 4, "px"), (129, 1, 1, "real")]


@pytest.mark.parametrize("B,I,O,ansatz", BIG_CASES, ids=[f"B{b}-I{i}-O{o}-{a}" for b, i, o, a in BIG_CASES])
def test_layer_matches_reference_many_chunks(B, I, O, ansatz):
    R = 2
    gen = make_gen("big", B, I, O, ansatz)
    p = make_params(ansatz, O, I, R, gen=gen)
    x = make_x(B, I, gen=gen)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    names = trainable_names(ansatz, True)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=ansatz != "rpz", preact_trainable=True, grad_names=names)
    got = run_layer(x, p, gy, engine="circuit", **kw)
    want = run_layer(x, p, gy, engine="reference", **kw)
    for key in want:
        assert_close_scaled(got[key], want[key], 1e-12, msg=key)


@pytest.mark.parametrize("ansatz", ANSATZE)
def test_auto_engine_is_circuit_on_cpu(ansatz):
    gen = make_gen("auto", ansatz)
    p = make_params(ansatz, 3, 4, 2, gen=gen)
    x = make_x(6, 4, gen=gen)
    kw = dict(ansatz=ansatz, reps=2, fast_measure=True, preact_trainable=True)
    torch.testing.assert_close(
        call_layer(x, p, engine="auto", **kw), call_layer(x, p, engine="circuit", **kw), rtol=0, atol=0
    )


@pytest.mark.parametrize("ansatz", ["pz", "px", "real", "mix"])
def test_unused_preacts_get_zero_gradient(ansatz):
    """Without encodings the stored w, b are not read: asking for their gradient gives zeros."""
    gen = make_gen("unused", ansatz)
    p = make_params(ansatz, 2, 3, 2, gen=gen)
    x = make_x(5, 3, gen=gen)
    pp = with_grad(p, {"theta", "preacts_weight", "preacts_bias"})
    y = call_layer(x, pp, engine="circuit", ansatz=ansatz, reps=2, fast_measure=True, preact_trainable=False)
    y.sum().backward()
    for name in ("preacts_weight", "preacts_bias"):
        g = pp[name].grad
        assert g is None or bool((g == 0).all()), name
    assert pp["theta"].grad is not None and bool(pp["theta"].grad.abs().sum() > 0)


@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_pruned_edges_contribute_nothing(ansatz, fast):
    B, I, O, R = 9, 4, 3, 2
    gen = make_gen("pruned", ansatz, fast)
    p = make_params(ansatz, O, I, R, gen=gen, prune=False)
    p["mask"][1, 2] = 0.0
    p["mask"][0, :] = 0.0  # a whole output row pruned
    x = make_x(B, I, gen=gen)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=True)
    names = trainable_names(ansatz, True)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    got = run_layer(x, p, gy, engine="circuit", grad_names=names, **kw)
    want = run_layer(x, p, gy, engine="reference", grad_names=names, **kw)
    for key in want:
        assert_close_scaled(got[key], want[key], 1e-12, msg=key)
    # the whole row 0 is pruned: y[:, 0] is exactly 0
    assert bool((got["y"][:, 0] == 0).all())
    for name in names:  # every parameter of a pruned edge gets exactly zero gradient
        g = got[name]
        assert bool((g[0] == 0).all()) and bool((g[1, 2] == 0).all()), name
    # changing a pruned edge's circuit changes nothing
    p2 = dict(p, theta=p["theta"].clone())
    p2["theta"][1, 2] += 1.0
    p2["theta"][0] -= 0.5
    torch.testing.assert_close(call_layer(x, p2, engine="circuit", **kw), got["y"], rtol=0, atol=0)


# =============================================================================================
# group sharing: theta (g, Rt, P), preacts (g, R)
# =============================================================================================

GROUP_CASES = [
    # ansatz, g, fast, pt
    ("pz", 1, True, False),
    ("pz", 2, False, True),
    ("rpz", 3, True, False),
    ("px", 2, True, True),
    ("px", 5, False, False),
    ("real", 2, False, True),
    ("mix", 3, True, True),
    ("mix", 2, False, False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "ansatz,g,fast,pt", GROUP_CASES, ids=[f"{a}-g{g}-{'fast' if f else 'born'}-pt{int(p)}" for a, g, f, p in GROUP_CASES]
)
def test_group_sharing_matches_reference(ansatz, g, fast, pt, dtype):
    B, I, O = 37, 5, 3
    R = _reps_for("group", ansatz, g)
    gen = make_gen("group", ansatz, g, fast, pt, dtype)
    p = make_params(ansatz, O, I, R, gen=gen, dtype=dtype, group=g)
    assert p["theta"].dim() == 3 and p["preacts_weight"].shape == (g, R)
    x = make_x(B, I, gen=gen, dtype=dtype)
    gy = torch.randn(B, O, generator=gen, dtype=dtype)
    names = trainable_names(ansatz, pt)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt, grad_names=names)
    got = run_layer(x, p, gy, engine="circuit", **kw)
    want = run_layer(x, p, gy, engine="reference", **kw)
    for key in want:
        assert_close_scaled(got[key], want[key], REL_TOL[dtype], msg=key)
    assert got["theta"].shape == (g, *p["theta"].shape[1:])


# =============================================================================================
# golden vectors from qkan 0.2.3 (an oracle no one here wrote)
# =============================================================================================


@pytest.mark.parametrize("case", golden_params())
def test_golden(case):
    case = golden_case(case)
    ansatz = ref.canonical_ansatz(case["ansatz"])
    pt = case["preact_trainable"]
    names = trainable_names(ansatz, pt)
    assert set(case["grads"]) == names
    p = {n: torch.tensor(case["state_dict"][n], dtype=F64).requires_grad_(n in names) for n in PARAM_NAMES}
    x = torch.tensor(case["x"], dtype=F64, requires_grad=True)
    y = call_layer(
        x, p, engine="circuit", ansatz=case["ansatz"], reps=case["reps"], fast_measure=case["fast_measure"],
        preact_trainable=pt,
    )
    y.backward(torch.tensor(case["grad_y"], dtype=F64))
    tol = dict(rtol=0, atol=1e-10)
    torch.testing.assert_close(y.detach(), torch.tensor(case["y"], dtype=F64), **tol)
    torch.testing.assert_close(x.grad, torch.tensor(case["grad_x"], dtype=F64), **tol)
    for name, g in case["grads"].items():
        torch.testing.assert_close(p[name].grad, torch.tensor(g, dtype=F64), **tol, msg=name)
    for name in set(PARAM_NAMES) - names:
        assert p[name].grad is None, name


# =============================================================================================
# postacts
# =============================================================================================


def _postacts(x, p, engine, **kw):
    return engines.daruan_postacts(x, p["theta"], p["preacts_weight"], p["preacts_bias"], engine=engine, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_postacts_match_reference(ansatz, fast, pt, dtype):
    B, I, O = 11, 5, 3
    R = _reps_for("post", ansatz, fast, pt)
    gen = make_gen("post", ansatz, fast, pt, dtype)
    p = make_params(ansatz, O, I, R, gen=gen, dtype=dtype)
    x = make_x(B, I, gen=gen, dtype=dtype)
    gpost = torch.randn(B, O, I, generator=gen, dtype=dtype)
    enc_names = {"preacts_weight", "preacts_bias"} if _encode(ansatz, pt) else set()
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt)
    res = {}
    for engine in ("circuit", "reference"):
        pp = with_grad(p, {"theta"} | enc_names)
        xx = x.clone().requires_grad_(True)
        phi = _postacts(xx, pp, engine, **kw)
        assert phi.shape == (B, O, I) and phi.dtype == dtype
        phi.backward(gpost)
        res[engine] = {"phi": phi.detach(), "x": xx.grad, **{n: pp[n].grad for n in {"theta"} | enc_names}}
    for key, want in res["reference"].items():
        assert_close_scaled(res["circuit"][key], want, REL_TOL[dtype], msg=key)
    assert bool((res["circuit"]["phi"].abs() <= 1 + 1e-6).all())  # phi lies in [-1, 1]


@pytest.mark.parametrize("ansatz", ANSATZE)
def test_grouped_postacts_expand_to_out_dim(ansatz):
    B, I, O, R, g = 6, 4, 3, 2, 2
    gen = make_gen("gpost", ansatz)
    p = make_params(ansatz, O, I, R, gen=gen, group=g)
    x = make_x(B, I, gen=gen)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=False, preact_trainable=True)
    phi1 = _postacts(x, p, "circuit", **kw)
    assert phi1.shape == (B, 1, I)
    phi = _postacts(x, p, "circuit", out_dim=O, **kw)
    assert phi.shape == (B, O, I)
    torch.testing.assert_close(phi, phi1.expand(B, O, I), rtol=0, atol=0)
    want = ref.postacts(x, p["theta"], p["preacts_weight"], p["preacts_bias"], out_dim=O, **kw)
    assert_close_scaled(phi, want, 1e-12, msg="phi")


# =============================================================================================
# gradcheck (float64, finite differences)
# =============================================================================================


# the full Jacobian for one case per ansatz; the whole grid in gradcheck's fast mode (a random
# projection of the Jacobian, v^T J u, against finite differences): much cheaper, still exact-or-fail
FULL_JACOBIAN = {("pz", True, True), ("rpz", False, False), ("px", False, True), ("real", True, True), ("mix", False, True)}


@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("fast", MEASURES)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_gradcheck(ansatz, fast, pt):
    fast_mode = (ansatz, fast, pt) not in FULL_JACOBIAN
    B, I, O, R = 4, 3, 2, 2
    gen = make_gen("gradcheck", ansatz, fast, pt)
    p = make_params(ansatz, O, I, R, gen=gen)
    # |x| <= 0.8 and |w*x + b| <= 0.83: away from px's +-1 where arccos' derivative blows up
    x = (-0.8 + 1.6 * torch.rand(B, I, generator=gen, dtype=F64)).requires_grad_(True)
    names = trainable_names(ansatz, pt)
    pp = with_grad(p, names)
    inputs = (x, *(pp[n] for n in PARAM_NAMES))
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt, engine="circuit")

    def layer(*args):
        return engines.qkan_layer(*args, **kw)

    # phi has no zero amplitude here (|alpha|, |beta| bounded away from 0), so |.| is smooth
    alpha, beta = ref.amplitudes(
        x.detach(), p["theta"], p["preacts_weight"], p["preacts_bias"], ansatz=ansatz, reps=R, preact_trainable=pt
    )
    assert float(torch.minimum(alpha.abs(), beta.abs()).min()) > 1e-3
    assert torch.autograd.gradcheck(layer, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=fast_mode)

    def post(xv, th, w, b):
        return engines.daruan_postacts(xv, th, w, b, ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt)

    post_inputs = (x, pp["theta"], pp["preacts_weight"], pp["preacts_bias"])
    assert torch.autograd.gradcheck(post, post_inputs, eps=1e-6, atol=1e-7, fast_mode=fast_mode)


@pytest.mark.parametrize("ansatz", ["pz", "px", "mix"])
def test_gradcheck_grouped(ansatz):
    B, I, O, R, g = 4, 3, 2, 2, 2
    gen = make_gen("gradcheck-group", ansatz)
    p = make_params(ansatz, O, I, R, gen=gen, group=g)
    x = (-0.8 + 1.6 * torch.rand(B, I, generator=gen, dtype=F64)).requires_grad_(True)
    pp = with_grad(p, trainable_names(ansatz, True))
    kw = dict(ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=True, engine="circuit")
    assert torch.autograd.gradcheck(
        lambda *a: engines.qkan_layer(*a, **kw), (x, *(pp[n] for n in PARAM_NAMES)), eps=1e-6, atol=1e-7, rtol=1e-5,
        fast_mode=ansatz != "px",
    )


# =============================================================================================
# edge values: zero amplitudes, px at +-1
# =============================================================================================


def _near_zero_amplitude_angles(dtype):
    """Final RY angles 2t with t at and a few ulps around pi/4 + k pi/2, where RY(2t) H|0> is |0>
    or |1> up to rounding: amplitudes exactly 0 or within a few ulps of it."""
    base = torch.tensor([math.pi / 4 + k * math.pi / 2 for k in range(32)], dtype=dtype)
    ts, up, down = [base], base, base
    for _ in range(8):
        up = torch.nextafter(up, torch.full_like(up, 1e9))
        down = torch.nextafter(down, torch.full_like(down, -1e9))
        ts += [up, down]
    return 2 * torch.cat(ts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fast", MEASURES)
def test_gradient_finite_near_zero_amplitude(fast, dtype):
    angles = _near_zero_amplitude_angles(dtype)
    N = angles.numel()
    # pz, R = 1, x = 0 and every angle 0 but the final RY: the state is RY(a) H|0>
    theta = torch.zeros(N, 1, 2, 2, dtype=dtype)
    theta[:, 0, 1, 1] = angles
    theta.requires_grad_(True)
    x = torch.zeros(3, 1, dtype=dtype, requires_grad=True)
    pre = torch.zeros(N, 1, 1, dtype=dtype)
    kw = dict(ansatz="pz", reps=1, fast_measure=fast)
    phi = engines.daruan_postacts(x, theta, pre + 1, pre, engine="circuit", **kw)
    want = ref.postacts(x.detach(), theta.detach(), None, None, **kw)
    torch.testing.assert_close(phi.detach(), want, rtol=0, atol=1e-6 if dtype == F32 else 1e-14)
    assert bool((phi.abs() > 0.99).all())  # these really are (near-)basis states
    phi.sum().backward()
    assert torch.isfinite(theta.grad).all() and torch.isfinite(x.grad).all()
    # |d phi / d theta| <= 1 for the fast measure, 2 for Born: nothing blows up at the floor
    assert float(theta.grad.abs().max()) <= (1.0 if fast else 2.0) * 3 + 1e-5


@pytest.mark.parametrize("pt", PREACTS)
def test_px_closed_interval(pt):
    """x = +-1 is valid for px: the forward matches the reference and the engine's gradients stay
    finite (its arccos slope is floored; the reference's is infinite there)."""
    O, I, R = 2, 3, 2
    gen = make_gen("px-edge", pt)
    p = make_params("px", O, I, R, gen=gen)
    if pt:
        p["preacts_weight"].fill_(1.0)
        p["preacts_bias"].zero_()
    x = torch.tensor([[-1.0, 1.0, 0.0], [1.0, -1.0, 0.5]], dtype=F64)
    kw = dict(ansatz="px", reps=R, fast_measure=True, preact_trainable=pt)
    y = call_layer(x, p, engine="circuit", **kw)
    assert_close_scaled(y, call_layer(x, p, engine="reference", **kw), 1e-12, msg="y")
    pp = with_grad(p, trainable_names("px", pt))
    xx = x.clone().requires_grad_(True)
    call_layer(xx, pp, engine="circuit", **kw).sum().backward()
    assert torch.isfinite(xx.grad).all()
    assert torch.isfinite(pp["theta"].grad).all()


# =============================================================================================
# layouts and partial gradients
# =============================================================================================


def _non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """Same values, a strided layout: every other element of a twice-as-wide buffer."""
    big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
    big[..., ::2] = t
    out = big[..., ::2]
    assert not out.is_contiguous() or out.numel() <= 1
    return out


@pytest.mark.parametrize("pt", PREACTS)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_non_contiguous_inputs(ansatz, pt):
    B, I, O, R = 37, 5, 3, 2
    gen = make_gen("noncontig", ansatz, pt)
    p = make_params(ansatz, O, I, R, gen=gen)
    x = make_x(B, I, gen=gen)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    names = trainable_names(ansatz, pt)
    kw = dict(engine="circuit", ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=pt, grad_names=names)
    want = run_layer(x, p, gy, **kw)

    x_t = x.t().contiguous().t()  # transposed storage
    assert not x_t.is_contiguous()
    pn = {n: _non_contiguous(t) for n, t in p.items()}
    pn["postact_weights"] = p["postact_weights"].t().contiguous().t()
    got = run_layer(x_t, pn, gy.t().contiguous().t(), **kw)
    for key in want:
        assert_close_scaled(got[key], want[key], 1e-13, msg=key)
    # postacts too
    post_kw = dict(ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=pt, engine="circuit")
    torch.testing.assert_close(
        _postacts(x_t, pn, **post_kw), _postacts(x, p, **post_kw), rtol=0, atol=0
    )


@pytest.mark.parametrize("ansatz", ["pz", "rpz", "px"])
def test_only_requested_gradients(ansatz):
    B, I, O, R = 10, 4, 3, 2
    gen = make_gen("partial", ansatz)
    p = make_params(ansatz, O, I, R, gen=gen)
    x = make_x(B, I, gen=gen)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=False, preact_trainable=True)
    full = run_layer(x, p, gy, engine="reference", grad_names=set(PARAM_NAMES) - {"mask"}, **kw)

    # x without requires_grad, parameters with
    got = run_layer(x, p, gy, engine="circuit", grad_names={"theta", "preacts_bias"}, x_grad=False, **kw)
    assert "x" not in got
    for key in ("y", "theta", "preacts_bias"):
        assert_close_scaled(got[key], full[key], 1e-12, msg=key)

    # only x
    pp = with_grad(p, ())
    xx = x.clone().requires_grad_(True)
    call_layer(xx, pp, engine="circuit", **kw).backward(gy)
    assert_close_scaled(xx.grad, full["x"], 1e-12, msg="x")
    assert all(t.grad is None for t in pp.values())

    # nothing: no graph at all
    y = call_layer(x, with_grad(p, ()), engine="circuit", **kw)
    assert not y.requires_grad
    assert_close_scaled(y, full["y"], 1e-12, msg="y")

    # the backward op returns empty tensors for what was not asked
    enc = True
    args = (x, p["theta"], p["preacts_weight"], p["preacts_bias"], p["postact_weights"] * p["mask"])
    code = common.ANSATZ_CODES[ansatz]
    outs = circuit.circuit_backward(gy, *args, code, R, False, enc, [False, True, False, False, False])
    assert [o.numel() for o in outs] == [0, p["theta"].numel(), 0, 0, 0]
    outs_all = circuit.circuit_backward(gy, *args, code, R, False, enc, [True] * 5)
    torch.testing.assert_close(outs[1], outs_all[1], rtol=0, atol=0)
