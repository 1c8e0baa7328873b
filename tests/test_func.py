"""torch.func over our engines: vmap, grad, jacrev (and vmap(grad), vmap over parameter sets) on
QKANLayer, QKAN and a qkan model on our solver, held against engine="reference" (pure torch, which
every transform supports) in float64. Forward mode (jacfwd, hessian, jvp) and nested reverse mode
run the twice-differentiable torch form (higher_order.postacts_torch), also held to the reference."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, vmap

import qkan_fast
import qkan_fast.reference

F64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)
# ansatz, fast_measure, preact_trainable (px keeps its encodings in [-1, 1] for |x| <= 0.9)
LAYER_CASES = [("pz", True, False), ("mix", False, True), ("rpz", True, False), ("real", False, False),
               ("px", True, False)]
IDS = [f"{a}-{'fast' if f else 'born'}{'-pt' if p else ''}" for a, f, p in LAYER_CASES]


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Random values in every parameter but the mask, so that no gradient is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("mask"):
                continue
            if name.endswith("preacts_weight"):
                p.copy_(0.6 + 0.3 * torch.rand(p.shape, generator=gen, dtype=p.dtype))
            elif name.endswith("preacts_bias"):
                p.copy_(0.1 * torch.rand(p.shape, generator=gen, dtype=p.dtype) - 0.05)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _twins(make, seed: int, engine: str = "circuit"):
    """(ours on `engine`, the same module on the reference engine) with equal random parameters."""
    ours = make(engine)
    _randomise(ours, seed)
    ref = make("reference")
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _x(batch: int, in_dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.8 * torch.rand(batch, in_dim, generator=gen, dtype=F64) - 0.9


def _layer_maker(ansatz, fast, pt, group=-1):
    def make(engine):
        return qkan_fast.QKANLayer(3, 2, reps=2, ansatz=ansatz, fast_measure=fast, preact_trainable=pt, group=group,
                                   postact_weight_trainable=True, postact_bias_trainable=True, engine=engine,
                                   dtype=F64)
    return make


def _params(module):
    return {n: p.detach() for n, p in module.named_parameters()}


@pytest.mark.parametrize("ansatz,fast,pt", LAYER_CASES, ids=IDS)
def test_layer_grad_jacrev_vmap_in_x(ansatz, fast, pt):
    ours, ref = _twins(_layer_maker(ansatz, fast, pt), seed=1)
    x = _x(5, 3, seed=2)
    torch.testing.assert_close(grad(lambda v: ours(v).square().sum())(x), grad(lambda v: ref(v).square().sum())(x),
                               **TOL)
    jac = jacrev(ours)(x)
    assert jac.shape == (5, 2, 5, 3) and jac.abs().sum() > 0
    torch.testing.assert_close(jac, jacrev(ref)(x), **TOL)
    # vmap over an outer index, in dim 0 and in dim 1 (the rule folds it into the kernel's batch)
    xs = torch.stack([x, x.flip(0), 0.5 * x])  # [3, 5, 3]
    # expected values by a loop (the reference's px domain check cannot run under vmap)
    want = torch.stack([ref(v) for v in xs])
    torch.testing.assert_close(vmap(ours)(xs), want, **TOL)
    torch.testing.assert_close(vmap(ours, in_dims=1)(xs.transpose(0, 1)), want, **TOL)
    # per-sample input gradients: vmap of grad over single rows
    row_grad = vmap(grad(lambda r: ours(r[None]).sum()))(x)
    torch.testing.assert_close(row_grad, torch.stack([grad(lambda r: ref(r[None]).sum())(r) for r in x]), **TOL)


@pytest.mark.parametrize("ansatz,fast,pt", LAYER_CASES[:3], ids=IDS[:3])
def test_layer_grad_jacrev_in_parameters(ansatz, fast, pt):
    ours, ref = _twins(_layer_maker(ansatz, fast, pt), seed=3)
    x = _x(4, 3, seed=4)
    p_ours, p_ref = _params(ours), _params(ref)

    def loss(module):
        return lambda p: functional_call(module, p, (x,)).square().sum()

    g_ours, g_ref = grad(loss(ours))(p_ours), grad(loss(ref))(p_ref)
    assert set(g_ours) == set(g_ref)
    for name in g_ref:
        torch.testing.assert_close(g_ours[name], g_ref[name], **TOL, msg=lambda m, name=name: f"{name}: {m}")
    assert g_ours["theta"].abs().sum() > 0
    j_ours = jacrev(lambda p: functional_call(ours, p, (x,)))(p_ours)
    j_ref = jacrev(lambda p: functional_call(ref, p, (x,)))(p_ref)
    for name in j_ref:
        torch.testing.assert_close(j_ours[name], j_ref[name], **TOL, msg=lambda m, name=name: f"{name}: {m}")


def test_per_sample_parameter_gradients_and_ensembles():
    ours, ref = _twins(_layer_maker("pz", True, True), seed=5)
    x = _x(6, 3, seed=6)
    p_ours, p_ref = _params(ours), _params(ref)

    def per_sample(module, params):
        return vmap(grad(lambda p, r: functional_call(module, p, (r[None],)).sum()), in_dims=(None, 0))(params, x)

    g_ours, g_ref = per_sample(ours, p_ours), per_sample(ref, p_ref)
    for name in g_ref:
        assert g_ours[name].shape == (6, *p_ref[name].shape)
        torch.testing.assert_close(g_ours[name], g_ref[name], **TOL, msg=lambda m, name=name: f"{name}: {m}")
    # the per-sample gradients sum to the batch gradient
    batch = grad(lambda p: functional_call(ours, p, (x,)).sum())(p_ours)
    torch.testing.assert_close(g_ours["theta"].sum(0), batch["theta"], **TOL)
    # an ensemble: vmap over stacked parameter sets (run once per set by the rule)
    thetas = torch.stack([p_ours["theta"], 0.5 * p_ours["theta"], -p_ours["theta"]])

    def ensemble(module, params):
        return vmap(lambda t: functional_call(module, {**params, "theta": t}, (x,)))(thetas)

    torch.testing.assert_close(ensemble(ours, p_ours), ensemble(ref, p_ref), **TOL)


def test_grouped_layer_and_postacts():
    ours, ref = _twins(_layer_maker("pz", False, True, group=2), seed=7)
    x = _x(4, 3, seed=8)
    torch.testing.assert_close(jacrev(ours)(x), jacrev(ref)(x), **TOL)
    # the reference module's postacts needs out_dim for grouped parameters: call the oracle directly
    def ref_postacts(v):
        return qkan_fast.reference.postacts(v, ref.theta, ref.preacts_weight, ref.preacts_bias, ansatz="pz", reps=2,
                                            fast_measure=False, preact_trainable=True, out_dim=2)

    torch.testing.assert_close(jacrev(ours.postacts)(x), jacrev(ref_postacts)(x), **TOL)
    xs = torch.stack([x, -x])
    torch.testing.assert_close(vmap(ours.postacts)(xs), vmap(ref_postacts)(xs), **TOL)


def test_spectral_engine_under_transforms():
    # the spectral ops have no torch.func rules: under a transform the circuit kernels run
    ours, ref = _twins(_layer_maker("pz", False, False), seed=9, engine="spectral")
    x = _x(4, 3, seed=10)
    torch.testing.assert_close(ours(x), ref(x), **TOL)
    torch.testing.assert_close(jacrev(ours)(x), jacrev(ref)(x), **TOL)
    torch.testing.assert_close(vmap(ours)(torch.stack([x, 2 * x])), vmap(ref)(torch.stack([x, 2 * x])), **TOL)


def test_qkan_network():
    def make(engine):
        return qkan_fast.QKAN([2, 4, 3, 1], reps=2, ansatz="mix", postact_weight_trainable=True, ba_trainable=True,
                              engine=engine, dtype=F64)

    ours, ref = _twins(make, seed=11)
    x = _x(5, 2, seed=12)
    torch.testing.assert_close(jacrev(ours)(x), jacrev(ref)(x), **TOL)
    u = lambda module: (lambda r: module(r[None])[0, 0])  # noqa: E731  scalar field u(x, y)
    torch.testing.assert_close(vmap(grad(u(ours)))(x), vmap(grad(u(ref)))(x), **TOL)
    x3 = torch.stack([x, x.flip(0)])  # (C, B, n0) under vmap: ours flattens (B, n0) per index
    torch.testing.assert_close(vmap(ours)(x3), vmap(ref)(x3), **TOL)
    p_ours, p_ref = _params(ours), _params(ref)
    g_ours = grad(lambda p: functional_call(ours, p, (x,)).square().sum())(p_ours)
    g_ref = grad(lambda p: functional_call(ref, p, (x,)).square().sum())(p_ref)
    for name in g_ref:
        torch.testing.assert_close(g_ours[name], g_ref[name], **TOL, msg=lambda m, name=name: f"{name}: {m}")


def test_qkan_model_on_our_solver():
    qkan = pytest.importorskip("qkan")
    from qkan_fast.integrations.qkan import register

    register()
    register(engine="reference", name="qkan_fast_reference")
    torch.manual_seed(13)
    ours = qkan.QKAN([2, 3, 1], reps=2, solver="qkan_fast", preact_trainable=True, c_dtype=torch.complex128,
                     p_dtype=F64)
    _randomise(ours, seed=13)
    ref = qkan.QKAN([2, 3, 1], reps=2, solver="qkan_fast_reference", preact_trainable=True,
                    c_dtype=torch.complex128, p_dtype=F64)
    for model in (ours, ref):  # through load_state_dict: qkan then reads the nonzero postact_bias
        model.load_state_dict(ours.state_dict())
    x = _x(4, 2, seed=14)
    torch.testing.assert_close(jacrev(ours)(x), jacrev(ref)(x), **TOL)
    torch.testing.assert_close(vmap(ours)(torch.stack([x, -x])), vmap(ref)(torch.stack([x, -x])), **TOL)
    p_ours, p_ref = _params(ours), _params(ref)
    g_ours = grad(lambda p: functional_call(ours, p, (x,)).sum())(p_ours)
    g_ref = grad(lambda p: functional_call(ref, p, (x,)).sum())(p_ref)
    for name in g_ref:
        torch.testing.assert_close(g_ours[name], g_ref[name], **TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("case", LAYER_CASES, ids=IDS)
@pytest.mark.parametrize("engine", ["circuit", "spectral", "auto"])
def test_forward_mode_and_second_order(engine, case):
    if engine == "spectral" and (case[2] or case[0] == "rpz"):
        pytest.skip("the spectral engine needs frozen encodings (the twins get random rpz weights)")
    ours, ref = _twins(_layer_maker(*case), seed=15, engine=engine)
    x = _x(3, 3, seed=16)
    torch.testing.assert_close(jacfwd(ours)(x), jacfwd(ref)(x), **TOL)
    f, f_ref = (lambda v: ours(v).sum()), (lambda v: ref(v).sum())  # noqa: E731
    want = hessian(f_ref)(x)
    torch.testing.assert_close(hessian(f)(x), want, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(jacrev(jacrev(f))(x), want, rtol=1e-9, atol=1e-10)
    def grad_of_grad(m):
        return grad(lambda v: grad(lambda w: m(w[None]).sum())(v).square().sum())(x[0])

    torch.testing.assert_close(grad_of_grad(ours), grad_of_grad(ref), rtol=1e-9, atol=1e-10)
    _, tangent = torch.func.jvp(ours, (x,), (torch.ones_like(x),))
    torch.testing.assert_close(tangent, torch.func.jvp(ref, (x,), (torch.ones_like(x),))[1], **TOL)
    # the Hessian in the parameters too
    p_ours, p_ref = _params(ours), _params(ref)
    h = hessian(lambda p: functional_call(ours, p, (x,)).sum())(p_ours)
    h_ref = hessian(lambda p: functional_call(ref, p, (x,)).sum())(p_ref)
    for a in h_ref:
        for b in h_ref[a]:
            torch.testing.assert_close(h[a][b], h_ref[a][b], rtol=1e-8, atol=1e-10, msg=f"d2/d{a} d{b}")
    # outside the transforms the ordinary autograd path is unchanged
    xx = x.clone().requires_grad_(True)
    ours(xx).sum().backward()
    torch.testing.assert_close(xx.grad, grad(f)(x), **TOL)


def test_px_domain_is_checked_under_vmap():
    # the check reads values, which vmap cannot: the ops' vmap rules run it per vmapped index
    ours, _ = _twins(_layer_maker("px", True, True), seed=17)
    x = _x(4, 3, seed=18)
    assert x.abs().max() > 0.6
    torch.testing.assert_close(vmap(ours)(torch.stack([x, 0.5 * x])), torch.stack([ours(x), ours(0.5 * x)]), **TOL)
    with pytest.raises(ValueError, match="'px' needs encoded inputs"):
        vmap(ours)(torch.stack([x, 3 * x]))  # the second index leaves [-1, 1]
    with pytest.raises(ValueError, match="'px' needs encoded inputs"):
        vmap(grad(lambda r: ours(r[None]).sum()))(3 * x)
    # vmapped encodings: an ensemble over preacts_weight, one set of which leaves the domain
    params = _params(ours)
    weights = torch.stack([params["preacts_weight"], 3 * params["preacts_weight"]])
    with pytest.raises(ValueError, match="'px' needs encoded inputs"):
        vmap(lambda w: functional_call(ours, {**params, "preacts_weight": w}, (x,)))(weights)
