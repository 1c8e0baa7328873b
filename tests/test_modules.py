"""QKANLayer and QKAN: parameters as docs/math.md ("One layer") (and qkan) lay them out, state_dicts that
load both ways with qkan, dtype/device moves, aliases, refine, postacts / forward_no_sum,
(B, C, n0) input, a small training run, and serialisation."""

from __future__ import annotations

import io
import math
import pickle

import pytest
import torch

import qkan_fast
from qkan_fast import QKAN, QKANLayer

from conftest import (
    ANSATZE,
    F32,
    F64,
    PARAM_NAMES,
    assert_close_scaled,
    make_gen,
    make_x,
    stable_seed,
    theta_shape,
)

try:
    import qkan as _qkan
except Exception:  # qkan missing or broken: the comparisons with it are skipped
    _qkan = None

needs_qkan = pytest.mark.skipif(_qkan is None, reason="qkan is not importable")

ALIASES = {"pz_encoding": "pz", "rpz_encoding": "rpz", "px_encoding": "px"}


def _spec_params(ansatz, O, I, R, *, group, pt, ba, pwt, pbt):
    """name -> (shape, init value or None for theta, requires_grad), from docs/math.md ("One layer")."""
    lead = (O, I) if group == -1 else (group,)
    th = theta_shape(ansatz, O, I, R)[2:]
    return {
        "theta": ((*lead, *th), None, True),
        "preacts_weight": ((*lead, R), 1.0, pt),
        "preacts_bias": ((*lead, R), 0.0, pt or ansatz == "rpz"),
        "base_weight": ((O, I), 0.5 if ba else 0.0, ba),
        "postact_weights": ((O, I), 1.0, pwt),
        "postact_bias": ((O, I), 0.0, pbt),
        "mask": ((O, I), 1.0, False),
    }


FLAG_CASES = [
    # pt, ba_trainable, postact_weight_trainable, postact_bias_trainable, group
    (False, True, False, False, -1),
    (True, False, True, True, -1),
    (True, True, False, True, 2),
    (False, False, True, False, 3),
]
FLAG_IDS = [f"pt{int(a)}-ba{int(b)}-pw{int(c)}-pb{int(d)}-g{e}" for a, b, c, d, e in FLAG_CASES]


@pytest.mark.parametrize("pt,ba,pwt,pbt,group", FLAG_CASES, ids=FLAG_IDS)
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_layer_parameters_follow_spec(ansatz, pt, ba, pwt, pbt, group):
    O, I, R = 3, 4, 2
    layer = QKANLayer(
        I, O, reps=R, group=group, ansatz=ansatz, preact_trainable=pt, ba_trainable=ba,
        postact_weight_trainable=pwt, postact_bias_trainable=pbt,
    )
    want = _spec_params(ansatz, O, I, R, group=group, pt=pt, ba=ba, pwt=pwt, pbt=pbt)
    got = dict(layer.named_parameters())
    assert list(got) == list(PARAM_NAMES)
    assert list(layer.state_dict()) == list(PARAM_NAMES)
    for name, (shape, init, trainable) in want.items():
        t = got[name]
        assert tuple(t.shape) == shape, name
        assert t.requires_grad == trainable, name
        assert t.dtype == torch.get_default_dtype(), name
        if init is not None:
            assert bool((t == init).all()), f"{name} should start at {init}"
    assert torch.isfinite(layer.theta).all() and bool(layer.theta.abs().sum() > 0)


@pytest.mark.parametrize("shape", [(16, 16, 3), (8, 32, 2)])
@pytest.mark.parametrize("ansatz", ["pz", "rpz", "real"])
def test_theta_is_xavier_normal(ansatz, shape):
    """theta ~ N(0, gain^2 2/(fan_in + fan_out)) over the whole tensor (torch's xavier_normal_)."""
    I, O, R = shape
    torch.manual_seed(stable_seed("xavier", ansatz, shape))
    theta = QKANLayer(I, O, reps=R, ansatz=ansatz).theta.detach()
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(theta)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    n = theta.numel()
    assert abs(float(theta.std()) / std - 1) < 5 / math.sqrt(n)
    assert abs(float(theta.mean())) < 5 * std / math.sqrt(n)


