"""Higher-order derivatives: autograd formulas for the engines' backward ops.

First derivatives run in the fused kernels (circuit.py, spectral.py), and nothing here touches
that path. When the graph of a gradient is kept (`create_graph=True`: input derivatives inside a
physics-informed loss, `gradgradcheck`, Hessian-vector products), autograd differentiates the
backward ops themselves. Each backward op returns J^T g, the vector-Jacobian product of a
function f; its derivative is taken here as the derivative of autograd's J^T g of a torch form of
the same f, which is differentiable to any order and materialises (B, O, I) only in these passes:

- where the spectral identity holds (encodings frozen at w = 1: docs/math.md), the spectral form.
  Each edge is Z(u) = C0 + sum_k C_k cos(ku) + C_{R+k} sin(ku) of its data angle u, with the
  coefficients C from the coefficient kernel, and phi = Z (Born) or
  sqrt((1+Z)/2) - sqrt((1-Z)/2) (fast measure). Derivatives in x are then a few trigonometric
  terms per edge, so u_xx and its parameter gradient cost little more than the layer itself;
- the coefficient kernel's own backward, needed only for second derivatives in theta, is
  differentiated through the coefficients of the circuit sampled at the 2R+1 angles
  2 pi m / (2R+1) by the reference simulator and a DFT (an exact interpolation: Z is a
  trigonometric polynomial of degree R);
- the circuit engine's backward on the CPU (trainable encodings included) has no torch form on
  its main path: its derivative runs the jet kernels (jets.py, Taylor mode in x), unless a
  cotangent comes on a parameter gradient (a Hessian in theta) or the order passes theirs. Those
  cases, and the circuit engine off the CPU, take the circuit
  as rotations of the Bloch vector (bloch_circuit), the theta gates folded per repetition; exact,
  real arithmetic, but (B, O, I) tensors per repetition.

At a pole of the fast measure (|alpha| or |beta| = 0) its derivatives are unbounded; as in the
kernels, a vanished amplitude contributes gradient 0 there.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from . import circuit, jets, reference, spectral
from .common import ANSATZE, expand_group

# --------------------------------------------------------------------------------------------
# twice-differentiable torch forms of the functions the backward ops differentiate


def _angle(x: Tensor, px: bool) -> Tensor:
    return torch.arccos(x) if px else x


def _born_of_coefficients(coef_z: Tensor, u: Tensor, reps: int) -> Tensor:
    """Z [B, O, I] from coef_z [O, I, 2R+1] (rows 1, cos ku, sin ku) and angles u [B, I]."""
    k = torch.arange(1, reps + 1, dtype=u.dtype, device=u.device)
    ku = u[..., None] * k  # [B, I, R]
    return (coef_z[..., 0] + torch.einsum("bik,oik->boi", torch.cos(ku), coef_z[..., 1:reps + 1])
            + torch.einsum("bik,oik->boi", torch.sin(ku), coef_z[..., reps + 1:]))


def _measure(z: Tensor, fast: bool, xy: Optional[tuple] = None, pole: Optional[float] = None) -> Tensor:
    """phi from the Born value: z itself, or |alpha| - |beta| = sqrt(u) - sqrt(v), u = (1+z)/2,
    v = (1-z)/2, with the kernels' rules (z clamped to [-1, 1] straight-through, a vanished
    amplitude gives gradient 0). With the other Bloch components xy = (X, Y), the smaller of u, v
    is taken as uv / larger = (X^2 + Y^2) / (4 larger), as the jet kernels do: near a pole,
    (1 -+ z)/2 cancels, and the derivatives of the square root magnify that rounding (in float32,
    the Laplacian of a `real` QKAN lost every digit). `pole`: only where the smaller is below it,
    the spectral kernels' rule (their first derivatives, which these forms differentiate, switch
    there, spectral_fused.h)."""
    if not fast:
        return z
    zc = z + (z.clamp(-1, 1) - z).detach()
    u, v = 0.5 + 0.5 * zc, 0.5 - 0.5 * zc
    if xy is not None:
        quarter_xy2 = 0.25 * (xy[0].square() + xy[1].square())
        north = (zc >= 0).detach()
        if pole is not None:  # outside the pole zone both branches keep their Z formula
            near = (zc.abs() > 1 - 2 * pole).detach()
            quarter_xy2 = torch.where(near, quarter_xy2, u * v)
        # each branch divides by the larger amplitude, >= 1/2 where it is used (clamped elsewhere)
        u = torch.where(north, u, quarter_xy2 / v.clamp_min(0.5))
        v = torch.where(north, quarter_xy2 / u.clamp_min(0.5), v)
    floor = 1e-30 if z.dtype == torch.float32 else 1e-300
    return torch.sqrt(u.clamp_min(floor)) - torch.sqrt(v.clamp_min(floor))


def _measure_of_coefficients(coef: Tensor, u: Tensor, reps: int, fast: bool, lazy: bool = False) -> Tensor:
    """phi [B, O, I] from coefficients [O, I, nq, 2R+1] (rows Z, X, Y; the fast measure reads X and Y
    near the poles when they are there, as the spectral kernels do, see _measure) and angles u [B, I].
    lazy: evaluate X and Y only when some value is near a pole (a data-dependent branch: not under
    torch.func transforms)."""
    z = _born_of_coefficients(coef[:, :, 0], u, reps)
    if not fast or coef.shape[2] < 3:
        return _measure(z, fast)
    pole = 1.0 / 64 if z.dtype == torch.float32 else 1.0 / 4096
    if lazy and not bool((z.detach().abs() > 1 - 2 * pole).any()):
        return _measure(z, True)  # the same function there: the Z formula everywhere
    xy = (_born_of_coefficients(coef[:, :, 1], u, reps), _born_of_coefficients(coef[:, :, 2], u, reps))
    return _measure(z, True, xy, pole=pole)


def _sample_angles(reps: int, dtype: torch.dtype, device) -> Tensor:
    m = 2 * reps + 1
    return torch.arange(m, dtype=dtype, device=device) * (2 * math.pi / m)


def _dft(reps: int, dtype: torch.dtype, device) -> Tensor:
    """D [2R+1, 2R+1]: coefficients (rows 1, cos ku, sin ku) from samples at _sample_angles."""
    m = 2 * reps + 1
    u = _sample_angles(reps, torch.float64, "cpu")
    k = torch.arange(1, reps + 1, dtype=torch.float64)[:, None]
    d = torch.cat([torch.full((1, m), 1.0 / m, dtype=torch.float64), (2.0 / m) * torch.cos(k * u),
                   (2.0 / m) * torch.sin(k * u)])
    return d.to(dtype=dtype, device=device)


def sampled_coefficients(theta: Tensor, pre_b: Tensor, ansatz_code: int, reps: int, nq: int) -> Tensor:
    """The coefficient kernel's output [O, I, nq, 2R+1] in torch ops, differentiable to any order:
    the circuit (reference simulator) at the 2R+1 sample angles, then a DFT. Same arguments as
    spectral.spectral_coef (px arrives in its mix form)."""
    name = ANSATZE[ansatz_code]
    u = _sample_angles(reps, theta.dtype, theta.device)[:, None].expand(-1, theta.shape[1])
    enc = name == "rpz"
    alpha, beta = reference.amplitudes(u, theta, torch.ones_like(pre_b) if enc else None, pre_b if enc else None,
                                       ansatz=name, reps=reps, preact_trainable=False)  # [2R+1, O, I]
    comps = [alpha.abs() ** 2 - beta.abs() ** 2]
    if nq == 3:
        ab = 2 * alpha.conj() * beta
        comps += [ab.real, ab.imag]
    samples = torch.stack(comps, dim=-1).to(theta.dtype)  # [2R+1, O, I, nq]
    return torch.einsum("km,moiq->oiqk", _dft(reps, theta.dtype, theta.device), samples)


# The circuit as rotations of the Bloch vector r = (X, Y, Z) of the state (|+> is (1, 0, 0); a gate
# exp(-i a P / 2) turns r by the angle a about the axis P), real and differentiable to any order:
# the form of the layers the spectral identity does not cover (trainable encodings, off the CPU).
# Every run of theta gates between two data gates is one (O, I) 3x3 rotation, made once per call;
# per sample there is one data-gate turn (two trigonometric terms) and one 3x3 product per
# repetition, and Z, the Born value, at the end (the fast measure from Z by _measure, as the
# spectral form). About four times fewer ops on (B, O, I) tensors than the reference's complex
# 2x2 matrices, gate by gate.


def _turn(axis: str, c: Tensor, s: Tensor) -> Tensor:
    """[..., 3, 3] rotation about `axis` by the angle with cosine c and sine s."""
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rows = {"x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
            "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
            "z": ((c, -s, zero), (s, c, zero), (zero, zero, one))}[axis]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


_FLIP = {"x": (1.0, -1.0, -1.0), "z": (-1.0, -1.0, 1.0)}  # the X and Z gates: a half turn


def _theta_turns(theta: Tensor, ansatz: str, row: int, final: bool) -> Optional[Tensor]:
    """The theta gates of repetition `row` (or the closing ones) as one [O, I, 3, 3] rotation;
    None for the identity."""
    gates = {"pz": ("z", "y"), "rpz": ("y",), "px": ("z",), "mix": ("z", "x"), "real": ("X", "y", "Z")}[ansatz]
    if final and ansatz == "real":
        return None
    m = None
    col = 0
    for g in gates:
        if g in ("X", "Z"):
            t = torch.diag(torch.tensor(_FLIP[g.lower()], dtype=theta.dtype, device=theta.device))
        else:
            a = theta[:, :, row, col]
            col += 1
            t = _turn(g, torch.cos(a), torch.sin(a))
        m = t if m is None else t @ m
    return m


def _apply_turn(m: Tensor, r: tuple) -> tuple:
    """m [O, I, 3, 3] applied to r = (X, Y, Z), each [O, I] or [B, O, I]."""
    return tuple(m[..., k, 0] * r[0] + m[..., k, 1] * r[1] + m[..., k, 2] * r[2] for k in range(3))


def bloch_circuit(x: Tensor, theta: Tensor, pre_w: Optional[Tensor], pre_b: Optional[Tensor], *, ansatz: str,
                  reps: int, encode: bool, components: bool = False):
    """Z = |alpha|^2 - |beta|^2 [B, O, I] of every edge (O = 1 for grouped parameters), from x [B, I]
    (or one value per edge, [B, O, I]), theta [O, I, Rt, P] or [g, Rt, P] and, with encode, the
    angles e_l = pre_w * x + pre_b. With components, the final Bloch vector (X, Y, Z)."""
    in_dim = x.shape[-1]
    theta = expand_group(theta, in_dim, 4)  # [O or 1, I, Rt, P]
    xe = x[:, None, :] if x.dim() == 2 else x  # [B, 1 or O, I]
    if encode:
        w, b = expand_group(pre_w, in_dim, 3), expand_group(pre_b, in_dim, 3)  # [O or 1, I, R]
        angle = lambda l: w[..., l] * xe + b[..., l]  # noqa: E731  [B, O, I]
    else:
        angle = lambda l: xe  # noqa: E731  [B, 1 or O, I]
    data_axis = {"pz": "z", "rpz": "z", "px": "x", "real": "y", "mix": "y"}[ansatz]
    one = torch.ones_like(theta[..., 0, 0])
    r = (one, torch.zeros_like(one), torch.zeros_like(one))  # |+>
    for l in range(reps):
        m = _theta_turns(theta, ansatz, l, final=False)
        r = _apply_turn(m, r)
        e = angle(l)
        if ansatz == "px":  # RX(arccos e): cosine e, sine sqrt(1 - e^2) (the angle lies in [0, pi])
            a = torch.arccos(e)
            c, s = torch.cos(a), torch.sin(a)
        else:
            c, s = torch.cos(e), torch.sin(e)
        X, Y, Z = r
        if data_axis == "z":
            r = (c * X - s * Y, s * X + c * Y, Z.expand_as(c * X))
        elif data_axis == "y":
            r = (c * X + s * Z, Y.expand_as(c * X), c * Z - s * X)
        else:
            r = (X.expand_as(c * Y), c * Y - s * Z, s * Y + c * Z)
    m = _theta_turns(theta, ansatz, reps, final=True)
    if m is not None:
        r = _apply_turn(m, r) if components else (None, None, sum(m[..., 2, k] * r[k] for k in range(3)))
    return tuple(r) if components else r[2]


def _bloch_measure(x: Tensor, theta: Tensor, pre_w, pre_b, *, ansatz: str, reps: int, encode: bool,
                   fast: bool) -> Tensor:
    """phi of bloch_circuit (X and Y too for the fast measure, see _measure)."""
    if not fast:
        return bloch_circuit(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, encode=encode)
    X, Y, Z = bloch_circuit(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, encode=encode, components=True)
    return _measure(Z, True, (X, Y))


def edge_derivative(x: Tensor, theta: Tensor, pre_w: Tensor, pre_b: Tensor, *, ansatz: str, reps: int, fast: bool,
                    encode: bool, order: int) -> Tensor:
    """d^order phi / dx^order [B, O, I] of per-edge parameters (bloch_circuit), differentiable to any
    order: phi of each edge's own copy of x, differentiated `order` times with the graph kept."""
    xe = x[:, None, :].expand(-1, theta.shape[0], -1)  # [B, O, I]: each edge's derivative apart
    phi = _bloch_measure(xe, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, encode=encode, fast=fast)
    for _ in range(order):
        (phi,) = torch.autograd.grad(phi.sum(), xe, create_graph=True)
    return phi


