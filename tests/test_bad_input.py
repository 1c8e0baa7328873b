"""Bad input gets a clear error that names the problem; NaN/inf stay in the rows they came from;
and a property test of the circuit engine against the reference over random small problems."""

from __future__ import annotations

import pytest
import torch

from qkan_fast import QKAN, QKANLayer, common, engines

from conftest import (
    ANSATZE,
    F32,
    F64,
    assert_close_scaled,
    call_layer,
    make_gen,
    make_params,
    make_x,
    trainable_names,
    with_grad,
)


def _layer_args(ansatz="pz", O=3, I=4, R=2, dtype=F64, seed="bad"):
    p = make_params(ansatz, O, I, R, gen=make_gen(seed, ansatz), dtype=dtype)
    return p, dict(ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=False)


def _ops_layer(x, p, **kw):
    kw.setdefault("engine", "circuit")
    return call_layer(x, p, **kw)


# =============================================================================================
# shapes and ranks
# =============================================================================================


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), ()], ids=["rank1", "rank3", "rank0"])
def test_wrong_rank(shape):
    p, kw = _layer_args()
    x = torch.zeros(shape, dtype=F64)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, in_dim\)"):
        _ops_layer(x, p, **kw)
    with pytest.raises(ValueError, match=r"QKANLayer expects x of shape \(batch, 4\)"):
        QKANLayer(4, 3, dtype=F64)(x)
    if len(shape) != 3:  # QKAN takes (B, C, n0)
        with pytest.raises(ValueError, match=r"QKAN expects x of shape \(batch, 4\)"):
            QKAN([4, 3], dtype=F64)(x)


def test_wrong_in_dim():
    p, kw = _layer_args(I=4)
    x = torch.zeros(5, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\), got \(5, 3\)"):
        _ops_layer(x, p, **kw)
    with pytest.raises(ValueError, match=r"\(batch, 4\), got \(5, 3\)"):
        QKANLayer(4, 3, dtype=F64)(x)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        QKAN([4, 3, 2], dtype=F64)(x)


@pytest.mark.parametrize("name", ["theta", "preacts_weight", "preacts_bias"])
def test_parameter_of_wrong_shape_to_ops(name):
    p, kw = _layer_args("pz", O=3, I=4, R=2)
    x = torch.zeros(5, 4, dtype=F64)
    bad = dict(p)
    bad[name] = p[name][..., :-1].clone()  # one row/rep short
    with pytest.raises(ValueError, match=rf"{name} must have shape"):
        _ops_layer(x, bad, **kw)
    # a rank-5 theta is neither per-edge nor grouped
    if name == "theta":
        bad["theta"] = p["theta"][None]
        with pytest.raises(ValueError, match="theta must have shape"):
            _ops_layer(x, bad, **kw)


def test_theta_for_another_ansatz():
    p, _ = _layer_args("pz", O=3, I=4, R=2)  # theta (3, 4, 3, 2)
    x = torch.zeros(5, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"theta must have shape \(3, 4, 3, 1\), got \(3, 4, 3, 2\)"):
        _ops_layer(x, p, ansatz="rpz", reps=2, fast_measure=True, preact_trainable=False)
    with pytest.raises(ValueError, match=r"theta must have shape \(3, 4, 2, 1\)"):
        _ops_layer(x, p, ansatz="real", reps=2, fast_measure=True, preact_trainable=False)


@pytest.mark.parametrize("name", ["base_weight", "postact_bias", "mask"])
def test_epilogue_parameter_of_wrong_shape(name):
    p, kw = _layer_args()
    p[name] = p[name].t().contiguous()
    with pytest.raises(ValueError, match=rf"{name} must have shape \(3, 4\), got \(4, 3\)"):
        _ops_layer(torch.zeros(5, 4, dtype=F64), p, **kw)