def test_seed_is_reproducible():
    a = QKANLayer(4, 3, reps=2, seed=11)
    b = QKANLayer(4, 3, reps=2, seed=11)
    torch.testing.assert_close(a.theta, b.theta, rtol=0, atol=0)
    m1, m2 = QKAN([3, 4, 2], seed=5), QKAN([3, 4, 2], seed=5)
    for (k1, v1), (k2, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1


def test_qkan_network_layout():
    m = QKAN([3, 4, 2], reps=2)
    assert len(m.layers) == 2
    assert [(l.in_dim, l.out_dim) for l in m.layers] == [(3, 4), (4, 2)]
    # qkan.QKAN defaults ba_trainable=False: base weights frozen at 0
    for layer in m.layers:
        assert not layer.base_weight.requires_grad and bool((layer.base_weight == 0).all())
    assert QKANLayer(3, 4).base_weight.requires_grad  # while QKANLayer defaults True


# =============================================================================================
# against the qkan package
# =============================================================================================


def _qkan_layer(I, O, R, *, ansatz, **kw):
    layer = _qkan.QKANLayer(I, O, R, ansatz=ansatz, solver="exact", **kw)
    if kw.get("c_dtype") == torch.complex128:
        # qkan forces bf16 compute for `real`; use complex128 for exact comparisons
        layer.c_dtype = torch.complex128
        layer._resolve_solver_fn()
    return layer


def _exact_qkan_net(width, **kw):
    net = _qkan.QKAN(width, solver="exact", c_dtype=torch.complex128, p_dtype=F64, **kw)
    for layer in net.layers:
        layer.c_dtype = torch.complex128
        layer._resolve_solver_fn()
    return net


@needs_qkan
@pytest.mark.parametrize("pt,ba,pwt,pbt,group", FLAG_CASES, ids=FLAG_IDS)
@pytest.mark.parametrize("ansatz", ["pz_encoding", "rpz_encoding", "px_encoding", "real", "mix"])
def test_layer_parameters_match_qkan(ansatz, pt, ba, pwt, pbt, group):
    O, I, R = 3, 4, 2
    kw = dict(
        reps=R, group=group, ansatz=ansatz, preact_trainable=pt, ba_trainable=ba,
        postact_weight_trainable=pwt, postact_bias_trainable=pbt, seed=stable_seed(ansatz, group),
    )
    ours = QKANLayer(I, O, **kw)
    theirs = _qkan.QKANLayer(I, O, solver="exact", **kw)
    q = dict(theirs.named_parameters())
    assert list(dict(ours.named_parameters())) == [n for n in q if n in PARAM_NAMES]
    for name, t in ours.named_parameters():
        assert t.shape == q[name].shape, name
        assert t.requires_grad == q[name].requires_grad, name
        assert t.dtype == q[name].dtype, name
        # same seed, same draws: theta matches too
        torch.testing.assert_close(t.detach(), q[name].detach(), rtol=0, atol=0, msg=name)


@needs_qkan
@pytest.mark.parametrize("ba", [False, True])
def test_network_parameters_match_qkan(ba):
    ours = QKAN([3, 4, 2], reps=2, ba_trainable=ba)
    theirs = _qkan.QKAN([3, 4, 2], reps=2, ba_trainable=ba, solver="exact")
    q = dict(theirs.named_parameters())
    o = dict(ours.named_parameters())
    assert set(o) <= set(q)
    for name, t in o.items():
        assert (t.shape, t.requires_grad, t.dtype) == (q[name].shape, q[name].requires_grad, q[name].dtype), name
        if not name.endswith("theta"):
            torch.testing.assert_close(t.detach(), q[name].detach(), rtol=0, atol=0, msg=name)


def _random_state(module, gen):
    """A state_dict with random values in every tensor (a few pruned mask entries, encodings
    that keep px in its domain for |x| <= 0.9)."""
    sd = {}
    for name, t in module.state_dict().items():
        if name.endswith("mask"):
            v = torch.ones_like(t)
            v.view(-1)[1::3] = 0.0
        elif name.endswith("preacts_weight"):
            v = -0.6 + 1.2 * torch.rand(t.shape, generator=gen, dtype=t.dtype)
        elif name.endswith("preacts_bias"):
            v = -0.35 + 0.7 * torch.rand(t.shape, generator=gen, dtype=t.dtype)
        elif name.rsplit(".", 1)[-1] in PARAM_NAMES:
            v = torch.randn(t.shape, generator=gen, dtype=t.dtype)
        else:  # batchnorm statistics and counters keep their values
            v = t.clone()
        sd[name] = v
    return sd


def _layer_kw(ansatz, fast, pt):
    return dict(
        fast_measure=fast, preact_trainable=pt, ba_trainable=True, postact_weight_trainable=True,
        postact_bias_trainable=True,
    )


@needs_qkan
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "born"])
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_layer_state_dict_loads_into_qkan(ansatz, fast):
    """qkan_fast -> qkan; the other direction, with gradients, is tests/test_interop_qkan.py."""
    I, O, R = 4, 3, 2
    pt = ansatz == "px"  # qkan needs trainable preacts for px
    kw = _layer_kw(ansatz, fast, pt)
    theirs = _qkan_layer(I, O, R, ansatz=ansatz, c_dtype=torch.complex128, p_dtype=F64, **kw)
    ours = QKANLayer(I, O, R, ansatz=ansatz, dtype=F64, **kw)
    gen = make_gen("sd-layer", ansatz, fast)
    x = make_x(7, I, gen=gen)
    ours.load_state_dict(_random_state(ours, gen))
    theirs.load_state_dict(ours.state_dict())
    assert_close_scaled(ours(x), theirs(x).detach(), 1e-10, msg="qkan_fast -> qkan")


