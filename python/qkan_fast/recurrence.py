"""The fused LSTM recurrence: one QKAN-LSTM or HQKAN-LSTM layer's every time step in one compiled
call forward and one call backward (csrc/recurrence.h; CPU: csrc/cpu/recurrence_kernels.h, CUDA:
cuda/recurrence.cu).

Per step the compiled loop runs the gate map on ``z_t = [x_t, h_{t-1}]``: the gate layer (by the
circuit kernels, or by the spectral engine's fused kernel from coefficients made once per
sequence) with its SiLU base branch, between the HQKAN's two Linear maps for an HQKAN-LSTM; then
the gate nonlinearities and the cell update; the backward runs backpropagation through
time, recomputing each step's gate layer. Saved for backward: the inputs, ``h`` and ``c`` of every
step and the activated gates, ``O(L B H)`` numbers.

One ``torch.autograd.Function`` per layer and call, which also folds the layer's parameters
(postact weight, mask, biases; the spectral coefficients) in and out of the kernel's form, so the
autograd graph holds one node per layer, not one per step and parameter op: at the small sizes of
recurrent models the per-op overhead is what costs (docs/benchmarks.md, "The recurrence").
``networks._GatedLSTM`` calls :func:`lstm_layer` where :func:`unsupported_reason` is None and runs
its per-step Python loop otherwise; that loop is the reference the tests hold this to.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _C, circuit, higher_order, spectral
from .common import ANSATZ_CODES, check_px_domain, check_tensor, expand_group, uses_encoding

_DTYPE_CODES = {torch.float32: _C.DType.float32, torch.float64: _C.DType.float64}
_CUDA_BUILT = bool(_C.build_info()["cuda"])  # read once: unsupported_reason runs every forward


def _ptr(t: Optional[Tensor]) -> int:
    return 0 if t is None or t.numel() == 0 else t.data_ptr()


class _Config:
    """What the kernel needs besides tensors (one per call, kept on ctx)."""

    __slots__ = ("ansatz", "reps", "fast_measure", "encode", "spectral", "px", "nq", "exact", "latent")

    def __init__(self, ansatz: str, reps: int, fast_measure: bool, encode: bool, use_spectral: bool,
                 latent: Tuple[int, int] = (0, 0)):
        self.reps, self.fast_measure, self.encode, self.spectral = reps, fast_measure, encode, use_spectral
        self.latent = latent  # the HQKAN's (a, b), or (0, 0) for a QKAN-LSTM gate layer
        self.px = ansatz == "px"
        # the spectral coefficient map runs px in its mix form (spectral.edge_params)
        self.ansatz = ANSATZ_CODES["mix" if use_spectral and self.px else ansatz]
        self.nq = 3 if fast_measure else 1
        self.exact = fast_measure  # as spectral.layer: float64 coefficients near the poles


def _params(cfg: _Config, x, h0, c0, circuit_theta, pre_w, pre_b, coef, weight, base_weight, bias, linear):
    p = _C.RecurrenceParams()
    p.steps, p.batch, p.input_size = x.shape
    p.hidden = h0.shape[1]
    p.latent_in, p.latent_out = cfg.latent
    for name, t in zip(("down_weight", "down_bias", "up_weight", "up_bias"), linear):
        setattr(p, name, _ptr(t))
    p.dtype = _DTYPE_CODES[x.dtype]
    p.engine = _C.GateEngine.spectral if cfg.spectral else _C.GateEngine.circuit
    p.reps, p.ansatz, p.fast_measure, p.encode = cfg.reps, _C.Ansatz(cfg.ansatz), cfg.fast_measure, cfg.encode
    p.px, p.nq = cfg.px, cfg.nq
    for name, t in (("theta", circuit_theta), ("pre_w", pre_w), ("pre_b", pre_b), ("coef", coef),
                    ("weight", weight), ("base_weight", base_weight), ("bias", bias), ("x", x), ("h0", h0),
                    ("c0", c0)):
        setattr(p, name, _ptr(t))
    if x.is_cuda:
        p.device = x.device.index if x.device.index is not None else torch.cuda.current_device()
        circuit._check_cuda_device(p.device)
        p.stream = torch.cuda.current_stream(x.device).cuda_stream
    p.num_threads = torch.get_num_threads()
    return p


def _run(kind: str, p, x: Tensor) -> None:
    getattr(_C, f"recurrence_{kind}_{'cuda' if x.is_cuda else 'cpu'}")(p)


class _FusedRecurrence(torch.autograd.Function):
    """(x, h0, c0, gate parameters) -> (h_seq, c_seq); see the module docstring."""

    @staticmethod
    def forward(ctx, cfg: _Config,
                x: Tensor,  # [L, B, d]
                h0: Tensor,  # [B, H]
                c0: Tensor,  # [B, H]
                theta: Tensor,  # [O, I, Rt, P] per edge of the gate layer (spectral: the coefficient map's form)
                pre_w: Optional[Tensor],  # [O, I, R] circuit with encodings, else None
                pre_b: Optional[Tensor],  # [O, I, R] circuit with encodings, or rpz's biases (spectral)
                postact_weights: Tensor,  # [O, I]
                mask: Tensor,  # [O, I]
                postact_bias: Tensor,  # [O, I]
                base_weight: Optional[Tensor],  # [O, I], None without a base branch
                gate_bias: Optional[Tensor],  # [O] (QKAN-LSTM)
                down_weight: Optional[Tensor],  # [a, d + H] (HQKAN-LSTM), else None
                down_bias: Optional[Tensor],  # [a]
                up_weight: Optional[Tensor],  # [4H, b]
                up_bias: Optional[Tensor],  # [4H]
                ):
        L, B, _ = x.shape
        H = h0.shape[1]
        x, h0, c0, theta = x.contiguous(), h0.contiguous(), c0.contiguous(), theta.contiguous()
        weight = (postact_weights * mask).contiguous()
        bias = (weight * postact_bias).sum(dim=1)  # sum_i mask*pw*pb: one bias per gate-layer output
        if gate_bias is not None:
            bias = bias + gate_bias
        base = (base_weight * mask).contiguous() if base_weight is not None else None
        linear = [t.contiguous() if t is not None else None for t in (down_weight, down_bias, up_weight, up_bias)]
        coef = None
        if cfg.spectral:
            b = pre_b.contiguous() if pre_b is not None else theta.new_empty(0)
            coef = spectral.coef_cpu(theta, b, cfg.ansatz, cfg.reps, cfg.nq, cfg.exact)
            circuit_theta = cw = cb = None
        else:
            circuit_theta = theta
            cw = pre_w.contiguous() if cfg.encode else None
            cb = pre_b.contiguous() if cfg.encode else None
        h_seq, c_seq, gates = x.new_empty(L, B, H), x.new_empty(L, B, H), x.new_empty(L, B, 4 * H)
        latent = x.new_empty(L, B, cfg.latent[1])  # the gate layer's outputs of an HQKAN; empty otherwise
        p = _params(cfg, x, h0, c0, circuit_theta, cw, cb, coef, weight, base, bias, linear)
        p.h_seq, p.c_seq, p.gates, p.latent = h_seq.data_ptr(), c_seq.data_ptr(), gates.data_ptr(), _ptr(latent)
        _run("forward", p, x)
        ctx.cfg = cfg
        ctx.save_for_backward(x, h0, c0, theta, pre_w, pre_b, coef, weight, base, bias, postact_bias, mask, h_seq,
                              c_seq, gates, latent, *linear)
        ctx.mark_non_differentiable(gates)
        return h_seq, c_seq

    @staticmethod
    def backward(ctx, grad_h_seq, grad_c_seq):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "the fused (H)QKAN-LSTM recurrence has no second derivatives (create_graph=True); build the "
                "model with fused=False to run its per-step loop, whose gate layers support them"
            )
        (x, h0, c0, theta, pre_w, pre_b, coef, weight, base, bias, postact_bias, mask, h_seq, c_seq, gates,
         latent, *linear) = ctx.saved_tensors
        cfg = ctx.cfg
        # (cfg, x, h0, c0, theta, pre_w, pre_b, pw, mask, pb, base_weight, gate_bias, down w, down b, up w, up b)
        need = ctx.needs_input_grad
        grad_h_seq = torch.zeros_like(h_seq) if grad_h_seq is None else grad_h_seq.contiguous()
        grad_c_seq = torch.zeros_like(c_seq) if grad_c_seq is None else grad_c_seq.contiguous()
        p = _params(cfg, x, h0, c0, None if cfg.spectral else theta, pre_w if cfg.encode else None,
                    pre_b if cfg.encode else None, coef, weight, base, bias, linear)
        p.h_seq, p.c_seq, p.gates, p.latent = h_seq.data_ptr(), c_seq.data_ptr(), gates.data_ptr(), _ptr(latent)
        p.grad_h_seq, p.grad_c_seq = grad_h_seq.data_ptr(), grad_c_seq.data_ptr()
        gx, gh0, gc0 = torch.empty_like(x), torch.empty_like(h0), torch.empty_like(c0)
        p.grad_x, p.grad_h0, p.grad_c0 = gx.data_ptr(), gh0.data_ptr(), gc0.data_ptr()

        def out(name: str, like: Optional[Tensor], wanted: bool) -> Optional[Tensor]:
            if not wanted or like is None:
                return None
            g = torch.empty_like(like)
            setattr(p, f"grad_{name}", g.data_ptr())
            return g

        need_theta = need[4] or (cfg.spectral and need[6])
        g_theta = out("coef", coef, need_theta) if cfg.spectral else out("theta", theta, need[4])
        g_pre_w = out("pre_w", pre_w, need[5] and cfg.encode)
        g_pre_b = out("pre_b", pre_b, need[6] and cfg.encode)
        g_weight = out("weight", weight, need[7] or need[9])
        g_base = out("base_weight", base, need[10])
        g_bias = out("bias", bias, need[7] or need[9] or need[11])
        g_linear = [out(name, t, n) for name, t, n in
                    zip(("down_weight", "down_bias", "up_weight", "up_bias"), linear, need[12:16])]
        _run("backward", p, x)

        if cfg.spectral and g_theta is not None:  # grad_coef -> theta (and rpz's biases)
            b = pre_b if pre_b is not None else theta.new_empty(0)
            g_theta, g_b = spectral.coef_backward_cpu(g_theta, theta, b, cfg.ansatz, cfg.reps, cfg.nq,
                                                      need[6] and pre_b is not None)
            g_pre_b = g_b if need[6] and pre_b is not None else None
        # weight = pw * mask, bias = sum_i weight * pb (+ gate_bias), base = base_weight * mask
        g_pw = g_pb = g_bw = None
        if g_weight is not None:
            g_weight = g_weight + postact_bias * g_bias[:, None]
            g_pw = g_weight * mask if need[7] else None
            g_pb = weight * g_bias[:, None] if need[9] else None
        if need[10] and g_base is not None:
            g_bw = g_base * mask
        g_gate_bias = g_bias if need[11] else None
        return (None, gx, gh0, gc0, g_theta if need[4] else None, g_pre_w, g_pre_b, g_pw, None, g_pb, g_bw,
                g_gate_bias, *g_linear)


def _gate_layer(gates):
    """The QKANLayer of a gate map: the map itself (QKAN-LSTM) or the HQKAN's one latent layer."""
    from .modules import QKANLayer
    from .networks import HQKAN

    if isinstance(gates, QKANLayer):
        return gates
    if isinstance(gates, HQKAN) and len(gates.qkan.layers) == 1 and not gates.qkan.norm_out:
        return gates.qkan.layers[0]
    return None


