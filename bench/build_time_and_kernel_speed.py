"""Kernel speed of two builds of the compiled core, side by side (issue 11: the build-time cuts
must not slow the kernels), and the build-time figures measured beside them.

Each build runs in its own process (a build is its `_C` module plus the Python package it was made
for), one thread, and each row is the minimum over many repeats of the CPU time of the calling
thread (time.process_time), which a loaded machine disturbs far less than wall time. Builds are
run alternately, `--rounds` times, and the minimum over the rounds is kept.

    python bench/build_time_and_kernel_speed.py \
        --build before=/tmp/pkg_before --build after=python \
        [--build after_runtime_R=python:QKAN_FAST_STATIC_REPS=0] \
        --build-times bench/results/build_times.json --out bench/results/build_time_and_kernel_speed.json

A build is LABEL=DIR[:ENV=VALUE,...]: DIR holds the package qkan_fast (with its _C module).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

# BENCHMARKS.md workloads (fp32, ansatz pz)
WORKLOADS = {"W1": (1024, 16, 16, 3), "W2": (1024, 64, 64, 3), "W3": (256, 128, 128, 4), "W4": (4096, 32, 32, 8)}
CASES = [("circuit", True), ("spectral", True), ("spectral", False)]  # (engine, fast_measure)


def _min_cpu(fn, repeats: int) -> float:
    fn()  # warm-up (scratch buffers, first-call costs)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def worker(repeats: int) -> dict:
    import torch

    import qkan_fast
    from qkan_fast import spectral

    torch.set_num_threads(1)
    out = {}
    for wl, (B, I, O, R) in WORKLOADS.items():
        for engine, fast in CASES:
            torch.manual_seed(0)
            layer = qkan_fast.QKANLayer(I, O, reps=R, ansatz="pz", fast_measure=fast, engine=engine,
                                        base_activation=None)
            x = torch.rand(B, I) * 2 - 1
            xg = x.clone().requires_grad_()

            def fwd():
                with torch.no_grad():
                    layer(x)

            def fwd_bwd():
                layer.zero_grad(set_to_none=True)
                layer(xg).sum().backward()

            n = repeats if B * I * O * R < 2**22 else max(3, repeats // 3)
            key = f"{wl}/{engine}/{'fast' if fast else 'born'}"
            out[key] = {"forward_s": _min_cpu(fwd, n), "forward_backward_s": _min_cpu(fwd_bwd, n)}
        # the coefficient map alone (part of every spectral call): fast-measure coefficients, exact
        theta = torch.rand(O, I, R + 1, 2, requires_grad=True)
        bias = torch.zeros(O, I, R)

        def coef_fwd():
            with torch.no_grad():
                spectral.coefficients(theta, bias, ansatz="pz", reps=R, in_dim=I, bloch=True, exact=True)

        def coef_fwd_bwd():
            theta.grad = None
            spectral.coefficients(theta, bias, ansatz="pz", reps=R, in_dim=I, bloch=True, exact=True).sum().backward()

        out[f"{wl}/coef_map"] = {"forward_s": _min_cpu(coef_fwd, repeats), "forward_backward_s": _min_cpu(coef_fwd_bwd, repeats)}
    return out


def _run_build(spec: str, repeats: int) -> tuple[str, dict]:
    label, rest = spec.split("=", 1)
    path, _, envs = rest.partition(":")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(path), OMP_NUM_THREADS="1")
    for kv in filter(None, envs.split(",")):
        k, v = kv.split("=", 1)
        env[k] = v
    res = subprocess.run([sys.executable, __file__, "--worker", "--repeats", str(repeats)], env=env,
                         capture_output=True, text=True, check=True)
    return label, json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--build", action="append", default=[], help="LABEL=DIR[:ENV=VALUE,...]")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--build-times", help="JSON with the measured build times, copied into the output")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.repeats)))
        return
    load_before = os.getloadavg()
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for spec in args.build:
            label, rows = _run_build(spec, args.repeats)
            cur = best.setdefault(label, {})
            for key, r in rows.items():
                prev = cur.get(key)
                cur[key] = r if prev is None else {k: min(prev[k], r[k]) for k in r}
    labels = [s.split("=", 1)[0] for s in args.build]
    base = labels[0]
    table = []
    print(f"{'row':24s}" + "".join(f"{lab + ' f / f+b (ms)':>34s}" for lab in labels))
    for key in best[base]:
        row = {"row": key}
        line = f"{key:24s}"
        for lab in labels:
            r = best[lab][key]
            row[lab] = {k: round(v * 1e3, 3) for k, v in r.items()}
            line += f"{r['forward_s'] * 1e3:16.2f} /{r['forward_backward_s'] * 1e3:15.2f}"
            if lab != base:
                b = best[base][key]
                row[f"{lab}_over_{base}"] = {k: round(r[k] / b[k], 3) for k in r}
        table.append(row)
        print(line)
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
        doc = {
            "what": "kernel speed of two builds side by side: min CPU time of the calling thread, 1 thread",
            "commit": commit,
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()},
            "load_avg_1_5_15": {"start": load_before, "end": os.getloadavg()},
            "settings": {"workloads": WORKLOADS, "cases": CASES, "repeats": args.repeats, "rounds": args.rounds,
                         "threads": 1, "dtype": "float32", "ansatz": "pz", "base_activation": None,
                         "builds": args.build},
            "rows": table,
        }
        if args.build_times:
            doc["build_times"] = json.load(open(args.build_times))
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