@needs_qkan
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_network_state_dict_loads_both_ways_with_qkan(ansatz):
    """Both directions, every ansatz (tests/test_interop_qkan.py's network test has no px)."""
    width = [3, 2] if ansatz == "px" else [3, 4, 2]  # px needs every layer's input in [-1, 1]
    pt = ansatz == "px"
    kw = dict(reps=2, ansatz=ansatz, preact_trainable=pt, ba_trainable=True, postact_bias_trainable=True)
    theirs = _exact_qkan_net(width, **kw)
    ours = QKAN(width, dtype=F64, **kw)
    gen = make_gen("sd-net", ansatz)
    x = make_x(6, 3, gen=gen)

    theirs.load_state_dict(_random_state(theirs, gen))
    ours.load_state_dict(theirs.state_dict())
    assert_close_scaled(ours(x), theirs(x).detach(), 1e-10, msg="qkan -> qkan_fast")

    ours.load_state_dict(_random_state(ours, gen))
    theirs.load_state_dict(ours.state_dict())
    assert_close_scaled(ours(x), theirs(x).detach(), 1e-10, msg="qkan_fast -> qkan")


def test_qkan_engine_keywords_are_accepted():
    """Drop-in construction with qkan's engine keywords (no effect here)."""
    layer = QKANLayer(3, 2, reps=2, solver="exact", c_dtype=torch.complex128, p_dtype=F64, qml_device="default.qubit")
    assert layer.theta.dtype == F64
    with pytest.raises(TypeError, match="unexpected keyword"):
        QKANLayer(3, 2, not_a_keyword=1)


# =============================================================================================
# dtype and device moves, aliases, engines
# =============================================================================================


@pytest.mark.parametrize("ansatz", ANSATZE)
def test_double_and_to_cpu(ansatz):
    torch.manual_seed(stable_seed("double", ansatz))
    layer = QKANLayer(4, 3, reps=2, ansatz=ansatz, preact_trainable=True)
    gen = make_gen("double-x", ansatz)
    x = make_x(5, 4, gen=gen)
    assert layer.to("cpu") is layer
    assert all(t.device.type == "cpu" for t in layer.parameters())
    y32 = layer(x.float())
    assert y32.dtype == F32
    layer.double()
    assert all(t.dtype == F64 for t in layer.parameters())
    y64 = layer(x)
    assert y64.dtype == F64
    assert_close_scaled(y32.double(), y64, 1e-5, msg="float32 vs float64")
    ref_layer = QKANLayer(4, 3, reps=2, ansatz=ansatz, preact_trainable=True, engine="reference").double()
    ref_layer.load_state_dict(layer.state_dict())
    assert_close_scaled(y64, ref_layer(x), 1e-12, msg="circuit vs reference")
    # flags survive the moves
    assert layer.preacts_weight.requires_grad and layer.theta.requires_grad and not layer.mask.requires_grad


