"""The spectral Born layer's two CPU schedules side by side: the GEMM (basis [2R, I, B] in memory,
three BLAS GEMMs of width O) against the fused kernel (no basis in memory, its own register
tiles). The measurements behind spectral.born_fused_preferred.

For each shape (B, I, O, R) it times the forward+backward of spectral.layer (pz, float32, x and
every parameter requiring grad) on both schedules, alternated run by run: wall-clock medians at
--threads threads, and the calling thread's CPU time at one thread (the stable figure on a shared
machine). It also records which schedule the rule picks and the largest difference between the two.

    python bench/spectral_born_paths.py                           # the grid below, 2 threads
    python bench/spectral_born_paths.py --shapes 4096x32x32x8 --json /tmp/w4.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

import qkan_fast  # noqa: E402
from qkan_fast import spectral  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMED = {"W1": (1024, 16, 16, 3), "W2": (1024, 64, 64, 3), "W3": (256, 128, 128, 4), "W4": (4096, 32, 32, 8)}


def default_grid():
    shapes = list(NAMED.values())
    for B, I, O, R in itertools.product([256, 1024, 4096], [32, 128], [16, 32, 64, 128], [2, 8]):
        if B * I * O <= 2**22 and (B, I, O, R) not in shapes:
            shapes.append((B, I, O, R))
    return shapes


def make_case(B, I, O, R, seed=0):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(O, I, R + 1, 2, generator=gen) * 0.5
    weight = torch.randn(O, I, generator=gen)
    pre_w, pre_b = torch.ones(O, I, R), torch.zeros(O, I, R)
    x = torch.randn(B, I, generator=gen)
    gy = torch.randn(B, O, generator=gen)
    return theta, weight, pre_w, pre_b, x, gy


def run(case, R, path):
    theta, weight, pre_w, pre_b, x, gy = case
    xx, th, w = (t.detach().requires_grad_() for t in (x, theta, weight))
    y = spectral.layer(xx, th, pre_w, pre_b, w, ansatz="pz", reps=R, fast_measure=False, preact_trainable=False,
                       born_path=path)
    y.backward(gy)
    return y.detach(), xx.grad, th.grad, w.grad


def timed(case, R, repeats, clock):
    for _ in range(2):
        run(case, R, "gemm")
        run(case, R, "fused")
    tg, tf = [], []
    for _ in range(repeats):
        t0 = clock()
        run(case, R, "gemm")
        tg.append(clock() - t0)
        t0 = clock()
        run(case, R, "fused")
        tf.append(clock() - t0)
    g, f = statistics.median(tg), statistics.median(tf)
    return {"gemm_ms": g * 1e3, "fused_ms": f * 1e3, "gemm_over_fused": g / f}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", help="BxIxOxR or W1..W4 (default: W1-W4 and a grid)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "spectral_born_paths.json"))
    args = ap.parse_args()
    shapes = default_grid() if not args.shapes else [
        NAMED[s] if s in NAMED else tuple(int(v) for v in s.split("x")) for s in args.shapes]
    records = []
    for B, I, O, R in shapes:
        case = make_case(B, I, O, R)
        a, b = run(case, R, "gemm"), run(case, R, "fused")
        diff = max(float((u - v).abs().max()) / max(1.0, float(v.abs().max())) for u, v in zip(a, b))
        torch.set_num_threads(args.threads)
        wall = timed(case, R, args.repeats, time.perf_counter)
        torch.set_num_threads(1)
        cpu = timed(case, R, max(3, args.repeats // 2), time.thread_time)
        rec = {"B": B, "I": I, "O": O, "R": R, "basis_mib": 2 * R * I * B * 4 / 2**20,
               "rule_picks": "fused" if spectral.born_fused_preferred(B, I, O, R) else "gemm",
               "wall": wall, "cpu_time_1thread": cpu, "max_rel_diff": diff}
        name = next((k for k, v in NAMED.items() if v == (B, I, O, R)), "")
        if name:
            rec["workload"] = name
        records.append(rec)
        print(f"{name:3s} B={B:5d} I={I:4d} O={O:4d} R={R}: gemm/fused {wall['gemm_over_fused']:.2f} "
              f"({args.threads}T wall), {cpu['gemm_over_fused']:.2f} (1T CPU); rule: {rec['rule_picks']}", flush=True)
    try:
        commit = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"], text=True).strip()
    except Exception:  # noqa: BLE001
        commit = None
    meta = {"script": "bench/spectral_born_paths.py", "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(), "torch": torch.__version__, "qkan_fast": qkan_fast.__version__,
            "git_commit": commit, "threads": args.threads, "repeats": args.repeats,
            "note": "forward+backward of spectral.layer, pz, float32; medians, the schedules alternated run by run"}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    print("wrote", args.json)


if __name__ == "__main__":
    main()