def _spectral_form_applies(x: Tensor, ansatz: str, encode: bool, pre_w: Tensor, need_pre_w: bool) -> bool:
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False  # the coefficient kernel runs on the CPU
    if ansatz == "rpz":  # e = w*x + b: one angle per edge only where w = 1 and w is not differentiated
        return not need_pre_w and bool((pre_w == 1).all())
    return not encode


def edge_values(x: Tensor, theta: Tensor, pre_w: Tensor, pre_b: Tensor, *, ansatz: str, reps: int, fast: bool,
                encode: bool, need_pre_w: bool) -> Tensor:
    """phi [B, O, I] of per-edge parameters as a torch expression differentiable to any order."""
    if _spectral_form_applies(x, ansatz, encode, pre_w, need_pre_w):
        coef = spectral.coefficients(theta, pre_b, ansatz=ansatz, reps=reps, in_dim=x.shape[1], dtype=x.dtype,
                                     bloch=fast)
        return _measure_of_coefficients(coef if fast else coef[:, :, None], _angle(x, ansatz == "px"), reps, fast)
    return _bloch_measure(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, encode=encode, fast=fast)


# --------------------------------------------------------------------------------------------
# the derivative of a vector-Jacobian product


def _derivative_of_vjp(f: Callable[..., Sequence[Tensor]], primals: Sequence[Optional[Tensor]],
                       cotangents: Sequence[Tensor], bars: Sequence[Optional[Tensor]],
                       cache: Optional[dict] = None) -> list:
    """A backward op computes v_j = sum_out d f_out / d primal_j ^T cotangent_out. Given the
    cotangents `bars` of its outputs v_j, return the gradients of S = sum_j <bars_j, v_j> with
    respect to (*cotangents, *primals) (None where there is none), by autograd of f's torch form
    with the graph kept, so that these are differentiable again when the caller keeps its graph.

    `cache` (a dict kept on the backward node's ctx): the same node is often differentiated more
    than once, with other bars (u_xx, then u_yy of one gradient); the torch form and its first
    derivatives are then built once and reused by the passes that keep their graph (create_graph)."""
    create = torch.is_grad_enabled()
    with torch.enable_grad():
        def local(t):
            # a tensor of the caller's graph enters through an identity node: its derivatives below
            # stay differentiable in the caller's graph, and the gradients stop there (the caller's
            # autograd accounts for the paths through its history; following them here would count
            # them twice); a tensor without a graph gets a local leaf
            if t is None:
                return None
            return t.view_as(t) if t.requires_grad else t.detach().requires_grad_()

        # only the first derivatives that meet a cotangent are formed
        used = tuple(p is not None and b is not None for p, b in zip(primals, bars))
        if not any(used):
            return [None] * (len(cotangents) + len(primals))
        # only while graphs are kept: a pass without create_graph frees the cached graph as it goes
        hit = cache.get(used) if cache is not None and create else None
        if hit is None:
            ps, cs = [local(p) for p in primals], [local(c) for c in cotangents]
            outs = f(*ps)
            firsts = iter(torch.autograd.grad(outs, [p for p, u in zip(ps, used) if u], cs, create_graph=True,
                                              allow_unused=True))
            firsts = [next(firsts) if u else None for u in used]
            if cache is not None and create:  # the graph below stays alive only when it is kept
                cache[used] = (ps, cs, firsts)
        else:
            ps, cs, firsts = hit
        terms = [(b * v).sum() for b, v, u in zip(bars, firsts, used) if u and v is not None]
        if not terms:
            return [None] * (len(cs) + len(ps))
        wrt = [t for t in (*cs, *ps) if t is not None]
        grads = iter(torch.autograd.grad(sum(terms), wrt, create_graph=create, retain_graph=True,
                                         allow_unused=True))
        return [next(grads) if t is not None else None for t in (*cs, *ps)]