def unsupported_reason(gates, x: Tensor) -> Optional[str]:
    """None when :func:`lstm_layer` runs this gate map on input ``x`` ``(L, B, d)``, else why not."""
    layer = _gate_layer(gates)
    if layer is None:
        return "the gate map is neither a QKANLayer nor an HQKAN with one latent layer and no norm_out"
    if x.device.type == "cuda":
        if not _CUDA_BUILT:
            return "qkan_fast was built without CUDA"
    elif x.device.type != "cpu":
        return f"no fused recurrence on {x.device.type}"
    if x.dtype not in _DTYPE_CODES:
        return f"dtype {x.dtype}"
    if x.shape[1] == 0:
        return "empty batch"
    if layer.is_batchnorm:
        return "batch normalisation in the gate layer"
    if layer.mask.requires_grad:
        return "a mask that requires grad"
    if layer.base_activation not in (None, F.silu):
        return "a base activation other than SiLU"
    if layer.engine == "reference":
        return "engine='reference'"
    if layer.ansatz == "px" and (layer.preact_trainable or layer is not gates):
        return "px with trainable encodings or behind a Linear map (the encoded values must be range-checked per step)"
    if torch.compiler.is_compiling():
        return "torch.compile tracing (the loop's gate layers are custom ops it traces)"
    if circuit._functorch_active() or higher_order.torch_form_needed():
        return "a torch.func transform"
    return None


