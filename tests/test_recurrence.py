"""The fused LSTM recurrence (recurrence.py, csrc/cpu/recurrence_kernels.h) held to the per-step
Python loop of the same model (QKANLSTM / HQKANLSTM with fused=False), which the other network
tests hold to hand-written loops and to the reference engine: values and every gradient in
float64 over every ansatz, measure and flag, gradcheck, the fallbacks, bad input, and what is
saved for backward."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from qkan_fast import _C, recurrence
from qkan_fast.networks import HQKANLSTM, QKANLSTM

F64 = torch.float64
ANSATZE = ("pz", "rpz", "px", "real", "mix")


def _model(d=2, H=3, dtype=F64, seed=1, **kw) -> QKANLSTM:
    m = QKANLSTM(d, H, seed=seed, dtype=dtype, postact_weight_trainable=True, postact_bias_trainable=True, **kw)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # every term of the gate map non-trivial
        for layer in m.gates:
            layer.postact_bias.uniform_(-0.5, 0.5, generator=g)
            layer.postact_weights.uniform_(0.5, 1.5, generator=g)
            layer.base_weight.uniform_(-0.5, 0.5, generator=g)
            if layer.preact_trainable:
                layer.preacts_weight.uniform_(0.5, 1.0, generator=g)
                layer.preacts_bias.uniform_(-0.2, 0.2, generator=g)
        if m.gate_bias is not None:
            for b in m.gate_bias:
                b.uniform_(-0.5, 0.5, generator=g)
    return m


def _run(m, x, hx=None, seed=7):
    """Outputs and the gradient of a loss that reads out, h_n and c_n, for x, hx and every parameter."""
    x = x.detach().clone().requires_grad_()
    leaves = [x]
    if hx is not None:
        hx = tuple(t.detach().clone().requires_grad_() for t in hx)
        leaves += list(hx)
    out, (h, c) = m(x, hx)
    g = torch.Generator().manual_seed(seed)
    w_out, w_h, w_c = (torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (out, h, c))
    loss = (out * w_out).sum() + (h * w_h).sum() + (c * w_c).sum()
    params = [p for p in m.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, leaves + params, allow_unused=True)  # base_weight without a base branch
    return [out, h, c], list(grads)


def _assert_fused_equals_loop(m, x, hx=None, atol=1e-12):
    loop = copy.deepcopy(m)
    loop.fused = False
    values, grads = _run(m, x, hx)
    ref_values, ref_grads = _run(loop, x, hx)
    for a, b in zip(values + grads, ref_values + ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=atol)


def _x(L=5, B=4, d=2, dtype=F64, seed=3, low=-1.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.empty(L, B, d, dtype=dtype).uniform_(low, high, generator=g)


@pytest.mark.parametrize("ansatz", ANSATZE)
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("engine", ["auto", "circuit"])
def test_fused_equals_loop_every_ansatz_and_measure(ansatz, fast, engine):
    m = _model(ansatz=ansatz, fast_measure=fast, engine=engine)
    assert recurrence.unsupported_reason(m.gates[0], _x()) is None
    _assert_fused_equals_loop(m, _x())


@pytest.mark.parametrize("ansatz", ["pz", "rpz", "px", "mix"])
@pytest.mark.parametrize("fast", [True, False])
def test_fused_spectral_gate_layer_equals_loop(ansatz, fast):
    _assert_fused_equals_loop(_model(ansatz=ansatz, fast_measure=fast, engine="spectral"), _x())


@pytest.mark.parametrize("ansatz", ["pz", "rpz", "real", "mix"])
@pytest.mark.parametrize("fast", [True, False])
def test_fused_trainable_encodings_equal_loop(ansatz, fast):
    m = _model(ansatz=ansatz, fast_measure=fast, preact_trainable=True)
    assert not recurrence._use_spectral(m.gates[0], _x())  # the circuit kernels, encodings included
    _assert_fused_equals_loop(m, _x())


@pytest.mark.parametrize("engine", ["auto", "circuit"])
def test_fused_layers_batch_first_state_and_unbatched(engine):
    N, L, B, d, H = 2, 4, 3, 2, 3
    m = _model(d, H, num_layers=N, engine=engine)
    g = torch.Generator().manual_seed(11)
    hx = (torch.randn(N, B, H, generator=g, dtype=F64).tanh(), torch.randn(N, B, H, generator=g, dtype=F64))
    _assert_fused_equals_loop(m, _x(L, B, d), hx)
    mb = _model(d, H, num_layers=N, engine=engine, batch_first=True)
    _assert_fused_equals_loop(mb, _x(L, B, d).transpose(0, 1), hx)  # (B, L, d), non-contiguous
    unbatched = (hx[0][:, 0], hx[1][:, 0])
    _assert_fused_equals_loop(m, _x(L, B, d)[:, 0], unbatched)


def test_fused_dropout_between_layers_matches_loop():
    m = _model(num_layers=3, dropout=0.3)
    loop = copy.deepcopy(m)
    loop.fused = False
    x = _x()
    torch.manual_seed(5)  # dropout draws from torch's global RNG, the same draws in both
    out_fused, _ = m(x)
    torch.manual_seed(5)
    out_loop, _ = loop(x)
    torch.testing.assert_close(out_fused, out_loop, rtol=0, atol=1e-12)
    m.eval()
    loop.eval()
    torch.testing.assert_close(m(x)[0], loop(x)[0], rtol=0, atol=1e-12)


def test_fused_grouped_parameters_no_bias_no_base():
    _assert_fused_equals_loop(_model(group=2, engine="circuit"), _x())
    _assert_fused_equals_loop(_model(group=2), _x())
    _assert_fused_equals_loop(_model(bias=False, base_activation=None), _x())


def test_fused_float32_matches_loop():
    m = _model(dtype=torch.float32)
    _assert_fused_equals_loop(m, _x(dtype=torch.float32), atol=2e-5)


def test_fused_threads_match_one_thread():
    """A layer large enough for the gate kernels to split over threads gives the loop's numbers."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        m = _model(1, 16, engine="circuit")
        _assert_fused_equals_loop(m, _x(4, 64, 1))
        m = _model(1, 16, engine="spectral")
        _assert_fused_equals_loop(m, _x(4, 64, 1))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("kw", [dict(engine="circuit"), dict(engine="spectral"),
                                dict(engine="circuit", preact_trainable=True, ansatz="mix", fast_measure=False)])