def _node_cache(ctx) -> dict:
    """The dict on a backward node's ctx where _derivative_of_vjp keeps its torch form."""
    if not hasattr(ctx, "torch_form_cache"):
        ctx.torch_form_cache = {}
    return ctx.torch_form_cache


def _bar(t: Optional[Tensor]) -> Optional[Tensor]:
    """None for a cotangent that contributes nothing: an output not asked for (an empty tensor),
    or one off the path being differentiated, which autograd hands over as zeros (computing its
    term would differentiate, say, theta's gradient while only d/dx is wanted)."""
    if t is None or t.numel() == 0 or not bool(t.any()):
        return None
    return t


# --------------------------------------------------------------------------------------------
# circuit engine: circuit_backward(grad, x, theta, pre_w, pre_b, weight, ...) -> (gx, gtheta, gw, gb, gweight)


def _circuit_backward_setup(ctx, inputs, output):
    grad, x, theta, pre_w, pre_b, weight, ansatz, reps, fast, encode, needs = inputs
    ctx.save_for_backward(grad, x, theta, pre_w, pre_b, weight)
    ctx.config = (ANSATZE[ansatz], reps, fast, encode, tuple(bool(n) for n in needs))


def _circuit_backward_backward(ctx, *bars):
    grad, x, theta, pre_w, pre_b, weight = ctx.saved_tensors
    ansatz, reps, fast, encode, needs = ctx.config
    b_x, b_theta, b_w, b_b, b_weight = [_bar(b) for b in bars]
    if not encode:
        b_w = b_b = None  # the circuit reads neither pre_w nor pre_b: their gradients are constant zeros
    jet_bars = [b_x, None, b_theta, b_w, b_b, b_weight]  # the jet ops' order: x, scale, theta, pre_w, pre_b, weight
    wanted = list(ctx.needs_input_grad[:6])  # grad, x, theta, pre_w, pre_b, weight
    cfg = dict(ansatz=ANSATZE.index(ansatz), reps=reps, fast_measure=fast, encode=encode, order=0)
    if jets.kernels_reach(x, 0, jet_bars):
        # Taylor mode in x on the jet kernels (jets.py): order 0 of circuit_jet is this layer, of
        # circuit_jet_postacts its postacts (weight None: qkan's solver interface, shared parameters)
        g = jets.derivative_of_backward(grad, x, None, theta, pre_w, pre_b, weight, jet_bars,
                                        wanted[:2] + [False] + wanted[2:], **cfg)
        return (g[0], g[1], *g[3:], None, None, None, None, None)
    kw = dict(ansatz=ansatz, reps=reps, fast=fast, encode=encode, need_pre_w=needs[2])

    def f(x, theta, pre_w, pre_b, weight):
        phi = edge_values(x, theta, pre_w, pre_b, **kw)
        return (phi if weight is None else torch.einsum("boi,oi->bo", phi, weight),)

    # without encodings the circuit reads neither pre_w nor pre_b: no derivative to give them
    primals = [x, theta, pre_w if encode else None, pre_b if encode else None, weight]
    g_grad, *g = _derivative_of_vjp(f, primals, [grad], [b_x, b_theta, b_w, b_b, b_weight], _node_cache(ctx))
    return (g_grad, *g, None, None, None, None, None)


