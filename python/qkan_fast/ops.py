"""Torch side of the compiled circuit engine: input checks, custom ops with autograd, engine choice.

The compiled core (`qkan_fast._C`) knows nothing of torch: this module checks every tensor
(device, dtype, shape, contiguity, sizes), fills a `CircuitParams` with raw pointers and calls the
CPU or CUDA kernels. Autograd and torch.compile support come from `torch.library.custom_op`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from . import _C
from .reference import ANSATZE, canonical_ansatz, theta_shape

ANSATZ_CODES = {name: code for code, name in enumerate(ANSATZE)}  # int values of _C.Ansatz (csrc/core_types.h)
# bfloat16: CUDA only (the CPU entry points refuse it)
_DTYPE_CODES = {torch.float32: _C.DType.float32, torch.float64: _C.DType.float64, torch.bfloat16: _C.DType.bfloat16}
INT32_LIMIT = 2**31 - 1
ENGINES = ("auto", "circuit", "spectral", "reference")


# --------------------------------------------------------------------------------------------
# checks


def _shape(t: Tensor) -> tuple:
    return tuple(t.shape)


def _check_tensor(name: str, t, expected_shape: Optional[tuple], like: Optional[Tensor]) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if like is not None:
        if t.device != like.device:
            raise ValueError(f"{name} is on {t.device} but x is on {like.device}; move both to one device")
        if t.dtype != like.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but x has {like.dtype}; use one floating dtype")
    if expected_shape is not None and _shape(t) != tuple(expected_shape):
        raise ValueError(f"{name} must have shape {tuple(expected_shape)}, got {_shape(t)}")
    if t.numel() > INT32_LIMIT:
        raise ValueError(
            f"{name} has {t.numel()} elements, more than the 2**31 - 1 the kernels index; split the batch"
        )


def check_circuit_inputs(
    x: Tensor,  # [B, I]
    theta: Tensor,  # [O, I, Rt, P]
    pre_w: Tensor,  # [O, I, R]
    pre_b: Tensor,  # [O, I, R]
    *,
    ansatz: str,
    reps: int,
    encode: bool,
    out_elems_per_sample: int = 0,
) -> None:
    """Raise a clear TypeError/ValueError for anything the kernels cannot take."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _DTYPE_CODES:
        raise TypeError(f"x must be float32 or float64, got {x.dtype} (bfloat16 is also accepted on CUDA)")
    if x.dtype == torch.bfloat16 and x.device.type != "cuda":
        raise TypeError(
            f"x is bfloat16 on {x.device}: the CPU kernels take float32 or float64 (bfloat16 runs on CUDA "
            "only, stored as bfloat16 and computed in float32); convert with .float() on the CPU"
        )
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"x must be on a CPU or CUDA device, got {x.device}")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, in_dim), got {_shape(x)}")
    batch, in_dim = x.shape
    if batch == 0:
        raise ValueError("x has an empty batch (shape (0, in_dim)); pass at least one sample")
    if in_dim == 0:
        raise ValueError("x has in_dim 0; a layer needs at least one input")
    if not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive int, got {reps!r}")
    if not isinstance(theta, Tensor) or theta.dim() != 4:
        got = _shape(theta) if isinstance(theta, Tensor) else type(theta).__name__
        raise ValueError(f"theta must have shape (out_dim, in_dim, rows, cols), got {got}")
    out_dim = theta.shape[0]
    if out_dim == 0:
        raise ValueError("theta has out_dim 0; a layer needs at least one output")
    _check_tensor("theta", theta, theta_shape(ansatz, out_dim, in_dim, reps), x)
    _check_tensor("preacts_weight", pre_w, (out_dim, in_dim, reps), x)
    _check_tensor("preacts_bias", pre_b, (out_dim, in_dim, reps), x)
    _check_tensor("x", x, None, None)
    if batch * max(out_elems_per_sample, out_dim) > INT32_LIMIT:
        raise ValueError(
            f"the output would have {batch * max(out_elems_per_sample, out_dim)} elements, more than "
            "the 2**31 - 1 the kernels index; split the batch"
        )
    if ansatz == "px" and not torch.compiler.is_compiling():
        check_px_domain(x, pre_w if encode else None, pre_b if encode else None)


