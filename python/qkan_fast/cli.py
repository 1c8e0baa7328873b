"""The `qkan-fast` command: one argparse parser, one subparser per subcommand.

    qkan-fast info             version, compiled features, torch, threads, the GPU seen
    qkan-fast bench [...]      engines side by side (see `qkan-fast bench -h`)
    qkan-fast demo [...]       QKAN-LSTM, HQKAN-LSTM and LSTMs on the pendulum and Bessel-J2 series

Each subparser sets `run`, the function that takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _info(args: argparse.Namespace) -> int:
    import torch

    import qkan_fast

    b = qkan_fast.build_info()
    print(f"qkan_fast {qkan_fast.__version__}")
    print(f"  OpenMP: {'yes' if b.get('openmp') else 'no'}")
    print(f"  SIMD compiled: {', '.join(b.get('cpu_isa_compiled') or []) or 'none'}; in use: {b.get('cpu_isa')}")
    print(f"  CUDA kernels: {'archs ' + b['cuda_archs'] if b.get('cuda') else 'not compiled'}")
    print(f"  compiler: {b.get('compiler')}")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), threads {torch.get_num_threads()}")
    if torch.cuda.is_available():
        gpus = [f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
                for i in range(torch.cuda.device_count())]
        print(f"GPU: {', '.join(gpus)}")
    else:
        print("GPU: none")
    return 0


_BENCH_EPILOG = """\
workloads (comma-separated):
  W1 1024x16x16 R3   W2 1024x64x64 R3   W3 256x128x128 R4   W4 4096x32x32 R8
  W5 8192x10x10 R1   W6 4096x256x256 R3  (B x I x O, R repetitions; fp32, pz, fast measure)
  BxIxOxR            a custom shape, e.g. 64x4x3x2
  NAME:mod[:mod]     modifiers: an ansatz (pz rpz px real mix), born, fast, preact; e.g. W2:born
  all, W2-variants   groups: W1..W6; W2 with born, preact and each ansatz
  P1                 a physics-informed training step (2-D Poisson, QKAN([2, 16, 16, 1]), 1024
                     points, u_xx + u_yy in the loss) against qkan exact; runs alone
                     (--preact-trainable: the model's encodings are trained too)
  L1, LD             a QKAN-LSTM recurrence's forward+backward, fused and per-step loop, beside
                     nn.LSTM: L1 batch 64, window 4, hidden 16; LD the demo's batch 2, hidden 5;
                     run alone (together)

examples:
  qkan-fast bench --quick
  qkan-fast bench --workloads W1,W2,W3,W4 --threads 2 --json circuit_vs_qkan_cpu_2threads.json
  qkan-fast bench --device cuda --workloads all --peers qkan-exact,qkan-flash
"""


def _csv(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _bench(args: argparse.Namespace) -> int:
    import torch

    from . import bench

    def fail(msg: str) -> int:
        print(f"qkan-fast bench: error: {msg}", file=sys.stderr)
        return 2

    if args.device == "cuda" and not torch.cuda.is_available():
        return fail("--device cuda but torch sees no GPU (see `qkan-fast info`)")
    spec = _csv(args.workloads or ("W1,W2" if args.quick else "all"))
    if "P1" in spec:  # the physics-informed training step: its own comparison (pinn.py)
        return _bench_pinn(args, [w for w in spec if w != "P1"])
    recurrent = [w for w in spec if w in ("L1", "LD")]
    if recurrent:  # the LSTM recurrence: its own comparison (bench_lstm.py)
        return _bench_lstm(args, recurrent, [w for w in spec if w not in recurrent])
    try:
        workloads = bench.parse_workloads(",".join(spec), ansatz=args.ansatz,
                                          fast_measure=not args.born, preact_trainable=args.preact_trainable)
    except ValueError as e:
        return fail(str(e))
    ours = args.engines or ["circuit", "reference"]
    bad = [e for e in ours if e not in bench.our_engines()]
    if bad:
        return fail(f"unknown engine(s) {', '.join(bad)}; qkan_fast offers {', '.join(bench.our_engines())} "
                    "(qkan's solvers go in --peers)")
    if args.peers is None:  # by default qkan's exact solver (and flash on CUDA), when qkan is installed
        peers = [] if bench.qkan_version() is None else ["qkan-exact"] + (["qkan-flash"] if args.device == "cuda" else [])
    else:
        peers = [] if args.peers.strip().lower() in ("", "none") else _csv(args.peers)
        bad = [p for p in peers if p not in bench.PEERS]
        if bad:
            return fail(f"unknown peer(s) {', '.join(bad)}; use {', '.join(bench.PEERS)} or none")
    rounds = args.rounds or (3 if args.quick else 5)
    min_run_time = args.min_run_time or (0.3 if args.quick else 1.0)
    for name, value in (("--rounds", rounds), ("--min-run-time", min_run_time), ("--threads", args.threads or 1)):
        if value <= 0:
            return fail(f"{name} must be positive, got {value}")
    # --quick: the reference and qkan (seconds per call on W2) only where they take well under a second
    max_work = args.max_work if args.max_work is not None else (2e6 if args.quick else None)
    cfg = bench.BenchConfig(workloads=workloads, engines=list(dict.fromkeys(ours + peers)), device=args.device,
                            dtype=args.dtype, rounds=rounds, min_run_time=min_run_time, max_work=max_work,
                            threads=args.threads, seed=args.seed)
    result = bench.run_bench(cfg, progress=not args.quiet)
    print(bench.format_report(result))
    if args.json:
        bench.write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _own_comparison(args: argparse.Namespace, schema: str, run, report) -> int:
    """What P1, L1 and LD share (each is its own comparison, on the CPU): the thread count, progress
    lines, the machine and its load around `run(log) -> dict`, the report and the JSON."""
    import torch

    from . import _machine, bench

    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    load_before = _machine.load_average()
    result = run(log)
    result = {"schema": schema, "command": " ".join(sys.argv),
              "machine": _machine.record(torch.device("cpu"), load_before, bench.qkan_version()),
              **result}
    print(report(result))
    if args.json:
        bench.write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _bench_pinn(args: argparse.Namespace, others: List[str]) -> int:
    from . import pinn

    if others or args.device != "cpu":
        print("qkan-fast bench: error: P1 runs alone and on the CPU (give --workloads P1)", file=sys.stderr)
        return 2
    return _own_comparison(args, "qkan_fast.bench.pinn/1", lambda log: pinn.benchmark(
        rounds=args.rounds or (3 if args.quick else 5), min_run_time=args.min_run_time or (1.0 if args.quick else 5.0),
        curve_steps=3 if args.quick else 10, seed=args.seed, progress=log, preact_trainable=args.preact_trainable),
        pinn.format_benchmark)


def _bench_lstm(args: argparse.Namespace, names: List[str], others: List[str]) -> int:
    from . import bench_lstm

    if others or args.device != "cpu":
        print("qkan-fast bench: error: L1 and LD run without other workloads and on the CPU "
              "(the comparison with the loop and nn.LSTM is a CPU one)", file=sys.stderr)
        return 2
    return _own_comparison(args, "qkan_fast.bench.lstm/1", lambda log: bench_lstm.benchmark(
        names, rounds=args.rounds or (3 if args.quick else 5),
        min_run_time=args.min_run_time or (0.5 if args.quick else 2.0), seed=args.seed, progress=log),
        bench_lstm.format_benchmark)


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    demo.run_demo(epochs=args.epochs, hidden=args.hidden, seeds=args.seeds, seed=args.seed, out=args.out,
                  quick=args.quick, progress=not args.no_progress, threads=args.threads, workers=args.workers)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qkan-fast", description="qkan_fast: fused C++/CUDA kernels for quantum-inspired Kolmogorov-Arnold networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="version, compiled features, torch, threads and the GPU seen")
    p.set_defaults(run=_info)

    p = sub.add_parser("bench", help="time the engines side by side with the reference and qkan",
                       description="Time qkan_fast's engines, the pure-torch reference and qkan==0.2.3's solvers on "
                                   "the same layers and inputs in one process (torch.utils.benchmark); print the "
                                   "table, ratios, parity and memory; --json writes it all with the machine header.",
                       epilog=_BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a first look: W1,W2, 3 rounds, 0.3 s per engine and measurement; the reference "
                        "and qkan only on W1 (--max-work 2e6)")
    p.add_argument("--workloads", help="comma-separated workloads (default all; --quick: W1,W2)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--engines", type=_csv, help="qkan_fast engines (default circuit,reference)")
    p.add_argument("--peers", help="qkan solvers: qkan-exact,qkan-cutn,qkan-flash or none "
                                   "(default qkan-exact, and qkan-flash on cuda, when qkan is installed)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--rounds", type=int, help="interleaved rounds per measurement (default 5; --quick 3)")
    p.add_argument("--min-run-time", type=float, metavar="S",
                   help="seconds per engine and measurement, over all rounds (default 1; --quick 0.3)")
    p.add_argument("--max-work", type=float, metavar="N",
                   help="skip the reference and qkan above B*O*I*R = N (default 5e7 on cpu, 2e9 on cuda; --quick 2e6)")
    p.add_argument("--ansatz", default="pz", help="ansatz of every workload (pz rpz px real mix)")
    p.add_argument("--born", action="store_true", help="fast_measure=False (Born <Z>) for every workload")
    p.add_argument("--preact-trainable", action="store_true", help="preact_trainable=True for every workload")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameters and inputs (default 0)")
    p.add_argument("--json", metavar="PATH", help="write every measurement with the machine header")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=_bench)

    p = sub.add_parser("demo", help="train QKAN-LSTM, HQKAN-LSTM and LSTMs on the pendulum and Bessel-J2 series",
                       description="Train QKAN-LSTM, HQKAN-LSTM, an LSTM of the same hidden size and one of about "
                                   "the QKAN-LSTM's parameter count on the damped pendulum and Bessel-J2 series with "
                                   "the QKAN-LSTM authors' settings (windows of 4, 80/20 split, Adam 1e-3, batches "
                                   "of 2, 30 epochs); print parameters and the median test MSE over the seeds.")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--hidden", type=int, default=5, help="hidden size of QKAN-LSTM, HQKAN-LSTM and the "
                                                         "equal-hidden LSTM (default 5)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per model; the median test MSE is reported (default 3)")
    p.add_argument("--seed", type=int, default=42, help="first seed (default 42): seeds are seed, seed+1, ...")
    p.add_argument("--out", default="qkan_fast_demo", help="folder for results.json and predictions.png")
    p.add_argument("--quick", action="store_true", help="1 epoch, at most 2 seeds: a smoke run of seconds")
    p.add_argument("--workers", type=int,
                   help="processes training the runs side by side (default: the CPU count; 1: in this process)")
    p.add_argument("--threads", type=int,
                   help="torch threads per worker (default 1; with --workers 1: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    p.set_defaults(run=_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of `qkan-fast` (pyproject: qkan-fast = "qkan_fast.cli:main")."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
