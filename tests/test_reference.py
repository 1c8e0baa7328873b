"""Tests of the pure-torch reference (qkan_fast.reference), the oracle of every engine.

It is held against: the golden vectors computed by qkan==0.2.3 (an oracle no one here wrote),
explicit 2x2 matrix products written out per edge in numpy, the group-sharing layout, the live
`qkan` package when it is installed, and its own float32/float64 and edge-case behaviour.
"""

from __future__ import annotations

import cmath
import importlib.util
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from golden_data import N_CASES, golden_case, golden_params, load_cases  # tests/golden_data.py


def _load_reference():
    # The oracle must stay testable even when the package __init__ needs a compiled module
    # that is not built: fall back to loading reference.py by path.
    try:
        from qkan_fast import reference

        return reference
    except (ImportError, OSError):
        path = Path(__file__).resolve().parents[1] / "python" / "qkan_fast" / "reference.py"
        spec = importlib.util.spec_from_file_location("qkan_fast_reference", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


ref = _load_reference()

F64 = torch.float64


def _seed(*parts) -> int:
    # Stable across processes (python's str hash is salted per run).
    return zlib.crc32(repr(parts).encode())
PARAM_NAMES = (
    "theta",
    "preacts_weight",
    "preacts_bias",
    "base_weight",
    "postact_weights",
    "postact_bias",
    "mask",
)


def _call_layer(x, p, *, ansatz, reps, fast_measure, preact_trainable, **kw):
    return ref.layer(
        x,
        *(p[n] for n in PARAM_NAMES),
        ansatz=ansatz,
        reps=reps,
        fast_measure=fast_measure,
        preact_trainable=preact_trainable,
        **kw,
    )


def _random_params(ansatz, O, I, R, *, gen, dtype=F64, group=None, px_safe=False):
    """Random parameters with qkan's names; grouped theta/preacts when group is an int."""
    lead = (O, I) if group is None else (group,)
    th_rows, P = ref.theta_shape(ansatz, O, I, R)[2:]

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=dtype) * scale

    def uni(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=dtype)

    p = {"theta": rnd(*lead, th_rows, P, scale=1.5)}
    if px_safe:
        # |w*x + b| <= 0.6*0.9 + 0.4 < 1 for x in [-0.9, 0.9]: inside px's domain.
        p["preacts_weight"] = uni(-0.6, 0.6, *lead, R)
        p["preacts_bias"] = uni(-0.4, 0.4, *lead, R)
    else:
        p["preacts_weight"] = uni(0.5, 1.5, *lead, R)
        p["preacts_bias"] = rnd(*lead, R, scale=0.5)
    p["base_weight"] = rnd(O, I)
    p["postact_weights"] = rnd(O, I)
    p["postact_bias"] = rnd(O, I, scale=0.3)
    mask = torch.ones(O, I, dtype=dtype)
    mask.view(-1)[:: max(2, (O * I) // 2)] = 0.0  # a few pruned edges
    p["mask"] = mask
    return p


def _random_x(B, I, *, gen, ansatz, dtype=F64):
    if ansatz == "px":
        return -0.9 + 1.8 * torch.rand(B, I, generator=gen, dtype=dtype)
    return torch.randn(B, I, generator=gen, dtype=dtype) * 1.5


# =============================================================================================
# (a) golden vectors from qkan 0.2.3
# =============================================================================================


GOLDEN = golden_params()


def test_golden_file_has_every_case():
    """The file holds the grid docs/math.md, "How the definitions are checked" describes, each configuration once."""
    cases = load_cases()  # raises (fails) when the file is missing or unreadable
    assert len(cases) == len(GOLDEN) == N_CASES, f"expected {N_CASES} golden cases, found {len(cases)}"
    got = [(c["ansatz"], c["fast_measure"], c["preact_trainable"], (c["in_dim"], c["out_dim"], c["reps"]))
           for c in cases]
    want = {
        (a, fast, pt, size)
        for a in ref.ANSATZE
        for fast in (True, False)
        for pt in ((True,) if a == "px" else (False, True))  # qkan's px needs trainable preacts
        for size in ((3, 2, 1), (4, 3, 3))
    }
    assert len(set(got)) == len(got) and set(got) == want
    assert all(len(c["x"]) == 5 for c in cases)


@pytest.mark.parametrize("case", GOLDEN)
def test_golden(case):
    case = golden_case(case)
    ansatz = case["ansatz"]
    pt = case["preact_trainable"]
    # All trainable flags were on when the golden file was made (docs/math.md, "How the definitions are checked").
    trainable = {"theta", "base_weight", "postact_weights", "postact_bias"}
    if pt or ref.canonical_ansatz(ansatz) == "rpz":
        trainable.add("preacts_bias")
    if pt:
        trainable.add("preacts_weight")
    assert set(case["grads"]) == trainable

    p = {}
    for name in PARAM_NAMES:
        t = torch.tensor(case["state_dict"][name], dtype=F64)
        p[name] = t.requires_grad_(name in trainable)
    x = torch.tensor(case["x"], dtype=F64, requires_grad=True)
    y = _call_layer(
        x, p, ansatz=ansatz, reps=case["reps"], fast_measure=case["fast_measure"],
        preact_trainable=pt,
    )
    y.backward(torch.tensor(case["grad_y"], dtype=F64))

    tol = dict(rtol=0, atol=1e-10)
    torch.testing.assert_close(y, torch.tensor(case["y"], dtype=F64), **tol)
    torch.testing.assert_close(x.grad, torch.tensor(case["grad_x"], dtype=F64), **tol)
    for name, g in case["grads"].items():
        torch.testing.assert_close(p[name].grad, torch.tensor(g, dtype=F64), **tol, msg=name)
    for name in set(PARAM_NAMES) - trainable:
        assert p[name].grad is None


# =============================================================================================
# (b) explicit 2x2 matrix products, one edge at a time (numpy, python loops)
# =============================================================================================


def _np_rz(a):
    return np.array([[cmath.exp(-0.5j * a), 0.0], [0.0, cmath.exp(0.5j * a)]], dtype=complex)


def _np_ry(a):
    c, s = math.cos(a / 2), math.sin(a / 2)
    return np.array([[c, -s], [s, c]], dtype=complex)


def _np_rx(a):
    c, s = math.cos(a / 2), math.sin(a / 2)
    return np.array([[c, -1j * s], [-1j * s, c]], dtype=complex)


_NP_X = np.array([[0, 1], [1, 0]], dtype=complex)
_NP_Z = np.array([[1, 0], [0, -1]], dtype=complex)


def _np_edge(ansatz, th, w, b, x, reps, enc, fast):
    """phi of one edge: th (Rt, P), w and b (R,), x a float; all python/numpy."""
    psi = np.array([1.0, 1.0], dtype=complex) / math.sqrt(2.0)
    for l in range(reps):
        e = w[l] * x + b[l] if enc else x
        if ansatz == "pz":
            gates = [_np_rz(th[l][0]), _np_ry(th[l][1]), _np_rz(e)]
        elif ansatz == "rpz":
            gates = [_np_ry(th[l][0]), _np_rz(e)]
        elif ansatz == "px":
            gates = [_np_rz(th[l][0]), _np_rx(math.acos(e))]
        elif ansatz == "real":
            gates = [_NP_X, _np_ry(th[l][0]), _NP_Z, _np_ry(e)]
        else:
            gates = [_np_rz(th[l][0]), _np_rx(th[l][1]), _np_ry(e)]
        for g in gates:
            psi = g @ psi
    final = {
        "pz": lambda: [_np_rz(th[reps][0]), _np_ry(th[reps][1])],
        "rpz": lambda: [_np_ry(th[reps][0])],
        "px": lambda: [_np_rz(th[reps][0])],
        "real": lambda: [],
        "mix": lambda: [_np_rz(th[reps][0]), _np_rx(th[reps][1])],
    }[ansatz]()
    for g in final:
        psi = g @ psi
    a, bb = abs(psi[0]), abs(psi[1])
    return a - bb if fast else a * a - bb * bb


HAND_CASES = [
    (a, fast, pt)
    for a in ref.ANSATZE
    for fast in (True, False)
    for pt in (False, True)
]


HAND_IDS = [f"{a}-{'fast' if f else 'born'}-pt{int(p)}" for a, f, p in HAND_CASES]


@pytest.mark.parametrize("ansatz,fast,pt", HAND_CASES, ids=HAND_IDS)
def test_postacts_matches_explicit_matrices(ansatz, fast, pt):
    gen = torch.Generator().manual_seed(_seed(ansatz, fast, pt))
    B, O, I, R = 4, 2, 3, 2
    p = _random_params(ansatz, O, I, R, gen=gen, px_safe=ansatz == "px")
    x = _random_x(B, I, gen=gen, ansatz=ansatz)
    phi = ref.postacts(
        x, p["theta"], p["preacts_weight"], p["preacts_bias"],
        ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt,
    )
    assert phi.shape == (B, O, I) and phi.dtype == F64
    # rpz reads the stored w and b even with preact_trainable=False (w != 1 here).
    enc = pt or ansatz == "rpz"
    th, w, b = p["theta"].tolist(), p["preacts_weight"].tolist(), p["preacts_bias"].tolist()
    want = torch.empty(B, O, I, dtype=F64)
    for bi in range(B):
        for o in range(O):
            for i in range(I):
                want[bi, o, i] = _np_edge(
                    ansatz, th[o][i], w[o][i], b[o][i], x[bi, i].item(), R, enc, fast
                )
    torch.testing.assert_close(phi, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("ansatz", ref.ANSATZE)
def test_layer_matches_explicit_sum(ansatz):
    gen = torch.Generator().manual_seed(7)
    B, O, I, R = 3, 2, 4, 1
    p = _random_params(ansatz, O, I, R, gen=gen, px_safe=True)
    x = _random_x(B, I, gen=gen, ansatz="px")  # in [-0.9, 0.9]: valid for every ansatz
    y = _call_layer(
        x, p, ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=True,
        base_activation=torch.tanh,
    )
    th, w, b = p["theta"].tolist(), p["preacts_weight"].tolist(), p["preacts_bias"].tolist()
    want = torch.zeros(B, O, dtype=F64)
    for bi in range(B):
        for o in range(O):
            for i in range(I):
                xv = x[bi, i].item()
                phi = _np_edge(ansatz, th[o][i], w[o][i], b[o][i], xv, R, True, True)
                term = p["postact_weights"][o, i] * (phi + p["postact_bias"][o, i])
                term = term + p["base_weight"][o, i] * math.tanh(xv)
                want[bi, o] += p["mask"][o, i] * term
    torch.testing.assert_close(y, want, rtol=0, atol=1e-12)


def test_preacts_ignored_without_encoding():
    gen = torch.Generator().manual_seed(3)
    p = _random_params("pz", 2, 3, 2, gen=gen)
    x = _random_x(5, 3, gen=gen, ansatz="pz")
    kw = dict(ansatz="pz", reps=2)
    with_stored = ref.postacts(x, p["theta"], p["preacts_weight"], p["preacts_bias"], **kw)
    without = ref.postacts(x, p["theta"], None, None, **kw)
    torch.testing.assert_close(with_stored, without, rtol=0, atol=0)


# =============================================================================================
# (c) group sharing
# =============================================================================================


@pytest.mark.parametrize("ansatz", ref.ANSATZE)
@pytest.mark.parametrize("g", [1, 2, 3, 5])
def test_grouped_equals_per_edge(ansatz, g):
    gen = torch.Generator().manual_seed(100 + g)
    B, O, I, R = 4, 3, 5, 2
    pg = _random_params(ansatz, O, I, R, gen=gen, group=g, px_safe=True)
    x = _random_x(B, I, gen=gen, ansatz="px")
    # Per-edge copy built by hand: edge (o, i) uses set i % g.
    pe = dict(pg)
    for name in ("theta", "preacts_weight", "preacts_bias"):
        t = pg[name]
        pe[name] = torch.stack(
            [torch.stack([t[i % g] for i in range(I)]) for _ in range(O)]
        ).clone()
    for name in ("theta", "preacts_weight", "preacts_bias"):
        expanded = ref.expand_group(pg[name], O, I, item_dims=pg[name].dim() - 1)
        torch.testing.assert_close(expanded, pe[name], rtol=0, atol=0)

    kw = dict(ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=True)
    for name in ("theta", "preacts_weight", "preacts_bias"):
        pg[name].requires_grad_(True)
        pe[name].requires_grad_(True)
    yg = _call_layer(x, pg, **kw)
    ye = _call_layer(x, pe, **kw)
    torch.testing.assert_close(yg, ye, rtol=0, atol=1e-14)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    yg.backward(gy)
    ye.backward(gy)
    # A shared set's gradient is the sum of its edges' gradients.
    for name in ("theta", "preacts_weight", "preacts_bias"):
        ge = pe[name].grad
        want = torch.stack(
            [sum(ge[o, i] for o in range(O) for i in range(I) if i % g == k) for k in range(g)]
        )
        torch.testing.assert_close(pg[name].grad, want, rtol=0, atol=1e-12, msg=name)

    # Grouped phi does not depend on o.
    phi = ref.postacts(
        x, pg["theta"].detach(), pg["preacts_weight"].detach(), pg["preacts_bias"].detach(),
        out_dim=O, **kw,
    )
    assert phi.shape == (B, O, I)
    torch.testing.assert_close(phi, phi[:, :1, :].expand(B, O, I), rtol=0, atol=1e-14)


def test_expand_group_returns_per_edge_unchanged():
    t = torch.randn(3, 4, 2, 2, dtype=F64)
    assert ref.expand_group(t, 3, 4) is t
    assert ref.expand_group(t, 3, 4, item_dims=2) is t
    # Without item_dims a grouped (g, Rt, P) = (3, 4, 2) would look per-edge; with it, it is not.
    grouped = torch.randn(3, 4, 2, dtype=F64)
    assert ref.expand_group(grouped, 3, 4, item_dims=2).shape == (3, 4, 4, 2)


def test_grouped_needs_out_dim():
    x = torch.zeros(2, 3, dtype=F64)
    theta = torch.zeros(2, 3, 2, dtype=F64)  # grouped (g, R+1, P) with R = 2
    with pytest.raises(ValueError, match="out_dim"):
        ref.postacts(x, theta, None, None, ansatz="pz", reps=2)
    assert ref.postacts(x, theta, None, None, ansatz="pz", reps=2, out_dim=4).shape == (2, 4, 3)


# =============================================================================================
# (d) the live qkan package
# =============================================================================================

QKAN_CONFIGS = [
    # ansatz, fast_measure, preact_trainable, in_dim, out_dim, reps, group
    ("pz_encoding", True, False, 3, 2, 2, -1),
    ("pz", False, True, 4, 3, 3, -1),
    ("rpz_encoding", False, False, 4, 3, 2, -1),
    ("px_encoding", True, True, 3, 2, 3, -1),
    ("real", False, True, 3, 4, 2, -1),
    ("real", True, False, 2, 3, 1, -1),
    ("mix", True, True, 2, 3, 1, -1),
    ("pz", False, True, 5, 3, 2, 2),
    ("rpz", True, False, 4, 2, 3, 2),
    ("mix", False, False, 3, 2, 2, 2),
    ("real", True, True, 5, 2, 2, 2),
    ("px", False, True, 4, 3, 2, 2),
]


QKAN_IDS = [
    f"{a}-{'fast' if f else 'born'}-pt{int(p)}-I{i}O{o}R{r}-g{g}"
    for a, f, p, i, o, r, g in QKAN_CONFIGS
]


@pytest.mark.parametrize("ansatz,fast,pt,I,O,R,group", QKAN_CONFIGS, ids=QKAN_IDS)
def test_matches_qkan(ansatz, fast, pt, I, O, R, group):
    qkan = pytest.importorskip("qkan")
    layer = qkan.QKANLayer(
        I, O, R, group=group, ansatz=ansatz, solver="exact", fast_measure=fast,
        preact_trainable=pt, ba_trainable=True, postact_weight_trainable=True,
        postact_bias_trainable=True, c_dtype=torch.complex128, p_dtype=torch.float64,
    )
    # qkan's init switches `real` to bfloat16 compute; force double for the comparison.
    layer.c_dtype = torch.complex128
    layer._resolve_solver_fn()

    canon = ref.canonical_ansatz(ansatz)
    gen = torch.Generator().manual_seed(_seed(ansatz, fast, pt, group))
    p = _random_params(
        canon, O, I, R, gen=gen, group=None if group == -1 else group, px_safe=canon == "px"
    )
    sd = layer.state_dict()
    assert set(PARAM_NAMES) <= set(sd)
    for name in PARAM_NAMES:
        assert tuple(sd[name].shape) == tuple(p[name].shape), name
    layer.load_state_dict(p, strict=False)

    x = _random_x(6, I, gen=gen, ansatz=canon)
    gy = torch.randn(6, O, generator=gen, dtype=F64)

    xq = x.clone().requires_grad_(True)
    yq = layer(xq)
    yq.backward(gy)

    trainable = {n for n, prm in layer.named_parameters() if prm.requires_grad}
    pr = {n: t.clone().requires_grad_(n in trainable) for n, t in p.items()}
    xr = x.clone().requires_grad_(True)
    yr = _call_layer(xr, pr, ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt)
    yr.backward(gy)

    tol = dict(rtol=0, atol=1e-10)
    torch.testing.assert_close(yr, yq.detach(), **tol)
    torch.testing.assert_close(xr.grad, xq.grad, **tol)
    for name in trainable & set(PARAM_NAMES):
        torch.testing.assert_close(
            pr[name].grad, dict(layer.named_parameters())[name].grad, **tol, msg=name
        )


# =============================================================================================
# (e) precision, validation and the zero-amplitude gradient
# =============================================================================================


@pytest.mark.parametrize("ansatz", ref.ANSATZE)
@pytest.mark.parametrize("fast", [True, False])
def test_float32_matches_float64(ansatz, fast):
    gen = torch.Generator().manual_seed(11)
    B, O, I, R = 8, 3, 4, 3
    p64 = _random_params(ansatz, O, I, R, gen=gen, px_safe=True)
    x64 = _random_x(B, I, gen=gen, ansatz="px")
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=True)
    y64 = _call_layer(x64, p64, **kw)
    p32 = {n: t.float() for n, t in p64.items()}
    y32 = _call_layer(x64.float(), p32, **kw)
    assert y32.dtype == torch.float32
    alpha, _ = ref.amplitudes(
        x64.float(), p32["theta"], p32["preacts_weight"], p32["preacts_bias"],
        ansatz=ansatz, reps=R, preact_trainable=True,
    )
    assert alpha.dtype == torch.complex64
    torch.testing.assert_close(y32.double(), y64, rtol=0, atol=1e-5)


def test_px_out_of_domain_raises():
    theta = torch.zeros(1, 2, 3, 1, dtype=F64)
    ones = torch.ones(1, 2, 2, dtype=F64)
    zeros = torch.zeros(1, 2, 2, dtype=F64)
    x = torch.tensor([[0.5, 1.5]], dtype=F64)
    with pytest.raises(ValueError, match=r"px expects inputs in \[-1, 1\]"):
        ref.postacts(x, theta, ones, zeros, ansatz="px", reps=2)
    # Through the encoding: 2 * 0.9 = 1.8 is out of range although x is not.
    x_ok = torch.tensor([[0.9, -0.2]], dtype=F64)
    with pytest.raises(ValueError, match=r"1\.8"):
        ref.postacts(x_ok, theta, 2 * ones, zeros, ansatz="px_encoding", reps=2,
                     preact_trainable=True)
    # The closed interval is valid.
    edge = ref.postacts(torch.tensor([[-1.0, 1.0]], dtype=F64), theta, ones, zeros,
                        ansatz="px", reps=2)
    assert torch.isfinite(edge).all()


def test_unknown_ansatz_raises():
    with pytest.raises(ValueError, match="pz, rpz, px, real, mix"):
        ref.canonical_ansatz("rz_encoding")
    with pytest.raises(ValueError, match="unknown ansatz"):
        ref.postacts(torch.zeros(1, 1, dtype=F64), torch.zeros(1, 1, 2, 2, dtype=F64),
                     None, None, ansatz="bogus", reps=1)
    for alias, canon in ref.ALIASES.items():
        assert ref.canonical_ansatz(alias) == canon
    for name in ref.ANSATZE:
        assert ref.canonical_ansatz(name) == name


def test_theta_shape_and_uses_encoding():
    assert ref.theta_shape("pz", 3, 5, 3) == (3, 5, 4, 2)
    assert ref.theta_shape("pz_encoding", 3, 5, 3) == (3, 5, 4, 2)
    assert ref.theta_shape("mix", 3, 5, 3) == (3, 5, 4, 2)
    assert ref.theta_shape("rpz", 3, 5, 3) == (3, 5, 4, 1)
    assert ref.theta_shape("px", 3, 5, 3) == (3, 5, 4, 1)
    assert ref.theta_shape("real", 3, 5, 3) == (3, 5, 3, 1)
    assert ref.uses_encoding("rpz", False) and ref.uses_encoding("rpz_encoding", False)
    assert ref.uses_encoding("pz", True) and not ref.uses_encoding("pz", False)
    assert not ref.uses_encoding("px", False) and not ref.uses_encoding("real", False)


def test_bad_shapes_raise():
    x = torch.zeros(2, 5, dtype=F64)
    bad_theta = torch.zeros(3, 5, 3, 2, dtype=F64)
    msg = r"theta must have shape \(O, I, R\+1, P\) = \(3, 5, 4, 2\) or grouped \(g, 4, 2\)"
    with pytest.raises(ValueError, match=msg):
        ref.postacts(x, bad_theta, None, None, ansatz="pz", reps=3, out_dim=3)
    theta = torch.zeros(3, 5, 4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"preacts_weight must have shape \(O, I, R\)"):
        ref.postacts(x, theta, torch.ones(3, 5, 2, dtype=F64), torch.zeros(3, 5, 3, dtype=F64),
                     ansatz="pz", reps=3, preact_trainable=True)
    with pytest.raises(ValueError, match="preacts_bias is required"):
        ref.postacts(x, torch.zeros(3, 5, 4, 1, dtype=F64), torch.ones(3, 5, 3, dtype=F64),
                     None, ansatz="rpz", reps=3)
    with pytest.raises(ValueError, match=r"x must have shape \(B, I\)"):
        ref.postacts(x[0], theta, None, None, ansatz="pz", reps=3)
    p = _random_params("pz", 3, 5, 3, gen=torch.Generator().manual_seed(0))
    p["mask"] = torch.ones(5, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"mask must have shape \(O, I\) = \(3, 5\)"):
        _call_layer(x, p, ansatz="pz", reps=3, fast_measure=True, preact_trainable=False)


def _zero_amplitude_candidates(dtype):
    """Angles a = 2t with t near pi/4 + k*pi/2, where cos(t) = +-sin(t): RY(a) H|0> is then
    |1> or |0> up to rounding. Whether some t rounds to an exact zero amplitude depends on
    the libm, so try many (a few ulps either side of each crossing)."""
    base = torch.tensor([math.pi / 4 + k * math.pi / 2 for k in range(64)], dtype=dtype)
    ts, up, down = [base], base, base
    for _ in range(24):
        up = torch.nextafter(up, torch.full_like(up, 1e9))
        down = torch.nextafter(down, torch.full_like(down, -1e9))
        ts += [up, down]
    return 2 * torch.cat(ts)  # exact: the reference halves it back to t


@pytest.mark.parametrize("fast", [True, False])
def test_gradient_finite_at_zero_amplitude(fast):
    for dtype in (F64, torch.float32):
        angles = _zero_amplitude_candidates(dtype)
        N = angles.numel()
        # pz, R = 1, every angle 0 but the final RY: the state is RY(a) H|0>, x = 0 (RZ(0) = 1).
        theta = torch.zeros(N, 1, 2, 2, dtype=dtype)
        theta[:, 0, 1, 1] = angles
        x = torch.zeros(1, 1, dtype=dtype)
        alpha, beta = ref.amplitudes(x, theta, None, None, ansatz="pz", reps=1)
        hit = ((alpha == 0) | (beta == 0)).reshape(-1)
        if bool(hit.any()):
            break
    else:
        pytest.skip("no candidate angle gave an exactly zero amplitude with this libm")

    theta.requires_grad_(True)
    x.requires_grad_(True)
    phi = ref.postacts(x, theta, None, None, ansatz="pz", reps=1, fast_measure=fast)
    phi.sum().backward()
    assert torch.isfinite(phi).all()
    assert torch.isfinite(theta.grad).all()
    assert torch.isfinite(x.grad).all()
