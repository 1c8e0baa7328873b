"""Shared helpers for the engine and module tests.

Random layer parameters per ansatz (qkan's names and shapes, optionally grouped), inputs that
stay inside px's domain, a layer call by engine and a scaled comparison. The golden-file loader
lives in golden_data.py, shared with tests/test_reference.py; that file keeps its own parameter
helpers on purpose (the oracle's tests must not depend on anything here).
"""

from __future__ import annotations

import zlib
from typing import Optional

import pytest
import torch

from golden_data import golden_case, golden_params  # noqa: F401  (re-exported for the engine tests)

# The compiled package is imported lazily: tests/test_reference.py must stay collectable when
# the extension is not built, and it shares this conftest.
ANSATZE = ("pz", "rpz", "px", "real", "mix")
_ROWS_COLS = {"pz": (1, 2), "rpz": (1, 1), "px": (1, 1), "real": (0, 1), "mix": (1, 2)}


def theta_shape(ansatz: str, O: int, I: int, R: int) -> tuple:
    """Per-edge theta shape (docs/math.md, "The five ansaetze"), written out independently of the package."""
    extra, P = _ROWS_COLS[ansatz]
    return (O, I, R + extra, P)

F32, F64 = torch.float32, torch.float64

PARAM_NAMES = (
    "theta",
    "preacts_weight",
    "preacts_bias",
    "base_weight",
    "postact_weights",
    "postact_bias",
    "mask",
)

# relative tolerance (to the output scale) of an engine against the reference, per dtype
REL_TOL = {F32: 1e-5, F64: 1e-12}


def stable_seed(*parts) -> int:
    """A seed that is the same in every process (python's str hash is salted per run)."""
    return zlib.crc32(repr(parts).encode())


def make_gen(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(stable_seed(*parts))


def make_params(
    ansatz: str,
    O: int,
    I: int,
    R: int,
    *,
    gen: torch.Generator,
    dtype: torch.dtype = F64,
    group: Optional[int] = None,
    prune: bool = True,
) -> dict:
    """Random parameters with qkan's names. Encodings satisfy |w*x + b| < 1 for |x| <= 0.9, so
    the same parameters are valid for px with trainable preacts. group=g gives qkan's grouped
    layout (g, Rt, P) / (g, R) for theta and the preacts."""
    lead = (O, I) if group is None else (group,)
    rows, P = theta_shape(ansatz, O, I, R)[2:]

    def uni(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=dtype)

    p = {
        "theta": 1.5 * torch.randn(*lead, rows, P, generator=gen, dtype=dtype),
        "preacts_weight": uni(-0.6, 0.6, *lead, R),
        "preacts_bias": uni(-0.35, 0.35, *lead, R),
        "base_weight": torch.randn(O, I, generator=gen, dtype=dtype),
        "postact_weights": torch.randn(O, I, generator=gen, dtype=dtype),
        "postact_bias": 0.3 * torch.randn(O, I, generator=gen, dtype=dtype),
        "mask": torch.ones(O, I, dtype=dtype),
    }
    if prune and O * I > 1:
        p["mask"].view(-1)[1 :: max(2, (O * I) // 2)] = 0.0  # a few pruned edges
    return p


def make_x(B: int, I: int, *, gen: torch.Generator, dtype: torch.dtype = F64, ansatz: str = "px") -> torch.Tensor:
    """Inputs in [-0.9, 0.9] (valid for every ansatz) or, for non-px ansaetze asked by name,
    a wider normal spread."""
    if ansatz == "px":
        return -0.9 + 1.8 * torch.rand(B, I, generator=gen, dtype=dtype)
    return 1.5 * torch.randn(B, I, generator=gen, dtype=dtype)


def trainable_names(ansatz: str, preact_trainable: bool) -> set:
    """Parameters that require grad when every optional trainable flag is on (as in the golden file)."""
    names = {"theta", "base_weight", "postact_weights", "postact_bias"}
    if preact_trainable or ansatz == "rpz":
        names.add("preacts_bias")
    if preact_trainable:
        names.add("preacts_weight")
    return names


def with_grad(p: dict, names) -> dict:
    """Fresh leaf copies of the parameters, requiring grad for `names`."""
    return {n: t.detach().clone().requires_grad_(n in names) for n, t in p.items()}


def call_layer(x, p: dict, *, engine: str, ansatz: str, reps: int, fast_measure: bool, preact_trainable: bool, **kw):
    from qkan_fast import engines

    return engines.qkan_layer(
        x, *(p[n] for n in PARAM_NAMES), ansatz=ansatz, reps=reps, fast_measure=fast_measure,
        preact_trainable=preact_trainable, engine=engine, **kw,
    )


def run_layer(x, p: dict, grad_y, *, engine: str, grad_names, x_grad: bool = True, **kw) -> dict:
    """Forward and backward of one layer; returns y and the gradient of x and of each of
    `grad_names` (a parameter the engine did not reach counts as a zero gradient)."""
    pp = with_grad(p, grad_names)
    xx = x.detach().clone().requires_grad_(x_grad)
    y = call_layer(xx, pp, engine=engine, **kw)
    y.backward(grad_y)
    out = {"y": y.detach()}
    if x_grad:
        out["x"] = xx.grad
    for n in grad_names:
        out[n] = pp[n].grad if pp[n].grad is not None else torch.zeros_like(pp[n])
    return out


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, rel: float, msg: str = "") -> None:
    """max |actual - expected| <= rel * max(1, max |expected|): relative to the tensor's scale."""
    assert actual is not None, f"{msg}: gradient missing"
    actual, expected = actual.detach(), expected.detach()
    assert actual.shape == expected.shape, f"{msg}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{msg}: dtype {actual.dtype} != {expected.dtype}"
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    err = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert err <= rel * scale, f"{msg}: max abs error {err:.3e} > {rel:.1e} * scale {scale:.3g}"


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def restore_threads():
    """Restore torch's intra-op thread count after a test that changes it."""
    n = torch.get_num_threads()
    yield n
    torch.set_num_threads(n)


@pytest.fixture(params=ANSATZE)
def ansatz(request):
    return request.param


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes several seconds (torch.compile, training)")
