"""qkan_fast as the "qkan_fast" solver of qkan==0.2.3, and from_qkan / to_qkan.

Parity is held against qkan's own "exact" solver in float64 / complex128 for every ansatz,
forward and gradients, per-edge and grouped parameters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import qkan_fast
from qkan_fast.integrations.qkan import SOLVER_NAME, from_qkan, register, solve, to_qkan

F64 = torch.float64
C128 = torch.complex128
QKAN_NAMES = {"pz": "pz_encoding", "rpz": "rpz_encoding", "px": "px_encoding", "real": "real", "mix": "mix"}
PARAMS = ("theta", "preacts_weight", "preacts_bias", "base_weight", "postact_weights", "postact_bias", "mask")


def test_importing_qkan_fast_does_not_import_qkan():
    code = (
        "import sys, qkan_fast, qkan_fast.integrations, qkan_fast.integrations.qkan, qkan_fast.networks, "
        "qkan_fast.plotting, qkan_fast.demo; sys.exit(1 if 'qkan' in sys.modules else 0)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


@pytest.fixture(scope="module")
def qkan():
    mod = pytest.importorskip("qkan")
    register()
    return mod


def _exact(layer):
    # qkan switches `real` to bf16 compute at construction; use complex128 for exact comparisons
    layer.c_dtype = C128
    layer._resolve_solver_fn()
    return layer


def _random_state(layer, gen):
    """qkan-layout parameters: random theta, pw, pb, bw; |w*x + b| < 1 for |x| <= 0.9 (px); a pruned edge."""
    sd = {}
    for name, t in layer.state_dict().items():
        if name == "theta":
            sd[name] = 1.5 * torch.randn(t.shape, generator=gen, dtype=t.dtype)
        elif name == "preacts_weight":
            sd[name] = 0.3 + 0.4 * torch.rand(t.shape, generator=gen, dtype=t.dtype)
        elif name == "preacts_bias":
            sd[name] = 0.2 * torch.rand(t.shape, generator=gen, dtype=t.dtype) - 0.1
        elif name == "mask":
            m = torch.ones_like(t)
            m.view(-1)[1] = 0.0
            sd[name] = m
        elif name in PARAMS:
            sd[name] = torch.randn(t.shape, generator=gen, dtype=t.dtype)
        else:
            sd[name] = t
    return sd


def _run(module, x, gy):
    xx = x.clone().requires_grad_(True)
    y = module(xx)
    y.backward(gy)
    return y.detach(), xx.grad, {n: p.grad for n, p in module.named_parameters() if p.requires_grad}


CASES = [(a, f, g) for a in QKAN_NAMES for f in (True, False) for g in (-1, 2)]


@pytest.mark.parametrize("ansatz,fast,group", CASES, ids=[f"{a}-{'fast' if f else 'born'}-g{g}" for a, f, g in CASES])
def test_solver_matches_exact(qkan, ansatz, fast, group):
    I, O, R, B = 4, 3, 2, 6
    flags = dict(group=group, fast_measure=fast, preact_trainable=ansatz == "px", ba_trainable=True,
                 postact_weight_trainable=True, postact_bias_trainable=True, c_dtype=C128, p_dtype=F64)
    theirs = _exact(qkan.QKANLayer(I, O, R, ansatz=QKAN_NAMES[ansatz], solver="exact", **flags))
    ours = _exact(qkan.QKANLayer(I, O, R, ansatz=QKAN_NAMES[ansatz], solver=SOLVER_NAME, **flags))
    gen = torch.Generator().manual_seed(len(ansatz) * 10 + fast + group)
    state = _random_state(theirs, gen)
    theirs.load_state_dict(state)
    ours.load_state_dict(state)
    x = 1.8 * torch.rand(B, I, generator=gen, dtype=F64) - 0.9
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    y_t, gx_t, g_t = _run(theirs, x, gy)
    y_o, gx_o, g_o = _run(ours, x, gy)
    assert y_o.dtype == F64
    torch.testing.assert_close(y_o, y_t, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx_o, gx_t, rtol=0, atol=1e-11)
    assert set(g_o) == set(g_t)
    for name in g_t:
        torch.testing.assert_close(g_o[name], g_t[name], rtol=0, atol=1e-11, msg=name)
    # qkan's forward_no_sum goes through the solver too
    torch.testing.assert_close(ours.forward_no_sum(x), theirs.forward_no_sum(x), rtol=0, atol=1e-12)


def test_solver_tiling_and_dtypes_follow_exact(qkan):
    from qkan.solver.exact import torch_exact_solver

    gen = torch.Generator().manual_seed(7)
    B, I, O, R, g = 5, 5, 2, 3, 3  # 5 inputs over 3 sets: tiling wraps around (i % g)
    x = torch.randn(B, I, generator=gen, dtype=F64)
    theta = torch.randn(g, R + 1, 2, generator=gen, dtype=F64)
    pw = 0.5 + torch.rand(g, R, generator=gen, dtype=F64)
    pb = 0.1 * torch.randn(g, R, generator=gen, dtype=F64)
    for pt in (False, True):
        kw = dict(ansatz="pz_encoding", preacts_trainable=pt, fast_measure=True, out_dim=O, dtype=C128)
        want = torch_exact_solver(x, theta, pw, pb, R, **kw)
        got = qkan.solver.get_solver(SOLVER_NAME)(x, theta, pw, pb, R, **kw)
        assert got.shape == (B, O, I) and got.dtype == want.dtype == F64
        torch.testing.assert_close(got, want.expand(B, O, I), rtol=0, atol=1e-12)
    # complex64 (qkan's default c_dtype): float32 result, like exact
    x32, th32 = x.float(), theta.float()
    kw = dict(ansatz="pz", out_dim=O, dtype=torch.complex64)
    want = torch_exact_solver(x32, th32, pw.float(), pb.float(), R, **kw)
    got = solve(x32, th32, pw.float(), pb.float(), R, **kw)
    assert got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want.expand(B, O, I), rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError, match="callable"):
        solve(x, theta, pw, pb, R, ansatz=lambda th: th)


def test_qkan_model_trains_on_our_solver(qkan):
    torch.manual_seed(0)
    fast = qkan.QKAN([3, 4, 1], reps=2, solver=SOLVER_NAME)
    exact = qkan.QKAN([3, 4, 1], reps=2, solver="exact")
    exact.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, generator=gen) * 2 - 1
    y = torch.sin(2 * x[:, :1]) * x[:, 1:2] + 0.5 * x[:, 2:]
    torch.testing.assert_close(fast(x), exact(x), rtol=1e-5, atol=1e-5)
    opt = torch.optim.Adam(fast.parameters(), lr=0.05)
    first = None
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(fast(x), y)
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    last = float(torch.nn.functional.mse_loss(fast(x), y).detach())
    assert last < 0.3 * first, (first, last)
    # the trained weights still give the same function on both solvers
    exact.load_state_dict(fast.state_dict())
    torch.testing.assert_close(fast(x), exact(x), rtol=1e-5, atol=1e-5)


def test_from_qkan_layer_keeps_weights_flags_and_function(qkan):
    gen = torch.Generator().manual_seed(3)
    for ansatz, group, p_dim in (("rpz", -1, 4), ("mix", 2, 2), ("px", -1, 2)):
        theirs = _exact(qkan.QKANLayer(
            4, 3, 2, ansatz=QKAN_NAMES[ansatz], group=group, preact_trainable=ansatz == "px", ba_trainable=True,
            postact_bias_trainable=True, c_dtype=C128, p_dtype=F64, p_dim=p_dim,
        ))
        state = _random_state(theirs, gen)
        theirs.load_state_dict(state)
        ours = from_qkan(theirs)
        assert isinstance(ours, qkan_fast.QKANLayer) and ours.ansatz == ansatz and ours.group == group
        trainable_t = {n for n, p in theirs.named_parameters() if p.requires_grad}
        assert {n for n, p in ours.named_parameters() if p.requires_grad} == trainable_t
        x = 1.8 * torch.rand(7, 4, generator=gen, dtype=F64) - 0.9
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)
        back = to_qkan(ours, c_dtype=C128, p_dim=p_dim)
        assert tuple(back.theta.shape) == tuple(theirs.theta.shape)
        assert torch.equal(back(x), theirs(x))  # same solver, same parameters: identical
        assert torch.equal(from_qkan(back)(x), ours(x))


def test_round_trips_of_whole_models(qkan):
    torch.manual_seed(4)
    theirs = qkan.QKAN([3, 5, 2], reps=2, ansatz="pz_encoding", is_batchnorm=True, postact_weight_trainable=True,
                       c_dtype=C128, p_dtype=F64)
    gen = torch.Generator().manual_seed(5)
    for layer in theirs.layers:
        layer.load_state_dict(_random_state(layer, gen))
    x = torch.randn(16, 3, generator=gen, dtype=F64)
    theirs.train()
    theirs(x)  # moves the batchnorm running statistics away from their initial values
    theirs.eval()
    ours = from_qkan(theirs)
    assert isinstance(ours, qkan_fast.QKAN) and ours.width == [3, 5, 2] and not ours.training
    assert torch.equal(ours.layers[0].bn.running_mean, theirs.layers[0].bn.running_mean)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)
    x3 = torch.randn(2, 4, 3, dtype=F64)  # (B, C, n0) inputs too
    torch.testing.assert_close(ours(x3), theirs(x3), rtol=0, atol=1e-12)
    back = to_qkan(ours)
    assert isinstance(back, qkan.QKAN) and back.layers[0].c_dtype == C128 and not back.training
    assert torch.equal(back(x), theirs(x))
    # qkan_fast -> qkan (on our solver) -> qkan_fast
    fast = qkan_fast.QKAN([2, 3, 1], reps=3, ansatz="real", postact_bias_trainable=True, dtype=F64)
    with torch.no_grad():
        fast.layers[1].postact_bias.normal_()
        fast.layers[0].mask[0, 1] = 0.0
    via = to_qkan(fast, solver=SOLVER_NAME)
    z = torch.randn(9, 2, dtype=F64)
    torch.testing.assert_close(via(z), fast(z), rtol=0, atol=1e-12)
    again = from_qkan(via)
    assert torch.equal(again(z), fast(z))
    assert all(a.ansatz == "real" and a.postact_bias_trainable for a in again.layers)


def test_conversion_keeps_base_activations(qkan):
    x = torch.randn(5, 3, dtype=F64)
    for act in ("gelu", "tanh", torch.nn.PReLU(init=0.3, dtype=F64)):
        theirs = qkan.QKANLayer(3, 2, 2, base_activation=act, c_dtype=C128, p_dtype=F64)
        ours = from_qkan(theirs)
        if isinstance(act, str):
            assert ours.base_activation_spec == act
        else:  # a module (with its own parameters) is copied, not shared
            assert ours.base_activation is not theirs.base_activation
            assert float(ours.state_dict()["base_activation.weight"]) == 0.3
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(to_qkan(ours)(x), theirs(x), rtol=0, atol=1e-12)
    none = qkan_fast.QKANLayer(3, 2, 2, base_activation=None, dtype=F64)
    torch.testing.assert_close(to_qkan(none)(x), none(x), rtol=0, atol=1e-12)


def test_conversion_rejects_other_types(qkan):
    with pytest.raises(TypeError):
        from_qkan(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError):
        to_qkan(torch.nn.Linear(2, 2))