# engine="auto" inside the recurrence: the spectral fused kernel wherever the identity applies,
# measured 1.1x-3.9x faster than the circuit kernels at LD and L1 for every ansatz and measure
# (bench/recurrence_engines.py -> bench/results/recurrence_engines.json; `real` with the fast
# measure included, unlike a lone layer: the per-call costs that dominate there are paid once per
# sequence here), except px on small sequences, where its mix-form parameters (a few more torch
# ops per call) cost more than the kernel saves (0.87x-0.91x at LD, 1.5x-1.9x at L1).
_PX_SPECTRAL_MIN_WORK = 1 << 17  # L * B * (d + H) * 4H edge-steps


def _use_spectral(layer, x: Tensor) -> bool:
    """Whether the gate layer runs as the spectral engine's fused kernel (engine "spectral", or "auto"
    by the rule above) rather than the circuit kernels."""
    if x.device.type != "cpu":
        return False  # no spectral kernels there; engine="spectral" runs the circuit engine, as for a layer
    reason = spectral.unsupported_reason(layer.ansatz, layer.preact_trainable, layer.preacts_weight, x.dtype)
    if layer.engine == "spectral":
        if reason is not None:
            raise ValueError(f"engine='spectral' does not apply to this layer: {reason}")
        return True
    if layer.engine != "auto" or reason is not None:
        return False
    if layer.ansatz == "px":
        return x.shape[0] * x.shape[1] * layer.in_dim * layer.out_dim >= _PX_SPECTRAL_MIN_WORK
    return True