circuit.circuit_backward.register_autograd(_circuit_backward_backward, setup_context=_circuit_backward_setup)


def jet_backward_torch_form(grad, x, scale, theta, pre_w, pre_b, weight, bars, *, ansatz: int, reps: int,
                            fast_measure: bool, encode: bool, order: int) -> list:
    """The derivative of jets.circuit_jet_backward where the jet kernels do not reach (cotangents on
    parameter gradients, orders beyond them): gradients with respect to (grad, x, scale, theta,
    pre_w, pre_b, weight) by the torch form of its forward, as the circuit engine's fallback above."""
    kw = dict(ansatz=ANSATZE[ansatz], reps=reps, fast=fast_measure, encode=encode, order=order)

    def f(x, scale, theta, pre_w, pre_b, weight):
        d = edge_derivative(x, theta, pre_w, pre_b, **kw)  # [B, O, I]
        if scale is not None:
            d = d * scale[:, None, :]
        return (d if weight is None else torch.einsum("boi,oi->bo", d, weight),)

    primals = [x, scale, theta, pre_w if encode else None, pre_b if encode else None, weight]
    return _derivative_of_vjp(f, primals, [grad], bars)


# --------------------------------------------------------------------------------------------
# spectral engine


def _fused_backward_setup(ctx, inputs, output):
    grad_y, x, coef, weight, reps, px, needs = inputs
    ctx.save_for_backward(grad_y, x, coef, weight)
    ctx.config = (reps, px)


