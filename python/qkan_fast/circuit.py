"""The circuit engine: torch custom ops over the compiled circuit kernels (csrc/cpu, cuda/).

Every edge's DARUAN circuit is run in registers by the kernels, the sum over inputs fused; the
backward recomputes each edge's state and sweeps the adjoint back through the gates. Saved for
backward: x and the parameters, nothing of size B*O*I. Callers (engines.py) have checked every
tensor with common.check_circuit_inputs; the ops make inputs contiguous and fill the params
struct the core takes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from . import _C
from .common import ANSATZ_CODES, check_circuit_inputs, check_px_domain, expand_group, uses_encoding

# bfloat16: CUDA only (the CPU entry points refuse it)
_DTYPE_CODES = {torch.float32: _C.DType.float32, torch.float64: _C.DType.float64, torch.bfloat16: _C.DType.bfloat16}


_READY_DEVICES: set = set()


def _check_cuda_device(index: int) -> None:
    """Once per device, before its first launch: can this driver and GPU run the compiled kernels?
    _C.cuda_check raises a RuntimeError naming the driver version, the GPU and the compiled archs
    instead of a bare "no kernel image" from inside a launch."""
    if index not in _READY_DEVICES:
        _C.cuda_check(index)
        _READY_DEVICES.add(index)


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
        _check_cuda_device(p.device)
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
    if x.shape[0] == 0:
        return y
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
    if x.shape[0] == 0:
        return out
    p = _params(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode)
    p.postacts = out.data_ptr()
    _launch("postacts", p, x.device)
    return out


@circuit_postacts.register_fake
def _(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode):
    return x.new_empty(x.shape[0], theta.shape[0], x.shape[1])


def _grad_outputs(x, theta, pre_w, pre_b, weight, encode, needs, make):
    """The five gradient buffers (x, theta, pre_w, pre_b, weight); one not asked for is empty.
    Distinct tensors: custom-op outputs may not alias each other."""
    def out(t, wanted, zero=False):
        if not wanted:
            return x.new_empty(0)
        return torch.zeros_like(t) if zero else make(t)

    need_w = weight is not None and needs[4]
    return [out(x, needs[0]), out(theta, needs[1]), out(pre_w, needs[2], zero=not encode),
            out(pre_b, needs[3], zero=not encode), out(x if weight is None else weight, need_w)]


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
    """Gradients by adjoint recomputation; a gradient not asked for comes back as an empty tensor.
    An empty batch gives zero parameter gradients, as nn.Linear does."""
    grad, x, theta, pre_w, pre_b = _contig(grad, x, theta, pre_w, pre_b)
    weight = None if weight is None else weight.contiguous()
    empty_batch = x.shape[0] == 0
    outs = _grad_outputs(x, theta, pre_w, pre_b, weight, encode, needs,
                         torch.zeros_like if empty_batch else torch.empty_like)
    if empty_batch or not any(o.numel() for o in outs):
        return tuple(outs)
    p = _params(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode)
    if weight is not None:
        p.weight = weight.data_ptr()
        p.grad_y = grad.data_ptr()
    else:
        p.grad_postacts = grad.data_ptr()
    p.grad_x, p.grad_theta = _ptr(outs[0]), _ptr(outs[1])
    if encode:
        p.grad_pre_w, p.grad_pre_b = _ptr(outs[2]), _ptr(outs[3])
    p.grad_weight = _ptr(outs[4])
    _launch("backward", p, x.device)
    return tuple(outs)


@circuit_backward.register_fake
def _(grad, x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, needs):
    return tuple(_grad_outputs(x, theta, pre_w, pre_b, weight, True, needs, torch.empty_like))


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
    outs = _backward_op(grad_y, x, theta, pre_w, pre_b, weight, *ctx.config, needs)
    return (*_grads_or_none(outs, needs), None, None, None, None)


circuit_layer.register_autograd(_layer_backward, setup_context=_layer_setup_context)


def _postacts_setup_context(ctx, inputs, output):
    x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode = inputs
    ctx.save_for_backward(x, theta, pre_w, pre_b)
    ctx.config = (ansatz, reps, fast_measure, encode)


def _postacts_backward(ctx, grad_post):
    x, theta, pre_w, pre_b = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:4]) + [False]
    outs = _backward_op(grad_post, x, theta, pre_w, pre_b, None, *ctx.config, needs)
    return (*_grads_or_none(outs[:4], needs[:4]), None, None, None, None)


circuit_postacts.register_autograd(_postacts_backward, setup_context=_postacts_setup_context)


# --------------------------------------------------------------------------------------------
# torch.func (vmap, grad, jacrev)
#
# vmap rules: a vmapped x alone is folded into the kernel's batch ([N, B, I] -> [N*B, I]: every
# sample is independent); anything else vmapped (parameters, or a cotangent whose parameter
# gradients must stay per vmapped index) runs the op once per index and stacks the results.
#
# torch's custom-op autograd (register_autograd) is an autograd.Function without setup_context,
# which the torch.func transforms refuse; under a transform the entry points below call the ops
# through autograd.Functions with setup_context and generated vmap rules instead (same backward,
# same kernels). No jvp: forward mode (jacfwd, hessian, jvp) raises a NotImplementedError that says so
# (before, jacfwd silently returned a zero tangent for the kernels' part: a wrong Jacobian).


def _functorch_active() -> bool:
    return torch._C._are_functorch_transforms_active()


def _vmap_per_index(op, info, in_dims, args):
    """Run op once per vmapped index (vmapped tensors sliced, the rest shared); stack on dim 0."""
    per_index = []
    for k in range(info.batch_size):
        sample = [a.select(d, k) if isinstance(a, Tensor) and isinstance(d, int) else a
                  for a, d in zip(args, in_dims)]
        per_index.append(op(*sample))
    if isinstance(per_index[0], (tuple, list)):
        outs = tuple(torch.stack(list(o)) for o in zip(*per_index))
        return outs, (0,) * len(outs)
    return torch.stack(per_index), 0


def _fold(t: Tensor, d: Optional[int], n: int) -> Tensor:
    """[.., N at d, ..] (or unbatched: broadcast to N) -> [N*B, ...] with the vmapped index outermost."""
    t = t.movedim(d, 0) if d is not None else t.expand(n, *t.shape)
    return t.reshape(n * t.shape[1], *t.shape[2:])


_PX = ANSATZ_CODES["px"]


def _check_px_where_readable(x: Tensor, pre_w: Tensor, pre_b: Tensor, encode: bool) -> None:
    """The px domain check reads values, which vmap cannot (.item()); where it cannot, the op's
    vmap rule below runs it on the unbatched tensors (the outermost rule sees plain values)."""
    try:
        check_px_domain(x, pre_w if encode else None, pre_b if encode else None)
    except RuntimeError as err:
        if "vmap" not in str(err):
            raise


def _checks(x, theta, pre_w, pre_b, *, ansatz, reps, encode, out_elems_per_sample=0):
    """check_circuit_inputs; under a torch.func transform the px value check as above (rpz has
    px's parameter shapes, so it stands in for the shape checks)."""
    deferred = ansatz == "px" and _functorch_active()
    check_circuit_inputs(x, theta, pre_w, pre_b, ansatz="rpz" if deferred else ansatz, reps=reps, encode=encode,
                         out_elems_per_sample=out_elems_per_sample)
    if deferred and x.shape[0] > 0:
        _check_px_where_readable(x, pre_w, pre_b, encode)


def _check_px_per_index(info, x_dim, w_dim, b_dim, x, pre_w, pre_b, encode) -> None:
    """The px value check for each vmapped index (its x with its encodings)."""
    if x.numel() == 0:
        return
    for k in range(info.batch_size):
        pick = [t.select(d, k) if d is not None else t for t, d in ((x, x_dim), (pre_w, w_dim), (pre_b, b_dim))]
        _check_px_where_readable(*pick, encode)


@circuit_layer.register_vmap
def _layer_vmap(info, in_dims, x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode):
    if ansatz == _PX:
        _check_px_per_index(info, in_dims[0], in_dims[2], in_dims[3], x, pre_w, pre_b, encode)
    if any(d is not None for d in in_dims[1:5]):
        return _vmap_per_index(circuit_layer, info, in_dims,
                               (x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode))
    n = info.batch_size
    batch = x.movedim(in_dims[0], 0).shape[1]
    y = circuit_layer(_fold(x, in_dims[0], n), theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode)
    return y.reshape(n, batch, y.shape[-1]), 0


@circuit_postacts.register_vmap
def _postacts_vmap(info, in_dims, x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode):
    if ansatz == _PX:
        _check_px_per_index(info, in_dims[0], in_dims[2], in_dims[3], x, pre_w, pre_b, encode)
    if any(d is not None for d in in_dims[1:4]):
        return _vmap_per_index(circuit_postacts, info, in_dims,
                               (x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode))
    n = info.batch_size
    batch = x.movedim(in_dims[0], 0).shape[1]
    out = circuit_postacts(_fold(x, in_dims[0], n), theta, pre_w, pre_b, ansatz, reps, fast_measure, encode)
    return out.reshape(n, batch, *out.shape[1:]), 0


@circuit_backward.register_vmap
def _backward_vmap(info, in_dims, grad, x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, needs):
    args = (grad, x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, needs)
    params_vmapped = any(d is not None for d in in_dims[2:6])
    # grad_x of sample b reads only grad[b] and x[b]: foldable; parameter gradients sum over the
    # batch, so they would mix the vmapped indices: those run per index
    if params_vmapped or any(needs[1:]):
        return _vmap_per_index(circuit_backward, info, in_dims, args)
    n = info.batch_size
    batch = (grad.movedim(in_dims[0], 0).shape[1] if in_dims[0] is not None else grad.shape[0])
    outs = circuit_backward(_fold(grad, in_dims[0], n), _fold(x, in_dims[1], n), theta, pre_w, pre_b, weight,
                            ansatz, reps, fast_measure, encode, needs)
    gx = outs[0].reshape(n, batch, *outs[0].shape[1:]) if needs[0] else outs[0]
    return (gx, *outs[1:]), (0 if needs[0] else None, None, None, None, None)


_NO_FORWARD_MODE = (
    "qkan_fast: the circuit kernels have no forward-mode derivative (jvp), which torch.func.jacfwd, "
    "hessian and jvp need; use torch.func.jacrev (reverse mode), or engine='reference' for forward mode"
)


class _BackwardFunction(torch.autograd.Function):
    """circuit_backward for the torch.func transforms: they run the backward with a graph, so the
    op must be reachable through a Function too; differentiating it again is item 1 of issue 15."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad, x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, needs):
        return circuit_backward(grad, x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode, needs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            "qkan_fast: the circuit kernels have no second derivatives yet (double backward, hessian, "
            "jacrev of grad); use engine='reference' for higher-order derivatives"
        )


def _backward_op(*args):
    return _BackwardFunction.apply(*args) if _functorch_active() else circuit_backward(*args)


class _LayerFunction(torch.autograd.Function):
    """circuit_layer for the torch.func transforms (see the section comment)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode):
        return circuit_layer(x, theta, pre_w, pre_b, weight, ansatz, reps, fast_measure, encode)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _layer_setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad_y):
        return _layer_backward(ctx, grad_y)

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError(_NO_FORWARD_MODE)


