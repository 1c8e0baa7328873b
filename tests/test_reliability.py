"""Where real training runs put the library: DistributedDataParallel and torch.compile of whole
training steps (QKAN and QKAN-LSTM)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import qkan_fast

WORLD = 2
STEPS = 3
LR = 0.05


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model() -> qkan_fast.QKAN:
    return qkan_fast.QKAN([3, 4, 2], reps=2, seed=7, postact_weight_trainable=True, ba_trainable=True)


def _data(world: int):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(STEPS, world * 8, 3, generator=g)
    y = torch.randn(STEPS, world * 8, 2, generator=g)
    return x, y


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model())
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        xs, ys = _data(WORLD)
        for step in range(STEPS):
            shard = slice(rank * 8, (rank + 1) * 8)
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xs[step, shard]), ys[step, shard])
            loss.backward()  # DDP averages the gradients over ranks
            opt.step()
        torch.save(model.module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_two_processes_match_single_process(tmp_path):
    mp.start_processes(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True,
                       start_method="spawn")
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    # one process on the concatenated batch: the mean loss over 2*8 samples has the same gradient
    # as the average of the two shards' mean losses
    single = _model()
    opt = torch.optim.SGD(single.parameters(), lr=LR)
    xs, ys = _data(WORLD)
    for step in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(single(xs[step]), ys[step]).backward()
        opt.step()

    moved = False
    for name, ref in single.state_dict().items():
        assert torch.equal(states[0][name], states[1][name]), f"{name} differs between ranks"
        torch.testing.assert_close(states[0][name], ref, rtol=1e-5, atol=1e-6, msg=f"{name} vs single process")
        moved |= not torch.equal(ref, _model().state_dict()[name])
    assert moved, "training did not change any parameter"


def _train_step(model, opt, x, y):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def _compiled_matches_eager(make_model, x, y):
    torch._dynamo.reset()
    eager, compiled = make_model(), make_model()
    compiled.load_state_dict(eager.state_dict())
    opt_e = torch.optim.SGD(eager.parameters(), lr=LR)
    opt_c = torch.optim.SGD(compiled.parameters(), lr=LR)
    fwd = torch.compile(compiled, fullgraph=True)
    for _ in range(2):
        le = _train_step(eager, opt_e, x, y)
        lc = _train_step(fwd, opt_c, x, y)
        torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-6)
    for (name, pe), pc in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(pc, pe, rtol=1e-5, atol=1e-6, msg=f"{name} after compiled steps")


@pytest.mark.slow
def test_compile_qkan_training_step_matches_eager():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 2, generator=g)
    _compiled_matches_eager(_model, x, y)


class _Seq(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = qkan_fast.QKANLSTM(2, 3, reps=1, batch_first=True, seed=5)
        self.head = torch.nn.Linear(3, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


@pytest.mark.slow
def test_compile_qkan_lstm_training_step_matches_eager():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(8, 4, 2, generator=g), torch.randn(8, 1, generator=g)

    def make():
        torch.manual_seed(0)
        return _Seq()

    _compiled_matches_eager(make, x, y)
