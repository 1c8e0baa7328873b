"""Pure-torch reference of docs/math.md (one edge, one layer): the test oracle.

Every engine of qkan_fast is held against this module, so it favours clarity over speed: the
single-qubit state is simulated gate by gate with explicit 2x2 complex matrices, vectorised
over (batch, out, in) with plain torch ops, and autograd supplies every gradient. It imports
nothing from the rest of qkan_fast and uses no compiled code.

Conventions (docs/math.md, one edge):
- the state starts at H|0> = (1, 1)/sqrt(2); gates are applied in the order listed;
- RZ(a) = diag(e^{-ia/2}, e^{+ia/2}), RY(a) = [[c, -s], [s, c]], RX(a) = [[c, -is], [-is, c]]
  with c = cos(a/2), s = sin(a/2); X and Z are the Pauli matrices;
- arithmetic is complex64 for float32 (and lower-precision) inputs, complex128 for float64.

Measurement gradient at a zero amplitude: the fast measure |alpha| - |beta| uses torch.abs on
the complex amplitude, whose backward is grad * sgn(z) with sgn(0) = 0. The gradient of |z| at
z = 0 exactly is therefore 0 (a valid subgradient), never NaN; away from 0 it is the usual
z/|z|. Compiled engines follow the same rule (d|a|/da = 0 at a = 0). The Born measure uses
re^2 + im^2, which is smooth everywhere.

px: the data gate is RX(arccos(e_l)), defined only for e_l in [-1, 1]. Out-of-domain inputs
raise ValueError (checked eagerly, skipped while tracing/compiling). At e_l = +-1 exactly the
derivative of arccos is infinite, so gradients with respect to x or the preactivations there
are not finite (the forward value is fine).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

ANSATZE = ("pz", "rpz", "px", "real", "mix")
ALIASES = {"pz_encoding": "pz", "rpz_encoding": "rpz", "px_encoding": "px"}

# Angles per theta row (P); `real` also has no final row (theta has R rows, not R+1).
_P = {"pz": 2, "rpz": 1, "px": 1, "real": 1, "mix": 2}


def canonical_ansatz(name: str) -> str:
    """Map an ansatz name or alias ("pz_encoding", ...) to its canonical short name."""
    if not isinstance(name, str):
        raise ValueError(
            f"ansatz must be a string, one of {list(ANSATZE) + list(ALIASES)}, got {name!r}"
        )
    canon = ALIASES.get(name, name)
    if canon not in ANSATZE:
        raise ValueError(
            f"unknown ansatz {name!r}; valid names: {', '.join(ANSATZE)} "
            f"(aliases: {', '.join(ALIASES)})"
        )
    return canon


def theta_shape(ansatz: str, out_dim: int, in_dim: int, reps: int) -> tuple:
    """Per-edge theta shape: (O, I, R+1, P), or (O, I, R, 1) for `real`."""
    a = canonical_ansatz(ansatz)
    rows = reps if a == "real" else reps + 1
    return (out_dim, in_dim, rows, _P[a])


def uses_encoding(ansatz: str, preact_trainable: bool) -> bool:
    """True when the data angle is e_l = w*x + b (stored w, b read), False when e_l = x."""
    return bool(preact_trainable) or canonical_ansatz(ansatz) == "rpz"


def expand_group(
    t: torch.Tensor,  # (O, I, *item) per edge, or (g, *item) grouped
    out_dim: int,
    in_dim: int,
    *,
    item_dims: Optional[int] = None,
) -> torch.Tensor:  # (O, I, *item)
    """Return the per-edge view of a parameter that may be stored per group.

    qkan's `group=g` stores one parameter set per group, shape (g, *item); edge (o, i) uses set
    i % g, for every o. A per-edge tensor (O, I, *item) is returned as is.

    `item_dims` is the number of trailing per-set dims (2 for theta, 1 for preacts). When it is
    None the layout is guessed: per-edge if the leading two dims equal (O, I). Pass it when a
    grouped shape could look like (O, I, ...) (e.g. g == O and R+1 == I).
    """
    if item_dims is None:
        per_edge = t.dim() >= 2 and tuple(t.shape[:2]) == (out_dim, in_dim)
    else:
        if t.dim() == item_dims + 2:
            per_edge = True
        elif t.dim() == item_dims + 1:
            per_edge = False
        else:
            raise ValueError(
                f"expected a per-edge tensor with {item_dims + 2} dims or a grouped one with "
                f"{item_dims + 1} dims, got shape {tuple(t.shape)}"
            )
    if per_edge:
        if tuple(t.shape[:2]) != (out_dim, in_dim):
            raise ValueError(
                f"per-edge tensor must start with (O, I) = ({out_dim}, {in_dim}), "
                f"got {tuple(t.shape)}"
            )
        return t
    g = t.shape[0]
    if g < 1:
        raise ValueError(f"grouped tensor needs at least one set, got shape {tuple(t.shape)}")
    # index_select + expand (not a copy of values) so autograd sums edge grads into each set.
    idx = torch.arange(in_dim, device=t.device) % g
    per_in = t.index_select(0, idx)  # (I, *item)
    return per_in.unsqueeze(0).expand(out_dim, *per_in.shape)


# ---------------------------------------------------------------------------------------------
# Gates as explicit 2x2 matrices (g00, g01, g10, g11); entries are complex tensors or numbers
# that broadcast against the state amplitudes (B, O, I).
# ---------------------------------------------------------------------------------------------


def _rz(a: torch.Tensor, cdt: torch.dtype):
    ph = torch.exp((-0.5j * a).to(cdt))  # e^{-ia/2}
    return (ph, 0.0, 0.0, torch.conj(ph))


def _ry(a: torch.Tensor, cdt: torch.dtype):
    c = torch.cos(a / 2).to(cdt)
    s = torch.sin(a / 2).to(cdt)
    return (c, -s, s, c)


def _rx(a: torch.Tensor, cdt: torch.dtype):
    c = torch.cos(a / 2).to(cdt)
    mis = -1j * torch.sin(a / 2).to(cdt)
    return (c, mis, mis, c)


_X = (0.0, 1.0, 1.0, 0.0)
_Z = (1.0, 0.0, 0.0, -1.0)


def _apply(gate, alpha: torch.Tensor, beta: torch.Tensor):
    """(alpha, beta) <- gate @ (alpha, beta)."""
    g00, g01, g10, g11 = gate
    return g00 * alpha + g01 * beta, g10 * alpha + g11 * beta


def _shape_str(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _check_px_domain(e: torch.Tensor) -> None:
    """Eagerly reject px data angles outside [-1, 1] (arccos would give NaN)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    with torch.no_grad():
        bad = (e < -1) | (e > 1) | torch.isnan(e)
        if bool(bad.any()):
            lo, hi = float(e.min()), float(e.max())
            raise ValueError(
                f"px expects inputs in [-1, 1]: the encoded values e_l = w*x + b (or x) lie in "
                f"[{lo:.6g}, {hi:.6g}] (NaN present: {bool(torch.isnan(e).any())})"
            )


