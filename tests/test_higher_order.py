"""Higher-order derivatives through the engines (python/qkan_fast/higher_order.py).

truth: finite differences of our own first (and second) derivatives (gradgradcheck, float64), and
the reference engine, whose complex-arithmetic torch graph autograd differentiates to any order
(physics-informed losses: u_xx and its parameter gradient). On the circuit engine these run the
jet kernels (tests/test_jets.py holds them to the reference order by order); gradgradcheck over
the parameters also exercises the torch forms that remain for Hessians in theta."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import qkan_fast

F64 = torch.float64
ANSATZE = ("pz", "rpz", "px", "real", "mix")


def _inputs(B: int, I: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (1.6 * torch.rand(B, I, generator=g, dtype=F64) - 0.8).requires_grad_()  # inside px's domain


def _functional(model: torch.nn.Module):
    """(fn(x, *params), params): the model as a function of its input and trainable parameters."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]

    def fn(x, *ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x,))

    return fn, params


CASES = [(e, a, f, pt) for e, a, f, pt in itertools.product(("circuit", "spectral"), ANSATZE, (True, False), (False, True))
         if not (e == "spectral" and pt)]  # the spectral engine needs frozen encodings


@pytest.mark.parametrize("engine,ansatz,fast,pt", CASES)
def test_gradgradcheck_layer(engine, ansatz, fast, pt):
    layer = qkan_fast.QKANLayer(2, 2, reps=2, ansatz=ansatz, fast_measure=fast, preact_trainable=pt, engine=engine,
                                postact_weight_trainable=True, dtype=F64, seed=1)
    fn, params = _functional(layer)
    assert gradgradcheck(fn, (_inputs(3, 2, 0), *params), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fast", [True, False])
def test_gradgradcheck_grouped_and_network(fast):
    model = qkan_fast.QKAN([2, 2, 1], reps=2, group=2, fast_measure=fast, engine="circuit", dtype=F64, seed=2)
    fn, params = _functional(model)
    assert gradgradcheck(fn, (_inputs(3, 2, 1), *params), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("engine", ["circuit", "spectral"])
def test_third_order_through_input_derivative(engine):
    """gradgradcheck of x -> du/dx checks the third derivatives a second-order PDE loss needs."""
    layer = qkan_fast.QKANLayer(2, 1, reps=2, engine=engine, dtype=F64, seed=3)
    fn, params = _functional(layer)

    def u_x(x, *ps):
        (g,) = torch.autograd.grad(fn(x, *ps).sum(), x, create_graph=True)
        return g

    assert gradcheck(u_x, (_inputs(3, 2, 2), *params), eps=1e-6, atol=1e-5, rtol=1e-4)
    assert gradgradcheck(u_x, (_inputs(3, 2, 2), *params), eps=1e-6, atol=1e-5, rtol=1e-4)


def _laplacian_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """sum over points of (u_xx + u_yy)^2: a 2-D Poisson residual with a zero source."""
    u = model(x)
    (grad_u,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    lap = sum(torch.autograd.grad(grad_u[:, d].sum(), x, create_graph=True)[0][:, d] for d in range(x.shape[1]))
    return lap.square().sum()


@pytest.mark.parametrize("ansatz,fast,pt", [(a, f, pt) for a in ANSATZE for f in (True, False) for pt in (False, True)])
@pytest.mark.parametrize("engine", ["auto", "circuit", "spectral"])
def test_poisson_loss_gradient_matches_reference(engine, ansatz, fast, pt):
    if engine == "spectral" and pt:
        pytest.skip("the spectral engine needs frozen encodings")
    kw = dict(reps=2, ansatz=ansatz, fast_measure=fast, preact_trainable=pt, dtype=F64, seed=4)
    ours = qkan_fast.QKAN([2, 3, 1], engine=engine, **kw)
    ref = qkan_fast.QKAN([2, 3, 1], engine="reference", **kw)
    x = _inputs(16, 2, 5)
    loss, loss_ref = _laplacian_loss(ours, x), _laplacian_loss(ref, x)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-9, atol=1e-12)
    names = [n for n, p in ours.named_parameters() if p.requires_grad]
    got = torch.autograd.grad(loss, [ours.get_parameter(n) for n in names], allow_unused=True)
    want = torch.autograd.grad(loss_ref, [ref.get_parameter(n) for n in names], allow_unused=True)
    for name, g, w in zip(names, got, want):
        if w is None:
            assert g is None or torch.count_nonzero(g) == 0, name
        else:
            # third derivatives near a pole of the fast measure (|alpha| ~ 4e-3 in the real-ansatz
            # network) magnify rounding: held to 1e-6 of the gradient's scale
            err, scale = float((g - w).abs().max()), float(w.abs().max())
            assert err <= 1e-6 * max(scale, 1e-12), f"{name}: max abs error {err:.3e}, scale {scale:.3g}"


def test_float32_second_derivative_close_to_float64():
    layer64 = qkan_fast.QKANLayer(3, 2, reps=3, engine="circuit", dtype=F64, seed=6)
    layer32 = qkan_fast.QKANLayer(3, 2, reps=3, engine="circuit")
    layer32.load_state_dict(layer64.state_dict())
    x64 = _inputs(8, 3, 7)
    x32 = x64.detach().float().requires_grad_()
    lap64 = _laplacian_loss(layer64, x64)
    lap32 = _laplacian_loss(layer32, x32)
    torch.testing.assert_close(lap32.double(), lap64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("ansatz", ["pz", "rpz", "px", "real", "mix"])
@pytest.mark.parametrize("encode", [False, True])
@pytest.mark.parametrize("grouped", [False, True])
def test_bloch_circuit_is_the_born_value_of_the_reference_circuit(ansatz, encode, grouped):
    """The torch form of layers without a spectral form (higher_order.bloch_circuit) against the
    reference's complex amplitudes, Z = |alpha|^2 - |beta|^2, per-edge and grouped parameters."""
    from qkan_fast import higher_order, reference
    from qkan_fast.common import theta_shape

    g = torch.Generator().manual_seed(7)
    B, O, I, R = 5, 3, 4, 3
    encode = encode or ansatz == "rpz"
    sets = (2,) if grouped else (O, I)
    theta = torch.randn(*sets, *theta_shape(ansatz, O, I, R)[2:], generator=g, dtype=torch.float64)
    w = 0.5 + 0.4 * torch.rand(*sets, R, generator=g, dtype=torch.float64)
    b = 0.1 * torch.randn(*sets, R, generator=g, dtype=torch.float64)
    if not encode:
        w = torch.ones_like(w)
    x = 1.6 * torch.rand(B, I, generator=g, dtype=torch.float64) - 0.8
    z = higher_order.bloch_circuit(x, theta, w, b, ansatz=ansatz, reps=R, encode=encode)
    alpha, beta = reference.amplitudes(x, theta, w, b, ansatz=ansatz, reps=R, out_dim=O,
                                       preact_trainable=encode and ansatz != "rpz")
    want = alpha.abs() ** 2 - beta.abs() ** 2
    torch.testing.assert_close(z.expand_as(want), want, rtol=0, atol=1e-13)