def test_state_dict_of_wrong_shape():
    sd = QKANLayer(4, 3, reps=2).state_dict()
    with pytest.raises(RuntimeError, match=r"size mismatch for theta"):
        QKANLayer(4, 3, reps=3).load_state_dict(sd)
    with pytest.raises(RuntimeError, match=r"size mismatch for theta"):
        QKANLayer(4, 3, reps=2, ansatz="rpz").load_state_dict(sd)
    with pytest.raises(RuntimeError, match=r"size mismatch for layers\.0\.theta"):
        QKAN([4, 3], reps=2).load_state_dict(QKAN([5, 3], reps=2).state_dict())


# =============================================================================================
# dtypes
# =============================================================================================


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_input(dtype):
    layer = QKANLayer(4, 3, dtype=F32)
    x = torch.zeros(5, 4, dtype=dtype)
    with pytest.raises(TypeError, match=str(dtype).replace(".", r"\.")):
        layer(x)
    # with parameters of the same (integer) dtype the kernel check names the allowed dtypes
    p, kw = _layer_args()
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        _ops_layer(x, {n: t.to(dtype) for n, t in p.items()}, **kw)


def test_float16_on_cpu():
    layer = QKANLayer(4, 3).half()
    with pytest.raises(TypeError, match=r"float32 or float64, got torch\.float16"):
        layer(torch.zeros(5, 4, dtype=torch.float16))


def test_mismatched_dtypes():
    p, kw = _layer_args(dtype=F32)
    x = torch.zeros(5, 4, dtype=F64)
    with pytest.raises(TypeError, match=r"has dtype torch\.float32 but x has torch\.float64"):
        _ops_layer(x, p, **kw)
    # only theta differs
    p64, _ = _layer_args(dtype=F64)
    p64["theta"] = p64["theta"].float()
    with pytest.raises(TypeError, match=r"theta has dtype torch\.float32 but x has torch\.float64"):
        _ops_layer(x, p64, **kw)
    with pytest.raises(TypeError, match=r"dtype torch\.float32 but x has torch\.float64"):
        QKANLayer(4, 3, dtype=F32)(x)


# =============================================================================================
# sizes and options
# =============================================================================================


def test_empty_batch_is_not_an_error():
    """torch's convention (nn.Linear): B = 0 gives an empty output; tests/test_conventions.py
    checks the gradients. Shapes are still checked for an empty batch."""
    p, kw = _layer_args()
    x = torch.zeros(0, 4, dtype=F64)
    assert _ops_layer(x, p, **kw).shape == (0, 3)
    assert engines.daruan_postacts(x, p["theta"], p["preacts_weight"], p["preacts_bias"], ansatz="pz",
                                   reps=2).shape == (0, 3, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\), got \(0, 5\)"):
        _ops_layer(torch.zeros(0, 5, dtype=F64), p, **kw)


@pytest.mark.parametrize("reps", [0, -1, 2.0, True])
def test_bad_reps(reps):
    with pytest.raises(ValueError, match="reps must be a positive int"):
        QKANLayer(4, 3, reps=reps)
    if reps is not True:  # bool is an int subclass at the ops level
        p, kw = _layer_args()
        kw["reps"] = reps
        with pytest.raises(ValueError, match="reps must be a positive int"):
            _ops_layer(torch.zeros(5, 4, dtype=F64), p, **kw)


@pytest.mark.parametrize("in_dim,out_dim", [(0, 3), (4, 0), (-2, 3)])
def test_zero_dims(in_dim, out_dim):
    bad = "in_dim" if in_dim < 1 else "out_dim"
    with pytest.raises(ValueError, match=f"{bad} must be a positive int"):
        QKANLayer(in_dim, out_dim)
    with pytest.raises(ValueError, match="width entry must be a positive int"):
        QKAN([4, max(out_dim, 0), 2] if bad == "out_dim" else [in_dim, 3])


def test_zero_dims_at_ops_level():
    p, kw = _layer_args(O=3, I=4)
    # in_dim 0: x (5, 0) with parameters (3, 0, ...)
    p0 = {n: t[:, :0] for n, t in p.items()}
    with pytest.raises(ValueError, match="in_dim 0"):
        _ops_layer(torch.zeros(5, 0, dtype=F64), p0, **kw)
    # out_dim 0
    p0 = {n: t[:0] for n, t in p.items()}
    with pytest.raises(ValueError, match="out_dim 0"):
        _ops_layer(torch.zeros(5, 4, dtype=F64), p0, **kw)


