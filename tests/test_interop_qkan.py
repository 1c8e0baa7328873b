"""qkan.QKANLayer / qkan.QKAN (exact solver, complex128) and qkan_fast with the same state_dict give
the same forward and the same gradients (float64)."""

from __future__ import annotations

import pytest
import torch

import qkan_fast

from conftest import F64, PARAM_NAMES, assert_close_scaled, make_gen, make_params, make_x

qkan = pytest.importorskip("qkan")

ALIAS = {"pz": "pz_encoding", "rpz": "rpz_encoding", "px": "px_encoding", "real": "real", "mix": "mix"}

CASES = [
    # ansatz, fast_measure, preact_trainable, group (px: qkan needs trainable preacts)
    (a, fast, pt, g)
    for a in ("pz", "rpz", "px", "real", "mix")
    for fast in (True, False)
    for pt in ((True,) if a == "px" else (False, True))
    for g in (-1, 2)
]
IDS = [f"{a}-{'fast' if f else 'born'}-pt{int(p)}-g{g}" for a, f, p, g in CASES]


def _exact(layer):
    # qkan switches `real` to bf16 compute at construction; use complex128 for exact comparisons
    layer.c_dtype = torch.complex128
    layer._resolve_solver_fn()
    return layer


def _forward_backward(module, x, gy):
    xx = x.clone().requires_grad_(True)
    y = module(xx)
    y.backward(gy)
    grads = {n: p.grad for n, p in module.named_parameters() if p.requires_grad}
    return y.detach(), xx.grad, grads


@pytest.mark.parametrize("ansatz,fast,pt,group", CASES, ids=IDS)
def test_layer_matches_qkan(ansatz, fast, pt, group):
    I, O, R, B = 4, 3, 2, 7
    flags = dict(
        group=group, fast_measure=fast, preact_trainable=pt, ba_trainable=True, postact_weight_trainable=True,
        postact_bias_trainable=True,
    )
    theirs = _exact(qkan.QKANLayer(I, O, R, ansatz=ALIAS[ansatz], solver="exact", c_dtype=torch.complex128,
                                   p_dtype=F64, **flags))
    ours = qkan_fast.QKANLayer(I, O, R, ansatz=ansatz, dtype=F64, **flags)
    gen = make_gen("interop", ansatz, fast, pt, group)
    p = make_params(ansatz, O, I, R, gen=gen, group=None if group == -1 else group)
    theirs.load_state_dict(p)
    ours.load_state_dict(theirs.state_dict())
    x = make_x(B, I, gen=gen)
    gy = torch.randn(B, O, generator=gen, dtype=F64)

    yq, gxq, gq = _forward_backward(theirs, x, gy)
    yf, gxf, gf = _forward_backward(ours, x, gy)
    assert_close_scaled(yf, yq, 1e-10, msg="y")
    assert_close_scaled(gxf, gxq, 1e-10, msg="grad x")
    assert set(gf) == set(gq) & set(PARAM_NAMES)
    for name in gf:
        assert_close_scaled(gf[name], gq[name], 1e-10, msg=f"grad {name}")


@pytest.mark.parametrize("ansatz", ["pz", "rpz", "real", "mix"])
def test_network_matches_qkan(ansatz):
    width, B = [3, 4, 2], 6
    kw = dict(reps=2, ansatz=ALIAS[ansatz], preact_trainable=True, ba_trainable=True, postact_weight_trainable=True)
    theirs = qkan.QKAN(width, solver="exact", c_dtype=torch.complex128, p_dtype=F64, **kw)
    for layer in theirs.layers:
        _exact(layer)
    ours = qkan_fast.QKAN(width, dtype=F64, **kw)
    gen = make_gen("interop-net", ansatz)
    sd = {}
    for k, layer in enumerate(theirs.layers):
        p = make_params(ansatz, layer.out_dim, layer.in_dim, 2, gen=gen)
        sd.update({f"layers.{k}.{n}": t for n, t in p.items()})
    theirs.load_state_dict(sd)
    ours.load_state_dict(theirs.state_dict())
    x = make_x(B, 3, gen=gen, ansatz=ansatz)
    gy = torch.randn(B, 2, generator=gen, dtype=F64)
    yq, gxq, gq = _forward_backward(theirs, x, gy)
    yf, gxf, gf = _forward_backward(ours, x, gy)
    assert_close_scaled(yf, yq, 1e-10, msg="y")
    assert_close_scaled(gxf, gxq, 1e-10, msg="grad x")
    assert set(gf) == set(gq)
    for name in gf:
        assert_close_scaled(gf[name], gq[name], 1e-10, msg=f"grad {name}")
