"""Where is the spectral engine faster than the circuit engine? The measurements behind
engine="auto" (spectral.prefer): forward+backward CPU time of the calling thread at one thread
(robust on a shared machine), float32, per-edge parameters, theta as constructed, over layer sizes
B*I*O, output widths O, repetitions R and both measures, engines alternated run by run.

    python bench/spectral_auto_sweep.py --json bench/results/spectral_auto_sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spectral_vs_circuit import git_commit, make_layers, run_fb  # noqa: E402

# (B, I, O): B*I*O from 2^12 to 2^20, narrow and wide outputs
SHAPES = [(64, 8, 8), (256, 8, 8), (256, 16, 16), (1024, 8, 4), (1024, 16, 8), (512, 32, 16), (1024, 16, 16),
          (1024, 32, 32), (256, 64, 64), (4096, 16, 16)]


def ratio(shape, R, fast, ansatz, repeats):
    B, I, O = shape
    spec, circ, x, gy = make_layers(B, I, O, R, fast, "init")
    if ansatz != "pz":
        spec = type(spec)(I, O, reps=R, ansatz=ansatz, fast_measure=fast, engine="spectral")
        circ = type(circ)(I, O, reps=R, ansatz=ansatz, fast_measure=fast, engine="circuit")
        circ.load_state_dict(spec.state_dict())
        if ansatz == "px":
            x = torch.rand(B, I) * 1.9 - 0.95
    for _ in range(2):
        run_fb(spec, x, gy)
        run_fb(circ, x, gy)
    ts, tc = [], []
    for _ in range(repeats):
        for layer, out in ((spec, ts), (circ, tc)):
            t0 = time.thread_time()
            run_fb(layer, x, gy)
            out.append(time.thread_time() - t0)
    return statistics.median(tc) / statistics.median(ts), statistics.median(ts) * 1e3, statistics.median(tc) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, nargs="+", default=[1, 3, 8])
    ap.add_argument("--ansatze", nargs="+", default=["pz", "mix"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    records = []
    head = f"{'ansatz':6} {'R':>2} {'measure':7} {'B':>5} {'I':>4} {'O':>4} {'B*I*O':>8}"
    print(head + " | spectral ms  circuit ms  speedup")
    for ansatz in args.ansatze:
        for R in args.reps:
            for fast in (True, False):
                for shape in SHAPES:
                    sp, ms, mc = ratio(shape, R, fast, ansatz, args.repeats)
                    B, I, O = shape
                    m = "fast" if fast else "born"
                    row = f"{ansatz:6} {R:>2} {m:7} {B:>5} {I:>4} {O:>4} {B * I * O:>8}"
                    print(row + f" | {ms:11.3f} {mc:11.3f} {sp:8.2f}")
                    records.append(dict(ansatz=ansatz, R=R, measure=m, B=B, I=I, O=O, spectral_ms=ms, circuit_ms=mc,
                                        speedup=sp))
    if args.json:
        meta = dict(script="bench/spectral_auto_sweep.py", torch=torch.__version__, threads=1, git_commit=git_commit(),
                    clock="thread_time medians, engines alternated", loadavg=os.getloadavg())
        args.json.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