def check_px_domain(x: Tensor, pre_w: Optional[Tensor], pre_b: Optional[Tensor]) -> None:
    """px encodes RX(arccos(e)): every encoded value e = w*x + b must lie in [-1, 1].

    e is affine in x, so its range over the batch is reached at the batch min and max of each
    input: the check costs O(B*I + O*I*R), never a (B, O, I, R) tensor.
    """
    lo, hi = x.detach().aminmax(dim=0)  # [I]
    if pre_w is not None:
        w, b = pre_w.detach(), pre_b.detach()
        ends = torch.stack([w * lo[None, :, None] + b, w * hi[None, :, None] + b])
        lo, hi = ends.amin(), ends.amax()
    else:
        lo, hi = lo.min(), hi.max()
    lo_v, hi_v = float(lo), float(hi)
    if not (lo_v >= -1.0 and hi_v <= 1.0):  # also catches NaN
        raise ValueError(
            f"ansatz 'px' needs encoded inputs w*x+b in [-1, 1] (it applies RX(arccos(e))), "
            f"got values in [{lo_v:.6g}, {hi_v:.6g}]; rescale the input (e.g. tanh) first"
        )


# --------------------------------------------------------------------------------------------
# kernel calls


def _ptr(t: Optional[Tensor]) -> int:
    return 0 if t is None or t.numel() == 0 else t.data_ptr()


def _params(x, theta, pre_w, pre_b, ansatz: int, reps: int, fast_measure: bool, encode: bool):
    p = _C.CircuitParams()
    p.batch, p.in_dim = x.shape
    p.out_dim = theta.shape[0]
    p.reps = reps
    p.ansatz = _C.Ansatz(ansatz)
    p.dtype = _DTYPE_CODES[x.dtype]
    p.fast_measure = fast_measure
    p.encode = encode
    p.x = x.data_ptr()
    p.theta = theta.data_ptr()
    if encode:
        p.pre_w = pre_w.data_ptr()
        p.pre_b = pre_b.data_ptr()
    if x.is_cuda:
        p.device = x.device.index if x.device.index is not None else torch.cuda.current_device()
        p.stream = torch.cuda.current_stream(x.device).cuda_stream
    else:
        p.num_threads = torch.get_num_threads()
    return p


def _launch(kind: str, p, device: torch.device) -> None:
    getattr(_C, f"circuit_{kind}_{'cuda' if device.type == 'cuda' else 'cpu'}")(p)


def _contig(*ts: Tensor):
    return [t.contiguous() for t in ts]


@torch.library.custom_op("qkan_fast::circuit_layer", mutates_args=())
def circuit_layer(
    x: Tensor,  # [B, I]
    theta: Tensor,  # [O, I, Rt, P]
    pre_w: Tensor,  # [O, I, R]
    pre_b: Tensor,  # [O, I, R]
    weight: Tensor,  # [O, I]  postact weight * mask
    ansatz: int,
    reps: int,
    fast_measure: bool,
    encode: bool,
) -> Tensor:
    """y[b,o] = sum_i weight[o,i] * phi_oi(x[b,i]), fused: no (B, O, I) tensor. Returns [B, O]."""
    x, theta, pre_w, pre_b, weight = _contig(x, theta, pre_w, pre_b, weight)
    y = x.new_empty(x.shape[0], theta.shape[0])
    p = _params(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode)
    p.weight = weight.data_ptr()
    p.y = y.data_ptr()
    _launch("forward", p, x.device)
    return y


@circuit_layer.register_fake
def _(x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode):
    return x.new_empty(x.shape[0], theta.shape[0])


@torch.library.custom_op("qkan_fast::circuit_postacts", mutates_args=())
def circuit_postacts(
    x: Tensor, theta: Tensor, pre_w: Tensor, pre_b: Tensor, ansatz: int, reps: int, fast_measure: bool, encode: bool
) -> Tensor:
    """phi_oi(x[b,i]) for every edge: [B, O, I] (plotting, pruning, interop, shared groups)."""
    x, theta, pre_w, pre_b = _contig(x, theta, pre_w, pre_b)
    out = x.new_empty(x.shape[0], theta.shape[0], x.shape[1])
    p = _params(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode)
    p.postacts = out.data_ptr()
    _launch("postacts", p, x.device)
    return out


@circuit_postacts.register_fake
def _(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode):
    return x.new_empty(x.shape[0], theta.shape[0], x.shape[1])


