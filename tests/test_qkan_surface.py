"""The rest of qkan 0.2.3's model surface on qkan_fast: `is_map=True` models, group=(1, n) layers,
and custom (callable) ansaetze on our solver. Held against qkan's own "exact" solver in float64 /
complex128 (qkan is the outside oracle), forward and gradients."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

import qkan_fast
from qkan_fast.integrations import qkan as integration
from qkan_fast.integrations.qkan import QKANMap, from_qkan, register, to_qkan

qkan = pytest.importorskip("qkan")

F64 = torch.float64
C128 = torch.complex128
TOL = dict(rtol=1e-10, atol=1e-12)
QKAN_NAMES = {"pz": "pz_encoding", "rpz": "rpz_encoding", "px": "px_encoding", "real": "real", "mix": "mix"}


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register()


def _complex128(model):
    """qkan switches `real` to bfloat16 compute at construction: compare in complex128."""
    for layer in model.modules():
        if isinstance(layer, qkan.QKANLayer):
            layer.c_dtype = C128
            layer._resolve_solver_fn()
    return model


def _random_state(model, seed: int) -> dict:
    """Random values for every parameter (|w*x + b| < 1 for |x| <= 0.9, for px; one pruned edge
    per QKAN layer); loaded into a model through load_state_dict so that qkan refreshes its flags."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            state[name] = t
        elif name.endswith("preacts_weight"):
            state[name] = 0.3 + 0.4 * torch.rand(t.shape, generator=gen, dtype=t.dtype)
        elif name.endswith("preacts_bias"):
            state[name] = 0.2 * torch.rand(t.shape, generator=gen, dtype=t.dtype) - 0.1
        elif name.endswith("mask"):
            m = torch.ones_like(t)
            m.view(-1)[1] = 0.0
            state[name] = m
        elif name.endswith(("running_var", "num_batches_tracked")):
            state[name] = t
        else:
            state[name] = torch.randn(t.shape, generator=gen, dtype=t.dtype)
    return state


