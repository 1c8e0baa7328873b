"""The spectral engine: exact Fourier evaluation of DARUAN layers (docs/math.md, the spectral identity).

When the encoding weights are frozen at 1, each repetition's data gate turns by the same angle u
(u = x for pz, rpz, real, mix; u = arccos(x) for px), so every edge's Born value is a
trigonometric polynomial of degree R in u:

    Z_oi(u) = C[o,i,0] + sum_{k=1..R} C[o,i,k] cos(ku) + C[o,i,R+k] sin(ku)

and so are the other Bloch components X + iY = 2 conj(alpha) beta of the final state.

Coefficients (`spectral_coef`, csrc/cpu/spectral_coef.h): up to a global phase every ansatz is
psi(u) = W_R P(u) ... W_1 P(u) v_0 with P(u) = diag(1, e^{iu}) and u-independent W_l, v_0 built from
the edge's fixed gates by daruan.h's gate code (an RY data gate is e^{-iu/2} V P(u) V^dag), so alpha
and beta are polynomials in e^{iu} of degree R: the kernel propagates their coefficients (one edge
per SIMD lane, O(R^2) per edge, no sampling) and correlates them into the Fourier rows of Z, X and
Y. The backward is the adjoint of those steps, ending in daruan.h's adjoint sweep on the columns of
each repetition's gate matrix (gradients to theta and, for rpz, whose data gate turns by u + b, to
preacts_bias). px runs in the angle itself: RX(u) = S^dag RY(u) S with S the phase gate of pi/2,
which commutes with the RZ gates, so px at angle u is, up to a global phase, the mix circuit with
theta'[l] = (theta[l, 0], 0) except theta'[0, 0] += pi/2 and theta'[R, 0] -= pi/2
(`mix_form_of_px`). The Born path makes the coefficients in the layer's dtype; the fast measure
computes them in float64 and rounds once (near a pole its Bloch formula divides by
r = 2 |alpha| |beta|, and float32 coefficients would double to triple its x-gradient error at R = 8:
measured against the float64 truth); both backwards run in the layer's dtype.

Layers (y = sum_i W[o,i] phi_oi(x[b,i]), W = postact_weights * mask; engines.qkan_layer adds the
postact bias and base terms):
- Born (phi = Z), as a GEMM or, for large batches at small O (`born_fused_preferred`), as the fused
  kernel below with the Z coefficients alone (`spectral_fused_layer`, nq = 1). The GEMM:
  y = c0 + Phi^T @ C', one GEMM (B, 2RI) x (2RI, O) on torch's BLAS, with
  Phi [2R, I, B] the basis (cos ku, sin ku) of u[b,i] (`spectral_basis`, samples last) and
  C' [2R, I, O] = W * C, c0 = sum_i W C[:, i, 0] (`spectral_born_coef`: weights folded in by the
  coefficient kernel). The gradients are two more GEMMs in the shapes BLAS splits best over threads
  (`_BornGemm`), the basis backward and the coefficient backward (which also gives dL/dW).
- fast measure (phi = |alpha| - |beta| = sqrt((1+Z)/2) - sqrt((1-Z)/2)): a fused CPU kernel
  (`spectral_fused_layer`) that never materialises (B, O, I), with its own backward. Near a pole
  (|alpha| or |beta| -> 0) that formula is ill-conditioned (float32 gradients would lose up to
  eps/|beta|^2 relative), so there the kernel uses |small| = sqrt(X^2 + Y^2) / (2 |big|), which is
  as accurate as the circuit engine; see the kernel header for the floor rule and its costs.

Applies when preact_trainable=False (for rpz also: the stored preacts_weight equals 1 everywhere
and does not require grad) and the dtype is float32 or float64. Elsewhere (trainable encodings,
rpz with w != 1, px with encodings, which read biases) the circuit engine is exact and this
engine raises a ValueError when asked for by name. Grouped parameters (group=g) work (the
coefficients are computed per set). The postacts entry points (plots, pruning) always use the
circuit engine. The engine has CPU kernels only: on other devices the dispatcher (engines.py) runs
the circuit engine, which computes the same function.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from . import _C, circuit
from .common import ANSATZ_CODES, canonical_ansatz, check_circuit_inputs, expand_group

_DTYPE_CODES = {torch.float32: _C.DType.float32, torch.float64: _C.DType.float64}


def n_coef(reps: int) -> int:
    return 2 * reps + 1


# --------------------------------------------------------------------------------------------
# where the engine applies


def unsupported_reason(ansatz: str, preact_trainable: bool, preacts_weight: Tensor, dtype: torch.dtype) -> Optional[str]:
    """None when the spectral identity (docs/math.md) applies to this layer, else why not (for the error message)."""
    if dtype not in _DTYPE_CODES:
        return f"the spectral engine runs float32 and float64 layers, got {dtype}"
    if preact_trainable:
        return (
            "the spectral engine needs encoding weights frozen at 1 (docs/math.md, the spectral identity), but "
            "preact_trainable=True makes every repetition's angle w*x + b trainable (and px reads its "
            "biases then); use engine='circuit' or 'auto' for this layer"
        )
    if ansatz == "rpz":
        if preacts_weight.requires_grad and torch.is_grad_enabled():
            return (
                "ansatz 'rpz' encodes w*x + b and its preacts_weight requires grad: the spectral engine "
                "cannot give a gradient for w; freeze it (requires_grad_(False)) or use engine='circuit'"
            )
        if not torch.compiler.is_compiling() and not bool((preacts_weight == 1).all()):
            return (
                "ansatz 'rpz' encodes w*x + b with its stored preacts_weight, which is not 1 everywhere "
                "(e.g. loaded from a checkpoint): the repetitions then turn by different angles and the "
                "spectral identity does not hold; use engine='circuit' or 'auto'"
            )
    return None


def applies(ansatz: str, preact_trainable: bool, preacts_weight: Tensor, dtype: torch.dtype) -> bool:
    return unsupported_reason(ansatz, preact_trainable, preacts_weight, dtype) is None


# engine="auto" picks the spectral engine where it applies and was measured faster than the circuit
# engine: the size rule and its measurements live beside the kernels (csrc/cpu/spectral_policy.h,
# _C.spectral_auto_preferred); the rest is here. `real` with the fast measure stays on the circuit
# engine (0.9x-1.4x: its real amplitudes cross zero, so most vectors of samples take the pole path).
# Grouped parameters stay on the circuit engine (it already computes phi once per (b, i)); other
# devices too (no fused fast-measure kernel there yet, and no measurements).


def prefer(x: Tensor, theta: Tensor, preacts_weight: Tensor, *, ansatz: str, reps: int, fast_measure: bool,
           preact_trainable: bool) -> bool:
    """engine='auto': True where the spectral engine applies and is measured faster (comment above)."""
    if x.device.type != "cpu" or theta.dim() != 4 or x.dim() != 2:
        return False
    if not auto_size_preferred(x.shape[0], x.shape[1], theta.shape[0]):
        return False
    if fast_measure and ansatz == "real":
        return False
    if torch.compiler.is_compiling() and ansatz == "rpz":
        return False  # the w == 1 check would be data-dependent
    return applies(ansatz, preact_trainable, preacts_weight, x.dtype)


# --------------------------------------------------------------------------------------------
# coefficients


def _basis_params(x: Tensor, reps: int, px: bool):
    p = _C.SpectralBasisParams()
    p.batch, p.in_dim = x.shape
    p.reps, p.px = reps, px
    p.dtype = _DTYPE_CODES[x.dtype]
    p.x = x.data_ptr()
    p.num_threads = torch.get_num_threads()
    return p


def _layer_params(x: Tensor, reps: int, px: bool, out_dim: int, nq: int):
    p = _C.SpectralLayerParams()
    p.batch, p.in_dim = x.shape
    p.out_dim, p.reps, p.px, p.nq = out_dim, reps, px, nq
    p.dtype = _DTYPE_CODES[x.dtype]
    p.x = x.data_ptr()
    p.num_threads = torch.get_num_threads()
    return p


def _coef_params(theta: Tensor, pre_b: Tensor, ansatz: int, reps: int, nq: int):
    p = _C.SpectralCoefParams()
    p.out_dim, p.in_dim = theta.shape[:2]
    p.reps, p.ansatz, p.nq = reps, _C.Ansatz(ansatz), nq
    p.dtype = _DTYPE_CODES[theta.dtype]
    p.theta = theta.data_ptr()
    if pre_b.numel():
        p.pre_b = pre_b.data_ptr()
    p.num_threads = torch.get_num_threads()
    return p


def coef_cpu(theta: Tensor, pre_b: Tensor, ansatz: int, reps: int, nq: int, exact: bool) -> Tensor:
    """The coefficient kernel itself (spectral_coef without the op dispatch; the fused recurrence
    calls it inside its autograd.Function)."""
    theta, pre_b = theta.contiguous(), pre_b.contiguous()
    out = theta.new_empty(theta.shape[0], theta.shape[1], nq, n_coef(reps))
    p = _coef_params(theta, pre_b, ansatz, reps, nq)
    p.exact = exact
    p.coef_out = out.data_ptr()
    _C.spectral_coef_cpu(p)
    return out


def coef_backward_cpu(grad: Tensor, theta: Tensor, pre_b: Tensor, ansatz: int, reps: int, nq: int,
                      need_b: bool) -> tuple[Tensor, Tensor]:
    """(grad_theta, grad_pre_b) of coef_cpu; grad_pre_b is empty unless need_b."""
    grad, theta, pre_b = grad.contiguous(), theta.contiguous(), pre_b.contiguous()
    gtheta = torch.empty_like(theta)
    gb = torch.empty_like(pre_b) if need_b else theta.new_empty(0)
    p = _coef_params(theta, pre_b, ansatz, reps, nq)
    p.grad_coef_in = grad.data_ptr()
    p.grad_theta = gtheta.data_ptr()
    if need_b:
        p.grad_pre_b = gb.data_ptr()
    _C.spectral_coef_backward_cpu(p)
    return gtheta, gb


@torch.library.custom_op("qkan_fast::spectral_coef", mutates_args=())
def spectral_coef(theta: Tensor, pre_b: Tensor, ansatz: int, reps: int, nq: int, exact: bool) -> Tensor:
    """Fourier coefficients [O, I, nq, 2R+1] of every edge's Bloch components Z (, X, Y) as
    functions of the data angle u; rows 1, cos ku (k = 1..R), sin ku. theta [O, I, Rt, P];
    pre_b [O, I, R] (rpz: e = u + b) or empty. px is passed in as its mix form (mix_form_of_px).
    exact: compute in float64 and round to theta's dtype (the backward stays in theta's dtype)."""
    return coef_cpu(theta, pre_b, ansatz, reps, nq, exact)


@spectral_coef.register_fake
def _(theta, pre_b, ansatz, reps, nq, exact):
    return theta.new_empty(theta.shape[0], theta.shape[1], nq, n_coef(reps))


@torch.library.custom_op("qkan_fast::spectral_coef_backward", mutates_args=())
def spectral_coef_backward(
    grad: Tensor, theta: Tensor, pre_b: Tensor, ansatz: int, reps: int, nq: int, need_b: bool
) -> tuple[Tensor, Tensor]:
    """(grad_theta, grad_pre_b) of spectral_coef; grad_pre_b is empty unless need_b."""
    return coef_backward_cpu(grad, theta, pre_b, ansatz, reps, nq, need_b)


@spectral_coef_backward.register_fake
def _(grad, theta, pre_b, ansatz, reps, nq, need_b):
    return torch.empty_like(theta), (torch.empty_like(pre_b) if need_b else theta.new_empty(0))


def _coef_setup_context(ctx, inputs, output):
    theta, pre_b, ansatz, reps, nq, exact = inputs
    ctx.save_for_backward(theta, pre_b)
    ctx.config = (ansatz, reps, nq)


def _coef_backward(ctx, grad):
    theta, pre_b = ctx.saved_tensors
    need_b = bool(ctx.needs_input_grad[1]) and pre_b.numel() > 0
    if not (ctx.needs_input_grad[0] or need_b):
        return None, None, None, None, None, None
    gtheta, gb = spectral_coef_backward(grad, theta, pre_b, *ctx.config, need_b)
    return (gtheta if ctx.needs_input_grad[0] else None), (gb if need_b else None), None, None, None, None


spectral_coef.register_autograd(_coef_backward, setup_context=_coef_setup_context)


def mix_form_of_px(theta: Tensor) -> Tensor:
    """px theta [..., R+1, 1] -> the mix theta [..., R+1, 2] with the same state up to a global phase
    at every data angle u (module docstring): RX(u) = S^dag RY(u) S, S = phase gate of pi/2, which
    commutes with the RZ gates: row 0 gets +pi/2, row R gets -pi/2, the RX column is 0."""
    col0 = theta[..., 0]
    shift = torch.zeros(col0.shape[-1], dtype=theta.dtype, device=theta.device)
    shift[0] += math.pi / 2
    shift[-1] -= math.pi / 2
    return torch.stack([col0 + shift, torch.zeros_like(col0)], dim=-1)


def edge_params(theta: Tensor, preacts_bias: Tensor, ansatz: str, reps: int, in_dim: int, out_dim: int,
                 dtype: torch.dtype) -> tuple[Tensor, Tensor, int]:
    """theta [O, I, Rt, P] and (rpz) biases [O, I, R] (else empty) for the coefficient kernels, in
    dtype, with the ansatz code they run as: grouped parameters expanded to the edges (to out_dim
    rows when out_dim > 0, else one row), px in its mix form."""
    theta = expand_group(theta, in_dim, 4).to(dtype)
    if out_dim and theta.shape[0] != out_dim:
        theta = theta.expand(out_dim, *theta.shape[1:])
    code = ANSATZ_CODES[ansatz]
    if ansatz == "px":
        theta, code = mix_form_of_px(theta), ANSATZ_CODES["mix"]
    if ansatz == "rpz":
        b = expand_group(preacts_bias, in_dim, 3).to(dtype).expand(theta.shape[0], in_dim, reps)
    else:
        b = theta.new_empty(0)
    return theta, b, code


def coefficients(
    theta: Tensor,  # [O, I, Rt, P] or grouped [g, Rt, P]
    preacts_bias: Tensor,  # [O, I, R] or [g, R] (read for rpz only)
    *,
    ansatz: str,
    reps: int,
    in_dim: int,
    dtype: Optional[torch.dtype] = None,
    bloch: bool = False,
    exact: bool = False,
) -> Tensor:  # [O, I, 2R+1], or [O, I, 3, 2R+1] (Z, X, Y) with bloch; O = 1 for grouped parameters
    """The Fourier coefficients of every edge's Born value Z (and X, Y with bloch) in the data
    angle, differentiable in theta and (rpz) preacts_bias; in `dtype` (default theta's), computed in
    float64 and rounded when exact (the backward stays in `dtype`)."""
    theta, b, code = edge_params(theta, preacts_bias, canonical_ansatz(ansatz), reps, in_dim, 0,
                                  dtype or theta.dtype)
    c = spectral_coef(theta, b, code, reps, 3 if bloch else 1, exact)
    return c if bloch else c[:, :, 0]


# --------------------------------------------------------------------------------------------
# the Born layer's GEMM operand: coefficients with the weights folded in


@torch.library.custom_op("qkan_fast::spectral_born_coef", mutates_args=())
def spectral_born_coef(theta: Tensor, pre_b: Tensor, weight: Tensor, ansatz: int, reps: int) -> tuple[Tensor, Tensor]:
    """(cwt [2R, I, O], c0 [O]) with cwt[k, i, o] = weight[o, i] C[o, i, 1+k] and c0[o] =
    sum_i weight[o, i] C[o, i, 0], C the Born coefficients (spectral_coef, nq = 1). theta
    [O, I, Rt, P]; pre_b [O, I, R] (rpz) or empty; weight [O, I]. The Born layer is then
    y = c0 + spectral_basis(x).flatten(0, 1).T @ cwt.flatten(0, 1), one GEMM."""
    theta, pre_b, weight = theta.contiguous(), pre_b.contiguous(), weight.contiguous()
    out_dim, in_dim = weight.shape
    cw = theta.new_empty(2 * reps, in_dim, out_dim)
    c0 = theta.new_empty(out_dim)
    p = _coef_params(theta, pre_b, ansatz, reps, 1)
    p.weight, p.cw, p.c0 = weight.data_ptr(), cw.data_ptr(), c0.data_ptr()
    _C.spectral_born_coef_cpu(p)
    return cw, c0


@spectral_born_coef.register_fake
def _(theta, pre_b, weight, ansatz, reps):
    return theta.new_empty(2 * reps, weight.shape[1], weight.shape[0]), theta.new_empty(weight.shape[0])


@torch.library.custom_op("qkan_fast::spectral_born_coef_backward", mutates_args=())
def spectral_born_coef_backward(
    grad_cw: Tensor, grad_c0: Tensor, theta: Tensor, pre_b: Tensor, weight: Tensor, ansatz: int, reps: int,
    needs: Sequence[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_theta, grad_pre_b, grad_weight) of spectral_born_coef; one not asked for is empty."""
    grad_cw, grad_c0 = grad_cw.contiguous(), grad_c0.contiguous()
    theta, pre_b, weight = theta.contiguous(), pre_b.contiguous(), weight.contiguous()
    outs = [torch.empty_like(t) if n else t.new_empty(0) for t, n in zip((theta, pre_b, weight), needs)]
    if any(needs):
        p = _coef_params(theta, pre_b, ansatz, reps, 1)
        p.weight, p.grad_cw, p.grad_c0 = weight.data_ptr(), grad_cw.data_ptr(), grad_c0.data_ptr()
        # the kernel always computes grad_theta (the adjoint sweep needs no less work without it)
        gtheta = outs[0] if needs[0] else torch.empty_like(theta)
        p.grad_theta = gtheta.data_ptr()
        if needs[1]:
            p.grad_pre_b = outs[1].data_ptr()
        if needs[2]:
            p.grad_weight = outs[2].data_ptr()
        _C.spectral_born_coef_backward_cpu(p)
    return tuple(outs)


@spectral_born_coef_backward.register_fake
def _(grad_cw, grad_c0, theta, pre_b, weight, ansatz, reps, needs):
    return tuple(torch.empty_like(t) if n else t.new_empty(0) for t, n in zip((theta, pre_b, weight), needs))


def _born_coef_setup_context(ctx, inputs, output):
    theta, pre_b, weight, ansatz, reps = inputs
    ctx.save_for_backward(theta, pre_b, weight)
    ctx.config = (ansatz, reps)


def _born_coef_backward(ctx, grad_cw, grad_c0):
    theta, pre_b, weight = ctx.saved_tensors
    needs = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]) and pre_b.numel() > 0,
             bool(ctx.needs_input_grad[2])]
    if not any(needs):
        return None, None, None, None, None
    if grad_cw is None:
        grad_cw = torch.zeros(2 * ctx.config[1], weight.shape[1], weight.shape[0], dtype=theta.dtype,
                              device=theta.device)
    if grad_c0 is None:
        grad_c0 = theta.new_zeros(weight.shape[0])
    outs = spectral_born_coef_backward(grad_cw, grad_c0, theta, pre_b, weight, *ctx.config, needs)
    return (*(g if n else None for g, n in zip(outs, needs)), None, None)