def _fused_backward_backward(ctx, *bars):
    grad_y, x, coef, weight = ctx.saved_tensors
    reps, px = ctx.config
    fast = coef.shape[2] == 3  # nq = 3: the fast measure (Z, X, Y); nq = 1: Born (Z)

    def f(x, coef, weight):
        phi = _measure_of_coefficients(coef, _angle(x, px), reps, fast, lazy=True)
        return (torch.einsum("boi,oi->bo", phi, weight),)

    grads = _derivative_of_vjp(f, [x, coef, weight], [grad_y], [_bar(b) for b in bars], _node_cache(ctx))
    return (*grads, None, None, None)


spectral.spectral_fused_backward.register_autograd(_fused_backward_backward, setup_context=_fused_backward_setup)


def _basis_torch(x: Tensor, reps: int, px: bool) -> Tensor:
    k = torch.arange(1, reps + 1, dtype=x.dtype, device=x.device)[:, None, None]
    ku = k * _angle(x, px).t()  # [R, I, B]
    return torch.cat([torch.cos(ku), torch.sin(ku)])


def _basis_backward_setup(ctx, inputs, output):
    grad, x, reps, px = inputs
    ctx.save_for_backward(grad, x)
    ctx.config = (reps, px)


def _basis_backward_backward(ctx, bar):
    grad, x = ctx.saved_tensors
    reps, px = ctx.config
    g_grad, g_x = _derivative_of_vjp(lambda x: (_basis_torch(x, reps, px),), [x], [grad], [_bar(bar)])
    return g_grad, g_x, None, None


