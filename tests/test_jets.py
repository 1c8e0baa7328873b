"""The jet kernels (Taylor mode in x, python/qkan_fast/jets.py, csrc/cpu/jet.cpp).

truth: the reference engine's complex-amplitude circuit (reference.postacts), differentiated in x
by autograd `order` times and then once more for every first gradient; finite differences
(gradcheck, gradgradcheck in float64); and, for whole physics-informed losses, the reference engine
end to end with the torch forms switched off, so that a pass through them cannot hide."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import qkan_fast
from qkan_fast import _C, higher_order, jets, reference
from qkan_fast.common import ANSATZE, theta_shape
from qkan_fast.pinn import laplacian

F64 = torch.float64
B, I, O, R = 6, 3, 2, 2


def _case(ansatz: str, encode: bool, dtype=F64, seed: int = 0, batch: int = B):
    """x, scale, theta, pre_w, pre_b, weight with encoded angles inside px's domain."""
    g = torch.Generator().manual_seed(seed)
    x = 1.6 * torch.rand(batch, I, generator=g, dtype=dtype) - 0.8
    scale = torch.randn(batch, I, generator=g, dtype=dtype)
    theta = torch.randn(theta_shape(ansatz, O, I, R), generator=g, dtype=dtype)
    pre_w = 0.6 + 0.3 * torch.rand(O, I, R, generator=g, dtype=dtype)
    pre_b = 0.1 * torch.randn(O, I, R, generator=g, dtype=dtype)
    if not encode:
        pre_w, pre_b = torch.ones_like(pre_w), torch.zeros_like(pre_b)
    weight = torch.randn(O, I, generator=g, dtype=dtype)
    return [x, scale, theta, pre_w, pre_b, weight]


def _reference_jet(x, scale, theta, pre_w, pre_b, weight, *, ansatz, fast, encode, order, per_input=False):
    """sum_i weight * scale * d^order phi / dx^order [B, O] by autograd of the reference circuit (per
    output o, every (b, i) entry of x enters exactly one edge, so the gradient of the sum is per
    edge); with per_input, the sum over o instead, [B, I]."""
    cols = []
    for o in range(theta.shape[0]):
        xo = x.detach().clone().requires_grad_() if not x.requires_grad else x * 1.0
        sl = slice(o, o + 1)
        phi = reference.postacts(xo, theta[sl], pre_w[sl], pre_b[sl], ansatz=ansatz, reps=R, fast_measure=fast,
                                 preact_trainable=encode and ansatz != "rpz")[:, 0, :]  # [B, I]
        for _ in range(order):
            (phi,) = torch.autograd.grad(phi.sum(), xo, create_graph=True)
        cols.append(phi * scale * weight[o])  # [B, I]
    if per_input:
        return sum(cols)
    return torch.stack([c.sum(dim=1) for c in cols], dim=1)


@pytest.mark.parametrize("ansatz,fast,encode,order",
                         [c for c in itertools.product(ANSATZE, (True, False), (False, True), range(jets.MAX_ORDER))
                          if not (c[0] == "rpz" and not c[2])])  # rpz always encodes
def test_jet_and_its_gradients_match_the_reference(ansatz, fast, encode, order):
    ins = [t.requires_grad_() for t in _case(ansatz, encode, seed=order)]
    y = jets.circuit_jet(*ins, ANSATZE.index(ansatz), R, fast, encode, order)
    want = _reference_jet(*ins, ansatz=ansatz, fast=fast, encode=encode, order=order)
    torch.testing.assert_close(y, want, rtol=1e-9, atol=1e-10)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    wrt = ins if encode else [ins[0], ins[1], ins[2], ins[5]]
    got = torch.autograd.grad(y, wrt, cot)
    ref = torch.autograd.grad(want, wrt, cot, allow_unused=True)
    for name, g, w in zip(("x", "scale", "theta", "pre_w", "pre_b", "weight") if encode else
                          ("x", "scale", "theta", "weight"), got, ref):
        w = torch.zeros_like(g) if w is None else w
        err, size = float((g - w).abs().max()), float(w.abs().max())
        # high derivatives of the fast measure's square roots magnify rounding near a pole: `real`,
        # seed 2, has an edge at 1 - |Z| = 4e-5, where grad_x of order 2 (the third derivative)
        # differs from the reference's by 1.3e-8 (finite differences cannot tell the two apart)
        tol = 1e-7 if fast and order >= 2 else 1e-8
        assert err <= tol * max(size, 1.0), f"{name}: max abs error {err:.2e}, scale {size:.2g}"


