"""pytest-benchmark suite: forward and forward+backward of one QKAN layer on W1-W4 (docs/benchmarks.md).

Run:   pytest bench/ --benchmark-only                 (not collected by the default `pytest`,
       pytest bench/ --benchmark-only -k W2             whose testpaths is tests/)
       QKAN_FAST_BENCH_ALL=1 pytest bench/ --benchmark-only    also the slow engine/workload pairs

Engines: qkan_fast's circuit engine, the pure-torch reference, and qkan==0.2.3's exact solver when
qkan is installed, all holding the same parameters (one state_dict) and fed the same input. The
reference and qkan exact are slow on the larger workloads (qkan exact takes seconds to tens of
seconds per forward+backward on W2-W4 with 2 threads), so by default they run only where they
take well under a second; QKAN_FAST_BENCH_ALL=1 lifts that. QKAN_FAST_BENCH_THREADS sets
torch.set_num_threads, QKAN_FAST_BENCH_DTYPE=float64 the dtype, QKAN_FAST_BENCH_DEVICE=cuda the
device (each timed call then ends with torch.cuda.synchronize()).

Forward is timed under torch.no_grad(); forward+backward is loss = y.sum() and torch.autograd.grad
of x and every trainable parameter. The ratios in one report (same machine, same session) are the
numbers to quote; `qkan-fast bench` computes them and the parity/memory columns directly.
"""

from __future__ import annotations

import os

import pytest
import torch

bench = pytest.importorskip("qkan_fast.bench")
pytest.importorskip("pytest_benchmark")

RUN_ALL = os.environ.get("QKAN_FAST_BENCH_ALL", "") not in ("", "0")
DTYPE = {"float32": torch.float32, "float64": torch.float64}[os.environ.get("QKAN_FAST_BENCH_DTYPE", "float32")]
DEVICE = torch.device(os.environ.get("QKAN_FAST_BENCH_DEVICE", "cpu"))
if os.environ.get("QKAN_FAST_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["QKAN_FAST_BENCH_THREADS"]))

WORKLOADS = ["W1", "W2", "W3", "W4"]
ENGINES = ["circuit", "reference", "qkan-exact"]
# (engine, workload) pairs that run by default; the rest need QKAN_FAST_BENCH_ALL=1
DEFAULT_PAIRS = {("circuit", w) for w in WORKLOADS} | {("reference", "W1"), ("reference", "W2"), ("qkan-exact", "W1")}
# rounds per pair: few for the slow ones (each round is one call; pedantic mode, 1 warm-up round)
ROUNDS = {"circuit": 20, "reference": 3, "qkan-exact": 3}


def _setup(engine: str, workload: str):
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("QKAN_FAST_BENCH_DEVICE=cuda but CUDA is not available")
    w = bench.WORKLOADS[workload]
    reason = bench.engine_availability(engine, w, DEVICE, {})
    if reason:
        pytest.skip(reason)
    if not RUN_ALL and (engine, workload) not in DEFAULT_PAIRS:
        pytest.skip(f"{engine} on {workload} is slow; set QKAN_FAST_BENCH_ALL=1 to run it")
    state = bench.make_state(w, DEVICE, DTYPE)
    module = bench.build_module(engine, w, state, DEVICE, DTYPE)
    x = bench.make_input(w, DEVICE, DTYPE)
    return w, module, x


def _run(benchmark, fn, engine: str, w, kind: str):
    benchmark.group = f"{w.name} {kind}"
    benchmark.extra_info.update(
        workload=w.name, batch=w.batch, in_dim=w.in_dim, out_dim=w.out_dim, reps=w.reps, engine=engine,
        kind=kind, dtype=str(DTYPE).replace("torch.", ""), threads=torch.get_num_threads(),
        edge_samples=w.edge_samples,
    )
    if DEVICE.type == "cuda":
        inner = fn

        def fn():
            out = inner()
            torch.cuda.synchronize(DEVICE)
            return out

    benchmark.pedantic(fn, rounds=ROUNDS[engine], iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_forward(benchmark, engine, workload):
    w, module, x = _setup(engine, workload)
    _run(benchmark, bench.forward_fn(module, x), engine, w, "forward")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_forward_backward(benchmark, engine, workload):
    w, module, x = _setup(engine, workload)
    _run(benchmark, bench.forward_backward_fn(module, x), engine, w, "forward+backward")