def amplitudes(
    x: torch.Tensor,  # (B, I)
    theta: torch.Tensor,  # (O, I, Rt, P) per edge or (g, Rt, P) grouped
    preacts_weight: Optional[torch.Tensor],  # (O, I, R) or (g, R); unused unless encoding
    preacts_bias: Optional[torch.Tensor],  # (O, I, R) or (g, R); unused unless encoding
    *,
    ansatz: str = "pz",
    reps: int,
    preact_trainable: bool = False,
    out_dim: Optional[int] = None,
) -> tuple:  # (alpha, beta), each (B, O, I) complex
    """Final state alpha|0> + beta|1> of every edge's circuit (docs/math.md).

    O is taken from a per-edge theta or preacts; when every parameter is grouped it must be
    given as `out_dim`. The preacts may be None when the ansatz does not read them
    (see `uses_encoding`).
    """
    a = canonical_ansatz(ansatz)
    if not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive int, got {reps!r}")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, I), got {_shape_str(x)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    B, I = x.shape
    enc = uses_encoding(a, preact_trainable)

    rows = reps if a == "real" else reps + 1
    P = _P[a]
    # Infer O from whichever parameter is stored per edge.
    O = out_dim
    if O is None:
        if theta.dim() == 4:
            O = theta.shape[0]
        elif enc and preacts_weight is not None and preacts_weight.dim() == 3:
            O = preacts_weight.shape[0]
        elif enc and preacts_bias is not None and preacts_bias.dim() == 3:
            O = preacts_bias.shape[0]
        else:
            raise ValueError(
                "all parameters are grouped, so out_dim cannot be inferred: pass out_dim="
            )
    lay = "(O, I, R, 1)" if a == "real" else "(O, I, R+1, P)"
    ok = (theta.dim() == 4 and tuple(theta.shape) == (O, I, rows, P)) or (
        theta.dim() == 3 and tuple(theta.shape[1:]) == (rows, P) and theta.shape[0] >= 1
    )
    if not ok:
        raise ValueError(
            f"theta must have shape {lay} = ({O}, {I}, {rows}, {P}) or grouped "
            f"(g, {rows}, {P}) for ansatz {a!r} with reps={reps}, got {_shape_str(theta)}"
        )
    for name, p in (("preacts_weight", preacts_weight), ("preacts_bias", preacts_bias)):
        if p is None:
            if enc:
                raise ValueError(
                    f"{name} is required for ansatz {a!r} with preact_trainable="
                    f"{preact_trainable} (e_l = w*x + b)"
                )
            continue
        ok = (p.dim() == 3 and tuple(p.shape) == (O, I, reps)) or (
            p.dim() == 2 and p.shape[1] == reps and p.shape[0] >= 1
        )
        if not ok:
            raise ValueError(
                f"{name} must have shape (O, I, R) = ({O}, {I}, {reps}) or grouped "
                f"(g, {reps}), got {_shape_str(p)}"
            )

    # Compute dtype follows x: float64 -> complex128, anything else -> complex64.
    rdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    cdt = torch.complex128 if rdt == torch.float64 else torch.complex64
    xr = x.to(rdt)
    th = expand_group(theta.to(rdt), O, I, item_dims=2)  # (O, I, rows, P)

    if enc:
        w = expand_group(preacts_weight.to(rdt), O, I, item_dims=1)  # (O, I, R)
        b = expand_group(preacts_bias.to(rdt), O, I, item_dims=1)  # (O, I, R)
        # e[b, o, i, l] = w[o, i, l] * x[b, i] + b[o, i, l]
        e = w.unsqueeze(0) * xr[:, None, :, None] + b.unsqueeze(0)  # (B, O, I, R)
    else:
        e = xr[:, None, :, None].expand(B, 1, I, reps)  # (B, 1, I, R): same angle every rep
    if a == "px":
        _check_px_domain(e)

    # H|0> = (1, 1)/sqrt(2), broadcast to every (b, o, i).
    amp = torch.full((B, O, I), 1.0 / math.sqrt(2.0), dtype=cdt, device=x.device)
    alpha, beta = amp, amp
    for l in range(reps):
        el = e[..., l]  # (B, O or 1, I)
        if a == "pz":
            gates = (_rz(th[:, :, l, 0], cdt), _ry(th[:, :, l, 1], cdt), _rz(el, cdt))
        elif a == "rpz":
            gates = (_ry(th[:, :, l, 0], cdt), _rz(el, cdt))
        elif a == "px":
            gates = (_rz(th[:, :, l, 0], cdt), _rx(torch.arccos(el), cdt))
        elif a == "real":
            gates = (_X, _ry(th[:, :, l, 0], cdt), _Z, _ry(el, cdt))
        else:  # mix
            gates = (_rz(th[:, :, l, 0], cdt), _rx(th[:, :, l, 1], cdt), _ry(el, cdt))
        for g in gates:
            alpha, beta = _apply(g, alpha, beta)

    if a == "pz":
        final = (_rz(th[:, :, reps, 0], cdt), _ry(th[:, :, reps, 1], cdt))
    elif a == "rpz":
        final = (_ry(th[:, :, reps, 0], cdt),)
    elif a == "px":
        final = (_rz(th[:, :, reps, 0], cdt),)
    elif a == "real":
        final = ()
    else:  # mix
        final = (_rz(th[:, :, reps, 0], cdt), _rx(th[:, :, reps, 1], cdt))
    for g in final:
        alpha, beta = _apply(g, alpha, beta)
    return alpha, beta