def test_fused_gradcheck(kw):
    m = _model(2, 2, **kw)
    x = _x(3, 2, 2).requires_grad_()
    h0 = (0.5 * _x(1, 2, 2, seed=4)).requires_grad_()
    c0 = _x(1, 2, 2, seed=5).requires_grad_()
    params = [p for p in m.parameters() if p.requires_grad]

    def f(x, h0, c0, *_params):  # the parameters are perturbed in place by gradcheck
        out, (h, c) = m(x, (h0, c0))
        return out, c

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), atol=1e-7, rtol=1e-5)


def _hqkan_model(d=2, H=3, dtype=F64, seed=1, **kw) -> HQKANLSTM:
    m = HQKANLSTM(d, H, seed=seed, dtype=dtype, **kw)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for hq in m.gates:
            layer = hq.qkan.layers[0]
            layer.postact_bias.uniform_(-0.5, 0.5, generator=g)
            layer.base_weight.uniform_(-0.5, 0.5, generator=g)
            if layer.preact_trainable:
                layer.preacts_weight.uniform_(0.5, 1.0, generator=g)
                layer.preacts_bias.uniform_(-0.2, 0.2, generator=g)
    return m


@pytest.mark.parametrize("kw", [dict(), dict(engine="circuit"), dict(fast_measure=False), dict(ansatz="mix"),
                                dict(ansatz="rpz", engine="spectral"), dict(preact_trainable=True, ansatz="real"),
                                dict(bias=False), dict(latent=(2, 4), postact_bias_trainable=True)])
def test_fused_hqkan_lstm_equals_loop(kw):
    _assert_fused_equals_loop(_hqkan_model(**kw), _x())


def test_fused_hqkan_lstm_layers_state_and_gradcheck():
    N, L, B, d, H = 2, 4, 3, 2, 3
    m = _hqkan_model(d, H, num_layers=N, batch_first=True)
    g = torch.Generator().manual_seed(12)
    hx = (torch.randn(N, B, H, generator=g, dtype=F64).tanh(), torch.randn(N, B, H, generator=g, dtype=F64))
    _assert_fused_equals_loop(m, _x(L, B, d).transpose(0, 1), hx)
    small = _hqkan_model(2, 2)
    x = _x(3, 2, 2).requires_grad_()
    params = [p for p in small.parameters() if p.requires_grad]
    assert torch.autograd.gradcheck(lambda x, *_: small(x)[0], (x, *params), atol=1e-7, rtol=1e-5)


