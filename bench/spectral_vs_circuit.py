"""Spectral engine vs circuit engine on the CPU, side by side in one process (docs/benchmarks.md W1-W4).

For each workload, measure (fast, Born) and parameter set (--params) it times the forward and the
forward+backward of one QKANLayer (pz, float32, engine="spectral" vs engine="circuit", same
parameters and inputs), alternating the two engines run by run, and reports medians and their
ratio. Wall-clock time at --threads threads is the headline; the CPU time of the calling thread at
one thread (--cpu-check) is a sanity check on a shared machine. It also records the largest
difference of y and of every gradient between the engines (relative to each tensor's scale).

Parameters (--params): "init" is the layer as constructed (xavier theta: every state stays near the
Bloch sphere's equator); "trained" is that layer after --train-steps Adam steps (lr --train-lr,
batches of 256) on a fixed regression task, y_o = sin(2 x . a_o) with random a_o, fitted by the
spectral engine itself: the parameters a user's trained model holds; "haar" draws theta ~ N(0, 1),
the states spread over the whole sphere. Away from "init" the fast measure's pole treatment
(csrc/cpu/spectral_kernels.h) runs for some of the samples, which costs the spectral engine speed.
Each record keeps the spread of theta (std, share of |theta| > 1) and the training loss.

    python bench/spectral_vs_circuit.py                      # W1-W4, 2 threads, init and trained
    python bench/spectral_vs_circuit.py --workloads W3 --params trained --repeats 9 --json /tmp/w3.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # idle BLAS threads would spin in the CPU-time check

import torch  # noqa: E402

import qkan_fast  # noqa: E402

WORKLOADS = {  # docs/benchmarks.md: B, I, O, R
    "W1": (1024, 16, 16, 3),
    "W2": (1024, 64, 64, 3),
    "W3": (256, 128, 128, 4),
    "W4": (4096, 32, 32, 8),
}
ROOT = Path(__file__).resolve().parents[1]


def train_like(layer, steps, lr, seed=0, batch=256):
    """Adam on a fixed regression task (y_o = sin(2 x . a_o), x ~ N(0, 1)): moves the parameters the
    way training does. Returns the first and last batch losses."""
    g = torch.Generator().manual_seed(seed + 1000)
    a = torch.randn(layer.in_dim, layer.out_dim, generator=g) / math.sqrt(layer.in_dim)  # [I, O]
    x = torch.randn(8 * batch, layer.in_dim, generator=g)  # [N, I]
    target = torch.sin(2 * x @ a)  # [N, O]
    opt = torch.optim.Adam([p for p in layer.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(steps):
        rows = slice((step % 8) * batch, (step % 8 + 1) * batch)
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(layer(x[rows]), target[rows])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    for p in layer.parameters():
        p.grad = None
    return {"steps": steps, "lr": lr, "batch": batch, "task": "y_o = sin(2 x . a_o), a_o ~ N(0, 1/I), x ~ N(0, 1)",
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}


def theta_spread(layer):
    t = layer.theta.detach()
    return {"std": float(t.std()), "mean_abs": float(t.abs().mean()), "share_abs_gt_1": float((t.abs() > 1).double().mean())}


def make_layers(B, I, O, R, fast, params, seed=0, train_steps=200, train_lr=1e-2):
    torch.manual_seed(seed)
    spec = qkan_fast.QKANLayer(I, O, reps=R, fast_measure=fast, engine="spectral")
    training = None
    if params == "haar":
        with torch.no_grad():
            spec.theta.normal_()
    elif params == "trained":
        training = train_like(spec, train_steps, train_lr, seed)
    circ = qkan_fast.QKANLayer(I, O, reps=R, fast_measure=fast, engine="circuit")
    circ.load_state_dict(spec.state_dict())
    x = torch.randn(B, I)
    gy = torch.randn(B, O)
    return spec, circ, x, gy, training


def run_fb(layer, x, gy):
    xx = x.detach().requires_grad_()
    for p in layer.parameters():
        p.grad = None
    layer(xx).backward(gy)
    return xx


def run_f(layer, x, gy):
    with torch.no_grad():
        layer(x)


def timed(fn, clock):
    t0 = clock()
    fn()
    return clock() - t0


def _outputs(layer, x, gy):
    xx = x.detach().requires_grad_()
    for p in layer.parameters():
        p.grad = None
    y = layer(xx)
    y.backward(gy)
    out = {"y": y.detach(), "x": xx.grad}
    out.update({n: p.grad for n, p in layer.named_parameters() if p.grad is not None})
    return out


def compare(spec, circ, x, gy):
    """For y and every gradient, max |a - b| / max(1, max |b|): spectral vs circuit, and each float32
    engine vs the float64 circuit engine (the truth; near a vanished amplitude |beta|, float32 has
    an error ~ eps/|beta| in either engine)."""
    truth_layer = qkan_fast.QKANLayer(circ.in_dim, circ.out_dim, reps=circ.reps, fast_measure=circ.fast_measure,
                                      engine="circuit", dtype=torch.float64)
    truth_layer.load_state_dict(circ.state_dict())
    s, c, t = _outputs(spec, x, gy), _outputs(circ, x, gy), _outputs(truth_layer, x.double(), gy.double())

    def rel(a, b):
        return {k: float((a[k].double() - b[k].double()).abs().max()) / max(1.0, float(b[k].abs().max())) for k in b}

    return {"spectral_vs_circuit": rel(s, c), "spectral_vs_float64": rel(s, t), "circuit_vs_float64": rel(c, t)}


def bench_case(spec, circ, x, gy, repeats, clock):
    res = {}
    for kind, fn in (("forward", run_f), ("forward_backward", run_fb)):
        for _ in range(2):  # warm-up
            fn(spec, x, gy)
            fn(circ, x, gy)
        ts, tc = [], []
        for _ in range(repeats):  # alternate so that load changes hit both engines alike
            ts.append(timed(lambda: fn(spec, x, gy), clock))
            tc.append(timed(lambda: fn(circ, x, gy), clock))
        ms, mc = statistics.median(ts), statistics.median(tc)
        res[kind] = {
            "spectral_ms": ms * 1e3,
            "circuit_ms": mc * 1e3,
            "speedup": mc / ms,
            "speedup_pairs_median": statistics.median(c / s for s, c in zip(ts, tc)),
            # minima: the least disturbed run of each engine (robust to descheduling on a busy machine)
            "spectral_min_ms": min(ts) * 1e3,
            "circuit_min_ms": min(tc) * 1e3,
            "speedup_min": min(tc) / min(ts),
        }
    return res


def _cpu_model():
    """model name / family / model from /proc/cpuinfo (first CPU), or None."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        fields = dict((k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line))
        return {k: fields.get(k) for k in ("model name", "cpu family", "model")}
    except OSError:
        return None