@pytest.mark.parametrize("name", ["rz_encoding", "PZ", "", "pz "])
def test_unknown_ansatz(name):
    with pytest.raises(ValueError, match="unknown ansatz"):
        QKANLayer(4, 3, ansatz=name)
    p, kw = _layer_args()
    kw["ansatz"] = name
    with pytest.raises(ValueError, match="unknown ansatz"):
        _ops_layer(torch.zeros(5, 4, dtype=F64), p, **kw)
    with pytest.raises(ValueError, match="ansatz must be a string"):
        QKANLayer(4, 3, ansatz=3)


@pytest.mark.parametrize("engine", ["cuda", "spectrall", "", None])
def test_unknown_engine(engine):
    with pytest.raises(ValueError, match="engine must be one of"):
        QKANLayer(4, 3, engine=engine)
    p, kw = _layer_args()
    with pytest.raises(ValueError, match="engine must be one of"):
        _ops_layer(torch.zeros(5, 4, dtype=F64), p, engine=engine, **kw)


def test_bad_options():
    with pytest.raises(ValueError, match="group must be -1"):
        QKANLayer(4, 3, group=0)
    with pytest.raises(ValueError, match="theta_init"):
        QKANLayer(4, 3, theta_init="uniform")
    with pytest.raises(ValueError, match="base_activation must be one of"):
        QKANLayer(4, 3, base_activation="softsign_typo")
    with pytest.raises(ValueError, match="width must list at least two sizes"):
        QKAN([4])


# =============================================================================================
# px domain
# =============================================================================================


@pytest.mark.parametrize("value", [1.5, -1.0001, float("nan"), float("inf")])
def test_px_input_outside_domain(value):
    layer = QKANLayer(4, 3, ansatz="px", dtype=F64)
    x = torch.zeros(5, 4, dtype=F64)
    x[2, 1] = value
    with pytest.raises(ValueError, match=r"ansatz 'px' needs encoded inputs w\*x\+b in \[-1, 1\]"):
        layer(x)
    with pytest.raises(ValueError, match=r"px.*\[-1, 1\]"):
        layer.postacts(x)


def test_px_encoded_outside_domain():
    """x in range but w*x + b out of it: 2 * 0.9 = 1.8."""
    layer = QKANLayer(4, 3, ansatz="px", preact_trainable=True, dtype=F64)
    with torch.no_grad():
        layer.preacts_weight.fill_(2.0)
    x = torch.full((5, 4), 0.9, dtype=F64)
    with pytest.raises(ValueError, match=r"\[-1, 1\].*1\.8"):
        layer(x)
    # through the bias only
    with torch.no_grad():
        layer.preacts_weight.fill_(1.0)
        layer.preacts_bias[1, 2, 0] = 0.2
    with pytest.raises(ValueError, match=r"\[-1, 1\].*1\.1"):
        layer(x)
    # the stored encodings are ignored when they are not used: then x = 0.9 is fine
    frozen = QKANLayer(4, 3, ansatz="px", dtype=F64)
    with torch.no_grad():
        frozen.preacts_weight.fill_(2.0)
    assert torch.isfinite(frozen(x)).all()


# =============================================================================================
# index limits (mocked: a real 2**31-element tensor would need gigabytes)
# =============================================================================================


