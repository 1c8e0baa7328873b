"""The compiled core's own boundary (qkan_fast._C), below the torch checks of ops.py and spectral.py.

Every entry point must refuse, with a ValueError that names what was expected, a params struct it
does not handle: a dtype code the device does not run (bfloat16 on the CPU would otherwise be read
as float32), an unknown ansatz code, reps out of range, a required pointer left null. The enums
round-trip between Python and C++, and the schedule policy functions follow their rules.
"""

from __future__ import annotations

import pytest
import torch

from qkan_fast import _C, ops, spectral


def _circuit_params(x, theta, weight, y, ansatz=_C.Ansatz.pz, reps=2):
    p = _C.CircuitParams()
    p.batch, p.in_dim = x.shape
    p.out_dim = theta.shape[0]
    p.reps, p.ansatz, p.dtype = reps, ansatz, _C.DType.float32
    p.x, p.theta, p.weight, p.y = x.data_ptr(), theta.data_ptr(), weight.data_ptr(), y.data_ptr()
    return p


@pytest.fixture
def circuit_case():
    x = torch.rand(5, 3)
    theta = torch.rand(4, 3, 3, 2)  # pz, R = 2: [O, I, R+1, 2]
    weight = torch.ones(4, 3)
    y = torch.empty(5, 4)
    return x, theta, weight, y


def test_circuit_params_as_filled_run(circuit_case):
    x, theta, weight, y = circuit_case
    _C.circuit_forward_cpu(_circuit_params(x, theta, weight, y))
    assert torch.isfinite(y).all()


def test_cpu_refuses_bfloat16_code(circuit_case):
    p = _circuit_params(*circuit_case)
    p.dtype = _C.DType.bfloat16
    with pytest.raises(ValueError, match=r"circuit_forward_cpu: dtype code 2 \(bfloat16\) is not handled here"):
        _C.circuit_forward_cpu(p)


def test_unknown_dtype_code_refused(circuit_case):
    p = _circuit_params(*circuit_case)
    p.dtype = _C.DType(7)  # pybind11 enums accept any int: the entry point must refuse it
    with pytest.raises(ValueError, match=r"dtype code 7 \(unknown\)"):
        _C.circuit_forward_cpu(p)


def test_unknown_ansatz_code_refused(circuit_case):
    p = _circuit_params(*circuit_case)
    p.ansatz = _C.Ansatz(9)
    with pytest.raises(ValueError, match=r"unknown ansatz code 9 \(expected 0 pz, 1 rpz, 2 px, 3 real, 4 mix\)"):
        _C.circuit_forward_cpu(p)


@pytest.mark.parametrize("reps", [0, -1, _C.MAX_REPS + 1])
def test_reps_out_of_range_refused(circuit_case, reps):
    p = _circuit_params(*circuit_case, reps=reps)
    with pytest.raises(ValueError, match=rf"reps must be in \[1, {_C.MAX_REPS}\], got {reps}"):
        _C.circuit_forward_cpu(p)


@pytest.mark.parametrize("field", ["x", "theta", "weight", "y"])
def test_null_pointer_refused(circuit_case, field):
    p = _circuit_params(*circuit_case)
    setattr(p, field, 0)
    with pytest.raises(ValueError, match=rf"{field} must be set \(a null pointer came\)"):
        _C.circuit_forward_cpu(p)


def test_backward_needs_exactly_one_upstream_gradient(circuit_case):
    p = _circuit_params(*circuit_case)
    with pytest.raises(ValueError, match="set exactly one of grad_y"):
        _C.circuit_backward_cpu(p)


def test_enum_round_trip():
    for name, code in ops.ANSATZ_CODES.items():
        a = _C.Ansatz(code)
        assert a.name == name and int(a) == code
        p = _C.CircuitParams()
        p.ansatz = a
        assert p.ansatz == a
    assert [int(_C.DType.float32), int(_C.DType.float64), int(_C.DType.bfloat16)] == [0, 1, 2]
    assert ops._DTYPE_CODES[torch.float64] == _C.DType.float64
    assert _C.cpu_isa().name == _C.build_info()["cpu_isa"]


def test_enum_fields_refuse_plain_ints():
    p = _C.CircuitParams()
    with pytest.raises(TypeError):
        p.ansatz = 1


def test_no_deterministic_flag():
    # no kernel read it: the CUDA kernels use no atomics and are deterministic anyway
    assert not hasattr(_C.CircuitParams(), "deterministic")


def _layer_params(nq=3, reps=2):
    x, coef, weight, y = torch.rand(6, 3), torch.rand(4, 3, nq, 2 * reps + 1), torch.ones(4, 3), torch.empty(6, 4)
    p = _C.SpectralLayerParams()
    p.batch, p.in_dim, p.out_dim, p.reps, p.nq = 6, 3, 4, reps, nq
    p.x, p.coef, p.weight, p.y = x.data_ptr(), coef.data_ptr(), weight.data_ptr(), y.data_ptr()
    return p, (x, coef, weight, y)