@pytest.mark.parametrize("ansatz,fast", [("pz", True), ("px", True), ("real", False), ("mix", True)])
@pytest.mark.parametrize("order", [1, 2])
def test_jet_ops_gradcheck_and_gradgradcheck(ansatz, fast, order):
    """Every input at once: the second derivatives with cotangents on theta, pre_w and pre_b take
    the torch form (jet_backward_torch_form), those on x, scale and weight the kernels."""
    ins = [t.requires_grad_() for t in _case(ansatz, True, seed=3, batch=3)]

    def fn(*ts):
        return jets.circuit_jet(*ts, ANSATZE.index(ansatz), R, fast, True, order)

    assert gradcheck(fn, ins, eps=1e-6, atol=1e-5, rtol=1e-4)
    assert gradgradcheck(fn, ins, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("ansatz,fast,pt,group", [(a, f, pt, -1) for a in ANSATZE for f in (True, False)
                                                  for pt in (False, True)] + [("pz", True, True, 2), ("mix", False, True, 1)])
def test_poisson_loss_gradient_runs_on_the_jet_kernels(monkeypatch, ansatz, fast, pt, group):
    """d/d(parameters) of (u_xx + u_yy)^2 on the circuit engine, trainable encodings and shared
    parameter sets included: third derivatives, equal to the reference engine's, with every torch
    form of higher_order.py disabled (any use raises)."""
    kw = dict(reps=2, ansatz=ansatz, fast_measure=fast, preact_trainable=pt, group=group, dtype=F64, seed=4)
    ours = qkan_fast.QKAN([2, 3, 1], engine="circuit", **kw)
    ref = qkan_fast.QKAN([2, 3, 1], engine="reference", **kw)
    g = torch.Generator().manual_seed(5)
    x = (1.6 * torch.rand(16, 2, generator=g, dtype=F64) - 0.8).requires_grad_()
    loss_ref = laplacian(ref, x).square().sum()
    names = [n for n, p in ref.named_parameters() if p.requires_grad]
    want = torch.autograd.grad(loss_ref, [ref.get_parameter(n) for n in names], allow_unused=True)

    def refuse(*args, **kwargs):
        raise AssertionError("a torch form ran where the jet kernels should have")

    monkeypatch.setattr(higher_order, "_derivative_of_vjp", refuse)
    loss = laplacian(ours, x).square().sum()
    got = torch.autograd.grad(loss, [ours.get_parameter(n) for n in names], allow_unused=True)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-9, atol=1e-12)
    for name, a, w in zip(names, got, want):
        w = torch.zeros_like(a) if w is None else w
        err, size = float((a - w).abs().max()), float(w.abs().max())
        assert err <= 1e-6 * max(size, 1e-12), f"{name}: max abs error {err:.3e}, scale {size:.3g}"


def test_float32_jets_close_to_float64():
    ins64 = _case("pz", True, seed=6)
    ins32 = [t.float() for t in ins64]
    for order in range(jets.MAX_ORDER + 1):
        y64 = jets.circuit_jet(*ins64, 0, R, True, True, order)
        y32 = jets.circuit_jet(*ins32, 0, R, True, True, order)
        torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4 * float(y64.abs().max()))


def test_empty_batch_gives_empty_output_and_zero_parameter_gradients():
    ins = [t.requires_grad_() for t in _case("pz", True, batch=0)]
    y = jets.circuit_jet(*ins, 0, R, True, True, 2)
    assert y.shape == (0, O)
    grads = torch.autograd.grad(y.sum(), ins[2:])
    assert all(g.shape == t.shape and not g.any() for g, t in zip(grads, ins[2:]))


def test_orders_beyond_the_kernels_are_refused_with_the_range():
    ins = _case("pz", True)
    with pytest.raises(ValueError, match=r"order must be in \[0, 4\], got 5"):
        jets.circuit_jet(*ins, 0, R, True, True, jets.MAX_ORDER + 1)
    grad = torch.ones(B, O, dtype=F64)
    with pytest.raises(ValueError, match=r"order must be in \[0, 3\] with grad_x, got 4"):
        jets.circuit_jet_backward(grad, *ins, 0, R, True, True, jets.MAX_ORDER, [True] + [False] * 5)
    assert _C.jet_max_order() == jets.MAX_ORDER == 4


def test_derivatives_beyond_the_kernels_take_the_torch_form():
    """A fifth x-derivative needs phi^(5): past the kernels, the op falls back to the torch form and
    still agrees with the reference."""
    ins = _case("rpz", True, seed=8)
    x = ins[0].clone().requires_grad_()
    out = jets.circuit_jet(x, *ins[1:], 1, R, True, True, jets.MAX_ORDER - 1).sum()
    for _ in range(2):  # orders MAX-1 -> MAX (kernels) -> MAX+1 (torch form)
        (d,) = torch.autograd.grad(out, x, create_graph=True)
        out = d.sum()
    # d[b, i] = sum_o weight[o, i] * scale[b, i] * phi_oi^(MAX+1)(x[b, i])
    want = _reference_jet(*ins, ansatz="rpz", fast=True, encode=True, order=jets.MAX_ORDER + 1, per_input=True)
    torch.testing.assert_close(d, want, rtol=1e-7, atol=1e-8 * float(want.detach().abs().max()))