def git_commit():
    try:
        return subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"], text=True).strip()
    except Exception:  # noqa: BLE001
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--params", nargs="+", default=["init", "trained"], choices=["init", "trained", "haar"],
                    help="parameter sets to measure (default: init trained)")
    ap.add_argument("--train-steps", type=int, default=200, help="Adam steps of --params trained (default 200)")
    ap.add_argument("--train-lr", type=float, default=1e-2, help="Adam learning rate of --params trained (default 1e-2)")
    ap.add_argument("--cpu-check", action="store_true", default=True,
                    help="also time at 1 thread with the calling thread's CPU time (default on)")
    ap.add_argument("--no-cpu-check", dest="cpu_check", action="store_false")
    ap.add_argument("--json", default="spectral_vs_circuit.json", help="results file (default ./spectral_vs_circuit.json)")
    args = ap.parse_args()

    load0 = os.getloadavg()
    commit = git_commit()  # at the start: the code that is measured
    records = []
    print(f"{'wl':3} {'measure':5} {'params':7} | {'fwd spec':>9} {'circ':>9} {'x':>5} | "
          f"{'fb spec':>9} {'circ':>9} {'x':>5} | {'min f x':>7} {'fb x':>5} | {'1T cpu f x':>10} {'fb x':>5} | "
          "err vs f64: spec, circ")
    for wl in args.workloads:
        B, I, O, R = WORKLOADS[wl]
        for fast in (True, False):
            for params in args.params:
                spec, circ, x, gy, training = make_layers(B, I, O, R, fast, params, train_steps=args.train_steps,
                                                          train_lr=args.train_lr)
                load_before = os.getloadavg()
                torch.set_num_threads(args.threads)
                wall = bench_case(spec, circ, x, gy, args.repeats, time.perf_counter)
                cpu = None
                if args.cpu_check:
                    torch.set_num_threads(1)
                    cpu = bench_case(spec, circ, x, gy, max(3, args.repeats // 2), time.thread_time)
                    torch.set_num_threads(args.threads)
                diff = compare(spec, circ, x, gy)
                rec = {
                    "workload": wl, "B": B, "I": I, "O": O, "R": R, "ansatz": "pz", "dtype": "float32",
                    "measure": "fast" if fast else "born", "params": params, "threads": args.threads,
                    "training": training, "theta": theta_spread(spec),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "wall": wall, "cpu_time_1thread": cpu, "max_rel_diff": diff,
                    "edge_samples_per_s_spectral_fb": B * I * O / (wall["forward_backward"]["spectral_ms"] * 1e-3),
                }
                records.append(rec)
                f, fb = wall["forward"], wall["forward_backward"]
                c0 = f"{cpu['forward']['speedup']:.1f}" if cpu else "-"
                c1 = f"{cpu['forward_backward']['speedup']:.1f}" if cpu else "-"
                es, ec = max(diff["spectral_vs_float64"].values()), max(diff["circuit_vs_float64"].values())
                print(f"{wl:3} {rec['measure']:5} {params:7} | {f['spectral_ms']:8.2f}m {f['circuit_ms']:8.2f}m "
                      f"{f['speedup']:5.1f} | {fb['spectral_ms']:8.2f}m {fb['circuit_ms']:8.2f}m {fb['speedup']:5.1f} | "
                      f"{f['speedup_min']:7.1f} {fb['speedup_min']:5.1f} | {c0:>10} {c1:>5} | {es:.1e}, {ec:.1e}",
                      flush=True)

    meta = {
        "script": "bench/spectral_vs_circuit.py",
        "argv": sys.argv[1:],
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "cpu_model": _cpu_model(), "loadavg_at_start": load0, "loadavg_at_end": os.getloadavg()},
        "torch": torch.__version__,
        "qkan_fast": qkan_fast.__version__,
        "build_info": qkan_fast.build_info(),
        "git_commit": commit,
        "threads": args.threads,
        "repeats": args.repeats,
        "params": args.params,
        "train_steps": args.train_steps,
        "train_lr": args.train_lr,
        "note": "wall = perf_counter medians (and minima) at `threads` threads, engines alternated run by "
                "run; cpu_time_1thread = thread_time medians at 1 thread (sanity check on a shared machine: "
                "with other processes runnable, a 2-thread OpenMP region waits for a descheduled thread, "
                "so medians of wall time can be far off; see loadavg_at_start/at_end)",
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