def measure(alpha: torch.Tensor, beta: torch.Tensor, fast_measure: bool = True) -> torch.Tensor:
    """phi = |alpha| - |beta| (fast_measure) or |alpha|^2 - |beta|^2 (Born), real dtype."""
    if fast_measure:
        # torch.abs backward at 0 is 0 (sgn(0) = 0): finite, see module docstring.
        return torch.abs(alpha) - torch.abs(beta)
    return (alpha.real**2 + alpha.imag**2) - (beta.real**2 + beta.imag**2)


def postacts(
    x: torch.Tensor,  # (B, I)
    theta: torch.Tensor,  # (O, I, Rt, P) per edge or (g, Rt, P) grouped
    preacts_weight: Optional[torch.Tensor],  # (O, I, R) or (g, R); unused unless encoding
    preacts_bias: Optional[torch.Tensor],  # (O, I, R) or (g, R); unused unless encoding
    *,
    ansatz: str = "pz",
    reps: int,
    fast_measure: bool = True,
    preact_trainable: bool = False,
    out_dim: Optional[int] = None,
) -> torch.Tensor:  # (B, O, I), real dtype of x
    """Per-edge DARUAN activations phi_oi(x[b, i]) (docs/math.md).

    O is taken from a per-edge theta or preacts; when every parameter is grouped it must be
    given as `out_dim`. The preacts may be None when the ansatz does not read them
    (see `uses_encoding`).
    """
    alpha, beta = amplitudes(
        x,
        theta,
        preacts_weight,
        preacts_bias,
        ansatz=ansatz,
        reps=reps,
        preact_trainable=preact_trainable,
        out_dim=out_dim,
    )
    return measure(alpha, beta, fast_measure).to(x.dtype)  # (B, O, I)


