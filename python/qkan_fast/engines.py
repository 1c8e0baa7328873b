"""The one engine dispatcher: a QKAN layer (or its per-edge values) by the circuit, spectral or
reference engine. Modules call only this; the engines never call each other.

- "circuit": the fused circuit kernels (CPU or CUDA), every ansatz, measure and flag;
- "spectral": the exact Fourier form (docs/math.md) on the CPU where it applies; it raises a
  ValueError where it does not apply, and on other devices the circuit engine runs (the same
  function: the spectral engine has no device kernels yet);
- "reference": the pure-torch oracle (reference.py);
- "auto": spectral where it applies and was measured faster (spectral.prefer), else circuit.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from . import circuit, higher_order, reference, spectral
from .common import canonical_ansatz, check_engine, check_tensor, check_x


def _spectral_runs(engine: str, x: Tensor, theta: Tensor, preacts_weight: Tensor, *, ansatz: str, reps: int,
                   fast_measure: bool, preact_trainable: bool) -> bool:
    if x.device.type != "cpu" or x.shape[0] == 0:
        return False  # no spectral kernels off the CPU; an empty batch needs no kernel at all
    if engine == "spectral":
        return True  # spectral.layer raises where the identity does not apply
    return engine == "auto" and spectral.prefer(x, theta, preacts_weight, ansatz=ansatz, reps=reps,
                                                fast_measure=fast_measure, preact_trainable=preact_trainable)


def daruan_postacts(
    x: Tensor,  # [B, I]
    theta: Tensor,  # [O, I, Rt, P] or grouped [g, Rt, P]
    pre_w: Tensor,  # [O, I, R] or grouped [g, R]
    pre_b: Tensor,  # [O, I, R] or grouped [g, R]
    *,
    ansatz: str = "pz",
    reps: int,
    fast_measure: bool = True,
    preact_trainable: bool = False,
    out_dim: Optional[int] = None,
    engine: str = "auto",
) -> Tensor:
    """Every edge's DARUAN value ``phi_oi(x[b, i])`` (before the postact weight, bias and mask).

    Args:
        x: inputs, float32 or float64, shape (B, I); px needs encoded values in [-1, 1].
        theta: per-edge angles (O, I, Rt, P) (see ``common.theta_shape``), or grouped (g, Rt, P).
        pre_w: encoding weights (O, I, R) or (g, R); read when ``preact_trainable`` or for rpz.
        pre_b: encoding biases, same shape as ``pre_w``.
        ansatz: pz, rpz, px, real or mix (or an alias).
        reps: number of re-uploading repetitions R.
        fast_measure: ``|alpha| - |beta|`` when True, the Born value ``|alpha|^2 - |beta|^2`` when False.
        preact_trainable: whether the encodings w*x + b are used.
        out_dim: expand grouped results to this many outputs (a view, no copy).
        engine: "auto", "circuit", "spectral" or "reference"; the per-edge values always come
            from the circuit kernels unless "reference" is asked for.

    Returns:
        phi of shape (B, O, I); (B, 1, I) for grouped parameters unless ``out_dim`` is given.

    Raises:
        TypeError, ValueError: for a wrong type, shape, dtype, device or px domain.

    Example:
        >>> x = torch.rand(8, 3)
        >>> theta = torch.randn(2, 3, 4, 2)
        >>> w, b = torch.ones(2, 3, 3), torch.zeros(2, 3, 3)
        >>> daruan_postacts(x, theta, w, b, reps=3).shape
        torch.Size([8, 2, 3])
    """
    ansatz = canonical_ansatz(ansatz)
    if check_engine(engine) == "reference":
        phi = reference.postacts(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, fast_measure=fast_measure,
                                 preact_trainable=preact_trainable,
                                 out_dim=1 if theta.dim() == 3 and pre_w.dim() == 2 else None)  # as the circuit: [B, 1, I]
    elif higher_order.torch_form_needed():  # jacfwd, hessian, nested torch.func transforms
        phi = higher_order.postacts_torch(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, fast_measure=fast_measure,
                                          preact_trainable=preact_trainable)
    else:
        phi = circuit.postacts(x, theta, pre_w, pre_b, ansatz=ansatz, reps=reps, fast_measure=fast_measure,
                               preact_trainable=preact_trainable)
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
    """One QKAN layer, functional form (docs/math.md):
    ``y[b,o] = sum_i mask*(pw*(phi_oi(x[b,i]) + pb) + bw*base_activation(x[b,i]))``.

    Args:
        x: inputs, float32 or float64 (bfloat16 on CUDA), shape (B, I); B may be 0.
        theta: per-edge angles (O, I, Rt, P), or grouped (g, Rt, P).
        preacts_weight: encoding weights (O, I, R) or (g, R).
        preacts_bias: encoding biases (O, I, R) or (g, R).
        base_weight: weight of the base branch, (O, I).
        postact_weights: weight of each edge's DARUAN value, (O, I).
        postact_bias: bias added to each edge's DARUAN value, (O, I).
        mask: 0/1 edge mask (pruning), (O, I).
        ansatz: pz, rpz, px, real or mix (or an alias).
        reps: number of re-uploading repetitions R.
        fast_measure: ``|alpha| - |beta|`` when True, the Born value when False.
        preact_trainable: whether the encodings w*x + b are used.
        base_activation: the base branch's function of x, or None to drop that branch.
        engine: "auto", "circuit", "spectral" or "reference" (docs/engines.md).

    Returns:
        y of shape (B, O), differentiable in x and every parameter.

    Raises:
        TypeError, ValueError: for a wrong type, shape, dtype, device, engine name or px domain;
            ValueError also for engine="spectral" where the spectral identity does not apply.

    Example:
        >>> O, I, R = 2, 3, 3
        >>> y = qkan_layer(torch.randn(8, I), torch.randn(O, I, R + 1, 2), torch.ones(O, I, R),
        ...                torch.zeros(O, I, R), torch.zeros(O, I), torch.ones(O, I), torch.zeros(O, I),
        ...                torch.ones(O, I), reps=R)
        >>> y.shape
        torch.Size([8, 2])
    """
    ansatz = canonical_ansatz(ansatz)
    check_engine(engine)
    if engine == "reference":
        return reference.layer(
            x, theta, preacts_weight, preacts_bias, base_weight, postact_weights, postact_bias, mask,
            ansatz=ansatz, reps=reps, fast_measure=fast_measure, preact_trainable=preact_trainable,
            base_activation=base_activation if base_activation is not None else torch.zeros_like,
        )
    out_dim, in_dim = postact_weights.shape
    check_x(x, in_dim)
    for name, t in (("base_weight", base_weight), ("postact_bias", postact_bias), ("mask", mask),
                    ("postact_weights", postact_weights)):
        check_tensor(name, t, (out_dim, in_dim), x)
    check_tensor("theta", theta, None, x)
    weight = postact_weights * mask  # [O, I]
    kw = dict(ansatz=ansatz, reps=reps, fast_measure=fast_measure, preact_trainable=preact_trainable)
    if higher_order.torch_form_needed():  # jacfwd, hessian, nested torch.func transforms
        y = higher_order.layer_torch(x, theta, preacts_weight, preacts_bias, weight, **kw)
    elif _spectral_runs(engine, x, theta, preacts_weight, **kw):
        y = spectral.layer(x, theta, preacts_weight, preacts_bias, weight, **kw)
    else:
        y = circuit.layer(x, theta, preacts_weight, preacts_bias, weight, **kw)
    # sum_i mask*pw*pb does not depend on the sample: one bias per output
    y = y + (weight * postact_bias).sum(dim=1)
    if base_activation is not None:
        y = y + torch.nn.functional.linear(base_activation(x), base_weight * mask)
    return y
