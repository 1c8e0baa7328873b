"""Which path should a physics-informed step's higher derivatives take: measured side by side.

One P1 training step (qkan_fast/pinn.py: QKAN([2, 16, 16, 1]), R = 3, 1024 collocation points,
u_xx + u_yy with the graph kept, then the parameter gradient), timed in one process with the
variants alternated block by block (torch.utils.benchmark):

- trainable encodings, circuit engine: the jet kernels (jets.py) against the Bloch-vector torch
  form they replaced (the same model with jets.kernels_reach forced to False);
- frozen encodings: the spectral engine's spectral form (what engine="auto" runs) against the
  circuit engine's jet kernels.

    python bench/pinn_higher_order_paths.py --threads 2 --json bench/results/pinn_higher_order_paths.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch
from torch.utils import benchmark as tb

from qkan_fast import _machine, bench, jets, pinn
from qkan_fast.modules import QKAN


@contextlib.contextmanager
def _torch_form_only():
    """jets.kernels_reach -> False: every higher derivative of the circuit engine takes the torch form."""
    saved = jets.kernels_reach
    jets.kernels_reach = lambda *args, **kwargs: False
    try:
        yield
    finally:
        jets.kernels_reach = saved


def _step(model, problem, torch_form: bool) -> None:
    with _torch_form_only() if torch_form else contextlib.nullcontext():
        model.zero_grad(set_to_none=True)
        pinn.loss(model, problem).backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--min-run-time", type=float, default=4.0, help="seconds per variant, in total")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = _machine.load_average()
    problem = pinn.PoissonProblem()
    trainable = QKAN([2, 16, 16, 1], reps=3, seed=0, preact_trainable=True, engine="circuit")
    frozen = QKAN([2, 16, 16, 1], reps=3, seed=0, engine="auto")
    frozen_circuit = copy.deepcopy(frozen)
    for layer in frozen_circuit.layers:
        layer.engine = "circuit"
    variants = {  # name -> (model, torch form forced)
        "trainable encodings, jet kernels": (trainable, False),
        "trainable encodings, Bloch torch form": (trainable, True),
        "frozen encodings, spectral form (auto)": (frozen, False),
        "frozen encodings, circuit engine, jet kernels": (frozen_circuit, False),
    }
    blocks = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (model, forced) in variants.items():
            timer = tb.Timer("step(m, p, f)", globals={"step": _step, "m": model, "p": problem, "f": forced},
                             num_threads=args.threads)
            blocks[name].append(timer.blocked_autorange(min_run_time=args.min_run_time / args.rounds))
        print(f"round {r + 1}/{args.rounds}", flush=True)
    med = {name: tb.Measurement.merge(ms)[0].median for name, ms in blocks.items()}
    for name, m in med.items():
        print(f"{name:48s} {m * 1e3:8.1f} ms per step")
    ratios = {"Bloch torch form / jet kernels (trainable encodings)":
              med["trainable encodings, Bloch torch form"] / med["trainable encodings, jet kernels"],
              "jet kernels / spectral form (frozen encodings)":
              med["frozen encodings, circuit engine, jet kernels"] / med["frozen encodings, spectral form (auto)"]}
    for name, v in ratios.items():
        print(f"{name}: {v:.2f}")
    if args.json:
        out = {"schema": "qkan_fast.bench.pinn_higher_order_paths/1", "threads": args.threads,
               "workload": {"name": "P1", "width": [2, 16, 16, 1], "reps": 3, "points": problem.points,
                            "boundary_points": problem.boundary_points, "dtype": "float32"},
               "median_ms": {k: v * 1e3 for k, v in med.items()}, "ratios": ratios,
               "machine": _machine.record(torch.device("cpu"), load_before)}
        bench.write_json(out, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