def test_tensors_beyond_int32(monkeypatch):
    p, kw = _layer_args("pz", O=2, I=3, R=1)  # theta has 2*3*2*2 = 24 elements
    monkeypatch.setattr(common, "INT32_LIMIT", 100)
    with pytest.raises(ValueError, match=r"x has 150 elements, more than the 2\*\*31 - 1"):
        _ops_layer(torch.zeros(50, 3, dtype=F64), p, **kw)
    # the (B, O) output: 60 * 2 = 120 elements
    p1, kw1 = _layer_args("pz", O=2, I=1, R=1)
    with pytest.raises(ValueError, match=r"output would have 120 elements"):
        _ops_layer(torch.zeros(60, 1, dtype=F64), p1, **kw1)
    # postacts (B, O, I): 20 * 2 * 3 = 120 elements
    with pytest.raises(ValueError, match=r"output would have 120 elements"):
        engines.daruan_postacts(torch.zeros(20, 3, dtype=F64), p["theta"], p["preacts_weight"], p["preacts_bias"],
                            ansatz="pz", reps=1)
    # a parameter over the limit
    big = make_params("pz", 5, 6, 2, gen=make_gen("big"))  # theta 5*6*3*2 = 180
    with pytest.raises(ValueError, match=r"theta has 180 elements"):
        _ops_layer(torch.zeros(2, 6, dtype=F64), big, ansatz="pz", reps=2, fast_measure=True, preact_trainable=False)
    # under the limit all is well
    assert _ops_layer(torch.zeros(10, 3, dtype=F64), p, **kw).shape == (10, 2)


# =============================================================================================
# not a tensor
# =============================================================================================


@pytest.mark.parametrize("x", [[[0.1, 0.2, 0.3, 0.4]], 0.5, "x", None], ids=["list", "float", "str", "none"])
def test_non_tensor_input(x):
    name = type(x).__name__
    with pytest.raises(TypeError, match=rf"torch\.Tensor, got {name}"):
        QKANLayer(4, 3)(x)
    p, kw = _layer_args()
    with pytest.raises(TypeError, match=rf"x must be a torch\.Tensor, got {name}"):
        _ops_layer(x, p, **kw)
    with pytest.raises((TypeError, ValueError), match=name):
        QKAN([4, 3])(x)
    with pytest.raises(TypeError, match=rf"torch\.Tensor, got {name}"):
        engines.daruan_postacts(x, p["theta"], p["preacts_weight"], p["preacts_bias"], ansatz="pz", reps=2)


def test_non_tensor_parameter():
    p, kw = _layer_args()
    p["theta"] = p["theta"].tolist()
    with pytest.raises(TypeError, match=r"theta must be a torch\.Tensor, got list"):
        _ops_layer(torch.zeros(5, 4, dtype=F64), p, **kw)


# =============================================================================================
# NaN / inf stay in their rows
# =============================================================================================


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("group", [-1, 2])
@pytest.mark.parametrize("ansatz", ["pz", "rpz", "real", "mix"])
def test_non_finite_input_stays_in_its_row(ansatz, group, bad):
    B, I, O, R = 6, 4, 3, 2
    gen = make_gen("nan", ansatz, group)
    p = make_params(ansatz, O, I, R, gen=gen, dtype=F64, group=None if group == -1 else group)
    x = make_x(B, I, gen=gen, ansatz="pz")
    x[3, 1] = bad
    names = trainable_names(ansatz, True)
    pp = with_grad(p, names)
    xx = x.clone().requires_grad_(True)
    y = call_layer(xx, pp, engine="circuit", ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=True)
    assert not torch.isfinite(y[3]).any(), "every output of the affected row is non-finite"
    others = [b for b in range(B) if b != 3]
    assert torch.isfinite(y[others]).all(), "the other rows stay finite"
    # and they equal the same computation without the bad row
    y_clean = call_layer(x[others], p, engine="circuit", ansatz=ansatz, reps=R, fast_measure=True, preact_trainable=True)
    assert_close_scaled(y[others].detach(), y_clean, 1e-13, msg="clean rows")
    # the input gradient of the other rows is untouched too
    gy = torch.ones(B, O, dtype=F64)
    gy[3] = 0.0
    y.backward(gy)
    assert torch.isfinite(xx.grad[others]).all()


NAN_MEASURES = [pytest.param(True, id="fast"), pytest.param(False, id="born")]