class _PostactsFunction(torch.autograd.Function):
    """circuit_postacts for the torch.func transforms (see the section comment)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode):
        return circuit_postacts(x, theta, pre_w, pre_b, ansatz, reps, fast_measure, encode)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _postacts_setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad_post):
        return _postacts_backward(ctx, grad_post)

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError(_NO_FORWARD_MODE)


# --------------------------------------------------------------------------------------------
# the engine's two entry points


def postacts(
    x: Tensor,  # [B, I]
    theta: Tensor,  # [O, I, Rt, P] or grouped [g, Rt, P]
    pre_w: Tensor,  # [O, I, R] or [g, R]
    pre_b: Tensor,  # [O, I, R] or [g, R]
    *,
    ansatz: str,
    reps: int,
    fast_measure: bool,
    preact_trainable: bool,
) -> Tensor:  # [B, O, I]; [B, 1, I] for grouped parameters
    in_dim = x.shape[-1] if isinstance(x, Tensor) and x.dim() == 2 else 0
    theta, pre_w, pre_b = expand_group(theta, in_dim, 4), expand_group(pre_w, in_dim, 3), expand_group(pre_b, in_dim, 3)
    encode = uses_encoding(ansatz, preact_trainable)
    _checks(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, encode=encode,
            out_elems_per_sample=theta.shape[0] * in_dim)
    op = _PostactsFunction.apply if _functorch_active() else circuit_postacts
    return op(x, theta, pre_w, pre_b, ANSATZ_CODES[ansatz], reps, fast_measure, encode)


def layer(
    x: Tensor,  # [B, I]
    theta: Tensor,  # [O, I, Rt, P] or grouped [g, Rt, P]
    pre_w: Tensor,  # [O, I, R] or [g, R]
    pre_b: Tensor,  # [O, I, R] or [g, R]
    weight: Tensor,  # [O, I]  postact weight * mask
    *,
    ansatz: str,
    reps: int,
    fast_measure: bool,
    preact_trainable: bool,
) -> Tensor:  # [B, O]
    """y[b,o] = sum_i weight[o,i] * phi_oi(x[b,i]) by the circuit kernels."""
    if theta.dim() == 3:
        # shared parameter sets: phi does not depend on o, so compute it once and finish with a GEMM
        phi = postacts(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, fast_measure=fast_measure,
                       preact_trainable=preact_trainable)[:, 0, :]
        return phi @ weight.t()
    encode = uses_encoding(ansatz, preact_trainable)
    _checks(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, encode=encode)
    op = _LayerFunction.apply if _functorch_active() else circuit_layer
    return op(x, theta, pre_w, pre_b, weight, ANSATZ_CODES[ansatz], reps, fast_measure, encode)
