"""Higher derivatives of the circuit engine by Taylor mode in x: the jet kernels (csrc/cpu/jet.cpp).

A layer's input derivatives are diagonal per edge: d^n y[b,o] / dx[b,i]^n = weight[o,i] phi_oi^(n).
The jet kernels compute, in registers as the circuit kernels do and without a (B, O, I) tensor,

    circuit_jet           y[b,o] = sum_i weight[o,i] * scale[b,i] * phi_oi^(n)(x[b,i])
    circuit_jet_backward  its gradients: x (from phi^(n+1)), scale, weight, theta, pre_w, pre_b

for n up to _C.jet_max_order(). The derivative of a backward op of order n, with cotangents on its
x, scale and weight gradients, is the gradient of grad_y . (a sum of circuit_jet terms of order n
and n+1), so the higher derivatives close on these two ops: u_xx of a physics-informed loss and
its parameter gradient (third order) run the kernels at orders 1 to 3. The op then falls back to
the torch form of higher_order.py only where the kernels do not reach: cotangents on the
parameter gradients (Hessians in theta, gradgradcheck over parameters), orders beyond the
kernels, and devices other than the CPU.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from . import _C
from .circuit import _contig, _params, _ptr

MAX_ORDER = _C.jet_max_order()


def _has_scale(scale: Tensor) -> bool:
    return scale.dim() == 2  # "no scale" (1 everywhere) is a 1-D empty tensor


def _fill(p, scale: Tensor, weight: Optional[Tensor], order: int) -> None:
    p.order = order
    p.weight = 0 if weight is None else weight.data_ptr()
    p.scale = _ptr(scale) if _has_scale(scale) else 0


@torch.library.custom_op("qkan_fast::circuit_jet", mutates_args=())
def circuit_jet(
    x: Tensor,  # [B, I]
    scale: Tensor,  # [B, I], or a 1-D empty tensor for 1 everywhere
    theta: Tensor,  # [O, I, Rt, P]
    pre_w: Tensor,  # [O, I, R]
    pre_b: Tensor,  # [O, I, R]
    weight: Tensor,  # [O, I]
    ansatz: int,
    reps: int,
    fast_measure: bool,
    encode: bool,
    order: int,
) -> Tensor:
    """y[b,o] = sum_i weight[o,i] * scale[b,i] * d^order phi_oi / dx^order (x[b,i]): [B, O]."""
    return _jet_forward(x, scale, theta, pre_w, pre_b, weight.contiguous(), (ansatz, reps, fast_measure, encode), order)


def _jet_forward(x, scale, theta, pre_w, pre_b, weight: Optional[Tensor], cfg: tuple, order: int) -> Tensor:
    """The forward entry point: into y [B, O] with a weight, per edge [B, O, I] without."""
    x, scale, theta, pre_w, pre_b = _contig(x, scale, theta, pre_w, pre_b)
    shape = (x.shape[0], theta.shape[0]) if weight is not None else (x.shape[0], theta.shape[0], x.shape[1])
    out = x.new_empty(shape)
    if x.shape[0] == 0:
        return out
    p = _params(x, theta, pre_w, pre_b, *cfg)
    _fill(p, scale, weight, order)
    if weight is None:
        p.postacts = out.data_ptr()
    else:
        p.y = out.data_ptr()
    _C.circuit_jet_forward_cpu(p)
    return out


@circuit_jet.register_fake
def _(x, scale, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, order):
    return x.new_empty(x.shape[0], theta.shape[0])


@torch.library.custom_op("qkan_fast::circuit_jet_postacts", mutates_args=())
def circuit_jet_postacts(
    x: Tensor, scale: Tensor, theta: Tensor, pre_w: Tensor, pre_b: Tensor, ansatz: int, reps: int, fast_measure: bool,
    encode: bool, order: int
) -> Tensor:
    """Each edge's term apart: scale[b,i] * d^order phi_oi / dx^order (x[b,i]), [B, O, I] (the
    derivatives of postacts, which qkan's solver interface returns)."""
    return _jet_forward(x, scale, theta, pre_w, pre_b, None, (ansatz, reps, fast_measure, encode), order)


@circuit_jet_postacts.register_fake
def _(x, scale, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode, order):
    return x.new_empty(x.shape[0], theta.shape[0], x.shape[1])