spectral_born_coef.register_autograd(_born_coef_backward, setup_context=_born_coef_setup_context)


# --------------------------------------------------------------------------------------------
# custom ops: the basis and the fused fast-measure layer


@torch.library.custom_op("qkan_fast::spectral_basis", mutates_args=())
def spectral_basis(x: Tensor, reps: int, px: bool) -> Tensor:
    """[B, I] -> [2R, I, B]: cos(ku) for k = 1..R, then sin(ku); u = x, or arccos(x) for px.
    Transposed (samples last): the Born GEMM's left operand as BLAS runs it fastest (layer())."""
    x = x.contiguous()
    out = x.new_empty(2 * reps, x.shape[1], x.shape[0])
    p = _basis_params(x, reps, px)
    p.basis = out.data_ptr()
    _C.spectral_basis_cpu(p)
    return out


@spectral_basis.register_fake
def _(x, reps, px):
    return x.new_empty(2 * reps, x.shape[1], x.shape[0])


@torch.library.custom_op("qkan_fast::spectral_basis_backward", mutates_args=())
def spectral_basis_backward(grad: Tensor, x: Tensor, reps: int, px: bool) -> Tensor:
    """grad_x [B, I] from grad_basis [2R, I, B] (px: times du/dx, floored as the circuit engine)."""
    grad, x = grad.contiguous(), x.contiguous()
    gx = torch.empty_like(x)
    p = _basis_params(x, reps, px)
    p.grad_basis = grad.data_ptr()
    p.grad_x = gx.data_ptr()
    _C.spectral_basis_backward_cpu(p)
    return gx


