"""Which gate engine the fused LSTM recurrence should use: circuit against spectral, measured.

For the LD and L1 shapes (qkan_fast/bench_lstm.py) and every ansatz and measure where the spectral
identity applies (encodings frozen), it times the forward+backward of QKANLSTM's fused recurrence
with engine="circuit" and engine="spectral", the two models alternated block by block
(torch.utils.benchmark, one thread), and records the ratio and which one engine="auto" runs
(recurrence._use_spectral). The measurements behind that rule.

    python bench/recurrence_engines.py --json bench/results/recurrence_engines.json
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch.utils import benchmark as tb

from qkan_fast import _machine, bench, recurrence
from qkan_fast.bench_lstm import WORKLOADS, _step
from qkan_fast.networks import QKANLSTM


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--min-run-time", type=float, default=1.0, help="seconds per model and shape, in total")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = _machine.load_average()
    rows = []
    for name, (B, L, d, H, reps) in WORKLOADS.items():
        x = torch.rand(L, B, d, generator=torch.Generator().manual_seed(0)) * 2 - 1  # px needs [-1, 1]
        for ansatz in ("pz", "rpz", "px", "real", "mix"):
            for fast in (True, False):
                circuit = QKANLSTM(d, H, reps=reps, ansatz=ansatz, fast_measure=fast, engine="circuit", seed=0)
                spectral = copy.deepcopy(circuit)
                for layer in spectral.gates:
                    layer.engine = "spectral"
                auto = copy.deepcopy(circuit)
                for layer in auto.gates:
                    layer.engine = "auto"
                blocks = {"circuit": [], "spectral": []}
                for _ in range(args.rounds):
                    for label, model in (("circuit", circuit), ("spectral", spectral)):
                        timer = tb.Timer("step(m, x)", globals={"step": _step, "m": model, "x": x})
                        blocks[label].append(timer.blocked_autorange(min_run_time=args.min_run_time / args.rounds))
                med = {k: tb.Measurement.merge(v)[0].median for k, v in blocks.items()}
                row = {"workload": name, "ansatz": ansatz, "fast_measure": fast,
                       "circuit_ms": med["circuit"] * 1e3, "spectral_ms": med["spectral"] * 1e3,
                       "circuit_over_spectral": med["circuit"] / med["spectral"],
                       "auto_runs": "spectral" if recurrence._use_spectral(auto.gates[0], x) else "circuit"}
                rows.append(row)
                print(f"{name} {ansatz:4s} {'fast' if fast else 'born'}: circuit {row['circuit_ms']:.3f} ms, "
                      f"spectral {row['spectral_ms']:.3f} ms, ratio {row['circuit_over_spectral']:.2f}, "
                      f"auto -> {row['auto_runs']}", flush=True)
    if args.json:
        out = {"schema": "qkan_fast.bench.recurrence_engines/1", "threads": 1, "rows": rows,
               "machine": _machine.record(torch.device("cpu"), load_before)}
        bench.write_json(out, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