def _jet_grad_buffers(x, scale, theta, pre_w, pre_b, weight, encode, needs, zero):
    """The six gradient buffers (x, scale, theta, pre_w, pre_b, weight); empty when not asked for."""
    make = torch.zeros_like if zero else torch.empty_like
    wanted = [needs[0], needs[1] and _has_scale(scale), needs[2], needs[3], needs[4], needs[5] and weight is not None]
    like = [x, x, theta, pre_w, pre_b, weight]
    return [(torch.zeros_like(t) if k in (3, 4) and not encode else make(t)) if w else x.new_empty(0)
            for k, (t, w) in enumerate(zip(like, wanted))]


@torch.library.custom_op("qkan_fast::circuit_jet_backward", mutates_args=())
def circuit_jet_backward(
    grad: Tensor,  # [B, O] (circuit_jet), or [B, O, I] with weight None (circuit_jet_postacts)
    x: Tensor,
    scale: Tensor,
    theta: Tensor,
    pre_w: Tensor,
    pre_b: Tensor,
    weight: Optional[Tensor],
    ansatz: int,
    reps: int,
    fast_measure: bool,
    encode: bool,
    order: int,
    needs: Sequence[bool],  # x, scale, theta, pre_w, pre_b, weight
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of circuit_jet (or circuit_jet_postacts); one not asked for is an empty tensor."""
    grad, x, scale, theta, pre_w, pre_b = _contig(grad, x, scale, theta, pre_w, pre_b)
    weight = None if weight is None else weight.contiguous()
    outs = _jet_grad_buffers(x, scale, theta, pre_w, pre_b, weight, encode, needs, zero=x.shape[0] == 0)
    if x.shape[0] == 0 or not any(o.numel() for o in outs):
        return tuple(outs)
    p = _params(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode)
    _fill(p, scale, weight, order)
    if weight is None:
        p.grad_postacts = grad.data_ptr()
    else:
        p.grad_y = grad.data_ptr()
    p.grad_x, p.grad_scale, p.grad_theta = _ptr(outs[0]), _ptr(outs[1]), _ptr(outs[2])
    if encode:
        p.grad_pre_w, p.grad_pre_b = _ptr(outs[3]), _ptr(outs[4])
    p.grad_weight = _ptr(outs[5])
    _C.circuit_jet_backward_cpu(p)
    return tuple(outs)


@circuit_jet_backward.register_fake
def _(grad, x, scale, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, order, needs):
    return tuple(_jet_grad_buffers(x, scale, theta, pre_w, pre_b, weight, True, needs, zero=False))


def _jet_setup(ctx, inputs, output):
    x, scale, theta, pre_w, pre_b, weight, *config = inputs
    ctx.save_for_backward(x, scale, theta, pre_w, pre_b, weight)
    ctx.config = tuple(config)  # ansatz, reps, fast_measure, encode, order


def _jet_backward(ctx, grad_y):
    x, scale, theta, pre_w, pre_b, weight = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:6])
    outs = circuit_jet_backward(grad_y, x, scale, theta, pre_w, pre_b, weight, *ctx.config, needs)
    return (*[g if n else None for g, n in zip(outs, needs)], None, None, None, None, None)


circuit_jet.register_autograd(_jet_backward, setup_context=_jet_setup)


def _jet_postacts_setup(ctx, inputs, output):
    x, scale, theta, pre_w, pre_b, *config = inputs
    ctx.save_for_backward(x, scale, theta, pre_w, pre_b)
    ctx.config = tuple(config)


def _jet_postacts_backward(ctx, grad_post):
    x, scale, theta, pre_w, pre_b = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:5]) + [False]
    outs = circuit_jet_backward(grad_post, x, scale, theta, pre_w, pre_b, None, *ctx.config, needs)
    return (*[g if n else None for g, n in zip(outs[:5], needs)], None, None, None, None, None)


circuit_jet_postacts.register_autograd(_jet_postacts_backward, setup_context=_jet_postacts_setup)


# --------------------------------------------------------------------------------------------
# the derivative of a backward op (circuit_backward at order 0, circuit_jet_backward at order n)


def _local(t: Optional[Tensor], needed: bool) -> Optional[Tensor]:
    """A primal inside the derivative: through an identity node when the caller's graph continues
    from it (so the result stays differentiable there), a fresh leaf when only its gradient is
    wanted here, or detached when no gradient is wanted."""
    if t is None or not needed:
        return None if t is None else t.detach()
    return t.view_as(t) if t.requires_grad else t.detach().requires_grad_()


def kernels_reach(x: Tensor, order: int, bars: Sequence[Optional[Tensor]]) -> bool:
    """True when the derivative of a backward op of `order` with these cotangents (on its x, scale,
    theta, pre_w, pre_b and weight gradients; None for none) runs on the jet kernels."""
    b_x, _, b_theta, b_w, b_b, _ = bars
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and b_theta is None and b_w is None
            and b_b is None and order + (2 if b_x is not None else 1) <= MAX_ORDER)


def derivative_of_backward(grad: Tensor, x: Tensor, scale: Optional[Tensor], theta: Tensor, pre_w: Tensor,
                           pre_b: Tensor, weight: Optional[Tensor], bars: Sequence[Optional[Tensor]], needs: Sequence[bool], *,
                           ansatz: int, reps: int, fast_measure: bool, encode: bool, order: int) -> list:
    """The gradients with respect to (grad, x, scale, theta, pre_w, pre_b, weight) of
    S = sum of <bar, output> over the backward op's outputs (x, scale, theta, pre_w, pre_b, weight
    gradients; the parameter bars must be None here: kernels_reach). `needs`: which of the seven are
    wanted. weight None: the op is the backward of per-edge terms (postacts), grad [B, O, I].
    Differentiable again while the caller keeps its graph."""
    b_x, b_scale, _, _, _, b_weight = bars
    create = torch.is_grad_enabled()
    with torch.enable_grad():
        gl, xl, sl, thl, wl, bl, Wl = [_local(t, n) for t, n in
                                       zip((grad, x, scale, theta, pre_w, pre_b, weight), needs)]
        none = x.new_empty(0)
        cfg = (ansatz, reps, fast_measure, encode)
        terms = []
        if weight is None:  # per-edge terms (postacts), grad [B, O, I]
            jet = lambda s, n: circuit_jet_postacts(xl, s, thl, wl, bl, *cfg, n)  # noqa: E731
        else:
            jet = lambda s, n: circuit_jet(xl, s, thl, wl, bl, Wl, *cfg, n)  # noqa: E731
        if b_x is not None:  # d/dx of phi^(n): order n + 1, each sample's term scaled by its bar
            terms.append(jet(b_x if sl is None else b_x * sl, order + 1))
        if b_scale is not None:
            terms.append(jet(b_scale, order))
        if b_weight is not None:
            terms.append(circuit_jet(xl, none if sl is None else sl, thl, wl, bl, b_weight, *cfg, order))
        locals_ = (gl, xl, sl, thl, wl, bl, Wl)
        wrt = [t for t, n in zip(locals_, needs) if n and t is not None and t.requires_grad]
        if not terms or not wrt:
            return [None] * 7
        s = (gl * sum(terms)).sum()
        grads = iter(torch.autograd.grad(s, wrt, create_graph=create, allow_unused=True))
        return [next(grads) if (n and t is not None and t.requires_grad) else None for t, n in zip(locals_, needs)]


def _jet_backward_setup(ctx, inputs, output):
    grad, x, scale, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, order, needs = inputs
    ctx.save_for_backward(grad, x, scale, theta, pre_w, pre_b, weight)
    ctx.config = dict(ansatz=ansatz, reps=reps, fast_measure=fast_measure, encode=encode, order=order)


def _jet_backward_backward(ctx, *bars):
    from .higher_order import _bar, jet_backward_torch_form  # the torch forms sit above this module

    grad, x, scale, theta, pre_w, pre_b, weight = ctx.saved_tensors
    cfg = ctx.config
    bars = [_bar(b) for b in bars]
    if not cfg["encode"]:
        bars[3] = bars[4] = None  # pre_w, pre_b are not read: their gradients are constant zeros
    scale_ = scale if _has_scale(scale) else None
    needs = list(ctx.needs_input_grad[:7])
    if kernels_reach(x, cfg["order"], bars):
        grads = derivative_of_backward(grad, x, scale_, theta, pre_w, pre_b, weight, bars, needs, **cfg)
    else:
        grads = jet_backward_torch_form(grad, x, scale_, theta, pre_w, pre_b, weight, bars, **cfg)
    if scale_ is None:
        grads[2] = None
    return (*grads, None, None, None, None, None, None)


circuit_jet_backward.register_autograd(_jet_backward_backward, setup_context=_jet_backward_setup)