def test_spectral_layer_refuses_bad_codes():
    p, keep = _layer_params()
    _C.spectral_fused_forward_cpu(p)
    p.dtype = _C.DType.bfloat16
    with pytest.raises(ValueError, match=r"spectral_fused_forward_cpu: dtype code 2 \(bfloat16\)"):
        _C.spectral_fused_forward_cpu(p)
    p.dtype = _C.DType.float32
    p.nq = 2
    with pytest.raises(ValueError, match="nq must be 3 .* or 1 .*, got 2"):
        _C.spectral_fused_forward_cpu(p)
    p.nq = 3
    p.grad_y = 0
    with pytest.raises(ValueError, match=r"grad_y must be set"):
        _C.spectral_fused_backward_cpu(p)


def test_spectral_coef_refuses_bad_codes():
    theta = torch.rand(2, 3, 3, 2)
    out = torch.empty(2, 3, 1, 5)
    p = _C.SpectralCoefParams()
    p.out_dim, p.in_dim, p.reps, p.nq = 2, 3, 2, 1
    p.theta, p.coef_out = theta.data_ptr(), out.data_ptr()
    _C.spectral_coef_cpu(p)
    p.ansatz = _C.Ansatz.px
    with pytest.raises(ValueError, match="px runs in its mix form"):
        _C.spectral_coef_cpu(p)
    p.ansatz = _C.Ansatz.rpz
    with pytest.raises(ValueError, match=r"pre_b \(ansatz rpz\) must be set"):
        _C.spectral_coef_cpu(p)
    p.ansatz = _C.Ansatz(5)
    with pytest.raises(ValueError, match="unknown ansatz code 5"):
        _C.spectral_coef_cpu(p)
    p.ansatz, p.reps = _C.Ansatz.pz, 0
    with pytest.raises(ValueError, match=r"reps must be in \[1, "):
        _C.spectral_coef_cpu(p)


def test_spectral_basis_refuses_null_output():
    x = torch.rand(4, 2)
    p = _C.SpectralBasisParams()
    p.batch, p.in_dim, p.reps, p.x = 4, 2, 3, x.data_ptr()
    with pytest.raises(ValueError, match=r"basis must be set"):
        _C.spectral_basis_cpu(p)


def test_born_schedule_rule_follows_basis_size():
    # fused at O <= 16 from B = 1024; at O <= 32 from a 1.5 MiB basis; up to O = 64 from 8 MiB
    f32 = _C.DType.float32
    assert not _C.spectral_born_fused_preferred(512, 16, 16, 3, f32)
    assert _C.spectral_born_fused_preferred(1024, 16, 16, 3, f32)
    mib = lambda b, i, r, size: 2 * r * i * b * size / 2**20  # noqa: E731
    assert mib(4096, 32, 8, 4) >= 1.5 and _C.spectral_born_fused_preferred(4096, 32, 32, 8, f32)
    assert mib(1024, 32, 2, 4) < 1.5 and not _C.spectral_born_fused_preferred(1024, 32, 32, 2, f32)
    # float64 doubles the basis: the same shape crosses the 1.5 MiB line
    assert mib(1024, 32, 3, 8) >= 1.5 and _C.spectral_born_fused_preferred(1024, 32, 32, 3, _C.DType.float64)
    assert not _C.spectral_born_fused_preferred(1024, 32, 32, 3, f32)
    assert not _C.spectral_born_fused_preferred(8192, 128, 128, 8, f32)  # O > 64: the GEMM
    assert spectral.born_fused_preferred(1024, 32, 32, 3, itemsize=8)


def test_auto_size_rule():
    assert _C.spectral_auto_preferred(1024, 16, 8)  # 2^17 edge-samples, O = 8
    assert not _C.spectral_auto_preferred(1024, 16, 7)
    assert not _C.spectral_auto_preferred(1023, 16, 8)


def test_policy_twins_traced_by_torch_compile_match_the_core(monkeypatch):
    """spectral.py's Python twins of the policy rules (used while torch.compile traces) give the
    same answers as the C++ rules over a grid of shapes."""
    shapes = [(b, i, o, r) for b in (256, 1000, 1024, 4096) for i in (16, 32, 128) for o in (4, 8, 16, 32, 64, 128)
              for r in (1, 2, 3, 8)]
    eager = [(spectral.born_fused_preferred(b, i, o, r, size), spectral.auto_size_preferred(b, i, o))
             for b, i, o, r in shapes for size in (4, 8)]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    traced = [(spectral.born_fused_preferred(b, i, o, r, size), spectral.auto_size_preferred(b, i, o))
              for b, i, o, r in shapes for size in (4, 8)]
    assert traced == eager
    assert any(f for f, _ in eager) and not all(f for f, _ in eager)