@pytest.mark.parametrize("fast", NAN_MEASURES)
@pytest.mark.parametrize("ansatz", ["pz", "rpz", "real", "mix"])
def test_nan_in_postacts_stays_in_its_edge(ansatz, fast):
    """phi of the edges that read the NaN is NaN (as in the reference); all else stays finite."""
    p, _ = _layer_args(ansatz, O=3, I=4, R=2)
    x = make_x(5, 4, gen=make_gen("nan-post", ansatz))
    x[2, 0] = float("nan")
    kw = dict(ansatz=ansatz, reps=2, fast_measure=fast, preact_trainable=True)
    phi = engines.daruan_postacts(x, p["theta"], p["preacts_weight"], p["preacts_bias"], **kw)
    want = engines.daruan_postacts(x, p["theta"], p["preacts_weight"], p["preacts_bias"], engine="reference", **kw)
    assert torch.isnan(want[2, :, 0]).all()  # the oracle propagates NaN
    assert torch.isnan(phi[2, :, 0]).all(), f"NaN input gave phi = {phi[2, :, 0].tolist()}"
    keep = torch.ones_like(phi, dtype=torch.bool)
    keep[2, :, 0] = False
    assert torch.isfinite(phi[keep]).all()


@pytest.mark.parametrize("fast", NAN_MEASURES)
@pytest.mark.parametrize("ansatz", ["pz", "rpz", "real", "mix"])
def test_nan_propagates_without_base_term(ansatz, fast):
    """With base_activation=None only the circuit carries x to y: a NaN input must still give NaN
    in its row (not a silent finite value) and only there."""
    p, _ = _layer_args(ansatz, O=3, I=4, R=2, seed="nan-nobase")
    p["mask"].fill_(1.0)
    x = make_x(5, 4, gen=make_gen("nan-nobase-x", ansatz), ansatz="pz")
    x[1, 2] = float("nan")
    kw = dict(ansatz=ansatz, reps=2, fast_measure=fast, preact_trainable=False, base_activation=None)
    y = call_layer(x, p, engine="circuit", **kw)
    assert torch.isnan(y[1]).all(), f"row with a NaN input gave {y[1].tolist()}"
    assert torch.isfinite(y[[0, 2, 3, 4]]).all()


# =============================================================================================
# property test: circuit == reference over random small problems
# =============================================================================================

try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test extra
    given = None


def _property_check(B, I, O, R, ansatz, fast, pt, group, x_scale, seed):
    gen = torch.Generator().manual_seed(seed)
    p = make_params(ansatz, O, I, R, gen=gen, dtype=F64, group=group)
    # x_scale * 0.9 <= 0.9 keeps px (with or without encodings) in its domain
    x = x_scale * make_x(B, I, gen=gen)
    kw = dict(ansatz=ansatz, reps=R, fast_measure=fast, preact_trainable=pt)
    gy = torch.randn(B, O, generator=gen, dtype=F64)
    out = {}
    for engine in ("circuit", "reference"):
        xx = x.clone().requires_grad_(True)
        y = call_layer(xx, p, engine=engine, **kw)
        (gx,) = torch.autograd.grad(y, xx, gy)
        out[engine] = (y.detach(), gx)
    assert_close_scaled(out["circuit"][0], out["reference"][0], 1e-12, msg="y")
    assert_close_scaled(out["circuit"][1], out["reference"][1], 1e-11, msg="grad x")


if given is None:

    def test_property_circuit_matches_reference():
        pytest.skip("hypothesis is not installed")

else:

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(
        B=st.integers(1, 9),
        I=st.integers(1, 5),
        O=st.integers(1, 4),
        R=st.integers(1, 5),
        ansatz=st.sampled_from(ANSATZE),
        fast=st.booleans(),
        pt=st.booleans(),
        group=st.sampled_from([None, 1, 2, 3]),
        x_scale=st.floats(0.05, 1.0),
        seed=st.integers(0, 2**31 - 1),
    )
    def test_property_circuit_matches_reference(B, I, O, R, ansatz, fast, pt, group, x_scale, seed):
        _property_check(B, I, O, R, ansatz, fast, pt, group, x_scale, seed)
