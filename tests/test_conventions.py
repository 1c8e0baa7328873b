"""torch conventions every module follows: an empty batch gives an empty output and zero
gradients (as nn.Linear / nn.LSTM), `seed=` never touches the global RNG, and modules survive
copy.deepcopy, torch.save(model) / torch.load and pickle with the same outputs."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch

import qkan_fast
from qkan_fast import DARUAN, HQKAN, HQKANLSTM, QKAN, QKANLSTM, QKANLayer

F64 = torch.float64


def _models():
    """One of each module, float64, every optional trainable flag on where there is one."""
    return {
        "layer": (QKANLayer(3, 4, reps=2, seed=1, postact_weight_trainable=True, postact_bias_trainable=True,
                            dtype=F64), (5, 3)),
        "layer-rpz-pre": (QKANLayer(3, 4, reps=2, ansatz="rpz", preact_trainable=True, seed=1, dtype=F64), (5, 3)),
        "layer-grouped": (QKANLayer(3, 4, reps=2, group=2, seed=1, dtype=F64), (5, 3)),
        "qkan": (QKAN([3, 4, 2], reps=2, seed=2, dtype=F64), (5, 3)),
        "daruan": (DARUAN(3, reps=2, seed=3, dtype=F64), (5, 3)),
        "hqkan": (HQKAN(6, 2, reps=2, seed=4, dtype=F64), (5, 6)),
    }


@pytest.mark.parametrize("engine", ["circuit", "spectral", "reference", "auto"])
@pytest.mark.parametrize("fast_measure", [True, False])
def test_empty_batch_gives_empty_output_and_zero_grads(engine, fast_measure):
    layer = QKANLayer(3, 4, reps=2, engine=engine, fast_measure=fast_measure, postact_weight_trainable=True,
                      postact_bias_trainable=True, seed=0, dtype=F64)
    x = torch.zeros(0, 3, dtype=F64, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 4) and y.dtype == F64
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == (0, 3)
    for name, p in layer.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient for an empty batch"
            assert torch.count_nonzero(p.grad) == 0, f"{name}: nonzero gradient for an empty batch"


@pytest.mark.parametrize("name", ["layer", "layer-grouped", "qkan", "daruan", "hqkan"])
def test_empty_batch_every_module(name):
    model, shape = _models()[name]
    x = torch.zeros(0, shape[1], dtype=F64)
    y = model(x)
    assert y.shape[0] == 0
    y.sum().backward()  # must not raise


def test_empty_batch_postacts():
    layer = QKANLayer(3, 4, reps=2, dtype=F64)
    assert layer.postacts(torch.zeros(0, 3, dtype=F64)).shape == (0, 4, 3)


def test_empty_batch_lstm():
    lstm = QKANLSTM(2, 3, reps=1, seed=0, dtype=F64)
    out, (h, c) = lstm(torch.zeros(4, 0, 2, dtype=F64))
    assert out.shape == (4, 0, 3) and h.shape == (1, 0, 3) and c.shape == (1, 0, 3)


@pytest.mark.parametrize("make", [
    lambda: QKANLayer(4, 3, seed=5),
    lambda: QKAN([4, 3, 2], seed=5),
    lambda: DARUAN(4, seed=5),
    lambda: HQKAN(8, 3, seed=5),
    lambda: QKANLSTM(2, 3, seed=5),
    lambda: HQKANLSTM(2, 3, seed=5),
], ids=["layer", "qkan", "daruan", "hqkan", "qkanlstm", "hqkanlstm"])
def test_seed_is_local_and_reproducible(make):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = make()
    assert torch.equal(torch.random.get_rng_state(), before), "a seeded constructor changed the global RNG"
    b = make()
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb), f"{na} differs between two constructions with one seed"


def test_seed_gives_the_values_of_manual_seed():
    """seed=s draws the values torch.manual_seed(s) followed by the unseeded constructor draws
    (the initial values qkan users get), without touching the global RNG."""
    seeded = QKAN([4, 3, 2], seed=7)
    torch.manual_seed(7)
    plain = QKAN([4, 3, 2])
    for k, v in seeded.state_dict().items():
        assert torch.equal(v, plain.state_dict()[k]), k
    lin = HQKAN(8, 3, seed=9)
    torch.manual_seed(9)
    lin_plain = HQKAN(8, 3)
    for k, v in lin.state_dict().items():
        assert torch.equal(v, lin_plain.state_dict()[k]), k


def test_unseeded_constructors_use_the_global_rng():
    torch.manual_seed(0)
    a = QKANLayer(4, 3)
    torch.manual_seed(0)
    b = QKANLayer(4, 3)
    c = QKANLayer(4, 3)
    assert torch.equal(a.theta, b.theta) and not torch.equal(b.theta, c.theta)


def _roundtrips(model):
    yield "deepcopy", copy.deepcopy(model)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    yield "torch.save", torch.load(buf, weights_only=False)
    yield "pickle", pickle.loads(pickle.dumps(model))


@pytest.mark.parametrize("name", list(_models()))
def test_modules_survive_copy_save_and_pickle(name):
    model, shape = _models()[name]
    x = torch.rand(*shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    want = model(x)
    for how, again in _roundtrips(model):
        assert again is not model
        torch.testing.assert_close(again(x), want, rtol=0, atol=0, msg=f"{name} after {how}")


@pytest.mark.parametrize("cls", [QKANLSTM, HQKANLSTM])
def test_lstms_survive_copy_save_and_pickle(cls):
    model = cls(2, 3, reps=1, seed=0, dtype=F64)
    x = torch.rand(4, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    want, _ = model(x)
    for how, again in _roundtrips(model):
        got, _ = again(x)
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{cls.__name__} after {how}")


def test_qkan_model_on_our_solver_pickles():
    qkan = pytest.importorskip("qkan")
    qkan_fast.integrations.qkan.register()
    m = qkan.QKAN([2, 3, 1], solver="qkan_fast", seed=0)
    x = torch.rand(8, 2, generator=torch.Generator().manual_seed(2))
    want = m(x)
    for how, again in _roundtrips(m):
        torch.testing.assert_close(again(x), want, rtol=0, atol=0, msg=f"qkan model after {how}")