def layer(
    x: torch.Tensor,  # (B, I)
    theta: torch.Tensor,  # (O, I, Rt, P) or (g, Rt, P)
    preacts_weight: Optional[torch.Tensor],  # (O, I, R) or (g, R)
    preacts_bias: Optional[torch.Tensor],  # (O, I, R) or (g, R)
    base_weight: torch.Tensor,  # (O, I)
    postact_weights: torch.Tensor,  # (O, I)
    postact_bias: torch.Tensor,  # (O, I)
    mask: torch.Tensor,  # (O, I)
    *,
    ansatz: str = "pz",
    reps: int,
    fast_measure: bool = True,
    preact_trainable: bool = False,
    base_activation: Callable[[torch.Tensor], torch.Tensor] = torch.nn.functional.silu,
) -> torch.Tensor:  # (B, O)
    """One QKAN layer (docs/math.md):

    y[b, o] = sum_i mask[o, i] * (pw[o, i] * (phi_oi(x[b, i]) + pb[o, i])
                                  + bw[o, i] * base_activation(x[b, i]))
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, I), got {_shape_str(x)}")
    if base_weight.dim() != 2:
        raise ValueError(f"base_weight must have shape (O, I), got {_shape_str(base_weight)}")
    O, I = base_weight.shape
    if x.shape[1] != I:
        raise ValueError(f"x must have shape (B, {I}) to match base_weight, got {_shape_str(x)}")
    for name, p in (
        ("postact_weights", postact_weights),
        ("postact_bias", postact_bias),
        ("mask", mask),
    ):
        if tuple(p.shape) != (O, I):
            raise ValueError(f"{name} must have shape (O, I) = ({O}, {I}), got {_shape_str(p)}")

    phi = postacts(
        x,
        theta,
        preacts_weight,
        preacts_bias,
        ansatz=ansatz,
        reps=reps,
        fast_measure=fast_measure,
        preact_trainable=preact_trainable,
        out_dim=O,
    )  # (B, O, I)
    base = base_activation(x)[:, None, :]  # (B, 1, I)
    edge = mask * (postact_weights * (phi + postact_bias) + base_weight * base)  # (B, O, I)
    return edge.sum(dim=-1)  # (B, O)