@pytest.mark.parametrize("alias,canon", list(ALIASES.items()))
def test_ansatz_aliases(alias, canon):
    a = QKANLayer(3, 2, reps=2, ansatz=alias, preact_trainable=True, dtype=F64)
    b = QKANLayer(3, 2, reps=2, ansatz=canon, preact_trainable=True, dtype=F64)
    assert a.ansatz == canon
    assert a.theta.shape == b.theta.shape
    b.load_state_dict(a.state_dict())
    x = make_x(4, 3, gen=make_gen("alias", alias))
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert canon in qkan_fast.ANSATZE and qkan_fast.canonical_ansatz(alias) == canon


def test_engine_switch_on_network():
    torch.manual_seed(3)
    m = QKAN([3, 4, 2], reps=2, dtype=F64)
    x = make_x(5, 3, gen=make_gen("engine"), ansatz="pz")
    y = m(x)
    m.engine = "reference"
    assert all(layer.engine == "reference" for layer in m.layers)
    assert_close_scaled(m(x), y, 1e-12, msg="reference vs circuit")
    with pytest.raises(ValueError, match="engine must be one of"):
        m.engine = "bogus"


@pytest.mark.parametrize("activation", [None, "identity", "tanh", torch.sin], ids=["none", "identity", "tanh", "callable"])
def test_base_activation_choices_agree_across_engines(activation):
    gen = make_gen("activation", str(activation))
    kw = dict(reps=2, ansatz="mix", base_activation=activation, postact_bias_trainable=True, dtype=F64)
    circ = _randomise(QKANLayer(4, 3, **kw), gen)
    refl = QKANLayer(4, 3, engine="reference", **kw)
    refl.load_state_dict(circ.state_dict())
    x = make_x(6, 4, gen=gen, ansatz="pz")
    y = circ(x)
    assert_close_scaled(y, refl(x), 1e-12, msg="circuit vs reference")
    # the base term is bw * act(x) summed over i, or absent
    act = {None: lambda t: torch.zeros_like(t), "identity": lambda t: t, "tanh": torch.tanh}.get(activation, activation)
    no_base = circ.forward_no_sum(x) - circ.base_weight * circ.mask * act(x)[:, None, :]
    phi = circ.postacts(x)
    want = (circ.mask * circ.postact_weights * (phi + circ.postact_bias)).sum(-1)
    assert_close_scaled(no_base.sum(-1), want, 1e-12, msg="base term")


# =============================================================================================
# refine (layer extension)
# =============================================================================================


def _randomise(module, gen):
    module.load_state_dict(_random_state(module, gen))
    return module


@pytest.mark.parametrize("group", [-1, 2])
@pytest.mark.parametrize("pt", [False, True], ids=["nopre", "pre"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "born"])
@pytest.mark.parametrize("ansatz", ["pz", "rpz"])
def test_refine_keeps_function_for_pz_rpz(ansatz, fast, pt, group):
    I, O, R = 4, 3, 2
    gen = make_gen("refine", ansatz, fast, pt, group)
    layer = _randomise(
        QKANLayer(I, O, reps=R, group=group, ansatz=ansatz, fast_measure=fast, preact_trainable=pt,
                  postact_bias_trainable=True, dtype=F64),
        gen,
    )
    x = make_x(9, I, gen=gen, ansatz="pz")
    for new_reps in (R + 1, R + 3):
        new = layer.refine(new_reps)
        assert new.reps == new_reps and new.ansatz == ansatz and new.fast_measure == fast
        assert_close_scaled(new(x), layer(x), 1e-10, msg=f"refine({new_reps})")