spectral.spectral_basis_backward.register_autograd(_basis_backward_backward, setup_context=_basis_backward_setup)


def _coef_backward_setup(ctx, inputs, output):
    grad, theta, pre_b, ansatz, reps, nq, need_b = inputs
    ctx.save_for_backward(grad, theta, pre_b)
    ctx.config = (ansatz, reps, nq)


def _coef_backward_backward(ctx, bar_theta, bar_b):
    grad, theta, pre_b = ctx.saved_tensors
    ansatz, reps, nq = ctx.config
    has_b = pre_b.numel() > 0

    def f(theta, pre_b):
        return (sampled_coefficients(theta, pre_b if has_b else theta.new_empty(0), ansatz, reps, nq),)

    g_grad, g_theta, g_b = _derivative_of_vjp(f, [theta, pre_b if has_b else None], [grad],
                                              [_bar(bar_theta), _bar(bar_b)])
    return g_grad, g_theta, g_b, None, None, None, None


spectral.spectral_coef_backward.register_autograd(_coef_backward_backward, setup_context=_coef_backward_setup)


def _born_coef_backward_setup(ctx, inputs, output):
    grad_cw, grad_c0, theta, pre_b, weight, ansatz, reps, needs = inputs
    ctx.save_for_backward(grad_cw, grad_c0, theta, pre_b, weight)
    ctx.config = (ansatz, reps)


