"""Names and checks shared by every engine and module: ansatz names and codes, parameter shapes,
engine names, the input checks the compiled kernels rely on.

It imports nothing of qkan_fast (the bottom of the house: engines and modules import it, it
imports only torch). The reference (reference.py) keeps its own copy of the few names it needs,
so that the oracle stays independent of what it checks.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

ANSATZE = ("pz", "rpz", "px", "real", "mix")  # order = the int values of _C.Ansatz (csrc/core_types.h)
ALIASES = {"pz_encoding": "pz", "rpz_encoding": "rpz", "px_encoding": "px"}
ANSATZ_CODES = {name: code for code, name in enumerate(ANSATZE)}
ENGINES = ("auto", "circuit", "spectral", "reference")
INT32_LIMIT = 2**31 - 1  # the kernels index with 32-bit integers

# angles per theta row (P); `real` also has no final row (theta has R rows, not R+1)
_ANGLES_PER_ROW = {"pz": 2, "rpz": 1, "px": 1, "real": 1, "mix": 2}


def canonical_ansatz(name: str) -> str:
    """Map an ansatz name or alias to its short name.

    Args:
        name: one of ``pz``, ``rpz``, ``px``, ``real``, ``mix`` or an alias (``pz_encoding``,
            ``rpz_encoding``, ``px_encoding``).

    Returns:
        The canonical short name.

    Raises:
        ValueError: for anything else.

    Example:
        >>> canonical_ansatz("pz_encoding")
        'pz'
    """
    if not isinstance(name, str):
        raise ValueError(f"ansatz must be a string, one of {list(ANSATZE) + list(ALIASES)}, got {name!r}")
    canon = ALIASES.get(name, name)
    if canon not in ANSATZE:
        raise ValueError(f"unknown ansatz {name!r}; valid names: {', '.join(ANSATZE)} (aliases: {', '.join(ALIASES)})")
    return canon


def theta_shape(ansatz: str, out_dim: int, in_dim: int, reps: int) -> tuple:
    """Per-edge theta shape: (O, I, R+1, P), or (O, I, R, 1) for `real`."""
    a = canonical_ansatz(ansatz)
    rows = reps if a == "real" else reps + 1
    return (out_dim, in_dim, rows, _ANGLES_PER_ROW[a])


def uses_encoding(ansatz: str, preact_trainable: bool) -> bool:
    """True when the data angle is e = w*x + b (the stored w, b are read), False when e = x."""
    return bool(preact_trainable) or ansatz == "rpz"


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return engine


def expand_group(t: Tensor, in_dim: int, per_edge_rank: int) -> Tensor:
    """qkan's group=g layout (g, ...) -> the per-edge layout (1, I, ...), edge (., i) reading set
    i mod g; per-edge tensors (O, I, ...) pass through. Differentiable (an index_select)."""
    if t.dim() == per_edge_rank:
        return t
    idx = torch.arange(in_dim, device=t.device) % t.shape[0]
    return t.index_select(0, idx).unsqueeze(0)


def seeded_generator(seed: int, device=None) -> torch.Generator:
    """A local generator for a constructor's `seed=`: the same stream torch.manual_seed(seed) would
    give the global RNG (so initial values match qkan's), without touching the global RNG."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return torch.Generator(device=torch.device(device) if device is not None else "cpu").manual_seed(seed)


# --------------------------------------------------------------------------------------------
# checks: everything the kernels cannot take becomes a TypeError / ValueError here

_KERNEL_DTYPES = (torch.float32, torch.float64)


def check_tensor(name: str, t, expected_shape: Optional[tuple], like: Optional[Tensor]) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if like is not None:
        if t.device != like.device:
            raise ValueError(f"{name} is on {t.device} but x is on {like.device}; move both to one device")
        if t.dtype != like.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but x has {like.dtype}; use one floating dtype")
    if expected_shape is not None and tuple(t.shape) != tuple(expected_shape):
        raise ValueError(f"{name} must have shape {tuple(expected_shape)}, got {tuple(t.shape)}")
    if t.numel() > INT32_LIMIT:
        raise ValueError(f"{name} has {t.numel()} elements, more than the 2**31 - 1 the kernels index; split the batch")


def check_x(x, in_dim: Optional[int] = None) -> None:
    """x must be a float32/float64 (B, I) tensor on the CPU or a CUDA device (also bfloat16 there);
    B may be 0."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"x must be on a CPU or CUDA device, got {x.device}")
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":
        raise TypeError(f"x is bfloat16 on {x.device}: the CPU kernels take float32 or float64 (bfloat16 runs on "
                        "CUDA only, stored as bfloat16 and computed in float32); convert with .float() on the CPU")
    if x.dtype not in _KERNEL_DTYPES and x.dtype != torch.bfloat16:
        raise TypeError(f"x must be float32 or float64, got {x.dtype} (bfloat16 is also accepted on CUDA)")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, in_dim), got {tuple(x.shape)}")
    if in_dim is not None and x.shape[1] != in_dim:
        raise ValueError(f"x must have shape (batch, {in_dim}), got {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError("x has in_dim 0; a layer needs at least one input")


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
    """Raise a clear TypeError/ValueError for anything the circuit kernels cannot take."""
    check_x(x)
    batch, in_dim = x.shape
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive int, got {reps!r}")
    if not isinstance(theta, Tensor) or theta.dim() != 4:
        got = tuple(theta.shape) if isinstance(theta, Tensor) else type(theta).__name__
        raise ValueError(f"theta must have shape (out_dim, in_dim, rows, cols), got {got}")
    out_dim = theta.shape[0]
    if out_dim == 0:
        raise ValueError("theta has out_dim 0; a layer needs at least one output")
    check_tensor("theta", theta, theta_shape(ansatz, out_dim, in_dim, reps), x)
    check_tensor("preacts_weight", pre_w, (out_dim, in_dim, reps), x)
    check_tensor("preacts_bias", pre_b, (out_dim, in_dim, reps), x)
    check_tensor("x", x, None, None)
    out_elems = batch * max(out_elems_per_sample, out_dim)
    if out_elems > INT32_LIMIT:
        raise ValueError(f"the output would have {out_elems} elements, more than the 2**31 - 1 the kernels index; "
                         "split the batch")
    if ansatz == "px" and batch > 0 and not torch.compiler.is_compiling():
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