def lstm_layer(x: Tensor, h0: Tensor, c0: Tensor, gates, gate_bias: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """One LSTM layer over a sequence by the fused recurrence.

    Args:
        x: ``(L, B, d)`` inputs (any strides), dtype and device of the gate map.
        h0, c0: ``(B, H)`` initial state.
        gates: the layer's gate map ``(d + H -> 4H)``, outputs ``[f, i, g, o]``: a
            :class:`~qkan_fast.QKANLayer` or an :class:`~qkan_fast.HQKAN`.
        gate_bias: ``(4H,)`` or None.

    Returns:
        ``h_seq`` ``(L, B, H)`` and ``c_seq`` ``(L, B, H)``; ``h_n, c_n`` are their last steps.

    Raises:
        ValueError: :func:`unsupported_reason` is not None, or a ``px`` input lies outside ``[-1, 1]``.
    """
    reason = unsupported_reason(gates, x)
    if reason is not None:
        raise ValueError(f"the fused recurrence does not run this gate map: {reason}")
    layer = _gate_layer(gates)
    ansatz, reps, in_dim, out_dim = layer.ansatz, layer.reps, layer.in_dim, layer.out_dim
    # one dtype and device for every tensor the compiled loop reads (the kernel trusts them)
    batch, hidden = x.shape[1], out_dim // 4 if layer is gates else gates.d_out // 4
    check_tensor("h0", h0, (batch, hidden), x)
    check_tensor("c0", c0, (batch, hidden), x)
    for name, t in gates.named_parameters():
        check_tensor(name, t, None, x)
    if gate_bias is not None:
        check_tensor("gate_bias", gate_bias, (4 * hidden,), x)
    use_spectral = _use_spectral(layer, x)
    encode = uses_encoding(ansatz, layer.preact_trainable)
    if ansatz == "px":
        check_px_domain(x.reshape(-1, x.shape[-1]), None, None)  # the hidden part lies in (-1, 1)
    hqkan = layer is not gates
    cfg = _Config(ansatz, reps, layer.fast_measure, encode and not use_spectral, use_spectral,
                  (in_dim, out_dim) if hqkan else (0, 0))
    pre_w = pre_b = None
    if use_spectral:
        theta, b, _ = spectral.edge_params(layer.theta, layer.preacts_bias, ansatz, reps, in_dim, out_dim, x.dtype)
        pre_b = b if b.numel() else None
    else:
        theta = expand_group(layer.theta, in_dim, 4).expand(out_dim, in_dim, *layer.theta.shape[-2:])
        if encode:
            pre_w = expand_group(layer.preacts_weight, in_dim, 3).expand(out_dim, in_dim, reps)
            pre_b = expand_group(layer.preacts_bias, in_dim, 3).expand(out_dim, in_dim, reps)
    base = layer.base_weight if layer.base_activation is not None else None
    linear = (gates.down.weight, gates.down.bias, gates.up.weight, gates.up.bias) if hqkan else (None,) * 4
    return _FusedRecurrence.apply(cfg, x, h0, c0, theta, pre_w, pre_b, layer.postact_weights, layer.mask,
                                  layer.postact_bias, base, gate_bias, *linear)