@spectral_basis_backward.register_fake
def _(grad, x, reps, px):
    return torch.empty_like(x)


def _basis_setup_context(ctx, inputs, output):
    x, reps, px = inputs
    ctx.save_for_backward(x)
    ctx.config = (reps, px)


def _basis_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None
    return spectral_basis_backward(grad, x, *ctx.config), None, None


spectral_basis.register_autograd(_basis_backward, setup_context=_basis_setup_context)


def _check_fused_coef(coef: Tensor, weight: Tensor, reps: int) -> None:
    """The kernels read coef as [O, I, nq, 2R+1] with nq = 3 or 1: anything else is refused."""
    want = (*weight.shape, 2 * reps + 1)
    if coef.dim() != 4 or coef.shape[2] not in (1, 3) or (coef.shape[0], coef.shape[1], coef.shape[3]) != want:
        raise ValueError(f"coef must have shape ({want[0]}, {want[1]}, 3 or 1, {want[2]}), got {tuple(coef.shape)}")


@torch.library.custom_op("qkan_fast::spectral_fused_layer", mutates_args=())
def spectral_fused_layer(x: Tensor, coef: Tensor, weight: Tensor, reps: int, px: bool) -> Tensor:
    """y[b,o] = sum_i weight[o,i] * g(Z_oi(u[b,i])), fused (no [B, O, I] tensor, no basis in memory).
    x [B, I]; weight [O, I]; coef [O, I, nq, 2R+1]: nq = 3, the components Z, X, Y of the fast
    measure g(Z) = sqrt((1+Z)/2) - sqrt((1-Z)/2) (X and Y serve lanes near a pole, see
    csrc/cpu/spectral_kernels.h), or nq = 1, Z alone, for the Born measure g(Z) = Z. CPU only."""
    x, coef, weight = x.contiguous(), coef.contiguous(), weight.contiguous()
    _check_fused_coef(coef, weight, reps)
    y = x.new_empty(x.shape[0], weight.shape[0])
    p = _layer_params(x, reps, px, weight.shape[0], coef.shape[2])
    p.coef, p.weight, p.y = coef.data_ptr(), weight.data_ptr(), y.data_ptr()
    _C.spectral_fused_forward_cpu(p)
    return y