def _x(batch: int, in_dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.8 * torch.rand(batch, in_dim, generator=gen, dtype=F64) - 0.9


def _run(module, x, seed: int = 0):
    """Output, input gradient and every trainable parameter's gradient of a random projection."""
    module.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_(True)
    y = module(xx)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    y.backward(gy)
    grads = {n: p.grad for n, p in module.named_parameters() if p.requires_grad}
    return y.detach(), xx.grad, grads


def _assert_same_run(ours, theirs, x):
    y_o, gx_o, g_o = _run(ours, x)
    y_t, gx_t, g_t = _run(theirs, x)
    torch.testing.assert_close(y_o, y_t, **TOL)
    torch.testing.assert_close(gx_o, gx_t, **TOL)
    assert set(g_o) == set(g_t)
    for name, g in g_t.items():
        assert g is not None and g_o[name] is not None, name
        # qkan's (1, n, ...) group storage is our (n, ...): same numbers, reshaped
        torch.testing.assert_close(g_o[name].reshape(g.shape), g, **TOL, msg=lambda m, name=name: f"{name}: {m}")
    return y_o


# --------------------------------------------------------------------------------------------
# is_map=True

MAP_CASES = [  # ansatz, fast_measure, preact_trainable, hidden, norm_out, is_batchnorm
    ("pz", True, False, 5, 0, False),
    ("mix", False, True, 3, 2, False),
    ("real", True, False, 4, 0, True),
    ("rpz", False, False, 0, 0, False),  # hidden=0: qkan allows it (the output is the last bias)
]


def _map_model(ansatz, fast, pt, hidden, norm_out, bn, solver="exact"):
    return _complex128(qkan.QKAN(
        [3, 4, 2, 2], reps=2, is_map=True, hidden=hidden, ansatz=QKAN_NAMES[ansatz], fast_measure=fast,
        preact_trainable=pt, norm_out=norm_out, is_batchnorm=bn, ba_trainable=True, postact_weight_trainable=True,
        postact_bias_trainable=True, solver=solver, c_dtype=C128, p_dtype=F64,
    ))


@pytest.mark.parametrize("case", MAP_CASES, ids=[f"{c[0]}-h{c[3]}-n{c[4]}{'-bn' if c[5] else ''}" for c in MAP_CASES])
def test_is_map_model_converts_and_matches_exact(case):
    theirs = _map_model(*case)
    theirs.load_state_dict(_random_state(theirs, seed=len(case[0]) + case[3]))
    ours = from_qkan(theirs)
    assert isinstance(ours, QKANMap) and isinstance(ours, qkan_fast.QKAN)
    assert ours.width == [3, 4, 2, 2] and ours.hidden == case[3] and len(ours.qkan_layers()) == 2
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x = _x(7, 3, seed=1)
    _assert_same_run(ours, theirs, x)
    # (B, C, n0) inputs, as qkan takes them
    x3 = _x(8, 3, seed=2).reshape(2, 4, 3)
    torch.testing.assert_close(ours(x3), theirs(x3), **TOL)
    # back to qkan: the same function, on exact and on our solver
    back = _complex128(to_qkan(ours, c_dtype=C128))
    assert back.is_map and back.hidden == case[3] and back.state_dict().keys() == theirs.state_dict().keys()
    torch.testing.assert_close(back(x), theirs(x), **TOL)
    on_ours = to_qkan(ours, solver="qkan_fast", c_dtype=C128)
    _assert_same_run(on_ours, theirs, x)


def test_is_map_model_on_our_solver_trains_like_exact():
    case = MAP_CASES[1]
    exact = _map_model(*case)
    fast = _map_model(*case, solver="qkan_fast")
    state = _random_state(exact, seed=3)
    exact.load_state_dict(state)
    fast.load_state_dict(state)
    x = _x(16, 3, seed=4)
    target = torch.sin(3 * x[:, :2])
    for model in (exact, fast):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), target).backward()
            opt.step()
    for (name, p_exact), p_fast in zip(exact.named_parameters(), fast.parameters()):
        torch.testing.assert_close(p_fast, p_exact, rtol=1e-9, atol=1e-11, msg=name)


def test_qkan_map_module_api():
    torch.manual_seed(5)
    model = QKANMap([2, 3, 4], hidden=6, reps=2, dtype=F64, engine="circuit")
    x = _x(5, 2, seed=6)
    assert model(x).shape == (5, 4)
    model.engine = "reference"
    assert [layer.engine for layer in model.qkan_layers()] == ["reference"]
    torch.testing.assert_close(model(x), from_qkan(to_qkan(model, c_dtype=C128))(x), **TOL)
    bigger = model.refine(3)
    assert bigger.qkan_layers()[0].reps == 3 and model.qkan_layers()[0].reps == 2
    torch.testing.assert_close(bigger(x), model(x), **TOL)  # pz: refine keeps the function
    assert model.prune_edges(1e30, x) == 2 * 3  # every edge of the QKAN layer; the head has none
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="three"):
        QKANMap([2, 3], hidden=4)
    with pytest.raises(ValueError, match="hidden"):
        QKANMap([2, 3, 1], hidden=-1)


# --------------------------------------------------------------------------------------------
# group=(1, n)

GROUP_CASES = [(a, f) for a in QKAN_NAMES for f in (True, False)]