def test_non_contiguous_inputs_and_two_threads_give_the_same_bits():
    """Transposed views work as their contiguous copies do, and each output is summed by one
    thread in a fixed order, so 1 and 2 threads agree bit for bit (the README's determinism)."""
    ins = _case("mix", True, seed=9, batch=40)
    x_t = ins[0].t().contiguous().t()  # same values, column-major
    assert not x_t.is_contiguous()
    grad = torch.randn(40, O, generator=torch.Generator().manual_seed(2), dtype=F64)
    runs = []
    threads = torch.get_num_threads()
    try:
        for n, x in ((1, ins[0]), (2, x_t)):
            torch.set_num_threads(n)
            y = jets.circuit_jet(x, *ins[1:], 4, R, True, True, 2)
            g = jets.circuit_jet_backward(grad, x, *ins[1:], 4, R, True, True, 2, [True] * 6)
            runs.append((y, *g))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("ansatz,fast", [("pz", True), ("rpz", False), ("real", True), ("mix", True)])
def test_postacts_second_derivatives_run_on_the_jet_kernels(monkeypatch, ansatz, fast):
    """qkan's solver interface returns every edge's phi (postacts); a Laplacian of a weighted sum of
    them and its parameter gradient run the per-edge jet kernels (circuit_jet_postacts), equal to
    the reference engine's, with the torch forms disabled."""
    g = torch.Generator().manual_seed(11)
    theta = torch.randn(theta_shape(ansatz, O, 2, R), generator=g, dtype=F64, requires_grad=True)
    pre_w = (0.6 + 0.3 * torch.rand(O, 2, R, generator=g, dtype=F64)).requires_grad_()
    pre_b = (0.1 * torch.randn(O, 2, R, generator=g, dtype=F64)).requires_grad_()
    mix = torch.randn(O, 2, generator=g, dtype=F64)
    x = (1.6 * torch.rand(9, 2, generator=g, dtype=F64) - 0.8).requires_grad_()

    def loss(engine):
        phi = qkan_fast.daruan_postacts(x, theta, pre_w, pre_b, ansatz=ansatz, reps=R, fast_measure=fast,
                                        preact_trainable=True, engine=engine)
        u = (phi * mix).sum(dim=(1, 2)).square()  # [B]: a nonlinear read-out of every edge
        (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        lap = sum(torch.autograd.grad(du[:, d].sum(), x, create_graph=True)[0][:, d] for d in range(2))
        return lap.square().sum()

    want_loss = loss("reference")
    want = torch.autograd.grad(want_loss, [theta, pre_w, pre_b])
    monkeypatch.setattr(higher_order, "_derivative_of_vjp", lambda *a, **k: pytest.fail("a torch form ran"))
    got_loss = loss("circuit")
    got = torch.autograd.grad(got_loss, [theta, pre_w, pre_b])
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-9, atol=1e-12)
    for a, w in zip(got, want):
        torch.testing.assert_close(a, w, rtol=1e-7, atol=1e-9 * float(w.abs().max()))


@pytest.mark.parametrize("ansatz", ["pz", "real", "mix"])
@pytest.mark.parametrize("engine", ["circuit", "spectral"])
def test_float32_laplacian_stays_accurate_near_the_fast_measure_poles(engine, ansatz):
    """The fast measure's square roots near a pole: taking |beta|^2 = (1 - Z) / 2 from a float32 Z
    lost all accuracy of u_xx there (errors of 1.5e3 on the jet kernels and 2e4 on the spectral
    form, against values of 61, for `real`); both take the smaller amplitude from X^2 + Y^2
    instead. float32 against float64, at the samples where every edge's amplitudes stay above 1e-4:
    at an amplitude's zero crossing |alpha(x)| has a kink, and float32 rounding of a layer's input
    (1e-7) picks its side (sample 203 here, |alpha| = 4e-8, flips the gradient on any engine)."""
    m64 = qkan_fast.QKAN([2, 4, 1], ansatz=ansatz, engine="reference", dtype=F64, seed=1)
    m32 = qkan_fast.QKAN([2, 4, 1], ansatz=ansatz, engine=engine, seed=1)
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    x = torch.rand(256, 2, generator=torch.Generator().manual_seed(3))
    lap64 = laplacian(m64, x.double().requires_grad_()).detach()
    lap32 = laplacian(m32, x.clone().requires_grad_()).detach().double()
    h, smallest = x.double(), torch.ones(x.shape[0], dtype=F64)
    for layer in m64.layers:
        alpha, beta = reference.amplitudes(h, layer.theta.detach(), None, None, ansatz=ansatz, reps=layer.reps,
                                           preact_trainable=False)
        smallest = torch.minimum(smallest, torch.minimum(alpha.abs(), beta.abs()).flatten(1).min(dim=1).values)
        h = layer(h).detach()
    keep = smallest > 1e-4
    assert int(keep.sum()) >= 250
    if ansatz == "real":  # its real amplitudes cross zero: the case that failed comes close to a pole
        assert float(smallest[keep].min()) < 1e-3
    scale = float(lap64.abs().max())
    assert float((lap32 - lap64)[keep].abs().max()) <= 1e-4 * scale