@pytest.mark.parametrize("group", [-1, 2])
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_refine_shapes_and_copies(ansatz, group):
    I, O, R, new_R = 4, 3, 2, 4
    gen = make_gen("refine-shapes", ansatz, group)
    layer = _randomise(QKANLayer(I, O, reps=R, group=group, ansatz=ansatz, preact_trainable=True, dtype=F64), gen)
    new = layer.refine(new_R)
    lead = (O, I) if group == -1 else (group,)
    rows, P = theta_shape(ansatz, O, I, new_R)[2:]
    assert new.theta.shape == (*lead, rows, P)
    assert new.preacts_weight.shape == new.preacts_bias.shape == (*lead, new_R)
    assert new.theta.dtype == F64
    # flags carried over
    for name, t in layer.named_parameters():
        assert dict(new.named_parameters())[name].requires_grad == t.requires_grad, name
    old_rows = R if ansatz == "real" else R + 1
    torch.testing.assert_close(new.theta[..., :R, :], layer.theta[..., :R, :], rtol=0, atol=0)
    if ansatz != "real":  # the old final row moves to row R
        torch.testing.assert_close(new.theta[..., R, :], layer.theta[..., R, :], rtol=0, atol=0)
    assert bool((new.theta[..., old_rows:, :] == 0).all())
    torch.testing.assert_close(new.preacts_weight[..., :R], layer.preacts_weight, rtol=0, atol=0)
    torch.testing.assert_close(new.preacts_bias[..., :R], layer.preacts_bias, rtol=0, atol=0)
    assert bool((new.preacts_weight[..., R:] == 1).all()) and bool((new.preacts_bias[..., R:] == 0).all())
    for name in ("base_weight", "postact_weights", "postact_bias", "mask"):
        torch.testing.assert_close(getattr(new, name), getattr(layer, name), rtol=0, atol=0, msg=name)
    x = make_x(5, I, gen=gen)
    assert new(x).shape == (5, O)
    with pytest.raises(ValueError, match="new_reps"):
        layer.refine(R)


def test_network_refine_keeps_function():
    gen = make_gen("net-refine")
    m = _randomise(QKAN([3, 4, 2], reps=2, dtype=F64, ba_trainable=True), gen)
    x = make_x(6, 3, gen=gen, ansatz="pz")
    new = m.refine(4)
    assert [layer.reps for layer in new.layers] == [4, 4] and new.reps == 4
    assert_close_scaled(new(x), m(x), 1e-10, msg="QKAN.refine")


# =============================================================================================
# postacts, forward_no_sum, (B, C, n0) input
# =============================================================================================


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("group", [-1, 2])
@pytest.mark.parametrize("ansatz", ANSATZE)
def test_postacts_and_forward_no_sum(ansatz, group, batchnorm):
    B, I, O, R = 7, 4, 3, 2
    gen = make_gen("nosum", ansatz, group, batchnorm)
    layer = _randomise(
        QKANLayer(I, O, reps=R, group=group, ansatz=ansatz, preact_trainable=True, postact_bias_trainable=True,
                  is_batchnorm=batchnorm, dtype=F64),
        gen,
    )
    if batchnorm:
        layer.eval()  # px: batch statistics would move the inputs; eval uses the (identity) running stats
    x = make_x(B, I, gen=gen)
    phi = layer.postacts(x)
    assert phi.shape == (B, O, I) and phi.dtype == F64
    assert bool((phi.abs() <= 1 + 1e-12).all())
    if group != -1:  # shared sets: phi does not depend on o
        torch.testing.assert_close(phi, phi[:, :1].expand(B, O, I), rtol=0, atol=0)
    parts = layer.forward_no_sum(x)
    assert parts.shape == (B, O, I)
    assert_close_scaled(parts.sum(-1), layer(x), 1e-12, msg="forward_no_sum(x).sum(-1)")
    # pruned edges contribute nothing
    assert bool((parts[:, layer.mask == 0] == 0).all())


