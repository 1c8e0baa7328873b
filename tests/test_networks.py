"""networks.py (DARUAN, HQKAN, QKAN-LSTM, HQKAN-LSTM) and plotting.py: shapes, gradients, state
handling, agreement with hand-written loops over the reference, and a short training run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qkan_fast import reference
from qkan_fast.modules import QKAN, QKANLayer
from qkan_fast.networks import DARUAN, HQKAN, HQKANLSTM, QKANLSTM, hqkan_latent

F64 = torch.float64
ANSATZE = ("pz", "rpz", "px", "real", "mix")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# DARUAN


@pytest.mark.parametrize("ansatz", ANSATZE)
@pytest.mark.parametrize("fast", [True, False])
def test_daruan_matches_per_feature_reference(ansatz, fast):
    """y[:, i] = phi_i(x[:, i]): DARUAN against a loop over features, each a 1x1 reference layer."""
    dim, reps, B = 3, 2, 6
    pt = ansatz == "px"  # qkan's px reads trainable preactivations; keep it on that path too
    torch.manual_seed(1)
    act = DARUAN(dim, reps=reps, ansatz=ansatz, fast_measure=fast, preact_trainable=pt, dtype=F64)
    gen = _gen(2)
    with torch.no_grad():
        act.theta.copy_(1.3 * torch.randn(act.theta.shape, generator=gen, dtype=F64))
        if pt or ansatz == "rpz":
            act.preacts_weight.copy_(0.4 + 0.4 * torch.rand(act.preacts_weight.shape, generator=gen, dtype=F64))
            act.preacts_bias.copy_(0.2 * torch.rand(act.preacts_bias.shape, generator=gen, dtype=F64) - 0.1)
    x = (1.6 * torch.rand(B, dim, generator=gen, dtype=F64) - 0.8).requires_grad_(True)
    y = act(x)
    gy = torch.randn(B, dim, generator=gen, dtype=F64)
    y.backward(gy)

    xr = x.detach().clone().requires_grad_(True)
    th = act.theta.detach().clone().requires_grad_(True)
    cols = []
    for i in range(dim):
        cols.append(reference.postacts(
            xr[:, i:i + 1], th[i][None, None], act.preacts_weight[i][None, None].detach(),
            act.preacts_bias[i][None, None].detach(), ansatz=ansatz, reps=reps, fast_measure=fast,
            preact_trainable=pt,
        )[:, 0, 0])
    yr = torch.stack(cols, dim=1)
    yr.backward(gy)
    torch.testing.assert_close(y.detach(), yr.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(act.theta.grad, th.grad, rtol=0, atol=1e-10)


def test_daruan_any_leading_shape_like_silu():
    torch.manual_seed(0)
    act = DARUAN(5, reps=3)
    x = torch.randn(2, 3, 5)
    y = act(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.detach().abs().max()) <= 1.0 + 1e-6  # phi is a difference of amplitudes
    torch.testing.assert_close(act(x.reshape(6, 5)).reshape(2, 3, 5), y)
    torch.testing.assert_close(act(x[1, 2]), y[1, 2])  # 1-D input (dim,)
    assert act(torch.empty(0, 5)).shape == (0, 5)
    # element-wise: feature i of the output depends on feature i of the input only
    x2 = x.clone()
    x2[..., 1] += 0.5
    with torch.no_grad():
        diff = (act(x2) - y).abs().amax(dim=(0, 1))
    assert float(diff[1]) > 0 and float(diff[[0, 2, 3, 4]].max()) == 0.0


def test_daruan_in_a_network_trains_every_parameter():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), DARUAN(6, reps=2), nn.Linear(6, 1))
    x, target = torch.randn(32, 4), torch.randn(32, 1)
    nn.functional.mse_loss(net(x), target).backward()
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert not net[1].preacts_weight.requires_grad  # frozen unless preact_trainable


def test_daruan_rejects_bad_input():
    act = DARUAN(3, ansatz="px")
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        act(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        act(torch.full((2, 3), 1.5))
    with pytest.raises(ValueError):
        DARUAN(0)


# --------------------------------------------------------------------------------------------
# HQKAN


def test_hqkan_default_latent():
    assert hqkan_latent(10, 3) == (4, 2)
    assert hqkan_latent(16, 17) == (4, 5)
    assert hqkan_latent(1, 2) == (1, 1)  # at least 1
    assert hqkan_latent(768, 768) == (10, 10)
    m = HQKAN(10, 3)
    assert m.latent == (4, 2)
    assert m.down.weight.shape == (4, 10) and m.up.weight.shape == (3, 2)
    assert m.qkan.width == [4, 2] and isinstance(m.qkan.layers[0], QKANLayer)
    assert HQKAN(10, 3, latent=(5, 6)).qkan.width == [5, 6]
    assert HQKAN(10, 3, latent=7).latent == (7, 7)
    assert HQKAN(8, 8, reps=1).qkan.layers[0].reps == 1


def test_hqkan_forward_and_gradients():
    torch.manual_seed(0)
    m = HQKAN(6, 5, latent=(3, 4), reps=2, ba_trainable=True, dtype=F64)
    x = torch.randn(2, 3, 6, dtype=F64, requires_grad=True)
    y = m(x)
    assert y.shape == (2, 3, 5)
    manual = m.up(m.qkan(m.down(x.reshape(6, 6)))).reshape(2, 3, 5)
    torch.testing.assert_close(y, manual, rtol=0, atol=0)
    y.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert m(torch.randn(6, dtype=F64)).shape == (5,)


# --------------------------------------------------------------------------------------------
# LSTMs


def _manual_lstm(model, x, h0, c0):
    """docs/math.md ("Networks", QKAN-LSTM) written out: z_t = [x_t, h], [f, i, g, o] = gates(z_t) (+ bias),
    c = sig(f) c + sig(i) tanh(g), h = sig(o) tanh(c); input (L, B, d)."""
    H = model.hidden_size
    inp, hs, cs = x, [], []
    for layer in range(model.num_layers):
        h, c = h0[layer], c0[layer]
        outs = []
        for t in range(inp.shape[0]):
            a = model.gates[layer](torch.cat([inp[t], h], dim=1))
            if model.gate_bias is not None:
                a = a + model.gate_bias[layer]
            f, i, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        inp = torch.stack(outs)
        hs.append(h)
        cs.append(c)
    return inp, torch.stack(hs), torch.stack(cs)


LSTMS = [QKANLSTM, HQKANLSTM]


@pytest.mark.parametrize("cls", LSTMS)
def test_lstm_gate_maps(cls):
    m = cls(3, 4, num_layers=2, reps=2)
    first, second = m.gates
    if cls is QKANLSTM:
        assert (first.in_dim, first.out_dim, second.in_dim, second.out_dim) == (7, 16, 8, 16)
        assert first.theta.shape == (16, 7, 3, 2) and m.gate_bias[0].shape == (16,)
    else:
        assert (first.d_in, first.d_out, first.latent) == (7, 16, (3, 4))
        assert (second.d_in, second.latent) == (8, (3, 4)) and m.gate_bias is None


@pytest.mark.parametrize("cls", LSTMS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_equals_manual_unrolled_loop(cls, num_layers):
    torch.manual_seed(3)
    L, B, d, H = 5, 3, 2, 4
    m = cls(d, H, num_layers=num_layers, dtype=F64)
    with torch.no_grad():  # non-zero gate biases so that they are exercised
        for p in m.parameters():
            if p.dim() == 1:
                p.uniform_(-0.3, 0.3)
    x = torch.randn(L, B, d, dtype=F64)
    h0 = 0.5 * torch.randn(num_layers, B, H, dtype=F64)
    c0 = torch.randn(num_layers, B, H, dtype=F64)
    out, (hn, cn) = m(x, (h0, c0))
    assert out.shape == (L, B, H) and hn.shape == cn.shape == (num_layers, B, H)
    ref_out, ref_h, ref_c = _manual_lstm(m, x, h0, c0)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-14)
    torch.testing.assert_close(hn, ref_h, rtol=0, atol=1e-14)
    torch.testing.assert_close(cn, ref_c, rtol=0, atol=1e-14)
    torch.testing.assert_close(out[-1], hn[-1], rtol=0, atol=0)


@pytest.mark.parametrize("cls", LSTMS)
@torch.no_grad()
def test_lstm_state_handling(cls):
    torch.manual_seed(4)
    L, B, d, H, N = 4, 3, 2, 5, 2
    m = cls(d, H, num_layers=N)
    x = torch.randn(L, B, d)
    out, (hn, cn) = m(x)
    zeros = torch.zeros(N, B, H)
    out0, (hn0, cn0) = m(x, (zeros, zeros))
    torch.testing.assert_close(out, out0, rtol=0, atol=0)
    torch.testing.assert_close(cn, cn0, rtol=0, atol=0)
    # a given state matters, and continuing from (h_n, c_n) equals running the whole sequence
    out_a, state_a = m(x[:2])
    out_b, (hn_b, cn_b) = m(x[2:], state_a)
    torch.testing.assert_close(torch.cat([out_a, out_b]), out, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(hn_b, hn, rtol=1e-6, atol=1e-6)
    out_r, _ = m(x, (torch.randn(N, B, H), torch.randn(N, B, H)))
    assert float((out_r - out).abs().max()) > 1e-4
    # batch_first
    mb = cls(d, H, num_layers=N, batch_first=True)
    mb.load_state_dict(m.state_dict())
    out_bf, (hn_bf, cn_bf) = mb(x.transpose(0, 1))
    assert out_bf.shape == (B, L, H) and hn_bf.shape == (N, B, H)
    torch.testing.assert_close(out_bf.transpose(0, 1), out, rtol=0, atol=0)
    torch.testing.assert_close(hn_bf, hn, rtol=0, atol=0)
    # unbatched (L, d) input with (N, H) states, as nn.LSTM
    h0, c0 = torch.randn(N, H), torch.randn(N, H)
    out_u, (hn_u, cn_u) = m(x[:, 1], (h0, c0))
    out_1, (hn_1, cn_1) = m(x[:, 1:2], (h0[:, None], c0[:, None]))
    assert out_u.shape == (L, H) and hn_u.shape == (N, H) and cn_u.shape == (N, H)
    torch.testing.assert_close(out_u, out_1[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(cn_u, cn_1[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("cls", LSTMS)
def test_lstm_gradients_reach_everything(cls):
    torch.manual_seed(5)
    m = cls(2, 3, num_layers=2)
    x = torch.randn(4, 2, 2, requires_grad=True)
    h0 = torch.randn(2, 2, 3, requires_grad=True)
    c0 = torch.randn(2, 2, 3, requires_grad=True)
    out, (hn, cn) = m(x, (h0, c0))
    (out.square().sum() + cn.sum()).backward()
    for name, t in (("x", x), ("h0", h0), ("c0", c0)):
        assert t.grad is not None and float(t.grad.abs().sum()) > 0, name
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert float(p.grad.abs().sum()) > 0, name


@pytest.mark.parametrize("cls", LSTMS)
def test_lstm_rejects_bad_input(cls):
    m = cls(3, 4, num_layers=2)
    with pytest.raises(ValueError, match="input"):
        m(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match="h0"):
        m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match="c0"):
        m(torch.randn(5, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(2, 3, 4)))


def test_qkan_lstm_kernels_match_reference_engine():
    """The whole recurrence on the fused kernels equals the same model on the pure-torch reference."""
    torch.manual_seed(6)
    fast = QKANLSTM(2, 3, num_layers=2, reps=2, dtype=F64)
    slow = QKANLSTM(2, 3, num_layers=2, reps=2, dtype=F64, engine="reference")
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(4, 3, 2, dtype=F64)
    out_f, (h_f, c_f) = fast(x)
    out_s, (h_s, c_s) = slow(x)
    torch.testing.assert_close(out_f, out_s, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_f, c_s, rtol=0, atol=1e-12)
    out_f.sum().backward()
    out_s.sum().backward()
    for (name, pf), (_, ps) in zip(fast.named_parameters(), slow.named_parameters()):
        if pf.requires_grad:
            torch.testing.assert_close(pf.grad, ps.grad, rtol=0, atol=1e-10, msg=name)


def test_qkan_lstm_px_needs_bounded_inputs():
    m = QKANLSTM(1, 2, ansatz="px", preact_trainable=True)
    out, _ = m(torch.rand(3, 2, 1) * 2 - 1)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        m(torch.full((3, 2, 1), 2.0))


def test_qkan_lstm_training_lowers_the_loss():
    """Next-step prediction of a sine from windows of 6: 40 Adam steps must cut the MSE a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: threads only add barriers (slow on a shared machine)
    try:
        _train_sine()
    finally:
        torch.set_num_threads(threads)