@torch.library.custom_op("qkan_fast::circuit_backward", mutates_args=())
def circuit_backward(
    grad: Tensor,  # [B, O] (with weight) or [B, O, I] (postacts)
    x: Tensor,
    theta: Tensor,
    pre_w: Tensor,
    pre_b: Tensor,
    weight: Optional[Tensor],
    ansatz: int,
    reps: int,
    fast_measure: bool,
    encode: bool,
    needs: Sequence[bool],  # grads wanted: x, theta, pre_w, pre_b, weight
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients by adjoint recomputation; a gradient not asked for comes back as an empty tensor."""
    grad, x, theta, pre_w, pre_b = _contig(grad, x, theta, pre_w, pre_b)
    p = _params(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode)
    need_w = weight is not None and needs[4]
    if weight is not None:
        weight = weight.contiguous()
        p.weight = weight.data_ptr()
        p.grad_y = grad.data_ptr()
    else:
        p.grad_postacts = grad.data_ptr()
    def out_like(t: Tensor, wanted: bool, zero: bool = False) -> Tensor:
        # distinct empty tensors for grads not asked for: custom-op outputs may not alias each other
        if not wanted:
            return x.new_empty(0)
        return torch.zeros_like(t) if zero else torch.empty_like(t)

    outs = [
        out_like(x, needs[0]),
        out_like(theta, needs[1]),
        out_like(pre_w, needs[2], zero=not encode),
        out_like(pre_b, needs[3], zero=not encode),
        out_like(x if weight is None else weight, need_w),
    ]
    p.grad_x, p.grad_theta = _ptr(outs[0]), _ptr(outs[1])
    if encode:
        p.grad_pre_w, p.grad_pre_b = _ptr(outs[2]), _ptr(outs[3])
    p.grad_weight = _ptr(outs[4])
    if any(needs[:4]) or need_w:
        _launch("backward", p, x.device)
    return tuple(outs)


@circuit_backward.register_fake
def _(grad, x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, needs):
    def out_like(t, wanted):
        return torch.empty_like(t) if wanted else x.new_empty(0)

    need_w = weight is not None and needs[4]
    return (
        out_like(x, needs[0]),
        out_like(theta, needs[1]),
        out_like(pre_w, needs[2]),
        out_like(pre_b, needs[3]),
        out_like(x if weight is None else weight, need_w),
    )


def _grads_or_none(outs, needs):
    return [g if n else None for g, n in zip(outs, needs)]


def _layer_setup_context(ctx, inputs, output):
    x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode = inputs
    # x and the parameters only: the backward recomputes every edge's state in registers
    ctx.save_for_backward(x, theta, pre_w, pre_b, weight)
    ctx.config = (ansatz, reps, fast_measure, encode)


def _layer_backward(ctx, grad_y):
    x, theta, pre_w, pre_b, weight = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:5])
    outs = circuit_backward(grad_y, x, theta, pre_w, pre_b, weight, *ctx.config, needs)
    return (*_grads_or_none(outs, needs), None, None, None, None)


circuit_layer.register_autograd(_layer_backward, setup_context=_layer_setup_context)


def _postacts_setup_context(ctx, inputs, output):
    x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode = inputs
    ctx.save_for_backward(x, theta, pre_w, pre_b)
    ctx.config = (ansatz, reps, fast_measure, encode)


def _postacts_backward(ctx, grad_post):
    x, theta, pre_w, pre_b = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:4]) + [False]
    outs = circuit_backward(grad_post, x, theta, pre_w, pre_b, None, *ctx.config, needs)
    return (*_grads_or_none(outs[:4], needs[:4]), None, None, None, None)


circuit_postacts.register_autograd(_postacts_backward, setup_context=_postacts_setup_context)


# --------------------------------------------------------------------------------------------
# layer-level functions used by the modules


def expand_group(t: Tensor, out_dim: int, in_dim: int, per_edge_rank: int) -> Tensor:
    """qkan's group=g layout (g, ...) -> the per-edge layout (1, I, ...) with edge (., i) using set
    i mod g; per-edge tensors (O, I, ...) pass through. Differentiable (an index_select)."""
    if t.dim() == per_edge_rank:
        return t
    g = t.shape[0]
    idx = torch.arange(in_dim, device=t.device) % g
    return t.index_select(0, idx).unsqueeze(0)


def resolve_engine(engine: str) -> str:
    """Validate an engine name. "auto" resolves per layer in qkan_layer (spectral.prefer); outside a
    layer (postacts) it means the circuit engine, as does "spectral", which has no postacts path."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return "circuit" if engine == "auto" else engine


def daruan_postacts(
    x: Tensor,  # [B, I]
    theta: Tensor,  # [O, I, Rt, P] or grouped [g, Rt, P]
    pre_w: Tensor,  # [O, I, R] or grouped [g, R]
    pre_b: Tensor,
    *,
    ansatz: str = "pz",
    reps: int,
    fast_measure: bool = True,
    preact_trainable: bool = False,
    out_dim: Optional[int] = None,
    engine: str = "auto",
) -> Tensor:
    """phi for every edge, [B, O, I]. Grouped parameters give [B, 1, I] unless out_dim is given."""
    ansatz = canonical_ansatz(ansatz)
    engine = resolve_engine(engine)
    encode = ansatz == "rpz" or preact_trainable
    if engine == "reference":
        from . import reference

        phi = reference.postacts(
            x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, fast_measure=fast_measure, preact_trainable=preact_trainable
        )
    else:
        in_dim = x.shape[-1] if isinstance(x, Tensor) and x.dim() == 2 else 0
        theta = expand_group(theta, 0, in_dim, 4)
        pre_w = expand_group(pre_w, 0, in_dim, 3)
        pre_b = expand_group(pre_b, 0, in_dim, 3)
        check_circuit_inputs(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, encode=encode,
                             out_elems_per_sample=theta.shape[0] * in_dim)
        phi = circuit_postacts(x, theta, pre_w, pre_b, ANSATZ_CODES[ansatz], reps, fast_measure, encode)
    if out_dim is not None and phi.shape[1] != out_dim:
        phi = phi.expand(phi.shape[0], out_dim, phi.shape[2])
    return phi


def qkan_layer(
    x: Tensor,  # [B, I]
    theta: Tensor,  # [O, I, Rt, P] or grouped [g, Rt, P]
    preacts_weight: Tensor,  # [O, I, R] or [g, R]
    preacts_bias: Tensor,  # [O, I, R] or [g, R]
    base_weight: Tensor,  # [O, I]
    postact_weights: Tensor,  # [O, I]
    postact_bias: Tensor,  # [O, I]
    mask: Tensor,  # [O, I]
    *,
    ansatz: str = "pz",
    reps: int,
    fast_measure: bool = True,
    preact_trainable: bool = False,
    base_activation: Optional[Callable[[Tensor], Tensor]] = torch.nn.functional.silu,
    engine: str = "auto",
) -> Tensor:
    """One QKAN layer, SPEC.md section 2: y[b,o] = sum_i mask*(pw*(phi+pb) + bw*silu(x)). [B, O]."""
    ansatz = canonical_ansatz(ansatz)
    auto = engine == "auto"
    engine = resolve_engine(engine)
    if engine == "reference":
        from . import reference

        return reference.layer(
            x, theta, preacts_weight, preacts_bias, base_weight, postact_weights, postact_bias, mask,
            ansatz=ansatz, reps=reps, fast_measure=fast_measure, preact_trainable=preact_trainable,
            base_activation=base_activation if base_activation is not None else torch.zeros_like,
        )
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, in_dim), got {_shape(x)}")
    out_dim, in_dim = postact_weights.shape
    if x.shape[1] != in_dim:
        raise ValueError(f"x must have shape (batch, {in_dim}), got {_shape(x)}")
    for name, t in (("base_weight", base_weight), ("postact_bias", postact_bias), ("mask", mask)):
        _check_tensor(name, t, (out_dim, in_dim), x)
    _check_tensor("postact_weights", postact_weights, None, x)
    weight = postact_weights * mask  # [O, I]
    encode = ansatz == "rpz" or preact_trainable
    _check_tensor("theta", theta, None, x)
    grouped = theta.dim() == 3
    from . import spectral  # SPEC.md section 4; ValueError where it does not apply (when asked by name)

    if engine == "spectral" or (auto and spectral.prefer(x, theta, preacts_weight, ansatz=ansatz, reps=reps,
                                                          fast_measure=fast_measure,
                                                          preact_trainable=preact_trainable)):
        y = spectral.layer(x, theta, preacts_weight, preacts_bias, weight, ansatz=ansatz, reps=reps,
                           fast_measure=fast_measure, preact_trainable=preact_trainable)
    elif grouped:
        # shared parameter sets: phi does not depend on o, so compute phi once and finish with a GEMM
        phi = daruan_postacts(x, theta, preacts_weight, preacts_bias, ansatz=ansatz, reps=reps,
                              fast_measure=fast_measure, preact_trainable=preact_trainable)[:, 0, :]
        y = phi @ weight.t()
    else:
        check_circuit_inputs(x, theta, preacts_weight, preacts_bias, ansatz=ansatz, reps=reps, encode=encode)
        y = circuit_layer(x, theta, preacts_weight, preacts_bias, weight, ANSATZ_CODES[ansatz], reps,
                          fast_measure, encode)
    # sum_i mask*pw*pb does not depend on the sample: one bias per output
    y = y + (weight * postact_bias).sum(dim=1)
    if base_activation is not None:
        y = y + torch.nn.functional.linear(base_activation(x), base_weight * mask)
    return y