def _born_coef_backward_backward(ctx, bar_theta, bar_b, bar_w):
    grad_cw, grad_c0, theta, pre_b, weight = ctx.saved_tensors
    ansatz, reps = ctx.config
    has_b = pre_b.numel() > 0

    def f(theta, pre_b, weight):
        c = sampled_coefficients(theta, pre_b if has_b else theta.new_empty(0), ansatz, reps, 1)[:, :, 0]
        c = c * weight[..., None]  # [O, I, 2R+1]
        return c[..., 1:].permute(2, 1, 0), c[..., 0].sum(dim=1)  # cw [2R, I, O], c0 [O]

    grads = _derivative_of_vjp(f, [theta, pre_b if has_b else None, weight], [grad_cw, grad_c0],
                               [_bar(bar_theta), _bar(bar_b), _bar(bar_w)])
    return (*grads, None, None, None)


spectral.spectral_born_coef_backward.register_autograd(_born_coef_backward_backward,
                                                        setup_context=_born_coef_backward_setup)


# --------------------------------------------------------------------------------------------
# torch.func transforms that the kernels' custom ops cannot follow: forward mode (jvp, jacfwd,
# hessian) and nested reverse mode (jacrev of jacrev, grad of grad). There the layer runs as the
# torch form above, with the coefficients sampled in torch (2R+1 circuit evaluations per edge,
# independent of the batch), so that every transform composes; trainable encodings (and rpz,
# whose w == 1 test would read values) take the torch circuit.


def torch_form_needed() -> bool:
    """True under a torch.func transform stack with a forward-mode level or two reverse levels."""
    if not torch._C._are_functorch_transforms_active():
        return False
    from torch._functorch.pyfunctorch import TransformType, retrieve_all_functorch_interpreters

    keys = [interpreter.key() for interpreter in retrieve_all_functorch_interpreters()]
    return TransformType.Jvp in keys or keys.count(TransformType.Grad) >= 2


def postacts_torch(x: Tensor, theta: Tensor, pre_w: Tensor, pre_b: Tensor, *, ansatz: str, reps: int,
                   fast_measure: bool, preact_trainable: bool) -> Tensor:
    """phi [B, O, I] ([B, 1, I] for grouped parameters) in torch ops only, any transform, any order."""
    if x.dtype not in (torch.float32, torch.float64):
        out_dim = 1 if theta.dim() == 3 and pre_w.dim() == 2 else None
        return reference.postacts(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, fast_measure=fast_measure,
                                  preact_trainable=preact_trainable, out_dim=out_dim)
    if preact_trainable or ansatz == "rpz":
        return _bloch_measure(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, encode=True, fast=fast_measure)
    theta_e, bias, code = spectral.edge_params(theta, pre_b, ansatz, reps, x.shape[1], 0, x.dtype)
    coef = sampled_coefficients(theta_e, bias, code, reps, 3 if fast_measure else 1)  # [O, I, nq, 2R+1]
    return _measure_of_coefficients(coef, _angle(x, ansatz == "px"), reps, fast_measure)


def layer_torch(x: Tensor, theta: Tensor, pre_w: Tensor, pre_b: Tensor, weight: Tensor, **kw) -> Tensor:
    """y = sum_i weight[o, i] * phi_oi(x[b, i]) [B, O] by postacts_torch."""
    return torch.einsum("boi,oi->bo", postacts_torch(x, theta, pre_w, pre_b, **kw), weight)