def test_fused_second_derivatives_name_the_loop():
    m = _model()
    x = _x().requires_grad_()
    out, _ = m(x)
    with pytest.raises(RuntimeError, match="fused=False"):
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        g.sum().backward()
    m.fused = False
    out, _ = m(x)
    (g,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    g.square().sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_fused_falls_back_where_it_does_not_apply():
    x = _x()
    m = _model(engine="reference")
    assert "reference" in recurrence.unsupported_reason(m.gates[0], x)
    h = HQKANLSTM(2, 3, dtype=F64)
    assert recurrence.unsupported_reason(h.gates[0], x) is None
    h.gates[0].qkan.norm_out = 2
    assert "norm_out" in recurrence.unsupported_reason(h.gates[0], x)
    assert "px" in recurrence.unsupported_reason(HQKANLSTM(2, 3, ansatz="px", dtype=F64).gates[0], x)
    assert "SiLU" in recurrence.unsupported_reason(_model(base_activation="gelu").gates[0], x)
    assert "batch" in recurrence.unsupported_reason(_model(is_batchnorm=True).gates[0], x)
    assert "empty" in recurrence.unsupported_reason(_model().gates[0], x[:, :0])
    assert "px" in recurrence.unsupported_reason(_model(ansatz="px", preact_trainable=True).gates[0], x)
    with pytest.raises(ValueError, match="reference"):
        recurrence.lstm_layer(x, x[0, :, :1], x[0, :, :1], m.gates[0], None)
    # the loop runs those and the module still works
    out, (h_n, c_n) = _model(base_activation="gelu")(x)
    assert out.shape == (5, 4, 3) and torch.isfinite(out).all()
    out, (h_n, c_n) = _model()(x[:, :0])  # empty batch, as nn.LSTM
    assert out.shape == (5, 0, 3) and h_n.shape == (1, 0, 3)


def test_fused_spectral_engine_where_it_does_not_apply_raises():
    m = _model(engine="spectral", preact_trainable=True)
    with pytest.raises(ValueError, match="spectral"):
        m(_x())


@pytest.mark.parametrize("cls", [QKANLSTM, HQKANLSTM])
def test_fused_rejects_mixed_dtypes_like_the_loop(cls):
    m = cls(2, 3)  # float32 parameters
    with pytest.raises(TypeError, match="float64"):
        m(torch.randn(4, 2, 2, dtype=F64))
    with pytest.raises(TypeError, match="h0 has dtype"):
        m(torch.randn(4, 2, 2), (torch.zeros(1, 2, 3, dtype=F64), torch.zeros(1, 2, 3)))


def test_fused_nan_stays_in_its_sample():
    m = _model()
    x = _x()
    x[1, 0, 0] = float("nan")
    out, (h, c) = m(x)
    assert torch.isnan(out[1:, 0]).all() and torch.isfinite(out[:, 1:]).all() and torch.isfinite(out[0]).all()
    assert torch.isnan(c[0, 0]).all() and torch.isfinite(c[0, 1:]).all()


def test_fused_px_rejects_inputs_outside_the_domain():
    m = _model(ansatz="px")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        m(_x(low=1.0, high=2.0))


def test_fused_saves_o_of_lbh_for_backward():
    """Saved: the inputs, h and c of every step and the activated gates (L B 4H), and the
    parameters; nothing of size B * 4H * (d + H)."""
    L, B, d, H = 6, 8, 3, 5
    m = _model(d, H)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = m(_x(L, B, d).requires_grad_())
    per_step_gate_tensor = B * 4 * H * (d + H)
    assert saved and max(saved) <= max(L * B * 4 * H, 4 * H * (d + H) * 3 * 2 * 5)
    assert max(saved) < L * per_step_gate_tensor
    assert sum(saved) < 2 * L * per_step_gate_tensor


def test_fused_flag_pickles_and_defaults():
    m = QKANLSTM(2, 3)
    assert m.fused is True and HQKANLSTM(2, 3).fused is True
    m2 = pickle.loads(pickle.dumps(QKANLSTM(2, 3, fused=False)))
    assert m2.fused is False


def test_core_rejects_bad_recurrence_params():
    p = _C.RecurrenceParams()
    p.steps, p.batch, p.input_size, p.hidden, p.reps = 2, 2, 1, 2, 1
    with pytest.raises(ValueError, match="theta"):
        _C.recurrence_forward_cpu(p)
    p.engine = _C.GateEngine.spectral
    p.nq = 2
    with pytest.raises(ValueError, match="nq"):
        _C.recurrence_forward_cpu(p)
    p.nq = 3
    with pytest.raises(ValueError, match="coef"):
        _C.recurrence_forward_cpu(p)
    p.steps = 0
    with pytest.raises(ValueError, match="steps"):
        _C.recurrence_backward_cpu(p)
    p.steps, p.dtype = 2, _C.DType.bfloat16
    with pytest.raises(ValueError, match="bfloat16"):
        _C.recurrence_forward_cpu(p)