@pytest.mark.parametrize("ansatz,fast", GROUP_CASES, ids=[f"{a}-{'fast' if f else 'born'}" for a, f in GROUP_CASES])
def test_group_one_by_n_matches_exact(ansatz, fast):
    # layer 0: n = 2 sets for 5 inputs (tiled i % 2); layer 1: n = 2 = in_dim (one set per input)
    kw = dict(reps=2, group=(1, 2), ansatz=QKAN_NAMES[ansatz], fast_measure=fast, preact_trainable=ansatz == "px",
              ba_trainable=True, postact_weight_trainable=True, c_dtype=C128, p_dtype=F64)
    # px needs every input in [-1, 1]: a hidden layer's outputs are not, so px gets the first layer only
    width = [5, 2] if ansatz == "px" else [5, 2, 3]
    theirs = _complex128(qkan.QKAN(width, **kw))
    fast_solver = _complex128(qkan.QKAN(width, solver="qkan_fast", **kw))
    assert tuple(theirs.layers[0].theta.shape[:2]) == (1, 2)
    state = _random_state(theirs, seed=len(ansatz) + fast)
    theirs.load_state_dict(state)
    fast_solver.load_state_dict(state)
    x = _x(6, 5, seed=7)
    _assert_same_run(fast_solver, theirs, x)  # qkan's model on our solver
    ours = from_qkan(theirs)
    assert [layer.group for layer in ours.layers] == [2] * len(ours.layers)
    _assert_same_run(ours, theirs, x)
    back = _complex128(to_qkan(ours, c_dtype=C128))
    torch.testing.assert_close(back(x), theirs(x), **TOL)
    # qkan loads the original (1, n, ...) state into the converted (n, ...) layout, and back
    back.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(back.state_dict())


def test_group_layouts_without_equivalent_are_refused():
    layer = qkan.QKANLayer(3, 2, reps=2, group=(2, 2), c_dtype=C128, p_dtype=F64)  # (O, n), n != I
    with pytest.raises(NotImplementedError, match=r"\(1, n\)"):
        from_qkan(layer)


# --------------------------------------------------------------------------------------------
# custom (callable) ansatz


def _edge_ansatz(theta):
    """A custom ansatz as qkan calls it (theta only, tiled to (O, I, ...)): per-edge values (1, O, I)
    that qkan's layer broadcasts over the batch."""
    return torch.tanh(theta[..., 0] * theta[..., 1]).sum(-1).unsqueeze(0)


def test_custom_ansatz_on_our_solver_falls_back_to_exact_with_one_warning(monkeypatch):
    monkeypatch.setattr(integration, "_FALLBACK_WARNED", False)
    kw = dict(reps=2, ansatz=_edge_ansatz, theta_size=[3, 4, 3, 2], postact_weight_trainable=True, c_dtype=C128,
              p_dtype=F64)
    theirs = qkan.QKANLayer(4, 3, solver="exact", **kw)
    ours = qkan.QKANLayer(4, 3, solver="qkan_fast", **kw)
    ours.load_state_dict(theirs.state_dict())
    x = _x(5, 4, seed=8)
    with pytest.warns(RuntimeWarning, match="custom .callable. ansatz"):
        _assert_same_run(ours, theirs, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: no second warning
        ours(x)
        qkan.QKANLayer(4, 3, solver="qkan_fast", **kw)(x)
    # the built-in ansaetze still run our kernels (no exact fallback)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qkan.QKANLayer(4, 3, reps=2, solver="qkan_fast", c_dtype=C128, p_dtype=F64)(x)
    # our own modules have no such ansatz: conversion says why
    with pytest.raises(NotImplementedError, match="callable"):
        from_qkan(theirs)


def _callable_solver(x, theta, preacts_weight, preacts_bias, reps, **kwargs):
    """A user's callable solver (qkan calls it directly): here qkan's exact solver itself."""
    from qkan.solver.exact import torch_exact_solver

    return torch_exact_solver(x, theta, preacts_weight, preacts_bias, reps, dtype=C128, **kwargs)


def test_callable_solver_models_convert_in_the_usual_layout():
    theirs = qkan.QKANLayer(3, 2, reps=2, solver=_callable_solver, theta_size=[2, 3, 3, 2], p_dtype=F64,
                            c_dtype=C128)
    theirs.load_state_dict(_random_state(theirs, seed=9))
    ours = from_qkan(theirs)
    _assert_same_run(ours, theirs, _x(5, 3, seed=10))
    odd = qkan.QKANLayer(3, 2, reps=2, solver=_callable_solver, theta_size=[4, 3], p_dtype=F64)
    with pytest.raises(NotImplementedError, match="theta_size"):
        from_qkan(odd)