def test_batchnorm_in_training_mode():
    """forward, postacts and forward_no_sum each normalise the batch once (one running-stat update)."""
    torch.manual_seed(4)
    layer = QKANLayer(3, 2, reps=2, is_batchnorm=True, dtype=F64)
    x = 2 + make_x(16, 3, gen=make_gen("bn-train"), ansatz="pz")
    y = layer(x)
    assert int(layer.bn.num_batches_tracked) == 1
    parts = layer.forward_no_sum(x)
    assert int(layer.bn.num_batches_tracked) == 2, "forward_no_sum updated the batchnorm statistics twice"
    layer.postacts(x)
    assert int(layer.bn.num_batches_tracked) == 3
    assert_close_scaled(parts.sum(-1), y, 1e-12, msg="forward_no_sum vs forward in training mode")
    # the normalised input, not x, reaches the circuit
    layer.eval()
    xn = layer.bn(x)
    plain = QKANLayer(3, 2, reps=2, dtype=F64)
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("bn.")})
    assert_close_scaled(layer(x), plain(xn), 1e-12, msg="bn then layer")


@pytest.mark.parametrize("ansatz", ["pz", "px"])
def test_network_accepts_batch_channel_input(ansatz):
    width = [3, 2] if ansatz == "px" else [3, 5, 2]
    torch.manual_seed(stable_seed("bcn", ansatz))
    m = QKAN(width, reps=2, ansatz=ansatz, preact_trainable=ansatz == "px", dtype=F64)
    gen = make_gen("bcn-x", ansatz)
    x = make_x(4 * 6, 3, gen=gen).reshape(4, 6, 3)
    y = m(x)
    assert y.shape == (4, 6, 2)
    assert_close_scaled(y, m(x.reshape(-1, 3)).reshape(4, 6, 2), 1e-13, msg="(B, C, n0)")
    x.requires_grad_(True)
    m(x).sum().backward()
    assert x.grad.shape == x.shape


def test_network_norm_out():
    torch.manual_seed(0)
    m = QKAN([3, 4, 2], reps=2, norm_out=2, dtype=F64)
    y = m(make_x(5, 3, gen=make_gen("norm"), ansatz="pz"))
    torch.testing.assert_close(y.norm(dim=1), torch.ones(5, dtype=F64))


# =============================================================================================
# training
# =============================================================================================


@pytest.mark.slow
def test_qkan_trains_on_small_regression():
    torch.manual_seed(0)
    x = 4 * torch.rand(256, 2) - 2
    y = (torch.sin(x[:, 0]) * x[:, 1])[:, None]
    model = QKAN([2, 5, 1], reps=3, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] / 10, f"loss went {losses[0]:.4g} -> {losses[-1]:.4g}"


# =============================================================================================
# serialisation
# =============================================================================================


@pytest.mark.parametrize("activation", ["silu", "gelu", "identity", "linear", None])
def test_torch_save_load_and_pickle(tmp_path, activation):
    gen = make_gen("save", activation)
    layer = _randomise(
        QKANLayer(4, 3, reps=2, ansatz="rpz", base_activation=activation, postact_bias_trainable=True, dtype=F64), gen
    )
    x = make_x(5, 4, gen=gen)
    y = layer(x)

    # the state_dict alone (weights_only load)
    torch.save(layer.state_dict(), tmp_path / "sd.pt")
    sd = torch.load(tmp_path / "sd.pt", weights_only=True)
    fresh = QKANLayer(4, 3, reps=2, ansatz="rpz", base_activation=activation, postact_bias_trainable=True, dtype=F64)
    fresh.load_state_dict(sd)
    torch.testing.assert_close(fresh(x), y, rtol=0, atol=0)

    # the whole module
    torch.save(layer, tmp_path / "module.pt")
    loaded = torch.load(tmp_path / "module.pt", weights_only=False)
    torch.testing.assert_close(loaded(x), y, rtol=0, atol=0)

    # plain pickle
    again = pickle.loads(pickle.dumps(layer))
    torch.testing.assert_close(again(x), y, rtol=0, atol=0)
    assert [n for n, _ in again.named_parameters()] == list(PARAM_NAMES)


def test_network_save_load(tmp_path):
    gen = make_gen("save-net")
    m = _randomise(QKAN([3, 4, 2], reps=2, dtype=F64), gen)
    x = make_x(5, 3, gen=gen, ansatz="pz")
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    torch.testing.assert_close(loaded(x), m(x), rtol=0, atol=0)
    torch.save(m.state_dict(), tmp_path / "net.pt")
    fresh = QKAN([3, 4, 2], reps=2, dtype=F64)
    fresh.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    torch.testing.assert_close(fresh(x), m(x), rtol=0, atol=0)