@spectral_fused_layer.register_fake
def _(x, coef, weight, reps, px):
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("qkan_fast::spectral_fused_backward", mutates_args=())
def spectral_fused_backward(
    grad_y: Tensor, x: Tensor, coef: Tensor, weight: Tensor, reps: int, px: bool, needs: Sequence[bool]
) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_x, grad_coef, grad_weight); a gradient not asked for is an empty tensor."""
    grad_y, x, coef, weight = grad_y.contiguous(), x.contiguous(), coef.contiguous(), weight.contiguous()
    _check_fused_coef(coef, weight, reps)
    outs = [torch.empty_like(t) if n else t.new_empty(0) for t, n in zip((x, coef, weight), needs)]
    p = _layer_params(x, reps, px, weight.shape[0], coef.shape[2])
    p.coef, p.weight, p.grad_y = coef.data_ptr(), weight.data_ptr(), grad_y.data_ptr()
    p.grad_x, p.grad_coef, p.grad_weight = (o.data_ptr() if n else 0 for o, n in zip(outs, needs))
    if any(needs):
        _C.spectral_fused_backward_cpu(p)
    return tuple(outs)


@spectral_fused_backward.register_fake
def _(grad_y, x, coef, weight, reps, px, needs):
    return tuple(torch.empty_like(t) if n else t.new_empty(0) for t, n in zip((x, coef, weight), needs))


def _fused_setup_context(ctx, inputs, output):
    x, coef, weight, reps, px = inputs
    ctx.save_for_backward(x, coef, weight)  # nothing of size B*O*I
    ctx.config = (reps, px)


def _fused_backward(ctx, grad_y):
    x, coef, weight = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:3])
    outs = spectral_fused_backward(grad_y, x, coef, weight, *ctx.config, needs)
    return (*(g if n else None for g, n in zip(outs, needs)), None, None)


spectral_fused_layer.register_autograd(_fused_backward, setup_context=_fused_setup_context)


def born_fused_preferred(batch: int, in_dim: int, out_dim: int, reps: int, itemsize: int = 4) -> bool:
    """Whether the Born layer runs as the fused kernel (spectral_fused_layer, nq = 1) rather than the
    GEMM on the CPU: the rule and its measurements are csrc/cpu/spectral_policy.h."""
    if torch.compiler.is_compiling():  # dynamo cannot call into _C: the rule's twin on _C's numbers
        r = _C.SPECTRAL_BORN_FUSED_RULE
        if batch < r["min_batch"] or out_dim > r["max_out"]:
            return False
        basis_mib = 2 * reps * in_dim * batch * itemsize / 2**20
        return (out_dim <= r["small_out"] or (out_dim <= r["mid_out"] and basis_mib >= r["mid_basis_mib"])
                or basis_mib >= r["big_basis_mib"])
    dtype = _C.DType.float64 if itemsize == 8 else _C.DType.float32
    return _C.spectral_born_fused_preferred(batch, in_dim, out_dim, reps, dtype)


def auto_size_preferred(batch: int, in_dim: int, out_dim: int) -> bool:
    """engine='auto': whether the layer is large enough for the spectral engine
    (csrc/cpu/spectral_policy.h spectral_auto_preferred, where the measurements are)."""
    if torch.compiler.is_compiling():  # dynamo cannot call into _C: the rule's twin on _C's numbers
        return batch * in_dim * out_dim >= _C.SPECTRAL_AUTO_MIN_EDGE_SAMPLES and out_dim >= _C.SPECTRAL_AUTO_MIN_OUT
    return _C.spectral_auto_preferred(batch, in_dim, out_dim)


class _BornGemm(torch.autograd.Function):
    """y = c0 + basis_t.T @ cwt (basis_t [K, B], cwt [K, O], K = 2R*I), with the backward's GEMMs
    in the transposed forms dbasis_t = cwt @ dy.T and dcwt = basis_t @ dy: output rows K >> B, O,
    which MKL splits over two threads far better than autograd's dy @ cwt.T (measured W3, 2 threads:
    0.35 ms against 0.55-0.6 ms per GEMM)."""

    @staticmethod
    def forward(ctx, basis_t, cwt, c0):
        ctx.save_for_backward(basis_t, cwt)
        return torch.addmm(c0, basis_t.t(), cwt)

    @staticmethod
    def backward(ctx, grad_y):
        basis_t, cwt = ctx.saved_tensors
        g_basis = torch.mm(cwt, grad_y.t()) if ctx.needs_input_grad[0] else None
        g_cwt = torch.mm(basis_t, grad_y) if ctx.needs_input_grad[1] else None
        g_c0 = grad_y.sum(dim=0) if ctx.needs_input_grad[2] else None
        return g_basis, g_cwt, g_c0


# --------------------------------------------------------------------------------------------
# the layer


def layer(
    x: Tensor,  # [B, I]
    theta: Tensor,  # [O, I, Rt, P] or grouped [g, Rt, P]
    preacts_weight: Tensor,  # [O, I, R] or [g, R]
    preacts_bias: Tensor,  # [O, I, R] or [g, R]
    weight: Tensor,  # [O, I]  postact weight * mask
    *,
    ansatz: str,
    reps: int,
    fast_measure: bool,
    preact_trainable: bool,
    born_path: Optional[str] = None,
) -> Tensor:  # [B, O]
    """y[b,o] = sum_i weight[o,i] * phi_oi(x[b,i]) by the spectral engine; ValueError where it
    does not apply (see unsupported_reason). born_path: "gemm" or "fused" (CPU only) forces the
    Born measure's schedule, None picks it (born_fused_preferred)."""
    ansatz = canonical_ansatz(ansatz)
    if not isinstance(x, Tensor) or x.dim() != 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (batch, in_dim), got {got}")
    if x.device.type != "cpu":
        raise ValueError(f"the spectral engine has CPU kernels only, got x on {x.device}; "
                         "qkan_layer(engine='spectral') runs the circuit engine there")
    reason = unsupported_reason(ansatz, preact_trainable, preacts_weight, x.dtype)
    if reason is not None:
        raise ValueError(f"engine='spectral' does not apply to this layer: {reason}")
    if born_path is not None and born_path not in ("gemm", "fused"):
        raise ValueError(f"born_path must be 'gemm', 'fused' or None, got {born_path!r}")
    if circuit._functorch_active():
        # torch.func transforms (vmap, grad, jacrev): the spectral ops have no rules for them; the
        # circuit engine computes the same function and has (circuit.py, torch.func section)
        return circuit.layer(x, theta, preacts_weight, preacts_bias, weight, ansatz=ansatz, reps=reps,
                             fast_measure=fast_measure, preact_trainable=preact_trainable)
    in_dim = x.shape[1]
    out_dim = weight.shape[0]
    # the circuit engine's checks (shapes, dtypes, devices, sizes, px domain) on the per-edge view
    check_circuit_inputs(
        x, expand_group(theta, in_dim, 4), expand_group(preacts_weight, in_dim, 3),
        expand_group(preacts_bias, in_dim, 3), ansatz=ansatz, reps=reps, encode=False,
    )
    px = ansatz == "px"
    x = x.contiguous()
    if fast_measure:
        # coefficients computed in float64 and rounded (exact=True): near a pole the kernel's Bloch
        # formula divides by r = 2 |alpha| |beta|, and float32 coefficients (a few ulp each) would
        # then dominate the x gradient (2-6x the circuit engine's error at R = 8, measured); rounded
        # float64 ones keep the spectral engine as accurate as the circuit engine there. Only the
        # forward coefficients run in float64.
        coef = coefficients(theta, preacts_bias, ansatz=ansatz, reps=reps, in_dim=in_dim, dtype=x.dtype,
                            bloch=True, exact=True)
        coef = coef.expand(out_dim, in_dim, *coef.shape[2:]).contiguous()
        return spectral_fused_layer(x, coef, weight.contiguous(), reps, px)
    if born_path == "fused" or (born_path is None and born_fused_preferred(
            x.shape[0], in_dim, out_dim, reps, x.element_size())):
        coef = coefficients(theta, preacts_bias, ansatz=ansatz, reps=reps, in_dim=in_dim, dtype=x.dtype)
        coef = coef.expand(out_dim, in_dim, coef.shape[2]).unsqueeze(2).contiguous()  # [O, I, 1, 2R+1]
        return spectral_fused_layer(x, coef, weight.contiguous(), reps, px)
    # Born: one GEMM, (B, 2R*I) x (2R*I, O), with pw and mask folded into the coefficients
    theta_e, b, code = edge_params(theta, preacts_bias, ansatz, reps, in_dim, out_dim, x.dtype)
    cwt, c0 = spectral_born_coef(theta_e, b, weight.to(x.dtype), code, reps)  # [2R, I, O], [O]
    basis_t = spectral_basis(x, reps, px)  # [2R, I, B]
    return _BornGemm.apply(basis_t.reshape(-1, x.shape[0]), cwt.reshape(-1, out_dim), c0)