def _train_sine():
    torch.manual_seed(0)
    t = torch.linspace(0, 6 * math.pi, 120)
    s = torch.sin(t)
    idx = torch.arange(6)[None, :] + torch.arange(114)[:, None]
    x, y = s[idx].unsqueeze(-1), s[6:].unsqueeze(-1)
    rnn = QKANLSTM(1, 4, batch_first=True, reps=2)
    head = nn.Linear(4, 1)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=0.03)

    def loss_fn():
        return nn.functional.mse_loss(head(rnn(x)[0][:, -1]), y)

    first = float(loss_fn().detach())
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    last = float(loss_fn().detach())
    assert last < 0.25 * first, (first, last)


# --------------------------------------------------------------------------------------------
# plotting


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from qkan_fast.plotting import plot

    torch.manual_seed(0)
    model = QKAN([2, 3, 1], reps=2)
    with torch.no_grad():
        model.layers[0].mask[1, 0] = 0.0  # a pruned edge is drawn too
    out = plot(model, tmp_path / "edges.png", x=torch.randn(20, 2), kind="edge")
    data = (tmp_path / "edges.png").read_bytes()
    assert out == str(tmp_path / "edges.png") and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert model.training  # mode restored
    plot(QKANLSTM(1, 2), tmp_path / "lstm.png")  # any module holding QKANLayers, no sample input
    assert (tmp_path / "lstm.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="kind"):
        plot(model, tmp_path / "x.png", kind="nope")
    with pytest.raises(ValueError, match="no QKANLayer"):
        plot(nn.Linear(2, 2), tmp_path / "x.png")


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    import sys

    from qkan_fast.plotting import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"qkan_fast\[plot\]"):
        plot(QKAN([2, 1]), tmp_path / "x.png")
